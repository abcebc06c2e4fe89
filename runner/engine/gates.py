"""Where a run's human gates get their decisions (issue 23): :class:`Gates`, the engine's gatekeeper.

In order: what was given before the run (``runner run --approve STAGE`` / ``--answer STAGE=...``, read once by
:func:`gate_answers`, which ``--resume`` reuses), then whoever can be asked (the terminal prompt of
``runner/commands/gateprompt.py``, or the public API's ``on_gate``), within an ``approve``'s ``timeout``
(then its ``on_timeout`` decides). With neither, the run waits: :class:`runner.errors.GateWaiting`, which the
session turns into the run's ``waiting`` status and ``runner run`` into exit 75.

Every decision is a ``gate`` event on the gate's node (``decision``: approved, rejected, answered or waiting;
``by``; ``reason``): the report's ``run.gates``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import GateWaiting, RunError, RunnerError
from runner.events import Recorder
from runner.stages.gating import APPROVE, ASK, Decision, GateRequest, read_answer

Asker = Callable[[GateRequest], Awaitable[Any]]
"""Who is asked at a gate: ``async (request) -> Decision | bool`` for an ``approve`` (a bool is a decision without
a reason), the answer for an ``ask``. The terminal prompt checks answers itself and asks again; an answer from
``on_gate`` that does not match the schema fails the run."""

EXIT_WAITING = 75
"""``runner run``'s exit code for a run that stopped at a gate to wait for a decision (EX_TEMPFAIL)."""


@dataclass(frozen=True, slots=True)
class GateAnswers:
    """Decisions given before the run: ``approved`` gate ids (``--approve``), and ``answers`` by ask id
    (``--answer``, already checked against the schema). A gate inside a fan-out's pipeline takes the same
    decision in every branch."""

    approved: frozenset[str] = frozenset()
    answers: Mapping[str, Any] = field(default_factory=dict)


class Gates:
    """The run's gatekeeper (:class:`runner.stages.gating.Gatekeeper`): ``given`` first, then ``asker`` (named
    ``by`` in the report: ``terminal`` or ``on_gate``), else the run waits. ``cli``: the waiting message speaks of
    the terminal and the flags (``runner run``), else of ``on_gate`` (the public API)."""

    def __init__(
        self, given: GateAnswers | None = None, asker: Asker | None = None, by: str = "on_gate", *, cli: bool = False
    ) -> None:
        self.given = given or GateAnswers()
        self.asker = asker
        self.by = by
        self.cli = cli

    async def decide(self, request: GateRequest, recorder: Recorder) -> Any:
        base = request.stage.rpartition(".")[2]  # `items[2].check` -> `check`: the stage id the flags name
        if request.kind == APPROVE and base in self.given.approved:
            return _record(recorder, request, Decision(True, None, "command line"))
        if request.kind == ASK and base in self.given.answers:
            return _record(recorder, request, self.given.answers[base], "command line")
        try:
            return await self._ask(request, recorder, base)
        except GateWaiting:  # nobody to ask, or the terminal's input ended
            recorder.emit("gate", request.stage, {"kind": request.kind, "decision": "waiting", "by": None})
            raise

    async def _ask(self, request: GateRequest, recorder: Recorder, base: str) -> Any:
        if self.asker is None:
            flag = f"--approve {base}" if request.kind == APPROVE else f"--answer {base}"
            nobody = f"no terminal to ask on, and no {flag} given" if self.cli else "no on_gate to ask"
            raise GateWaiting(
                f"{request.kind} gate '{request.stage}' is waiting for a decision: {nobody}",
                request.stage,
                request.kind,
            )
        if request.kind == ASK:
            scope = asyncio.timeout(request.timeout)
            try:
                async with scope:
                    answer = await self.asker(request)
            except TimeoutError:
                if not scope.expired():
                    raise
                if request.on_timeout == "answer":  # the ask's default, checked against its schema by validate
                    return _record(recorder, request, request.default, "timeout")
                raise RunError(
                    f"ask gate '{request.stage}' had no answer within {request.timeout:g} s; give it a `default:` "
                    "to go on with when nobody answers, or a longer `timeout:`"
                ) from None
            problem = answer_problem(answer, request.schema)
            if problem is not None:
                raise RunError(
                    f"the answer to ask gate '{request.stage}' ({self.by}) does not match its schema: {problem}"
                )
            return _record(recorder, request, answer, self.by)
        try:
            async with asyncio.timeout(request.timeout):
                decided = await self.asker(request)
        except TimeoutError:
            approved = request.on_timeout == "approve"
            reason = f"no decision within {request.timeout:g} s"
            return _record(recorder, request, Decision(approved, reason, "timeout"))
        if isinstance(decided, bool):
            decided = Decision(decided, None, self.by)
        if not isinstance(decided, Decision):
            raise RunError(
                f"the decision at approve gate '{request.stage}' ({self.by}) is {type(decided).__name__}: "
                "give True, False or runner.Decision(approved, reason)"
            )
        return _record(recorder, request, decided)


