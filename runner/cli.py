"""Command line: argparse in one place, dispatch to ``runner.commands``, errors mapped to exit codes.

Exit codes: 0 ok, 1 user-facing error (invalid workflow, failed run), 2 usage, 3 internal bug, 130 interrupted
(SIGINT, Ctrl-C), 143 terminated (SIGTERM). Signals are handled at every moment: :mod:`runner.interrupts`.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

from runner import interrupts
from runner.errors import RunnerError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_BUG, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 3, 130, 143


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    from runner import __version__  # noqa: PLC0415

    parser = _Parser(prog="runner", description="Run LLM multi-agent workflows declared in YAML.")
    parser.add_argument("--version", action="version", version=f"runner {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    run = sub.add_parser("run", help="validate, compile and run a workflow; write its timing report")
    run.add_argument("workflow", metavar="WF", help="the workflow file")
    run.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set an input (repeatable); arrays and objects as JSON",
    )
    run.add_argument(
        "--report-dir", metavar="DIR", help="where to write the report (default: the workflow's report.dir)"
    )
    run.add_argument("--quiet", "-q", action="store_true", help="print only the final output")
    run.add_argument("--no-uvloop", action="store_true", help="use the standard asyncio loop")
    run.add_argument("--input", dest="input_file", metavar="FILE", help="inputs from a YAML or JSON mapping")
    run.add_argument(
        "--offline", action="store_true", help="replace every remote model by a scripted one: no network, no key"
    )
    run.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], help="log level (default: the workflow's)"
    )
    run.add_argument("--log-file", metavar="FILE", help="append log lines to FILE (default: the workflow's, or stderr)")

    from runner.spec.formats import FORMATS_BY_NAME  # noqa: PLC0415 - light: json and the formatters

    validate = sub.add_parser("validate", help="check workflow files and folders; exit 1 on problems")
    validate.add_argument("paths", nargs="+", metavar="PATH", help="files, or folders searched for *.yaml/*.yml")
    validate.add_argument(
        "--format", choices=list(FORMATS_BY_NAME), default="text", help="output format (default: text)"
    )
    validate.add_argument("--strict", action="store_true", help="treat warnings as errors (exit 1)")
    validate.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="check an input value against every file's inputs, as `runner run --set` would parse it",
    )

    sub.add_parser("schema", help="print the workflow JSON Schema")

    cache = sub.add_parser("cache", help="look at or empty a file cache of embeddings")
    cache.add_argument("action", choices=["stats", "clear"])
    cache.add_argument("directory", metavar="DIR", help="the cache folder (an embeddings.<name>.cache.dir)")

    report = sub.add_parser(
        "report",
        help="print a saved report's summary, or compare two: report diff A B",
        usage="runner report [-h] [--format {text,markdown}] FILE\n       runner report diff [--threshold PCT] A B",
    )
    report.add_argument("args", nargs="+", metavar="FILE", help="a report, or: diff A B")
    report.add_argument("--format", choices=["text", "markdown"], default="text", help="summary format")
    report.add_argument(
        "--threshold",
        type=float,
        default=10.0,
        metavar="PCT",
        help="diff: exit 1 when the wall time grew by more than PCT percent (default 10)",
    )

    graph = sub.add_parser("graph", help="show the compiled graph without running it")
    graph.add_argument("workflow", metavar="WF")
    graph.add_argument("--format", choices=["text", "mermaid"], default="text")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The program. ``argv=None`` (the command line) means this is the process itself: the signal handlers
    then stay in charge until it exits (see :mod:`runner.interrupts`); with ``argv`` they are put back."""
    interrupts.install()  # first: a signal while the parser is built is an interruption, not a traceback
    try:
        interrupts.arm()  # raises here one that came while runner was imported
        code = _main(argv)
        if code not in (EXIT_INTERRUPTED, EXIT_TERMINATED) and interrupts.received() is not None:
            # It came where it could not be raised (an import) and the command ended before a checkpoint:
            # still, the program was stopped.
            print(f"runner: {interrupts.describe()}", file=sys.stderr)
            code = interrupts.exit_code()
        return code
    except KeyboardInterrupt as exc:  # also when it comes while an error is being printed
        print(f"runner: {interrupts.describe()}", file=sys.stderr)
        return interrupts.exit_code(exc)
    finally:
        interrupts.disarm()  # from here a signal is remembered; at the exit it gives the exit code
        if argv is None:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
        interrupts.uninstall(final=argv is None)


def _main(argv: Sequence[str] | None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return dispatch(args)
    except RunnerError as exc:
        print(f"runner: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        print(f"runner: {interrupts.describe()}", file=sys.stderr)
        return interrupts.exit_code(exc)
    except BrokenPipeError:
        return EXIT_ERROR
    except Exception:  # noqa: BLE001 - the last resort: a bug in runner, reported as one
        print("runner: internal error (a bug in runner; please report it with this traceback):", file=sys.stderr)
        traceback.print_exc()
        return EXIT_BUG


def dispatch(args: argparse.Namespace) -> int:
    if args.command == "run":
        from runner.commands.run import run_command  # noqa: PLC0415

        return run_command(
            args.workflow,
            args.sets,
            report_dir=args.report_dir,
            quiet=args.quiet,
            use_uvloop=not args.no_uvloop,
            input_file=args.input_file,
            offline=args.offline,
            log_level=args.log_level,
            log_file=args.log_file,
        )
    if args.command == "validate":
        from runner.commands.validate import validate_command  # noqa: PLC0415

        return validate_command(args.paths, fmt=args.format, out=sys.stdout, strict=args.strict, sets=args.sets)
    if args.command == "cache":
        from runner.commands.cache import cache_command  # noqa: PLC0415

        return cache_command(args.action, args.directory, sys.stdout)
    if args.command == "schema":
        from runner.resources import schema_path  # noqa: PLC0415

        sys.stdout.write(schema_path("workflow.schema.json").read_text(encoding="utf-8"))
        return EXIT_OK
    if args.command == "report":
        from runner.commands.report import diff_command, report_command  # noqa: PLC0415
        from runner.errors import UsageError  # noqa: PLC0415

        if args.args[0] == "diff":
            if len(args.args) != 3:
                raise UsageError("report diff takes two reports: runner report diff A B")
            return diff_command(args.args[1], args.args[2], threshold=args.threshold, out=sys.stdout)
        if len(args.args) != 1:
            raise UsageError("report takes one report file (or: report diff A B)")
        return report_command(args.args[0], fmt=args.format, out=sys.stdout)
    if args.command == "graph":
        from runner.commands.graph import graph_command  # noqa: PLC0415

        return graph_command(args.workflow, fmt=args.format, out=sys.stdout)
    raise AssertionError(f"unhandled command {args.command!r}")
