"""The ``ask`` stage kind, a human gate (issue 23): ``question`` (a template) is put to a person, whose answer
must match ``schema`` (a JSON Schema); ``timeout`` bounds the wait for a person, then ``default`` is the answer
(the stage fails when there is none).

Its output is a message as a structured output's is: ``stages.<id>.data`` is the answer (``runner validate``
checks later templates' reads of its fields against the schema, as for an agent's ``output``), ``content``
its text (a string as is, anything else as JSON). The answer comes from the engine's gatekeeper
(``runner/engine/gates.py``): ``--answer`` on the command line, the terminal prompt, or ``on_gate``; with none
of them the run stops here, waiting (:class:`runner.errors.GateWaiting`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runner.config.source import Loc, TemplateSrc
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
    one_line,
)
from runner.stages.gating import ASK, GateRequest, answer_text


@dataclass(frozen=True, slots=True)
class AskStage:
    """``ask``: ``question`` put to a person; the answer must match ``schema``."""

    id: str
    input: TemplateSrc | None
    vars: Mapping[str, Any]
    question: TemplateSrc
    schema: Mapping[str, Any]
    loc: Loc
    policy: StagePolicy = NO_POLICY
    timeout: float | None = None  # seconds the person has; then `default` answers, or the stage fails
    default: tuple[Any, ...] = ()  # (the answer,) when `default:` is given (its value may be null)

    agent = None  # it calls no agent (see StageRecord.agent)


@dataclass(frozen=True, slots=True)
class AskPlan(StagePlan):
    """An ask gate's plan: its ``question`` compiled."""

    question: CompiledTemplate | None = None


class AskKind(StageKind[AskStage]):
    name = ASK
    record = AskStage
    output = "message"
    mermaid_shape = ("{{", "}}")

    def build(self, raw: Mapping[str, Any], path: YamlPath, b: BuildContext) -> AskStage:
        c = b.common(raw, path)
        body = raw[ASK]
        question = b.template((*path, ASK, "question"))
        timeout = body.get("timeout")
        default = (body["default"],) if "default" in body else ()
        return AskStage(
            c.id,
            c.input,
            c.vars,
            question,
            body["schema"],
            c.loc,
            c.policy,
            None if timeout is None else float(timeout),
            default,
        )

    def templates(self, stage: AskStage) -> tuple[TemplateUse, ...]:
        # An ask reads no input: an `input` key is rendered (its errors found) but only the question is asked.
        out = [TemplateUse("question", stage.question, (ASK, "question"))]
        if stage.input is not None:
            out.append(TemplateUse("input", stage.input, ("input",)))
        return tuple(out)

    def data_schema(self, stage: AskStage) -> Any:
        return stage.schema

    def plan(self, stage: AskStage, p: PlanContext) -> AskPlan:
        when = p.template(stage.policy.when)
        question = p.template(stage.question)
        return AskPlan(stage, self, p.template(stage.input), when, None, (), question)

    async def run(
        self,
        sp: StagePlan,
        engine: EngineServices,
        stages: dict[str, Any],
        prev: Any,
        vars_: Mapping[str, Any],
        prefix: str,
        ctx: dict[str, Any],
    ) -> Output:
        from runner.calls import Usage  # noqa: PLC0415

        assert isinstance(sp, AskPlan) and sp.question is not None
        stage: AskStage = sp.stage
        node = prefix + stage.id
        rec = engine.recorder
        if sp.input is not None:
            sp.input.template.render(ctx)
        on_timeout = None if stage.timeout is None else "answer" if stage.default else "fail"
        default = stage.default[0] if stage.default else None
        question = sp.question.template.render(ctx)
        request = GateRequest(node, ASK, question, {}, stage.schema, stage.timeout, on_timeout, default)
        answer = await put_to_gate(engine, request, rec)
        rec.emit("finished", node)
        return Output(answer_text(answer), ASK, node, Usage(), data=answer)

    def graph_label(self, sp: StagePlan) -> str:
        return f"ask: {one_line(sp.stage.question.text)}"

    def shape(self, stage: AskStage, path: str, s: ShapeContext) -> StageShape:
        return StageShape(stage.id, path, ASK)


ASK_KIND = AskKind()
