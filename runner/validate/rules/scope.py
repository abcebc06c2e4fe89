"""The context each template will have at run time, computed from the records.

This mirrors ``runner/engine/execute.py``; a change to what the engine passes to templates must change
this walk too (tests/test_rules_scope.py pins the cases):

- a stage's ``input`` and ``when`` see ``inputs``, ``stages``, ``prev``, ``vars``, ``run``; ``vars`` is the
  enclosing fan-outs' vars and ``as`` items, then the stage's agent's ``vars`` (defaults), then its own;
- a fan-out's ``for_each`` and ``when`` see its vars without the item; its ``input`` also sees the item;
- ``stages.<id>`` holds the outputs of the stages that finished before, on every path: a listed branch
  sees the stages before the fan-out and the earlier ones of its own branch; after the fan-out every
  branch's stages are visible; a for_each pipeline's stages are visible only inside it;
- an agent's ``sys_prompt`` and its model's templates render in the calling stage's context, plus
  ``agent`` and ``input``: they must work for every caller.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from runner.config.models import ModelSettings
from runner.config.source import TemplateSrc
from runner.workflow.document import Path
from runner.workflow.records import AgentStage, FanoutStage, Stage, Workflow


@dataclass(frozen=True, slots=True)
class Scope:
    """One run-time context of a template: the stages ready, the ``vars`` names, and who renders it."""

    ready: frozenset[str]
    vars: frozenset[str]
    stage: str  # the stage whose context this is
    label: str  # for messages: "the input of stage 'x'", "agent 'a' called by stage 'x'"
    path: tuple[str, ...]  # the ids of the stage and its enclosing fan-outs, innermost last
    prev: str = "any"  # what `prev` holds: none | text | message | list | any (see output_kind)
    maybe: frozenset[str] = frozenset()  # stages of `ready` that may have no output (see skippable)


@dataclass(frozen=True, slots=True)
class Place:
    """Where a stage sits: its enclosing fan-outs, each with how it is nested (branch index or pipeline)."""

    path: Path  # in the document
    chain: tuple[tuple[str, str], ...]  # (fan-out id, "branch <i>" | "pipeline"), outermost first


@dataclass(frozen=True, slots=True)
class Site:
    src: TemplateSrc
    label: str  # "the input of stage 'x'"
    call: bool  # rendered for an agent call: `agent` and `input` exist
    scopes: tuple[Scope, ...] | None  # None: no caller, so stages and vars cannot be known
    extra: frozenset[str] = frozenset()  # more names (a scripted model's turns see `tool_results`)
    kind: str = "input"  # input | when | for_each | sys_prompt | model
    stage: Stage | None = None


@dataclass
class Walk:
    wf: Workflow
    sites: list[Site] = field(default_factory=list)
    calls: dict[str, list[Scope]] = field(default_factory=dict)  # agent -> the contexts it is called in
    places: dict[str, Place] = field(default_factory=dict)  # stage id -> the first stage with that id
    order: list[tuple[Stage, Path]] = field(default_factory=list)  # every stage, in document order

    def run(self) -> None:
        self.sequence(self.wf.stages, ("stages",), frozenset(), frozenset(), (), (), "none", frozenset())

    def sequence(
        self,
        stages: tuple[Stage, ...],
        base: Path,
        ready: frozenset[str],
        vars_: frozenset[str],
        chain: tuple[tuple[str, str], ...],
        ids: tuple[str, ...],
        prev: str,
        maybe: frozenset[str],
    ) -> None:
        for i, stage in enumerate(stages):
            self.stage(stage, (*base, i), ready, vars_, chain, ids, prev, maybe)
            ready = ready | {stage.id} | exported(stage)
            maybe = maybe | skippable(stage)
            out = output_kind(stage)
            # a stage whose `when` is false is skipped and `prev` passes through it
            prev = out if stage.policy.when is None or out == prev else "any"

    def stage(
        self,
        stage: Stage,
        path: Path,
        ready: frozenset[str],
        inherited: frozenset[str],
        chain: tuple[tuple[str, str], ...],
        ids: tuple[str, ...],
        prev: str,
        maybe: frozenset[str],
    ) -> None:
        self.places.setdefault(stage.id, Place(path, chain))
        self.order.append((stage, path))
        here = (*ids, stage.id)
        agent_name = stage.agent
        agent = self.wf.agents.get(agent_name) if agent_name else None
        own = inherited | frozenset(agent.vars if agent is not None else ()) | frozenset(stage.vars)
        label = f"stage '{stage.id}'"
        plain = Scope(ready, own, stage.id, label, here, prev, maybe)
        if stage.policy.when is not None:
            self._site(stage.policy.when, f"the 'when' of {label}", plain, "when", stage)
        if not isinstance(stage, FanoutStage):
            if stage.input is not None:
                self._site(stage.input, f"the input of {label}", plain, "input", stage)
            if isinstance(stage, AgentStage):
                self._call(stage.agent, Scope(ready, own, stage.id, label, here, prev, maybe))
            return
        as_item = own | {stage.as_name} if stage.for_each is not None else own
        if isinstance(stage.for_each, TemplateSrc):
            self._site(stage.for_each, f"the for_each of {label}", plain, "for_each", stage)
        if stage.input is not None:
            item_scope = Scope(ready, as_item, stage.id, label, here, prev, maybe)
            self._site(stage.input, f"the input of {label}", item_scope, "input", stage)
        if stage.agent is not None:
            self._call(stage.agent, Scope(ready, as_item, stage.id, label, here, prev, maybe))
        for b, branch in enumerate(stage.branches):
            branch_base = (*path, "fanout", "branches", b)
            self.sequence(branch, branch_base, ready, own, (*chain, (stage.id, f"branch {b}")), here, "text", maybe)
        if stage.stages:
            inner_base = (*path, "fanout", "stages")
            pipeline = (*chain, (stage.id, "pipeline"))
            self.sequence(stage.stages, inner_base, ready, as_item, pipeline, here, "text", maybe)

    def _site(self, src: TemplateSrc, label: str, scope: Scope, kind: str, stage: Stage) -> None:
        self.sites.append(Site(src, label, False, (scope,), kind=kind, stage=stage))

    def _call(self, agent: str, scope: Scope) -> None:
        self.calls.setdefault(agent, []).append(scope)


def output_kind(stage: Stage) -> str:
    """What a stage's output is, as `prev` and `stages.<id>` hold it: an agent's message, a fan-out's list;
    a python stage returns anything. (Branches and per-item pipelines start with the fan-out's input text.)"""
    if isinstance(stage, AgentStage):
        return "message"
    if isinstance(stage, FanoutStage):
        return "list"
    return "any"


def exported(stage: Stage) -> frozenset[str]:
    """Stage ids a stage makes visible to the stages after it, besides its own: every stage of its listed
    branches (the engine copies each branch's outputs out once it finishes), none of a for_each pipeline."""
    if not isinstance(stage, FanoutStage):
        return frozenset()
    out: set[str] = set()
    for branch in stage.branches:
        for inner in branch:
            out.add(inner.id)
            out |= exported(inner)
    return frozenset(out)


def skippable(stage: Stage) -> frozenset[str]:
    """Stage ids that are visible after ``stage`` but may hold no output there (issue 14): ``stage`` and all
    it exports when its ``when`` can skip it (``stages.<id>`` is then None, its branches' stages absent); the
    stages of its branches that may be skipped; and, under ``on_error: collect``, every stage of its
    branches, which a failed branch never hands out."""
    if stage.policy.when is not None:
        return frozenset({stage.id}) | exported(stage)
    if not isinstance(stage, FanoutStage):
        return frozenset()
    if stage.on_error == "collect":
        return exported(stage)
    out: set[str] = set()
    for branch in stage.branches:
        for inner in branch:
            out |= skippable(inner)
    return frozenset(out)


def walk_stages(stages: tuple[Stage, ...]) -> Iterator[Stage]:
    for stage in stages:
        yield stage
        if isinstance(stage, FanoutStage):
            for branch in stage.branches:
                yield from walk_stages(branch)
            yield from walk_stages(stage.stages)


def call_sites(walk: Walk) -> list[Site]:
    """Templates rendered when an agent is called: its sys_prompt and its model's templates."""
    wf = walk.wf
    out: list[Site] = []
    for agent in wf.agents.values():
        if agent.sys_prompt is None:
            continue
        scopes = walk.calls.get(agent.name)
        label = f"the sys_prompt of agent '{agent.name}'"
        out.append(Site(agent.sys_prompt, label, True, tuple(scopes) if scopes else None, kind="sys_prompt"))
    for model in wf.models.values():
        scopes = model_scopes(walk, model.name)
        turns = model.config.turns if model.config is not None else ()
        extra = frozenset({"tool_results"}) if turns else frozenset()
        label = f"the templates of model '{model.name}'"
        for src in model_templates(model.config):
            out.append(Site(src, label, True, tuple(scopes) if scopes else None, extra, kind="model"))
    return out


def model_scopes(walk: Walk, model: str) -> list[Scope]:
    """Every context a model's templates render in: the calls of every agent on that model."""
    users = [a.name for a in walk.wf.agents.values() if a.model == model]
    return [s for name in users for s in walk.calls.get(name, ())]


def model_templates(config: ModelSettings | None) -> Iterator[TemplateSrc]:
    if config is not None:
        yield from config.templates()
