"""Semantic checks on the records: what the schema cannot see (references, unique ids, templates)."""

from __future__ import annotations

import difflib
from collections.abc import Iterator

from runner.errors import TemplateError
from runner.spec.diagnostics import Diagnostic
from runner.spec.records import FanoutStage, Loc, Stage, TemplateSrc, Workflow


def _diag(loc: Loc, rule: str, message: str, hint: str = "", severity: str = "error", width: int = 1) -> Diagnostic:
    return Diagnostic(loc.file, loc.line, loc.column, loc.line, loc.column + width, severity, rule, message, hint)


def _suggest(name: str, options: list[str], what: str) -> str:
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    if options:
        return f"defined {what}: {', '.join(sorted(options))}"
    return f"define it under '{what}'"


def walk_stages(stages: tuple[Stage, ...]) -> Iterator[Stage]:
    for stage in stages:
        yield stage
        if isinstance(stage, FanoutStage):
            for branch in stage.branches:
                yield from walk_stages(branch)
            yield from walk_stages(stage.stages)


def templates(wf: Workflow) -> Iterator[TemplateSrc]:
    for agent in wf.agents.values():
        if agent.sys_prompt is not None:
            yield agent.sys_prompt
    for model in wf.models.values():
        reply = getattr(model.config, "reply", None)
        if isinstance(reply, TemplateSrc):
            yield reply
    for stage in walk_stages(wf.stages):
        if stage.input is not None:
            yield stage.input
        if isinstance(stage, FanoutStage) and isinstance(stage.for_each, TemplateSrc):
            yield stage.for_each


def check_workflow(wf: Workflow) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    agents, models = list(wf.agents), list(wf.models)
    for agent in wf.agents.values():
        if agent.model not in wf.models:
            out.append(
                _diag(
                    agent.loc,
                    "unknown-model",
                    f"agent '{agent.name}' uses model '{agent.model}', which is not defined",
                    _suggest(agent.model, models, "models"),
                    width=len(agent.name),
                )
            )
    seen: dict[str, Loc] = {}
    for stage in walk_stages(wf.stages):
        if stage.id in seen:
            first = seen[stage.id]
            out.append(
                _diag(
                    stage.loc,
                    "duplicate-id",
                    f"stage id '{stage.id}' is already used at line {first.line}",
                    "give every stage, nested ones included, its own id",
                    width=len(stage.id),
                )
            )
        else:
            seen[stage.id] = stage.loc
        used = stage.agent
        if used is not None and used not in wf.agents:
            out.append(
                _diag(
                    stage.loc,
                    "unknown-agent",
                    f"stage '{stage.id}' uses agent '{used}', which is not defined",
                    _suggest(used, agents, "agents"),
                    width=len(stage.id),
                )
            )
    from runner.templates import Template  # noqa: PLC0415 - jinja2 only once the file has templates

    for src in templates(wf):
        try:
            Template(src)
        except TemplateError as exc:
            where, _, message = str(exc).partition(": ")
            file, line, col = where.rsplit(":", 2)
            out.append(
                Diagnostic(
                    file,
                    int(line),
                    int(col),
                    int(line),
                    int(col) + 1,
                    "error",
                    "template-syntax",
                    message,
                    "fix the Jinja2 syntax",
                )
            )
    return out
