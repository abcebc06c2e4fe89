"""The context each template will have at run time, computed from the records.

This mirrors the engine (``runner/engine/execute.py`` and each stage kind's ``run`` in ``runner/stages/``) and
walks stages through their kinds (their templates, item name and blocks); a change to what the engine passes to
templates must change this walk too (tests/test_rules_scope.py pins the cases):

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

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from runner.config.models import ModelSettings
from runner.config.source import TemplateSrc
from runner.stages import kind_of
from runner.stages.base import StageRecord
from runner.workflow.document import Path
from runner.workflow.records import Workflow


@dataclass(frozen=True, slots=True)
class Scope:
    """One run-time context of a template: the stages ready, the ``vars`` names, and who renders it."""

    ready: frozenset[str]
    vars: frozenset[str]
    stage: str  # the stage whose context this is
    label: str  # for messages: "the input of stage 'x'", "agent 'a' called by stage 'x'"
    path: tuple[str, ...]  # the ids of the stage and its enclosing fan-outs, innermost last
    prev: str = "any"  # what `prev` holds: none | text | loop-input | message | list | iterations | routed | any
    maybe: frozenset[str] = frozenset()  # stages of `ready` that may have no output (see skippable)
    names: frozenset[str] = frozenset()  # names besides the usual ones (`loop` inside a loop: Block.names)


@dataclass(frozen=True, slots=True)
class Place:
    """Where a stage sits: its enclosing fan-outs, each with how it is nested (branch index or pipeline)."""

    path: Path  # in the document
    chain: tuple[tuple[str, str], ...]  # (fan-out id, "branch <i>" | "pipeline"), outermost first


@dataclass(frozen=True, slots=True)
class Site:
    """A template and the names it can see where it is rendered."""

    src: TemplateSrc
    label: str  # "the input of stage 'x'"
    call: bool  # rendered for an agent call: `agent` and `input` exist
    scopes: tuple[Scope, ...] | None  # None: no caller, so stages and vars cannot be known
    extra: frozenset[str] = frozenset()  # more names (a scripted model's turns see `tool_results`)
    kind: str = "input"  # input | when | for_each | sys_prompt | model (or another template role of a stage kind)
    stage: StageRecord | None = None


@dataclass
class Walk:
    """One pass over the stages that finds every template's site and every agent's callers."""

    wf: Workflow
    sites: list[Site] = field(default_factory=list)
    calls: dict[str, list[Scope]] = field(default_factory=dict)  # agent -> the contexts it is called in
    places: dict[str, Place] = field(default_factory=dict)  # stage id -> the first stage with that id
    order: list[tuple[StageRecord, Path]] = field(default_factory=list)  # every stage, in document order

    def run(self) -> None:
        self.sequence(self.wf.stages, ("stages",), frozenset(), frozenset(), (), (), "none", frozenset())

    def sequence(
        self,
        stages: Sequence[StageRecord],
        base: Path,
        ready: frozenset[str],
        vars_: frozenset[str],
        chain: tuple[tuple[str, str], ...],
        ids: tuple[str, ...],
        prev: str,
        maybe: frozenset[str],
        names: frozenset[str] = frozenset(),
    ) -> None:
        for i, stage in enumerate(stages):
            self.stage(stage, (*base, i), ready, vars_, chain, ids, prev, maybe, names)
            ready = ready | {stage.id} | exported(stage)
            maybe = maybe | skippable(stage)
            out = output_kind(stage)
            # a stage whose `when` is false is skipped and `prev` passes through it
            prev = out if stage.policy.when is None or out == prev else "any"

    def stage(
        self,
        stage: StageRecord,
        path: Path,
        ready: frozenset[str],
        inherited: frozenset[str],
        chain: tuple[tuple[str, str], ...],
        ids: tuple[str, ...],
        prev: str,
        maybe: frozenset[str],
        names: frozenset[str] = frozenset(),
    ) -> None:
        self.places.setdefault(stage.id, Place(path, chain))
        self.order.append((stage, path))
        kind = kind_of(stage)
        here = (*ids, stage.id)
        agent_name = stage.agent
        agent = self.wf.agents.get(agent_name) if agent_name else None
        own = inherited | frozenset(agent.vars if agent is not None else ()) | frozenset(stage.vars)
        item = kind.item_name(stage)
        with_item = own | {item} if item is not None else own
        label = f"stage '{stage.id}'"
        plain = Scope(ready, own, stage.id, label, here, prev, maybe, names)
        if stage.policy.when is not None:
            self._site(stage.policy.when, f"the 'when' of {label}", plain, "when", stage)
        for use in kind.templates(stage):
            if use.after:  # a loop's `until`: after its body, whose stages it sees (the last iteration's)
                inner = [s for block in kind.blocks(stage) for s in block.stages]
                after_maybe = maybe.union(*(skippable(s) for s in inner))
                out = output_kind(inner[-1]) if inner else "any"
                scope = Scope(ready | exported(stage), own, stage.id, label, here, out, after_maybe, names | use.names)
            elif use.per_item or use.names:
                seen = with_item if use.per_item else own
                scope = Scope(ready, seen, stage.id, label, here, prev, maybe, names | use.names)
            else:
                scope = plain
            self._site(use.src, f"the {use.role} of {label}", scope, use.role, stage)
        if agent_name is not None:  # the agent renders its templates in the stage's context, with the item
            self._call(agent_name, Scope(ready, with_item, stage.id, label, here, prev, maybe, names))
        for block in kind.blocks(stage):
            inner_vars = own | {block.item} if block.item is not None else own
            self.sequence(
                block.stages,
                (*path, *block.path),
                ready,
                inner_vars,
                (*chain, (stage.id, block.how)),
                here,
                block.prev,
                maybe,
                names | block.names,
            )

    def _site(self, src: TemplateSrc, label: str, scope: Scope, kind: str, stage: StageRecord) -> None:
        self.sites.append(Site(src, label, False, (scope,), kind=kind, stage=stage))

    def _call(self, agent: str, scope: Scope) -> None:
        self.calls.setdefault(agent, []).append(scope)


def output_kind(stage: StageRecord) -> str:
    """What a stage's output is, as `prev` and `stages.<id>` hold it: an agent's message, a fan-out's list;
    a python stage returns anything (its kind's ``output``). (Branches and per-item pipelines start with the
    fan-out's input text: a block's ``prev``.)"""
    return kind_of(stage).output


def exported(stage: StageRecord) -> frozenset[str]:
    """Stage ids a stage makes visible to the stages after it, besides its own: every stage of its exported
    blocks (a fan-out's listed branches: the engine copies each branch's outputs out once it finishes), none
    of a for_each pipeline."""
    out: set[str] = set()
    for block in kind_of(stage).blocks(stage):
        if block.exported:
            for inner in block.stages:
                out.add(inner.id)
                out |= exported(inner)
    return frozenset(out)


def skippable(stage: StageRecord) -> frozenset[str]:
    """Stage ids that are visible after ``stage`` but may hold no output there (issue 14): ``stage`` and all
    it exports when its ``when`` can skip it (``stages.<id>`` is then None, its branches' stages absent); the
    stages of its exported blocks that may be skipped; and every stage of a partial block (under
    ``on_error: collect``, a failed branch hands out none)."""
    if stage.policy.when is not None:
        return frozenset({stage.id}) | exported(stage)
    out: set[str] = set()
    for block in kind_of(stage).blocks(stage):
        if not block.exported:
            continue
        for inner in block.stages:
            out |= ({inner.id} | exported(inner)) if block.partial else skippable(inner)
    return frozenset(out)


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
