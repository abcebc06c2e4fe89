"""Compile: workflow records -> a plan of nodes with compiled templates, ready for the engine.

Compiling happens once per run, before any model call, so template errors surface before tokens are
spent and the engine's hot path only renders. Each template's free variables are read from its AST:
a template that uses nothing that varies per branch is rendered once per fan-out, not once per branch.
Each stage's node is made by its kind (``runner/stages/``: :meth:`StageKind.plan`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runner.config.source import TemplateSrc
from runner.stages import kind_of
from runner.stages.base import CompiledTemplate as CompiledTemplate
from runner.stages.base import StagePlan as StagePlan
from runner.stages.base import StageRecord
from runner.templates import Template, environment, is_constant, simple_parts
from runner.workflow.records import AgentSpec, ModelSpec, Workflow

# A system prompt that reads none of these renders the same for every call of its agent.
_VARYING_FOR_AGENT = frozenset({"vars", "prev", "stages", "input"})


def free_names(src: TemplateSrc) -> frozenset[str]:
    if is_constant(src.text):
        return frozenset()
    simple = simple_parts(src.text)
    if simple is not None:  # read without Jinja (runner/templates.py)
        return frozenset(part[0] for part in simple if isinstance(part, tuple))
    from jinja2 import meta  # noqa: PLC0415

    return frozenset(meta.find_undeclared_variables(environment().parse(src.text)))


def compile_template(src: TemplateSrc | None) -> CompiledTemplate | None:
    if src is None:
        return None
    return CompiledTemplate(Template(src), free_names(src))


@dataclass(frozen=True, slots=True)
class AgentPlan:
    """An agent ready to run: its records, its model and its compiled system prompt."""

    spec: AgentSpec
    model: ModelSpec
    sys_prompt: CompiledTemplate | None
    info: Mapping[str, Any]  # what templates see as `agent`
    sys_prompt_varies: bool  # False: renders the same for every call, so it is rendered once per run
    started_event: Mapping[str, Any]  # the data of this agent's "started" events, shared


@dataclass(frozen=True)
class Plan:
    """A compiled workflow: the agents and the stage plans the engine runs, and how many nodes they make."""

    workflow: Workflow
    agents: Mapping[str, AgentPlan]
    stages: tuple[StagePlan, ...]
    node_count: int = field(default=0)


class _Planner:
    """What a stage kind's ``plan`` gets (``runner.stages.base.PlanContext``)."""

    def __init__(self, agents: Mapping[str, AgentPlan], children: dict[str, Plan]) -> None:
        self.agents = agents
        self.children = children

    def template(self, src: TemplateSrc | None) -> CompiledTemplate | None:
        return compile_template(src)

    def agent(self, name: str) -> AgentPlan:
        return self.agents[name]

    def stages(self, stages: Sequence[StageRecord]) -> tuple[StagePlan, ...]:
        return tuple(kind_of(s).plan(s, self) for s in stages)

    def child(self, workflow: Any) -> Plan:
        """A child workflow's plan: compiled once per file, however many stages and branches run it (issue 22)."""
        plan = self.children.get(workflow.file)
        if plan is None:
            plan = self.children[workflow.file] = compile_workflow(workflow, self.children)
        return plan


def compile_workflow(wf: Workflow, children: dict[str, Plan] | None = None) -> Plan:
    """Records to plan. Raises :class:`runner.errors.TemplateError` on a template syntax error. ``children``:
    the child workflows' plans compiled so far, by file (shared with the children's own compiles)."""
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
    return Plan(wf, agents, _Planner(agents, {} if children is None else children).stages(wf.stages))


def child_plans(plan: Plan) -> list[Plan]:
    """Every child workflow's plan under ``plan``, each once (children of children included), outermost first."""
    found: dict[str, Plan] = {}

    def visit(p: Plan) -> None:
        for sp in walk_plans(p.stages):
            include = getattr(sp, "include", None)
            if include is not None and include.child.workflow.file not in found:
                found[include.child.workflow.file] = include.child
                visit(include.child)

    visit(plan)
    return list(found.values())


def walk_plans(stages: Sequence[StagePlan]) -> Iterator[StagePlan]:
    """Every stage plan, nested ones included, in document order."""
    for sp in stages:
        yield sp
        for block in sp.blocks:
            yield from walk_plans(block)
