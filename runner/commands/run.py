"""``runner run WF``: validate, compile, run on uvloop, stream output, write the timing report."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast

from runner import interrupts
from runner.commands.gateflags import gate_ids, gatekeeper_for, given_flags, waiting
from runner.engine.execute import as_text
from runner.engine.session import Session, run_session
from runner.errors import RunnerError
from runner.events import Recorder
from runner.fsutil import WriteError, ensure_writable_dir, sweep_stale_temps
from runner.logs import EventLog, LogContext, configure_logging, secret_env_names, secret_values
from runner.plan.compile import compile_workflow
from runner.progress import ObservedStream, Progress
from runner.report.document import RunInfo, now_utc
from runner.report.files import ReportWriteError, report_path, write_outputs
from runner.report.formats import format_of
from runner.report.summary import format_summary
from runner.terminal import TerminalSink, same_terminal
from runner.validate.check import load_workflow
from runner.validate.formats import format_error
from runner.workflow.inputs import read_input_file, resolve_inputs
from runner.workflow.offline import offline_workflow

if TYPE_CHECKING:
    from runner.engine.checkpoint import Checkpoint
    from runner.report.otlp import OtelSettings  # loaded only when an export is asked for

EXIT_BUG = 3
# Report folders keep a run folder per run: the newest are swept for temporary files a killed run left.
RECENT_RUN_FOLDERS = 8
# Temporary names of earlier versions (tempfile's `.NAME.XXXXXXXX.tmp`, working memory's `.NAME.tmp`).
_LEGACY_TEMP = re.compile(r"^\..+\.(?:json|md|txt)\.(?:[a-z0-9_]{8}\.)?tmp$")


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
    record: str | None = None,
    replay: str | None = None,
    strict: bool = False,
    replay_timing: str | None = None,
    otel: OtelSettings | None = None,
    approve: Sequence[str] = (),
    answer: Sequence[str] = (),
    checkpoint: bool = True,
    resume: str | None = None,
    force: bool = False,
) -> int:
    """``progress``: draw the live progress line on stderr (default: when stderr is a terminal and not quiet).
    ``record`` / ``replay``: the cassette folder (:func:`runner.commands.cassette.open_tape`). ``otel``: export the
    run's spans over OTLP once its report is made (:mod:`runner.report.otlp`). ``approve`` / ``answer``: the human
    gates' decisions given beforehand (``--approve``, ``--answer``; with ``resume``, for the gate the run waits
    at). ``checkpoint``: keep the run's checkpoint in its run folder (``--no-checkpoint``: not); ``resume``: a run
    folder whose checkpoint to go on from (:func:`runner.commands.resume.reopen`), ``force`` accepting an edited
    workflow."""
    ckpt = None
    if resume is not None:
        from runner.commands.resume import reopen  # noqa: PLC0415

        reopened = reopen(resume, workflow, sets, input_file, offline=offline, report_dir=report_dir, force=force)
        if isinstance(reopened, int):
            return reopened  # the run had finished: nothing to do
        ckpt, workflow, settings = reopened
        sets, input_file, offline, report_dir = [], None, bool(settings["offline"]), settings["report_dir"]
    held = [ckpt] if ckpt is not None else []  # closed (written, the folder's lock released) however the run ends
    try:
        return _run_command(
            workflow,
            sets,
            report_dir=report_dir,
            quiet=quiet,
            use_uvloop=use_uvloop,
            input_file=input_file,
            offline=offline,
            log_level=log_level,
            log_file=log_file,
            progress=progress,
            record=record,
            replay=replay,
            strict=strict,
            replay_timing=replay_timing,
            otel=otel,
            approve=approve,
            answer=answer,
            checkpoint=checkpoint,
            held=held,
        )
    finally:
        for kept in held:
            kept.close()


def _run_command(
    workflow: str,
    sets: Sequence[str],
    *,
    report_dir: str | None,
    quiet: bool,
    use_uvloop: bool,
    input_file: str | None,
    offline: bool,
    log_level: str | None,
    log_file: str | None,
    progress: bool | None,
    record: str | None,
    replay: str | None,
    strict: bool,
    replay_timing: str | None,
    otel: OtelSettings | None,
    approve: Sequence[str],
    answer: Sequence[str],
    checkpoint: bool,
    held: list[Checkpoint],
) -> int:
    ckpt = held[0] if held else None
    tape = None
    if record or replay or strict or replay_timing:  # the cassette's modules (and httpx) only when asked for
        from runner.commands.cassette import open_tape  # noqa: PLC0415

        tape = open_tape(record=record, replay=replay, strict=strict, timing=replay_timing, offline=offline)
    wf = load_workflow(workflow)
    if offline:
        wf = offline_workflow(wf)
    inputs = (
        resolve_inputs(wf, sets, read_input_file(input_file) if input_file else None)
        if ckpt is None
        else ckpt.settings["inputs"]  # a resumed run's, as its first start resolved them
    )
    plan = compile_workflow(wf)
    given = gate_ids(wf, approve, answer)  # a wrong --approve or --answer is said before the run starts
    directory = report_dir or wf.report.dir
    # Before the first call: a report folder that cannot be written is found now, not after the run spent them.
    _check_report_dir(directory, wf.file if report_dir is None else None)
    sweep_run_files(Path(directory))
    show_progress = (not quiet and sys.stderr.isatty()) if progress is None else progress
    bar = Progress(sys.stderr) if show_progress else None
    # the progress line and streamed output share the terminal: the line steps aside for the output
    out = cast(TextIO, ObservedStream(sys.stdout, bar)) if bar is not None and sys.stdout.isatty() else sys.stdout
    sink = None if quiet else TerminalSink(out, flush_each=sys.stdout.isatty())
    spec = wf.logging
    log_stream = cast(TextIO, ObservedStream(sys.stderr, bar)) if bar is not None else sys.stderr
    if sink is not None and same_terminal(sys.stdout, sys.stderr):
        log_stream = sink.guard(log_stream)  # a warning never starts in the middle of streamed text
    write_failed: ReportWriteError | None = None
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
        run_dir = Path(directory) / "runs" / f"{wf.name}-{stamp}"
        if ckpt is None and checkpoint:  # every run keeps its checkpoint (issue 23), made before the first call
            from runner.commands.resume import start  # noqa: PLC0415

            ckpt = start(run_dir, wf, inputs, offline=offline, report_dir=report_dir)
            held.append(ckpt)
        if ckpt is not None:
            run_dir = ckpt.folder
            if not quiet:  # --quiet prints only the final output; a stop still names the folder to resume
                print(f"run folder: {run_dir}", file=sys.stderr, flush=True)
        interrupts.begin_run()  # from here a signal cancels the run and the partial report is still written
        # The run path of runner.run/arun (a Session), plus what only a program that owns its process does:
        # its signal handlers cancel the run's task, the collector is tuned, the loop is its own.
        gatekeeper = gatekeeper_for(given, bar) if given is not None else None
        outcome = run_session(
            Session(
                plan,
                inputs,
                sink=sink.for_node if sink else None,
                run_dir=run_dir,
                wrapper=tape,
                traced=otel is not None,
                gatekeeper=gatekeeper,
                checkpoint=ckpt,
            ),
            use_uvloop=use_uvloop,
            watch=_watcher(log, bar),
            tune_gc=True,
            attach=interrupts.attach,
        )
        interrupts.end_run()  # a signal from here on waits for the report to be written
        if sink is not None:
            sink.close()
        # The run's output first: whatever happens to the report files, what the run made is not lost.
        if outcome.status == "ok" and quiet:
            sys.stdout.write(as_text(outcome.output) + "\n")
            sys.stdout.flush()
        report = outcome.report()
        target = report_path(directory, outcome.info)
        try:
            paths = write_outputs(report, target, wf.report.formats)
        except ReportWriteError as exc:
            paths, write_failed = exc.written, exc
        logger = logging.getLogger("runner")
        otel_problem = None
        if otel is not None:  # from the report: an interrupted or failed run exports what it has
            from runner.report.otlp import export_run  # noqa: PLC0415 - OpenTelemetry loads only when asked for

            otel_problem = export_run(report, outcome.info.layout, outcome.recorder.events, otel)
        json_written = target in paths
        where = f"report: {target}" if json_written else "no report written"
        logger.info(f"run {outcome.status} in {report['run']['wall_s']:.3f} s; {where}")
    checked = 0
    junit_to = None
    if wf.asserts and outcome.status == "ok":  # checked once, before the cassette is closed (issue 24)
        from runner.commands.evals import check_once  # noqa: PLC0415

        if "junit" in wf.report.formats:  # the verdicts as JUnit XML beside the JSON report: wf-<stamp>.junit.xml
            junit_to = target.with_name(target.with_suffix("").name + ".junit.xml")
        checked = check_once(plan, outcome, inputs, report, tape, junit_to)
    if not quiet:
        print(format_summary(report), file=sys.stderr)
        for extra in paths[1 if json_written else 0 :]:
            print(f"{format_of(extra).label}: {extra}", file=sys.stderr)
        if junit_to is not None:
            print(f"junit: {junit_to}", file=sys.stderr)
        if _holds_run_files(run_dir):
            print(f"run files: {run_dir}", file=sys.stderr)
        if json_written:
            print(f"report: {target}", file=sys.stderr)
    if otel_problem is not None:
        print(f"runner: warning: {otel_problem}", file=sys.stderr)
    for warning in cache_warnings(report):
        print(f"runner: warning: {warning}", file=sys.stderr)
    for crossed in report["run"].get("limits", {}).get("warnings", ()):  # limits in audit mode: once per limit
        print(f"runner: warning: {crossed['message']}", file=sys.stderr)
    code = checked
    if tape is not None:
        from runner.commands.cassette import tape_outcome  # noqa: PLC0415

        code = max(code, tape_outcome(tape, outcome.status, outcome.error, quiet=quiet))
    if write_failed is not None:
        for line in str(write_failed).splitlines():  # one line for each file that could not be written
            print(f"runner: error: {line}", file=sys.stderr)
        if write_failed.is_bug:
            bug = next(exc for _, exc in write_failed.failures if not isinstance(exc, OSError))
            print("runner: internal error (a bug in runner; please report it with this traceback):", file=sys.stderr)
            import traceback  # noqa: PLC0415 - only for an internal error

            traceback.print_exception(bug, file=sys.stderr)
            code = EXIT_BUG
        else:
            code = 1
    # How to go on with a run that stopped (issue 23), said just before the line that says why it stopped.
    resume = f"runner: the nodes that finished are kept; continue with: runner run --resume {run_dir}"
    if outcome.status == "interrupted" or interrupts.received() is not None:
        partial = "partial report" if outcome.status == "interrupted" else "report"
        said = f"{partial} written" if json_written else f"the {partial} could not be written"
        if ckpt is not None and outcome.status == "interrupted":
            print(resume, file=sys.stderr)
        print(f"runner: {interrupts.describe()}; {said}", file=sys.stderr)
        return interrupts.exit_code(outcome.error)
    if outcome.status == "waiting":
        return waiting(outcome.error, workflow, run_dir, given_flags(approve, answer))
    if outcome.status in ("failed", "rejected"):
        error = outcome.error
        if isinstance(error, RunnerError):
            if ckpt is not None and "--resume" not in str(error):  # a budget's stop says it itself
                print(resume, file=sys.stderr)
            sys.stderr.write(format_error(error))
            return max(code, 1)
        raise error if error is not None else AssertionError("failed run without an error")
    return code


def _holds_run_files(run_dir: Path) -> bool:
    """Does the run folder hold files besides the checkpoint's (working memory's, stored tool results)?"""
    try:
        with os.scandir(run_dir) as entries:  # closed when any() stops early
            return any(not entry.name.startswith(("checkpoint.sqlite", ".lock")) for entry in entries)
    except OSError:
        return False


def _check_report_dir(directory: str, workflow_file: str | None) -> None:
    """Refuse a report folder that cannot be written (a file, a read-only folder, a parent that cannot be
    made), located at ``--report-dir`` or, when it comes from the workflow, at its ``report.dir``."""
    try:
        ensure_writable_dir(directory)
    except WriteError as exc:
        if workflow_file is None:
            where, fix = "--report-dir", "pass a folder that can be written"
        else:
            where = f"{_locate_report_dir(workflow_file)}: report.dir"
            fix = "set report.dir (or pass --report-dir) to a folder that can be written"
        if exc.action == "use":
            problem = "it is a file, not a folder"
        elif exc.action == "create the folder":
            blocker = _file_in_the_way(directory)
            problem = f"cannot create it: {blocker} is a file" if blocker else f"cannot create it: {exc.strerror}"
        else:
            problem = f"cannot write in it: {exc.strerror}"
        raise RunnerError(f"{where} {directory}: {problem}; {fix}") from exc


def _file_in_the_way(directory: str) -> str | None:
    """The nearest ancestor of ``directory`` that exists and is not a folder, if any."""
    path = Path(directory).absolute()
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else str(parent)
    return None


def _locate_report_dir(workflow_file: str) -> str:
    """``file:line:col`` of the workflow's ``report.dir`` (read again: only when there is a problem to show)."""
    from runner.workflow.document import load_document  # noqa: PLC0415

    try:
        doc = load_document(Path(workflow_file).read_text(encoding="utf-8"), workflow_file)
    except Exception:  # noqa: BLE001 - it loaded a moment ago; without a position the file name still says where
        return workflow_file
    span = doc.span(("report", "dir"))
    return f"{workflow_file}:{span.line}:{span.column}"


