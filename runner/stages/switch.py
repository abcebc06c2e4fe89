"""The ``switch`` stage kind: routing. ``on`` (a template) renders to a value; the stages of the case of that
value run, in order, or those of ``default`` when no case has it, or none.

The stages of the case that ran start from the switch's input and keep their ids: ``stages.<inner id>`` after
the switch holds their outputs (the validator asks for a check before reading one, since its case may not have
been the one). ``stages.<switch id>`` says which case ran (``case``: the value, ``default``, or None) and holds
its last output (``output``); as a later stage's default input it is that output's text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runner.config.source import Loc, TemplateSrc
from runner.stages.base import (
    NO_POLICY,
    Block,
    BuildContext,
    CompiledTemplate,
    EngineServices,
    GraphPart,
    PlanContext,
    Routed,
    ShapeContext,
    StageKind,
    StagePlan,
    StagePolicy,
    StageRecord,
    StageShape,
    TemplateUse,
    YamlPath,
    as_text,
    brief,
    one_line,
    yaml_path,
)

DEFAULT = "default"


@dataclass(frozen=True, slots=True)
class SwitchStage:
    """``switch``: ``on`` picks one of ``cases`` (value -> stages, in document order), else ``default``."""

    id: str
    input: TemplateSrc | None
    vars: Mapping[str, Any]
    on: TemplateSrc
    cases: tuple[tuple[str, tuple[StageRecord, ...]], ...]
    default: tuple[StageRecord, ...] | None
    loc: Loc
    policy: StagePolicy = NO_POLICY

    agent = None  # it calls no agent itself (see StageRecord.agent)


@dataclass(frozen=True, slots=True)
class SwitchPlan(StagePlan):
    """A switch's plan: ``on`` compiled; ``blocks`` holds each case's plans, in order, then the default's."""

    on: CompiledTemplate | None = None


class SwitchKind(StageKind[SwitchStage]):
    name = "switch"
    record = SwitchStage
    output = "routed"
    mermaid_shape = ("{", "}")

    def build(self, raw: Mapping[str, Any], path: YamlPath, b: BuildContext) -> SwitchStage:
        c = b.common(raw, path)
        body = raw["switch"]
        spath = (*path, "switch")
        cases = tuple(
            (str(key), tuple(b.stage(s, (*spath, "cases", key, i)) for i, s in enumerate(stages)))
            for key, stages in body["cases"].items()
        )
        default = (
            tuple(b.stage(s, (*spath, DEFAULT, i)) for i, s in enumerate(body[DEFAULT])) if DEFAULT in body else None
        )
        return SwitchStage(c.id, c.input, c.vars, b.template((*spath, "on")), cases, default, c.loc, c.policy)

    def templates(self, stage: SwitchStage) -> tuple[TemplateUse, ...]:
        out = [TemplateUse("on", stage.on, ("switch", "on"))]
        if stage.input is not None:
            out.append(TemplateUse("input", stage.input, ("input",)))
        return tuple(out)

    def blocks(self, stage: SwitchStage) -> tuple[Block, ...]:
        # One case runs: its stages are visible after the switch, but any of them may have no output there.
        out = [
            Block(stages, ("switch", "cases", key), f"case '{key}'", exported=True, partial=True)
            for key, stages in stage.cases
        ]
        if stage.default is not None:
            out.append(Block(stage.default, ("switch", DEFAULT), "the default case", exported=True, partial=True))
        return tuple(out)

    def plan(self, stage: SwitchStage, p: PlanContext) -> SwitchPlan:
        when = p.template(stage.policy.when)
        on = p.template(stage.on)
        return SwitchPlan(
            stage,
            self,
            p.template(stage.input),
            when,
            None,
            tuple(p.stages(block.stages) for block in self.blocks(stage)),
            on,
        )

    async def run(
        self,
        sp: StagePlan,
        engine: EngineServices,
        stages: dict[str, Any],
        prev: Any,
        vars_: Mapping[str, Any],
        prefix: str,
        ctx: dict[str, Any],
    ) -> Routed:
        import asyncio  # noqa: PLC0415 - runs only on the loop; records load without asyncio

        assert isinstance(sp, SwitchPlan) and sp.on is not None
        stage: SwitchStage = sp.stage
        node = prefix + stage.id
        rec = engine.recorder
        value = sp.on.template.render(ctx).strip()
        index = next((i for i, (key, _) in enumerate(stage.cases) if key == value), None)
        case: str | None = value
        if index is None and stage.default is not None:
            index, case = len(stage.cases), DEFAULT
        if index is None:
            reason = f"no case for {value!r} and no default: no stage ran"
            rec.emit("started", node, {"kind": "switch"})
            rec.emit("finished", node, {"case": None, "reason": reason})
            return Routed(None, prev)
        text = sp.input.template.render(ctx) if sp.input is not None else as_text(prev)
        rec.emit("started", node, {"kind": "switch"})
        try:
            out = await engine.run_sequence(sp.blocks[index], stages, text, vars_, prefix)
        except BaseException as exc:
            kind = "cancelled" if isinstance(exc, asyncio.CancelledError) else "failed"
            rec.emit(kind, node, {"error": brief(exc), "case": case})
            raise
        reason = f"on gave {value!r}" + (", which no case has: the default ran" if case == DEFAULT else "")
        rec.emit("finished", node, {"case": case, "reason": reason})
        return Routed(case, out)

    def graph_label(self, sp: StagePlan) -> str:
        stage: SwitchStage = sp.stage
        default = " and a default" if stage.default is not None else ""
        n = len(stage.cases)
        return f"switch on {one_line(stage.on.text)}: {n} case{'' if n == 1 else 's'}{default}"

    def graph_parts(self, sp: StagePlan) -> tuple[GraphPart, ...]:
        stage: SwitchStage = sp.stage
        parts = [
            GraphPart(f"case {key}", f"case{i}", plans=plans)
            for i, ((key, _), plans) in enumerate(zip(stage.cases, sp.blocks, strict=False))
        ]
        if stage.default is not None:
            parts.append(GraphPart("default", "default", plans=sp.blocks[-1]))
        return tuple(parts)

    def shape(self, stage: SwitchStage, path: str, s: ShapeContext) -> StageShape:
        branches = tuple(s.block(path + yaml_path(block.path), block) for block in self.blocks(stage))
        return StageShape(stage.id, path, "switch", branches=branches)


SWITCH = SwitchKind()
