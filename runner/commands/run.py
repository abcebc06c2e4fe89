"""``runner run WF``: validate, compile, run on uvloop, stream output, write the timing report."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TextIO, cast

from runner.engine.execute import as_text
from runner.engine.offline import offline_workflow
from runner.engine.plan import compile_workflow
from runner.engine.session import run_plan
from runner.errors import RunnerError
from runner.events import Recorder
from runner.logs import EventLog, LogContext, configure_logging, secret_env_names, secret_values
from runner.progress import ObservedStream, Progress
from runner.report import RunInfo, format_summary, now_utc, report_path, write_outputs
from runner.spec import load_workflow
from runner.spec.formats import format_error
from runner.spec.inputs import read_input_file, resolve_inputs
from runner.terminal import TerminalSink, same_terminal

EXIT_INTERRUPTED = 130


def run_command(
    workflow: str,
    sets: Sequence[str],
    *,
    report_dir: str | None = None,
    quiet: bool = False,
    use_uvloop: bool = True,
    input_file: str | None = None,
    offline: bool = False,
    log_level: str | None = None,
    log_file: str | None = None,
    progress: bool | None = None,
) -> int:
    """``progress``: draw the live progress line on stderr (default: when stderr is a terminal and not quiet)."""
    wf = load_workflow(workflow)
    if offline:
        wf = offline_workflow(wf)
    inputs = resolve_inputs(wf, sets, read_input_file(input_file) if input_file else None)
    plan = compile_workflow(wf)
    show_progress = (not quiet and sys.stderr.isatty()) if progress is None else progress
    bar = Progress(sys.stderr) if show_progress else None
    # the progress line and streamed output share the terminal: the line steps aside for the output
    out = cast(TextIO, ObservedStream(sys.stdout, bar)) if bar is not None and sys.stdout.isatty() else sys.stdout
    sink = None if quiet else TerminalSink(out, flush_each=sys.stdout.isatty())
    spec = wf.logging
    log_stream = cast(TextIO, ObservedStream(sys.stderr, bar)) if bar is not None else sys.stderr
    if sink is not None and same_terminal(sys.stdout, sys.stderr):
        log_stream = sink.guard(log_stream)  # a warning never starts in the middle of streamed text
    with configure_logging(
        level=log_level or spec.level,
        file=log_file or spec.file,
        fmt=spec.format,
        secrets=secret_values(secret_env_names(wf)),
        stream=log_stream,
    ) as log:
        # Files a run keeps besides its report (working-memory histories, stored tool results) go in a
        # folder beside the reports, named like them; it is created only when something is written there.
        stamp = now_utc().strftime("%Y%m%dT%H%M%S.%fZ")
        run_dir = Path(report_dir or wf.report.dir) / "runs" / f"{wf.name}-{stamp}"
        outcome = run_plan(
            plan,
            inputs,
            sink=sink.for_node if sink else None,
            use_uvloop=use_uvloop,
            watch=_watcher(log, bar),
            run_dir=run_dir,
            tune_gc=True,  # the CLI owns the process
        )
        if sink is not None:
            sink.close()
        report = outcome.report()
        paths = write_outputs(report, report_path(report_dir or wf.report.dir, outcome.info), wf.report.formats)
        logger = logging.getLogger("runner")
        logger.info(f"run {outcome.status} in {report['run']['wall_s']:.3f} s; report: {paths[0]}")
    path = paths[0]
    if outcome.status == "ok" and quiet:
        sys.stdout.write(as_text(outcome.output) + "\n")
        sys.stdout.flush()
    if not quiet:
        print(format_summary(report), file=sys.stderr)
        for extra in paths[1:]:
            label = {".md": "summary", ".html": "waterfall"}.get(extra.suffix, "trace")
            print(f"{label}: {extra}", file=sys.stderr)
        if run_dir.is_dir():
            print(f"run files: {run_dir}", file=sys.stderr)
        print(f"report: {path}", file=sys.stderr)
    if outcome.status == "interrupted":
        print("runner: interrupted; partial report written", file=sys.stderr)
        return EXIT_INTERRUPTED
    if outcome.status == "failed":
        error = outcome.error
        if isinstance(error, RunnerError):
            sys.stderr.write(format_error(error))
            return 1
        raise error if error is not None else AssertionError("failed run without an error")
    return 0


def _watcher(log: LogContext, bar: Progress | None) -> Callable[[Recorder, RunInfo], Coroutine[Any, Any, None]]:
    """The task beside the run: the event log, and the progress line when shown."""

    async def watch(recorder: Recorder, info: RunInfo) -> None:
        log.run_id = info.run_id
        logger = logging.getLogger("runner")
        logger.info(f"run {info.run_id} of {info.workflow} started ({info.loop})")
        tasks = [EventLog(logger, info.t0).run(recorder)]
        if bar is not None:
            tasks.append(bar.run(recorder, info.t0))
        await asyncio.gather(*tasks)

    return watch
