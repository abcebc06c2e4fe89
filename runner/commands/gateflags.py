"""The command line's side of human gates (issue 23) for ``runner run``: the decisions given as flags
(``--approve``, ``--answer``), who decides (the flags, then a person at the terminal, else nobody), and what a run
that waits at a gate prints and exits with (75). Light on purpose: the gates' own code is imported only for a
workflow that has a gate or a run given a gate flag."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runner.progress import Progress


def given_flags(approve: Sequence[str], answer: Sequence[str]) -> list[str]:
    """The gate flags this run was given, to repeat in the command that starts it again."""
    return [*(f"--approve {shlex.quote(s)}" for s in approve), *(f"--answer {shlex.quote(a)}" for a in answer)]


def gate_ids(wf: Any, approve: Sequence[str], answer: Sequence[str]) -> Any:
    """The human gates' decisions given on the command line (a :class:`~runner.engine.gates.GateAnswers`), or
    None when the workflow has no gate (then the gates' code is not even imported)."""
    if not approve and not answer and not has_gates(wf):
        return None
    from runner.engine.gates import gate_answers, workflow_gates  # noqa: PLC0415

    return gate_answers(workflow_gates(wf.stages), approve, answer)


def has_gates(wf: Any) -> bool:
    from runner.stages import kind_of, walk  # noqa: PLC0415

    return any(kind_of(stage).name in ("approve", "ask") for stage in walk(wf.stages))


def gatekeeper_for(given: Any, bar: Progress | None) -> Any:
    """Decisions given first; then a person on the terminal when there is one; else the run waits at a gate."""
    from runner.commands.gateprompt import TerminalPrompt, can_prompt  # noqa: PLC0415
    from runner.engine.gates import Gates  # noqa: PLC0415

    if can_prompt(sys.stdin, sys.stderr):
        return Gates(given, TerminalPrompt(sys.stdin, sys.stderr, bar).ask, by="terminal", cli=True)
    return Gates(given, cli=True)


def waiting(error: BaseException | None, workflow: str, run_dir: Path, given: Sequence[str]) -> int:
    """A run stopped at a human gate with no one to ask: say how to continue (a fresh run repeats the gate flags
    it was given); exit 75 (EX_TEMPFAIL)."""
    from runner.engine.gates import EXIT_WAITING  # noqa: PLC0415
    from runner.errors import GateWaiting  # noqa: PLC0415

    assert isinstance(error, GateWaiting)
    stage = error.stage.rpartition(".")[2]
    flag = f"--approve {stage}" if error.kind == "approve" else f"--answer {stage}=@answer.json"
    run_dir.mkdir(parents=True, exist_ok=True)  # what --resume continues from
    print(f"runner: {error}", file=sys.stderr)
    print(f"runner: to continue: runner run --resume {run_dir} {flag}", file=sys.stderr)
    again = " ".join([shlex.quote(workflow), *given, flag])
    print(f"runner: or run it again from the start: runner run {again}", file=sys.stderr)
    return EXIT_WAITING
