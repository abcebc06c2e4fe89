"""The ``loop`` stage kind: its ``stages`` run in order, again and again, until ``until`` holds or
``max_iterations`` is reached (required: no loop is unbounded).

Each iteration starts from the previous iteration's last output (the first from the loop's input) and sees
``loop``: ``iteration`` (from 1), ``max_iterations`` and ``previous`` (the previous iteration's outputs by stage
id; None in the first). ``until`` is evaluated after each iteration, with that iteration's stages. The output,
``stages.<loop id>``, is the list of iterations (each the inner stages' outputs by id); after the loop
``stages.<inner id>`` is the last iteration's. In the report each iteration is a node ``<id>[i]`` (from 1)
over its stages' nodes ``<id>[i].<inner>``, and the loop's node says what ended it (``ended_by``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runner.config.source import Loc, TemplateSrc
from runner.stages.base import (
    CONTEXT_NAMES,
    NO_POLICY,
    Block,
    BuildContext,
    CompiledTemplate,
    EngineServices,
    GraphPart,
    Iterations,
    PlanContext,
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
    truthy,
    yaml_path,
)

LOOP_NAMES = frozenset({"loop"})


@dataclass(frozen=True, slots=True)
class LoopStage:
    """``loop``: ``stages`` run in order up to ``max_iterations`` times, until ``until`` (a template) holds.
    ``where`` is the stage's path in the YAML (``stages[1]``), for the setting the report's warning names."""

    id: str
    input: TemplateSrc | None
    vars: Mapping[str, Any]
    stages: tuple[StageRecord, ...]
    until: TemplateSrc | None
    max_iterations: int
    loc: Loc
    where: str = ""
    policy: StagePolicy = NO_POLICY

    agent = None  # it calls no agent itself (see StageRecord.agent)


@dataclass(frozen=True, slots=True)
class LoopPlan(StagePlan):
    """A loop's plan: ``until`` compiled; ``blocks`` holds the body's plans as its one block."""

    until: CompiledTemplate | None = None


class LoopKind(StageKind[LoopStage]):
    name = "loop"
    record = LoopStage
    output = "iterations"
    mermaid_shape = ("[[", "]]")

    def build(self, raw: Mapping[str, Any], path: YamlPath, b: BuildContext) -> LoopStage:
        c = b.common(raw, path)
        body = raw["loop"]
        lpath = (*path, "loop")
        inner = tuple(b.stage(s, (*lpath, "stages", i)) for i, s in enumerate(body["stages"]))
        until = b.template((*lpath, "until")) if "until" in body else None
        where = yaml_path(path).lstrip(".")
        return LoopStage(c.id, c.input, c.vars, inner, until, int(body["max_iterations"]), c.loc, where, c.policy)

    def templates(self, stage: LoopStage) -> tuple[TemplateUse, ...]:
        out = []
        if stage.input is not None:
            out.append(TemplateUse("input", stage.input, ("input",)))
        if stage.until is not None:  # after each iteration, with its stages and `loop`
            out.append(TemplateUse("until", stage.until, ("loop", "until"), after=True, names=LOOP_NAMES))
        return tuple(out)

    def blocks(self, stage: LoopStage) -> tuple[Block, ...]:
        # The body starts from the loop's input (text), then from the previous iteration's last output: what
        # holds in the first iteration is what the validator checks. Its stages' outputs stay visible after
        # the loop (the last iteration's).
        return (Block(stage.stages, ("loop", "stages"), "body", exported=True, prev="loop-input", names=LOOP_NAMES),)

    def plan(self, stage: LoopStage, p: PlanContext) -> LoopPlan:
        when = p.template(stage.policy.when)
        return LoopPlan(
            stage,
            self,
            p.template(stage.input),
            when,
            None,
            (p.stages(stage.stages),),
            p.template(stage.until),
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
    ) -> Iterations:
        import asyncio  # noqa: PLC0415 - runs only on the loop; records load without asyncio

        assert isinstance(sp, LoopPlan)
        stage: LoopStage = sp.stage
        node = prefix + stage.id
        rec = engine.recorder
        text = sp.input.template.render(ctx) if sp.input is not None else as_text(prev)
        rec.emit("started", node, {"kind": "loop"})
        iterations = Iterations()
        outer = CONTEXT_NAMES.get() or {}
        last: Any = text
        previous: dict[str, Any] | None = None
        ended_by = "max_iterations"
        try:
            for i in range(1, stage.max_iterations + 1):
                info = {"iteration": i, "max_iterations": stage.max_iterations, "previous": previous}
                scope = dict(stages)  # the stages before the loop; not the previous iteration's (loop.previous)
                step = f"{node}[{i}]"
                rec.emit("started", step, {"kind": "iteration"})
                token = CONTEXT_NAMES.set({**outer, "loop": info})
                try:
                    last = await engine.run_sequence(sp.blocks[0], scope, last, vars_, step + ".")
                except BaseException as exc:
                    ended = "cancelled" if isinstance(exc, asyncio.CancelledError) else "failed"
                    rec.emit(ended, step, {"error": brief(exc)})
                    raise
                finally:
                    CONTEXT_NAMES.reset(token)
                previous = {key: value for key, value in scope.items() if key not in stages}
                iterations.append(previous)
                iterations.last = last
                rec.emit("finished", step)
                if sp.until is not None:
                    until_ctx = {**ctx, **outer, "stages": scope, "prev": last, "loop": info}
                    if truthy(sp.until.template.evaluate(until_ctx)):
                        ended_by = "until"
                        break
        except BaseException as exc:
            rec.emit(
                "cancelled" if isinstance(exc, asyncio.CancelledError) else "failed",
                node,
                {"error": brief(exc), "iterations": len(iterations)},
            )
            raise
        if iterations:
            stages.update(iterations[-1])  # after the loop, stages.<inner id> is the last iteration's
        done: dict[str, Any] = {"iterations": len(iterations), "ended_by": ended_by}
        if ended_by == "max_iterations" and stage.until is not None:
            done["warning"] = (
                f"loop '{stage.id}' stopped at max_iterations ({stage.max_iterations}) before its until was met: "
                f"raise `{stage.where}.loop.max_iterations`, or check that `{one_line(stage.until.text)}` "
                "can become true"
            )
        rec.emit("finished", node, done)
        return iterations

    def graph_label(self, sp: StagePlan) -> str:
        assert isinstance(sp, LoopPlan)
        stage: LoopStage = sp.stage
        until = f" until {one_line(stage.until.text)}" if stage.until is not None else ""
        return f"loop of {len(sp.blocks[0])} stages, at most {stage.max_iterations} times{until}"

    def graph_parts(self, sp: StagePlan) -> tuple[GraphPart, ...]:
        return (GraphPart("each iteration", "body", plans=sp.blocks[0], repeats="next iteration"),)

    def shape(self, stage: LoopStage, path: str, s: ShapeContext) -> StageShape:
        (block,) = self.blocks(stage)
        return StageShape(stage.id, path, "loop", stages=s.block(path + yaml_path(block.path), block))


LOOP = LoopKind()