def _record(recorder: Recorder, request: GateRequest, value: Any, by: str | None = None) -> Any:
    """``value`` (a decision or an answer), recorded as the gate's ``gate`` event."""
    if isinstance(value, Decision):
        data = {"decision": "approved" if value.approved else "rejected", "by": value.by, "reason": value.reason}
    else:
        data = {"decision": "answered", "by": by, "reason": None}
    recorder.emit("gate", request.stage, {"kind": request.kind, **data})
    return value


def gate_answers(
    gates: Mapping[str, tuple[str, Any]], approve: Iterable[str], answer: Iterable[str], base: Path | None = None
) -> GateAnswers:
    """``--approve STAGE`` (repeatable) and ``--answer STAGE=@FILE`` or ``STAGE=VALUE`` (JSON, or a plain value
    where the schema takes one) read against the workflow's gates (``gates``: stage id -> (kind, ask schema)):
    an unknown or wrong-kind stage, a file that cannot be read or an answer that does not match the schema is a
    :class:`RunnerError` naming the flag. ``base``: the folder ``@FILE`` is relative to (default: the current)."""
    approved = set()
    for stage in approve:
        _known(gates, stage, APPROVE, f"--approve {stage}")
        approved.add(stage)
    answers: dict[str, Any] = {}
    for item in answer:
        stage, eq, text = item.partition("=")
        if not eq or not stage:
            raise RunnerError(f"--answer {item}: expected STAGE=@answer.json or STAGE=VALUE (JSON)")
        flag = f"--answer {stage}="
        _known(gates, stage, ASK, flag + "...")
        schema = gates[stage][1]
        if text.startswith("@"):
            path = (base or Path()) / text[1:]
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise RunnerError(f"{flag}{text}: cannot read {path}: {exc.strerror or exc}") from None
        try:
            value = read_answer(text, schema)
        except ValueError as exc:
            raise RunnerError(f"{flag}{item.partition('=')[2]}: {exc}") from None
        problem = answer_problem(value, schema)
        if problem is not None:
            raise RunnerError(
                f"{flag}{item.partition('=')[2]}: the answer does not match the schema of ask '{stage}': {problem}"
            )
        answers[stage] = value
    return GateAnswers(frozenset(approved), answers)


def answer_problem(value: Any, schema: Any) -> str | None:
    """Why ``value`` does not match ``schema`` (the JSON paths in the value and what they wanted), or None."""
    from runner.structured import mismatches  # noqa: PLC0415 - jsonschema, only when an ask is answered

    found = mismatches(value, schema, limit=3)
    return "; ".join(str(m) for m in found) if found else None


def _known(gates: Mapping[str, tuple[str, Any]], stage: str, kind: str, flag: str) -> None:
    found = gates.get(stage)
    if found is not None and found[0] == kind:
        return
    ids = sorted(s for s, (k, _) in gates.items() if k == kind)
    named = f"its {kind} stages: {', '.join(ids)}" if ids else f"it has no {kind} stage"
    what = f"is an {found[0]} stage" if found is not None else "is no stage of the workflow"
    raise RunnerError(f"{flag}: '{stage}' {what} ({named})")


def workflow_gates(stages: Iterable[Any]) -> dict[str, tuple[str, Any]]:
    """Stage id -> (kind, ask schema or None) for every gate of a workflow (nested ones included)."""
    from runner.stages import kind_of, walk  # noqa: PLC0415

    out: dict[str, tuple[str, Any]] = {}
    for stage in walk(list(stages)):
        name = kind_of(stage).name
        if name in (APPROVE, ASK):
            out[stage.id] = (name, getattr(stage, "schema", None))
    return out


async def call_back(on_gate: Callable[[GateRequest], Any], request: GateRequest) -> Any:
    """``on_gate(request)``, awaited when it returns an awaitable (the public API's callback)."""
    returned = on_gate(request)
    return await returned if inspect.isawaitable(returned) else returned
