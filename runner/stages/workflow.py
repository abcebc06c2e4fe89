"""The ``workflow`` stage kind: another workflow file run as one stage (``workflow: summarize.yaml``, issue 22).

The child is a workflow of its own: its models, agents, tools and stages are read from its file (relative to
the including file), checked there (``runner validate`` locates its problems in the child's file) and compiled
once per run however many stages and fan-out branches run it. ``inputs: {name: template}`` gives the child its
``inputs:`` (a single ``{{ expression }}`` keeps its value's type: a list stays a list); its first stage starts
from the stage's input, as a fan-out branch does. Its output is a :class:`Child`: the child's final output, with
the child's stage outputs under ``stages``. A fan-out runs a child per item with ``fanout: {for_each, workflow,
inputs}`` (``runner/stages/fanout.py``), through the same :class:`Include` record.

The child's stages are not :meth:`StageKind.blocks` of the stage: they belong to another file, with its own
agents and scope, so the validator, :func:`runner.stages.walk` and the parent's providers never see them as the
parent's. The layers that do need them (the engine's providers and user code, the graph, the report) reach them
through :attr:`Include.child` and the child's plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runner.config.source import Loc, TemplateSrc
from runner.stages.base import (
    NO_POLICY,
    BuildContext,
    CompiledTemplate,
    EngineServices,
    GraphPart,
    PlanContext,
    ShapeContext,
    StageKind,
    StagePlan,
    StagePolicy,
    StageShape,
    TemplateUse,
    YamlPath,
    as_text,
)


@dataclass(frozen=True, slots=True)
class Include:
    """A child workflow as a stage or a fan-out names it: ``file`` as written, ``path`` the child's file as
    messages name it (joined to the including file's folder), ``inputs`` by name (a template, or a YAML value
    given as is), ``loc`` where ``workflow:`` is written, ``base`` the path of the mapping holding it (relative to
    the stage: ``()`` or ``("fanout",)``), and ``child`` the child's records (``runner.workflow.records.Workflow``;
    None when it could not be read: the parent then has an error and never runs)."""

    file: str
    path: str
    inputs: Mapping[str, Any]
    loc: Loc
    base: YamlPath
    child: Any

    def templates(self, per_item: bool) -> tuple[TemplateUse, ...]:
        return tuple(
            TemplateUse(f"input '{name}' of workflow {self.file}", src, (*self.base, "inputs", name), per_item)
            for name, src in self.inputs.items()
            if isinstance(src, TemplateSrc)
        )


@dataclass(frozen=True, slots=True)
class IncludePlan:
    """An include compiled: the child's plan (``runner.plan.compile.Plan``, one per child file per run) and its
    inputs, templates compiled."""

    include: Include
    child: Any
    inputs: tuple[tuple[str, CompiledTemplate | None, Any], ...]  # (name, template or None, value when None)

    def values(self, ctx: Mapping[str, Any]) -> dict[str, Any]:
        """The child's inputs in this context: a ``{{ expression }}`` keeps its value's type."""
        return {name: (tpl.template.evaluate(ctx) if tpl is not None else value) for name, tpl, value in self.inputs}


def build_include(raw: Mapping[str, Any], path: YamlPath, base: YamlPath, b: BuildContext) -> Include:
    """The :class:`Include` of ``raw`` (a stage's or a fan-out's mapping, at ``path``; ``base`` relative to the
    stage), its child read through the builder."""
    given = raw.get("inputs") or {}
    inputs = {
        name: (b.template((*path, "inputs", name)) if isinstance(value, str) else value)
        for name, value in given.items()
    }
    file = raw["workflow"]
    resolved, child = b.include(file, (*path, "workflow"))
    return Include(file, resolved, inputs, b.loc((*path, "workflow")), base, child)


def plan_include(include: Include, p: PlanContext) -> IncludePlan:
    return IncludePlan(
        include,
        p.child(include.child),
        tuple(
            (name, p.template(src), None) if isinstance(src, TemplateSrc) else (name, None, src)
            for name, src in include.inputs.items()
        ),
    )


@dataclass(slots=True)
class Child:
    """A child workflow's output as templates see it: ``output`` (its last stage's output; also what ``content``
    and ``data`` read through, and the text it gives as an input) and ``stages`` (its stages' outputs by id)."""

    output: Any
    stages: dict[str, Any]

    @property
    def content(self) -> str:
        return as_text(self.output)

    @property
    def data(self) -> Any:
        return getattr(self.output, "data", None)

    def __str__(self) -> str:
        return as_text(self.output)


CHILD_FIELDS = ("content", "data", "output", "stages")
"""What templates read on a :class:`Child` (the validator checks reads against it)."""


@dataclass(frozen=True, slots=True)
class WorkflowStage:
    """``workflow``: the child workflow of ``include`` run once, on the stage's input, with its inputs."""

    id: str
    include: Include
    input: TemplateSrc | None
    vars: Mapping[str, Any]
    loc: Loc
    policy: StagePolicy = NO_POLICY

    agent = None  # it calls no agent of this file (see StageRecord.agent)


@dataclass(frozen=True, slots=True)
class WorkflowPlan(StagePlan):
    """A workflow stage's plan: its include compiled (the child's plan, shared by every stage that runs it)."""

    include: IncludePlan | None = None


class WorkflowKind(StageKind[WorkflowStage]):
    name = "workflow"
    record = WorkflowStage
    output = "workflow"
    agent_key = ("workflow",)
    mermaid_shape = ("[[", "]]")

    def build(self, raw: Mapping[str, Any], path: YamlPath, b: BuildContext) -> WorkflowStage:
        c = b.common(raw, path)
        return WorkflowStage(c.id, build_include(raw, path, (), b), c.input, c.vars, c.loc, c.policy)

    def templates(self, stage: WorkflowStage) -> tuple[TemplateUse, ...]:
        own = (TemplateUse("input", stage.input, ("input",)),) if stage.input is not None else ()
        return own + stage.include.templates(False)

    def plan(self, stage: WorkflowStage, p: PlanContext) -> WorkflowPlan:
        when = p.template(stage.policy.when)
        return WorkflowPlan(stage, self, p.template(stage.input), when, None, (), plan_include(stage.include, p))

    async def run(
        self,
        sp: StagePlan,
        engine: EngineServices,
        stages: dict[str, Any],
        prev: Any,
        vars_: Mapping[str, Any],
        prefix: str,
        ctx: dict[str, Any],
    ) -> Child:
        import asyncio  # noqa: PLC0415 - runs only on the loop; records load without asyncio

        from runner.stages.base import brief  # noqa: PLC0415

        assert isinstance(sp, WorkflowPlan) and sp.include is not None
        node = prefix + sp.id
        start = sp.input.template.render(ctx) if sp.input is not None else prev
        rec = engine.recorder
        rec.emit("started", node, {"kind": "workflow", "workflow": sp.include.include.path})
        try:
            out: Child = await engine.run_workflow(sp.include, sp.include.values(ctx), start, node + ".")
        except BaseException as exc:
            rec.emit("cancelled" if isinstance(exc, asyncio.CancelledError) else "failed", node, {"error": brief(exc)})
            raise
        rec.emit("finished", node)
        return out

    def graph_label(self, sp: StagePlan) -> str:
        assert isinstance(sp, WorkflowPlan) and sp.include is not None
        return include_label(sp.include)

    def graph_parts(self, sp: StagePlan) -> tuple[GraphPart, ...]:
        assert isinstance(sp, WorkflowPlan) and sp.include is not None
        return (GraphPart(sp.include.child.workflow.name, "wf", plans=sp.include.child.stages),)

    def shape(self, stage: WorkflowStage, path: str, s: ShapeContext) -> StageShape:
        return StageShape(stage.id, path, "workflow", stages=s.workflow(stage.include.child))


def include_label(ip: IncludePlan) -> str:
    """``workflow summarize.yaml (inputs text, n)``: an include in ``runner graph``."""
    names = f" (inputs {', '.join(name for name, _, _ in ip.inputs)})" if ip.inputs else ""
    return f"workflow {ip.include.file}{names}"


WORKFLOW = WorkflowKind()