def sweep_run_files(directory: Path) -> None:
    """Remove the temporary files that killed runs left in the report folder and in the newest run folders
    (see :func:`runner.fsutil.sweep_stale_temps`: only those whose writer is gone, so it is safe while other
    runs write there). A folder that cannot be read is left alone."""
    sweep_stale_temps(directory, legacy=_LEGACY_TEMP)
    try:
        runs = [entry.name for entry in os.scandir(directory / "runs") if entry.is_dir(follow_symlinks=False)]
    except OSError:
        return
    # Names end in the UTC stamp of the run's start, so the newest sort last whatever the workflow's name.
    for name in sorted(runs, key=lambda n: n.rpartition("-")[2])[-RECENT_RUN_FOLDERS:]:
        for folder, _, _ in os.walk(directory / "runs" / name):
            sweep_stale_temps(folder, legacy=_LEGACY_TEMP)


def cache_warnings(report: Mapping[str, Any]) -> list[str]:
    """One line per embedding cache that had a problem in the run (unusable folder, failed writes, corrupt
    entries), naming the folder and the cause: said once per run, after the output."""
    lines = []
    for name, figures in sorted(report.get("cache", {}).items()):
        problem = figures.get("problem")
        if problem:
            lines.append(f"embedding cache of `{name}` ({figures.get('dir')}): {problem}")
    return lines


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
