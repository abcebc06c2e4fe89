"""Budgets and fallback models (issue 23), checked by ``runner validate`` so that ``runner run`` does not fail
on what the file already shows (rule ``invalid-setting``):

- ``limits.max_cost`` with no model of the run priced: no call would ever count against it;
- ``models.<name>.fallback.models``: each a defined model, other than the model itself, with no cycle through
  the fallbacks of the models it names; and able to serve the model's requests: a fallback for a model that
  streams must stream too (``stream: false`` would show the reply at once, where the model's callers get it
  token by token), and a scripted fallback's written reply must fit the structured output (``output:``) of
  every agent the model serves. Tool calls need no check: every provider runner has takes them.
"""

from __future__ import annotations

from typing import Any

from runner.diagnostics import Diagnostic
from runner.stages import kind_of
from runner.templates import is_constant
from runner.validate.rules.common import diag, suggest
from runner.validate.rules.scope import Walk
from runner.validate.rules.source import Source
from runner.workflow.records import Workflow


def check_limits(wf: Workflow, source: Source) -> list[Diagnostic]:
    """``limits.max_cost`` needs a priced model among those the agents use."""
    limits = wf.limits
    if limits is None or limits.max_cost is None:
        return []
    used = {agent.model for agent in wf.agents.values()}
    priced = [name for name in used if (m := wf.models.get(name)) is not None and m.config and m.config.pricing]
    if priced:
        return []
    fallback_loc = next(iter(wf.models.values())).loc if wf.models else None
    if fallback_loc is None:
        return []
    return [
        diag(
            wf.file,
            source.key(("limits", "max_cost"), fallback_loc, len("max_cost")),
            "invalid-setting",
            "limits.max_cost is set but no model the agents use has pricing: no call would count against it",
            "give the models pricing: {input: ..., output: ...} (US dollars per million tokens), or remove max_cost",
        )
    ]


def check_fallbacks(wf: Workflow, source: Source, walk: Walk) -> list[Diagnostic]:
    """Every ``fallback.models`` entry exists, is not the model itself, closes no cycle and can serve the
    model's requests (see the module's docstring)."""
    out: list[Diagnostic] = []
    for name, spec in wf.models.items():
        fallback = spec.fallback
        if fallback is None:
            continue
        for i, other in enumerate(fallback.models):
            at = source.value(("models", name, "fallback", "models", i), spec.loc, len(other))
            target = wf.models.get(other)
            if target is None:
                out.append(
                    diag(
                        wf.file,
                        at,
                        "invalid-setting",
                        f"model '{name}' falls back to model '{other}', which is not defined",
                        suggest(other, [m for m in wf.models if m != name], "models"),
                    )
                )
                continue
            loop = _cycle(wf, name, other)
            if loop is not None:
                out.append(
                    diag(
                        wf.file,
                        at,
                        "invalid-setting",
                        f"model '{name}' falls back to itself"
                        if other == name
                        else f"model '{name}' falls back to '{other}', which falls back to it: "
                        + " -> ".join([name, *loop]),
                        "remove it from fallback.models" if other == name else "remove one of the fallbacks",
                    )
                )
                continue
            problem = _cannot_serve(wf, walk, name, other)
            if problem is not None:
                out.append(diag(wf.file, at, "invalid-setting", problem[0], problem[1]))
    return out


def _cycle(wf: Workflow, start: str, first: str) -> list[str] | None:
    """The path of fallbacks from ``first`` back to ``start`` (a cycle), or None."""
    stack: list[tuple[str, list[str]]] = [(first, [first])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        if node == start:
            return path
        if node in seen:
            continue
        seen.add(node)
        spec = wf.models.get(node)
        for nxt in spec.fallback.models if spec is not None and spec.fallback is not None else ():
            stack.append((nxt, [*path, nxt]))
    return None


def _cannot_serve(wf: Workflow, walk: Walk, name: str, other: str) -> tuple[str, str] | None:
    """Why model ``other`` cannot take model ``name``'s requests, and the fix; None when it can."""
    primary, backup = wf.models[name], wf.models[other]
    if getattr(primary.config, "stream", False) and getattr(backup.config, "stream", True) is False:
        return (
            f"model '{other}' cannot stand in for model '{name}': '{name}' streams its replies and '{other}' has "
            "stream: false",
            f"set stream: true on model '{other}', or stream: false on model '{name}'",
        )
    if backup.provider != "scripted" or backup.config is None:
        return None
    from runner.structured import StructuredError, check_reply  # noqa: PLC0415

    config: Any = backup.config
    if not config.reply_given or not is_constant(config.reply.text):
        return None
    for stage, _ in walk.order:
        agent = wf.agents.get(stage.agent) if stage.agent is not None else None
        if agent is None or agent.model != name or kind_of(stage).output not in ("message", "list"):
            continue
        spec = getattr(stage, "output", None) or agent.output
        if spec is None:
            continue
        try:
            check_reply(config.reply.text, spec.schema)
        except StructuredError as err:
            return (
                f"model '{other}' cannot stand in for model '{name}': its reply does not fit the structured output "
                f"of agent '{agent.name}': {err.problem}",
                f"give model '{other}' a reply that matches the schema, or leave reply out to have one built from it",
            )
    return None
