"""What the template checks say about loops and switches (issue 16): reads of ``loop`` (its fields, and the
previous iteration's stages behind a check), and why a stage of a loop or of a switch's case is not
available where a template reads it. ``templating`` asks here; the scope rules are in ``scope``."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from runner.stages import kind_of
from runner.stages.base import StageRecord
from runner.validate.rules.common import suggest
from runner.validate.rules.names import Names
from runner.validate.rules.scope import Scope, Site, exported

LOOP_FIELDS = ("iteration", "max_iterations", "previous")  # `loop` inside a loop (runner/stages/loop.py)
KIND_WORDS = {"fanout": "fan-out", "loop": "loop", "switch": "switch"}  # a stage that holds others, in messages

Found = tuple[int, int, str, str, str]  # start and end in the template, rule, message, hint


def loop_reads(
    site: Site, names: Names, spans: Callable[..., list[tuple[int, int]]], stages: Mapping[str, StageRecord]
) -> list[Found]:
    """``loop.<field>`` is one of a loop's fields; ``loop.previous.<id>`` names a stage of the innermost loop
    around the template, behind a check (``loop.previous`` is None in the first iteration)."""
    out: list[Found] = []
    for name, key in sorted(names.refs):
        if name == "loop" and key not in LOOP_FIELDS:
            hint = suggest(key, LOOP_FIELDS, "fields")
            out.extend(
                (start, end, "unknown-name", f"loop.{key} does not exist", hint) for start, end in spans(name, key)
            )
    loops = [innermost_loop(scope, stages) for scope in site.scopes or ()]
    for name, key, attr in sorted(names.chains):
        if (name, key) != ("loop", "previous"):
            continue
        for loop in loops:
            body = exported(loop) if loop is not None else frozenset()
            if loop is not None and attr not in body:
                hint = suggest(attr, sorted(body), "stages")
                message = f"loop.previous.{attr}: loop '{loop.id}' has no stage '{attr}'"
                out.extend((start, end, "unknown-stage", message, hint) for start, end in spans(name, key, attr))
                break
    path = ("loop", "previous")
    if any(c[:2] == path for c in names.chains) and path not in names.tested and path not in names.guarded:
        (start, end), *_ = spans("loop", "previous")
        out.append(
            (
                start,
                end,
                "stage-not-ready",
                f"loop.previous is None in the first iteration, and {site.label} reads it without a check",
                "check it first: {% if loop.previous %}...{% endif %}, or "
                "{{ loop.previous.<id>.content if loop.previous else '' }}",
            )
        )
    return out


def innermost_loop(scope: Scope, stages: Mapping[str, StageRecord]) -> StageRecord | None:
    """The innermost loop stage around a context (the loop itself for its ``until``, which renders after its
    stages)."""
    for stage_id in reversed(scope.path):
        stage = stages.get(stage_id)
        if stage is None or kind_of(stage).name != "loop":
            continue
        if stage_id != scope.stage or any(use.after for use in kind_of(stage).templates(stage)):
            return stage
    return None


def in_switch(key: str, switch: str, how: str, check: str) -> tuple[str, str]:
    """Why a stage of a switch's case may have no output after the switch, and how to read it: (reason, hint)."""
    return (
        f"stage '{key}' runs in {how} of switch '{switch}', and only the case that 'on' picks runs",
        f"{check}, or read stages.{switch}.output, the last output of the case that ran",
    )


def in_block(target: str, outer: str, how: str, here: tuple[tuple[str, str], ...]) -> tuple[str, str] | None:
    """Why ``target``, nested in stage ``outer`` as ``how``, is not available to a stage nested as ``here``:
    a later stage of the same loop iteration, or a stage of another case of the same switch. None otherwise."""
    if how == "body" and (outer, how) in here:
        return (
            f"stage '{target}' runs later in each iteration of loop '{outer}'",
            f"read the previous iteration's as loop.previous.{target} (loop.previous is None in the first "
            f"iteration: {{% if loop.previous %}}...{{% endif %}})",
        )
    if (how.startswith("case") or how == "the default case") and any(f == outer and h != how for f, h in here):
        return (
            f"stage '{target}' runs in {how} of switch '{outer}', and only one case runs",
            f"read it after switch '{outer}', behind a check: {{% if stages.{target} is defined %}}",
        )
    return None
