"""The ``approve`` stage kind, a human gate (issue 23): ``message`` (a template) and the outputs of the ``show``
stages are put to a person, who approves or rejects (with a reason, optionally).

The decision comes from the engine's gatekeeper (``runner/engine/gates.py``): ``--approve`` given on the command
line, the terminal prompt, or the public API's ``on_gate``; with none of them the run stops here, waiting
(:class:`runner.errors.GateWaiting`). ``timeout`` bounds the wait for a person, then ``on_timeout`` decides.
Approved, the stage passes its input through: ``stages.<id>`` and the next stage's ``prev`` are what it was given
(the previous output, or its ``input`` rendered). Rejected, the run ends as ``rejected``
(:class:`runner.errors.GateRejected`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runner.config.source import Loc, TemplateSrc
from runner.errors import GateRejected
from runner.stages.asking import put_to_gate
from runner.stages.base import (
    NO_POLICY,
    BuildContext,
    CompiledTemplate,
    EngineServices,
    Output,
    PlanContext,
    ShapeContext,
    StageKind,
    StagePlan,
    StagePolicy,
    StageShape,
    TemplateUse,
    YamlPath,
    as_text,
    one_line,
)
from runner.stages.gating import APPROVE, Decision, GateRequest


@dataclass(frozen=True, slots=True)
class ApproveStage:
    """``approve``: ``message`` and the outputs of ``show`` put to a person; ``timeout`` seconds at most, then
    ``on_timeout`` (``reject`` or ``approve``)."""

    id: str
    input: TemplateSrc | None
    vars: Mapping[str, Any]
    message: TemplateSrc
    show: tuple[str, ...]
    timeout: float | None
    on_timeout: str
    loc: Loc
    policy: StagePolicy = NO_POLICY

    agent = None  # it calls no agent (see StageRecord.agent)


@dataclass(frozen=True, slots=True)
class ApprovePlan(StagePlan):
    """An approve gate's plan: its ``message`` compiled."""

    message: CompiledTemplate | None = None


class ApproveKind(StageKind[ApproveStage]):
    name = APPROVE
    record = ApproveStage
    mermaid_shape = ("{{", "}}")

    def build(self, raw: Mapping[str, Any], path: YamlPath, b: BuildContext) -> ApproveStage:
        c = b.common(raw, path)
        body = raw[APPROVE]
        timeout = body.get("timeout")
        return ApproveStage(
            c.id,
            c.input,
            c.vars,
            b.template((*path, APPROVE, "message")),
            tuple(body.get("show") or ()),
            None if timeout is None else float(timeout),
            body.get("on_timeout", "reject"),
            c.loc,
            c.policy,
        )

    def templates(self, stage: ApproveStage) -> tuple[TemplateUse, ...]:
        out = [TemplateUse("message", stage.message, (APPROVE, "message"))]
        if stage.input is not None:
            out.append(TemplateUse("input", stage.input, ("input",)))
        return tuple(out)

    def plan(self, stage: ApproveStage, p: PlanContext) -> ApprovePlan:
        when = p.template(stage.policy.when)
        message = p.template(stage.message)
        return ApprovePlan(stage, self, p.template(stage.input), when, None, (), message)

    async def run(
        self,
        sp: StagePlan,
        engine: EngineServices,
        stages: dict[str, Any],
        prev: Any,
        vars_: Mapping[str, Any],
        prefix: str,
        ctx: dict[str, Any],
    ) -> Any:
        assert isinstance(sp, ApprovePlan) and sp.message is not None
        stage: ApproveStage = sp.stage
        node = prefix + stage.id
        rec = engine.recorder
        passed: Any = prev
        if sp.input is not None:
            from runner.calls import Usage  # noqa: PLC0415

            passed = Output(sp.input.template.render(ctx), APPROVE, node, Usage())
        shown = {sid: as_text(stages.get(sid)) for sid in stage.show}
        request = GateRequest(
            node, APPROVE, sp.message.template.render(ctx), shown, None, stage.timeout, stage.on_timeout
        )
        decision = await put_to_gate(engine, request, rec)
        assert isinstance(decision, Decision)
        if not decision.approved:
            because = f": {decision.reason}" if decision.reason else ""
            who = "on_timeout" if decision.by == "timeout" else decision.by
            error = GateRejected(
                f"approve gate '{node}' was rejected ({who}){because}", node, decision.reason, decision.by
            )
            rec.emit("failed", node, {"error": str(error)})
            raise error
        rec.emit("finished", node)
        return passed

    def graph_label(self, sp: StagePlan) -> str:
        stage: ApproveStage = sp.stage
        shown = f", showing {', '.join(stage.show)}" if stage.show else ""
        return f"approve: {one_line(stage.message.text)}{shown}"

    def shape(self, stage: ApproveStage, path: str, s: ShapeContext) -> StageShape:
        return StageShape(stage.id, path, APPROVE)


APPROVE_KIND = ApproveKind()
