"""``runner run --record/--replay`` wiring, and ``runner cassette stats|prune DIR``."""

from __future__ import annotations

import statistics
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from runner.cassette import Cassette, Entry, Tape
from runner.errors import RunnerError, UsageError
from runner.validate.formats import format_error


def open_tape(
    *, record: str | None, replay: str | None, strict: bool, timing: str | None, offline: bool
) -> Tape | None:
    """The run's tape for ``--record DIR`` or ``--replay DIR``, or None; usage errors for options that do not
    go together (checked before the workflow is read, as argparse would)."""
    if strict and replay is None:
        raise UsageError("--strict needs --replay DIR (it fails the run on a request the cassette does not hold)")
    if timing is not None and replay is None:
        raise UsageError("--replay-timing needs --replay DIR")
    if offline and (record or replay):
        option = "--record" if record else "--replay"
        raise UsageError(f"--offline replaces every remote model by a scripted one: it cannot go with {option}")
    if record is not None:
        return Tape(Cassette(record, create=True), "record")
    if replay is not None:
        return Tape(Cassette(replay), "replay", strict=strict, timing="recorded" if timing == "recorded" else "instant")
    return None


def tape_outcome(tape: Tape, status: str, error: BaseException | None, *, quiet: bool) -> int:
    """After the run: say what the cassette did, and fail a run whose requests a strict replay missed even when
    the run itself went on (a fan-out with ``on_error: collect`` keeps going past a failed branch)."""
    counts = tape.counts
    if not quiet:
        where = f"cassette {tape.cassette.path}"
        if tape.mode == "record":
            print(f"{where}: {counts.recorded} answers recorded", file=sys.stderr)
        else:
            extra = f", {counts.recorded} recorded" if counts.recorded else ""
            print(f"{where}: {counts.replayed} answers replayed{extra}", file=sys.stderr)
    unsaid = [miss for miss in tape.misses if miss is not error]
    if status == "ok" and unsaid:
        sys.stderr.write(format_error(unsaid[0]))
        if len(unsaid) > 1:
            print(f"runner: error: {len(unsaid) - 1} more requests are not in the cassette", file=sys.stderr)
        return 1
    return 0


def cassette_command(
    action: str,
    directory: str,
    out: TextIO,
    *,
    workflow: str | None = None,
    sets: Sequence[str] = (),
    input_files: Sequence[str] = (),
    dry_run: bool = False,
) -> int:
    cassette = Cassette(directory)
    if action == "stats":
        out.write(stats_text(cassette))
        return 0
    if workflow is None:
        raise UsageError("runner cassette prune DIR WF: name the workflow whose requests to keep")
    used = replayed_entries(cassette, workflow, sets, input_files)
    unused = [entry for entry in cassette.entries() if entry.path not in used]
    for entry in unused:
        out.write(f"{'unused' if dry_run else 'removed'}: {entry.path.name} ({_origin(entry)})\n")
        if not dry_run:
            entry.path.unlink(missing_ok=True)
    total = len(unused) + len(used)
    verb = "would remove" if dry_run else "removed"
    out.write(f"cassette {cassette.path}: {verb} {len(unused)} of {total} entries; {len(used)} used by {workflow}\n")
    return 0


def replayed_entries(cassette: Cassette, workflow: str, sets: Sequence[str], input_files: Sequence[str]) -> set[Path]:
    """The entries a strict, instant replay of ``workflow`` uses, once per input file (or once with the
    defaults and ``sets``). A replay that misses or fails raises: a cassette that cannot replay the workflow
    is not pruned by it."""
    from runner.engine.session import Session, run_session  # noqa: PLC0415 - the engine only when pruning
    from runner.events import NullRecorder  # noqa: PLC0415
    from runner.plan.compile import compile_workflow  # noqa: PLC0415
    from runner.validate.check import load_workflow  # noqa: PLC0415
    from runner.workflow.inputs import read_input_file, resolve_inputs  # noqa: PLC0415

    wf = load_workflow(workflow)
    plan = compile_workflow(wf)
    used: set[Path] = set()
    runs: list[str | None] = list(input_files) or [None]
    for input_file in runs:
        inputs = resolve_inputs(wf, sets, read_input_file(input_file) if input_file else None)
        tape = Tape(cassette, "replay", strict=True)
        # files the replay keeps (working memory's history) go where `runner run` puts them (made only if used)
        session = Session(plan, inputs, recorder=NullRecorder(), wrapper=tape)
        outcome = run_session(session, quiet=True)
        if tape.misses:
            raise RunnerError(f"{tape.misses[0]}\nnothing was removed: the cassette does not replay {workflow}")
        if outcome.status != "ok":
            why = outcome.error if isinstance(outcome.error, RunnerError) else "interrupted"
            raise RunnerError(f"the replay of {workflow} failed, so nothing was removed: {why}")
        used |= tape.counts.used
    return used


def _origin(entry: Entry) -> str:
    body = entry.request.get("body")
    model = body.get("model") if isinstance(body, dict) else None
    recorded = entry.recorded
    parts = [f"{recorded.get('model') or '?'}" + (f" ({model})" if model else ""), str(entry.request.get("path"))]
    if recorded.get("node"):
        parts.append(f"recorded by stage {recorded['node']!r}")
    return ", ".join(parts)


def stats_text(cassette: Cassette) -> str:
    """What a cassette holds: entries, distinct requests, streamed and whole answers, by model and path, and
    the recorded latencies."""
    entries = list(cassette.entries())
    size = sum(entry.path.stat().st_size for entry in entries)
    keys = Counter(entry.key for entry in entries)
    streamed = [e for e in entries if "chunks" in e.response]
    chunks = sum(len(e.response["chunks"]) for e in streamed)
    lines = [
        f"cassette: {cassette.path}",
        f"entries: {len(entries)} ({size / 1000:.1f} kB); distinct requests: {len(keys)}, "
        f"made more than once: {sum(1 for n in keys.values() if n > 1)}",
        f"answers: {len(streamed)} streamed ({chunks} chunks), {len(entries) - len(streamed)} whole",
    ]
    by_model = Counter(_origin_model(e) for e in entries)
    if by_model:
        lines.append("by model:")
        width = max(len(name) for name in by_model)
        lines += [f"  {name:<{width}}  {count}" for name, count in sorted(by_model.items())]
    latencies = sorted(float(e.response.get("end") or _last_chunk(e) or 0.0) for e in entries)
    if latencies:
        lines.append(
            f"recorded latency: median {statistics.median(latencies):.3f} s, "
            f"from {latencies[0]:.3f} to {latencies[-1]:.3f} s"
        )
    return "\n".join(lines) + "\n"


def _origin_model(entry: Entry) -> str:
    body = entry.request.get("body")
    model = body.get("model") if isinstance(body, dict) else None
    name = entry.recorded.get("model") or "?"
    return f"{name} ({model}) {entry.request.get('path')}" if model else f"{name} {entry.request.get('path')}"


def _last_chunk(entry: Entry) -> float | None:
    chunks = entry.response.get("chunks")
    return float(chunks[-1][0]) if chunks else None
