"""Scripted models answering structured outputs (issue 16): checked by ``runner validate`` so that ``runner run``
does not fail on what the file already shows (rule ``scripted-output``)."""

from __future__ import annotations

from typing import Any

from runner.diagnostics import Diagnostic
from runner.stages import kind_of
from runner.templates import is_constant
from runner.validate.rules.common import diag
from runner.validate.rules.scope import Walk
from runner.validate.rules.source import Source
from runner.workflow.records import Workflow


def check_scripted_outputs(wf: Workflow, source: Source, walk: Walk) -> list[Diagnostic]:
    """A scripted model answering an agent with a structured output: its reply, when written as plain text
    (no template), must match the schema; without a reply, a value must be buildable from the schema (issue
    16: offline runs answer with it). Either way ``runner run`` would fail the stage: say so here instead."""
    from runner.structured import NoExample, StructuredError, check_reply, example_value  # noqa: PLC0415

    out: list[Diagnostic] = []
    seen: set[tuple[str, int]] = set()
    for stage, path in walk.order:
        if stage.agent is None or kind_of(stage).output not in ("message", "list"):
            continue
        agent = wf.agents.get(stage.agent)
        model = wf.models.get(agent.model) if agent is not None else None
        spec = getattr(stage, "output", None) or (agent.output if agent is not None else None)
        if spec is None or model is None or model.provider != "scripted" or model.config is None:
            continue
        if (model.name, id(spec)) in seen:
            continue
        seen.add((model.name, id(spec)))
        config: Any = model.config
        owner = f"stage '{stage.id}'" if getattr(stage, "output", None) is not None else f"agent '{stage.agent}'"
        replies: list[tuple[tuple[str | int, ...], Any]] = [(("reply",), config.reply)] if config.reply_given else []
        replies += [(("turns", i, "reply"), t.reply) for i, t in enumerate(config.turns) if t.reply is not None]
        for where, src in replies:
            if not is_constant(src.text):
                continue
            try:
                check_reply(src.text, spec.schema)
            except StructuredError as err:
                at = source.value(("models", model.name, *where), src.loc)
                out.append(
                    diag(
                        wf.file,
                        at,
                        "scripted-output",
                        f"the reply of scripted model '{model.name}' does not fit the output schema of {owner}: "
                        f"{err.problem}",
                        "write a reply that matches the schema, or leave reply out to have one built from it",
                    )
                )
        if not config.reply_given:
            try:
                example_value(spec.schema)
            except NoExample as exc:
                own = owner.startswith("stage")
                base = (*path, "output", "schema") if own else ("agents", stage.agent, "output", "schema")
                at = source.key(base, stage.loc)
                out.append(
                    diag(
                        wf.file,
                        at,
                        "scripted-output",
                        f"scripted model '{model.name}' cannot answer {owner}: {exc}",
                        "add examples: [...] to the schema, or give the scripted model a reply",
                    )
                )
    return out
