"""Compile: workflow records -> a plan of nodes with compiled templates, ready for the engine.

Compiling happens once per run, before any model call, so template errors surface before tokens are
spent and the engine's hot path only renders. Each template's free variables are read from its AST:
a template that uses nothing that varies per branch is rendered once per fan-out, not once per branch.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.config.source import TemplateSrc
from runner.templates import Template, environment, is_constant
from runner.workflow.records import AgentSpec, AgentStage, FanoutStage, ModelSpec, PythonStage, Stage, Workflow

# A system prompt that reads none of these renders the same for every call of its agent.
_VARYING_FOR_AGENT = frozenset({"vars", "prev", "stages", "input"})
# Names whose value differs between the branches of one fan-out.
_PER_BRANCH = frozenset({"vars", "prev", "stages", "agent", "input"})


def free_names(src: TemplateSrc) -> frozenset[str]:
    if is_constant(src.text):
        return frozenset()
    from jinja2 import meta  # noqa: PLC0415

    return frozenset(meta.find_undeclared_variables(environment().parse(src.text)))


@dataclass(frozen=True, slots=True)
class CompiledTemplate:
    template: Template
    names: frozenset[str]

    @property
    def per_branch(self) -> bool:
        return bool(self.names & _PER_BRANCH)


def compile_template(src: TemplateSrc | None) -> CompiledTemplate | None:
    if src is None:
        return None
    return CompiledTemplate(Template(src), free_names(src))


@dataclass(frozen=True, slots=True)
class AgentPlan:
    spec: AgentSpec
    model: ModelSpec
    sys_prompt: CompiledTemplate | None
    info: Mapping[str, Any]  # what templates see as `agent`
    sys_prompt_varies: bool  # False: renders the same for every call, so it is rendered once per run
    started_event: Mapping[str, Any]  # the data of this agent's "started" events, shared


@dataclass(frozen=True, slots=True)
class StagePlan:
    stage: Stage
    input: CompiledTemplate | None
    agent: AgentPlan | None = None
    for_each: CompiledTemplate | tuple[Any, ...] | None = None
    branches: tuple[tuple[StagePlan, ...], ...] = ()
    stages: tuple[StagePlan, ...] = ()
    when: CompiledTemplate | None = None

    @property
    def id(self) -> str:
        return self.stage.id

    @property
    def is_fanout(self) -> bool:
        return isinstance(self.stage, FanoutStage)


@dataclass(frozen=True)
class Plan:
    workflow: Workflow
    agents: Mapping[str, AgentPlan]
    stages: tuple[StagePlan, ...]
    node_count: int = field(default=0)


def compile_workflow(wf: Workflow) -> Plan:
    """Records to plan. Raises :class:`runner.errors.TemplateError` on a template syntax error."""
    agents = {}
    for name, spec in wf.agents.items():
        sys_prompt = compile_template(spec.sys_prompt)
        agents[name] = AgentPlan(
            spec=spec,
            model=wf.models[spec.model],
            sys_prompt=sys_prompt,
            info={"name": name, "model": spec.model, "description": spec.description},
            sys_prompt_varies=bool(sys_prompt and sys_prompt.names & _VARYING_FOR_AGENT),
            started_event={"kind": "agent", "agent": name, "model": spec.model},
        )

    def stage_plan(stage: Stage) -> StagePlan:
        when = compile_template(stage.policy.when)
        if isinstance(stage, AgentStage):
            return StagePlan(stage, compile_template(stage.input), agent=agents[stage.agent], when=when)
        if isinstance(stage, PythonStage):
            return StagePlan(stage, compile_template(stage.input), when=when)
        for_each: CompiledTemplate | tuple[Any, ...] | None = None
        if isinstance(stage.for_each, TemplateSrc):
            for_each = compile_template(stage.for_each)
        elif stage.for_each is not None:
            for_each = stage.for_each
        return StagePlan(
            stage,
            compile_template(stage.input),
            agent=agents[stage.agent] if stage.agent else None,
            for_each=for_each,
            branches=tuple(tuple(stage_plan(s) for s in branch) for branch in stage.branches),
            stages=tuple(stage_plan(s) for s in stage.stages),
            when=when,
        )

    return Plan(wf, agents, tuple(stage_plan(s) for s in wf.stages))


def walk_plans(stages: tuple[StagePlan, ...]) -> Iterator[StagePlan]:
    """Every stage plan, nested ones included, in document order."""
    for sp in stages:
        yield sp
        for branch in sp.branches:
            yield from walk_plans(branch)
        yield from walk_plans(sp.stages)
