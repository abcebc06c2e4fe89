"""``runner run WF``: validate, compile, run on uvloop, stream output, write the timing report."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from runner.engine.execute import as_text
from runner.engine.offline import offline_workflow
from runner.engine.plan import compile_workflow
from runner.engine.session import run_plan
from runner.errors import RunnerError
from runner.report import format_table, report_path, write_report
from runner.spec import load_workflow
from runner.spec.inputs import read_input_file, resolve_inputs
from runner.terminal import TerminalSink

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
) -> int:
    wf = load_workflow(workflow)
    if offline:
        wf = offline_workflow(wf)
    inputs = resolve_inputs(wf, sets, read_input_file(input_file) if input_file else None)
    plan = compile_workflow(wf)
    sink = None if quiet else TerminalSink(sys.stdout, flush_each=sys.stdout.isatty())
    outcome = run_plan(plan, inputs, sink=sink.for_node if sink else None, use_uvloop=use_uvloop)
    if sink is not None:
        sink.close()
    report = outcome.report()
    path = write_report(report, report_path(report_dir or wf.report.dir, outcome.info))
    if outcome.status == "ok" and quiet:
        sys.stdout.write(as_text(outcome.output) + "\n")
        sys.stdout.flush()
    if not quiet:
        print(format_table(report), file=sys.stderr)
        print(f"report: {path}", file=sys.stderr)
    if outcome.status == "interrupted":
        print("runner: interrupted; partial report written", file=sys.stderr)
        return EXIT_INTERRUPTED
    if outcome.status == "failed":
        error = outcome.error
        if isinstance(error, RunnerError):
            print(f"runner: error: {error}", file=sys.stderr)
            return 1
        raise error if error is not None else AssertionError("failed run without an error")
    return 0
