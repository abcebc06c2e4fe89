"""Command line: argparse in one place, dispatch to ``runner.commands``, errors mapped to exit codes.

Exit codes: 0 ok, 1 user-facing error (invalid workflow, failed run), 2 usage, 3 internal bug, 75 waiting at a
human gate (``runner run``: an approve or ask stage with no terminal and no --approve/--answer), 130 interrupted
(SIGINT, Ctrl-C), 143 terminated (SIGTERM). Signals are handled at every moment: :mod:`runner.interrupts`.

About 570 lines, on purpose: every subcommand's arguments and help text, read by one parser and checked
against each other in one dispatch, so that a flag's meaning and its conflicts are read in one place (the
work itself is in :mod:`runner.commands`).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from typing import Any

from runner import interrupts
from runner.errors import RunnerError, UsageError
from runner.termsize import columns

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_BUG, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 3, 130, 143


class _Formatter(argparse.HelpFormatter):
    """argparse's help layout, its width read by :func:`runner.termsize.columns` (argparse imports shutil for
    it, for every argument added, help asked for or not)."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width: int | None = None):
        super().__init__(prog, indent_increment, max_help_position, columns() - 2 if width is None else width)


class _Parser(argparse.ArgumentParser):
    """Exits 2 on usage errors. ``word_commands``: sub-commands picked by their first word in a parser that
    also takes positionals of its own (``report FILE`` beside ``report diff A B``), which argparse's
    sub-parsers cannot mix; each is a whole parser, so its options go anywhere after its word."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)
        self.word_commands: dict[str, argparse.ArgumentParser] = {}

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: Any = None
    ) -> tuple[Any, list[str]]:
        if args and args[0] in self.word_commands:
            return self.word_commands[args[0]].parse_known_args(args[1:], namespace)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _percent(text: str) -> float:
    """``--threshold``: a finite percentage, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a percentage, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a percentage of 0 or more, got {text!r}")
    return value


def _positive(text: str) -> int:
    """``--concurrency``, ``--limit``, ``--max-errors``: a whole number, 1 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {text!r}")
    return value


def _port(text: str) -> int:
    """``--port``: 0 (any free port) to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {text!r}")
    return value


def _add_dataset_arguments(run: argparse.ArgumentParser) -> None:
    """``runner run``'s options for a batch over a dataset (issue 17; README "Datasets")."""
    group = run.add_argument_group("datasets", "run the workflow once per row of a dataset (README: Datasets)")
    group.add_argument(
        "--dataset", metavar="FILE", help="rows of inputs: .jsonl, .csv (with a header), .json, .parquet"
    )
    group.add_argument(
        "--map", dest="mapping", action="append", default=[], metavar="COLUMN=INPUT", help="rename a column"
    )
    group.add_argument("--key", metavar="COLUMN", help="the column naming each row in results.jsonl (default: index)")
    group.add_argument("--keep", metavar="STAGE,...", help="also write these stages' outputs to results.jsonl")
    group.add_argument("--concurrency", type=_positive, default=8, metavar="N", help="rows in flight (default 8)")
    group.add_argument("--max-errors", type=_positive, metavar="N", help="stop starting rows after N failed rows")
    group.add_argument(
        "--resume", metavar="RUN_FOLDER", help="go on with a run or batch: run the nodes or rows not done yet"
    )
    group.add_argument("--retry-errors", action="store_true", help="with --resume: run the failed rows again")
    group.add_argument("--limit", type=_positive, metavar="N", help="only the first N rows (of the shard)")
    group.add_argument("--shard", metavar="I/N", help="only the I-th of N shares of the rows (1 <= I <= N)")
    group.add_argument("--force", action="store_true", help="with --resume: accept an edited workflow or dataset")
    # issue 23: every run keeps a checkpoint in its run folder (README: Checkpoints and resume)
    run.add_argument("--no-checkpoint", action="store_true", help="keep no checkpoint: the run cannot be resumed")
    group.add_argument(
        "--junit", metavar="FILE", help="also write the assertions' JUnit XML here (README: Evaluations)"
    )
    # issue 18: the rows on Ray actors (runner[ray]); README "On Ray"
    group.add_argument(
        "--executor", choices=("local", "ray"), default="local", help="where the rows run (default local)"
    )
    group.add_argument("--ray-address", metavar="ADDRESS", help="with --executor ray: the cluster (HOST:PORT or auto)")
    group.add_argument("--workers", type=_positive, metavar="N", help="with --executor ray: actors (default: CPUs)")


def build_parser() -> argparse.ArgumentParser:
    from runner.version import __version__  # noqa: PLC0415

    parser = _Parser(prog="runner", description="Run LLM multi-agent workflows declared in YAML.")
    parser.add_argument("--version", action="version", version=f"runner {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    run = sub.add_parser("run", help="validate, compile and run a workflow; write its timing report")
    run.add_argument("workflow", metavar="WF", nargs="?", help="the workflow file (optional with --resume)")
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
    tape = run.add_mutually_exclusive_group()
    tape.add_argument("--record", metavar="DIR", help="record every model request and its answer into cassette DIR")
    tape.add_argument("--replay", metavar="DIR", help="answer model requests from cassette DIR, without the network")
    run.add_argument(
        "--strict", action="store_true", help="with --replay: a request not in the cassette fails the run (exit 1)"
    )
    run.add_argument(
        "--replay-timing",
        choices=["instant", "recorded"],
        help="with --replay: answer at once (default) or with the recorded latencies and chunk timing",
    )
    # OpenTelemetry export (issue 22 item 5): the flag's value must be a URL, so `--otel WF` is no endpoint
    run.add_argument(
        "--otel",
        nargs="?",
        const=True,
        metavar="ENDPOINT",
        help="export the run's spans over OTLP/HTTP to ENDPOINT (default: OTEL_EXPORTER_OTLP_ENDPOINT; "
        "exported also whenever that variable is set)",
    )
    run.add_argument(
        "--otel-content", action="store_true", help="with OpenTelemetry export: put the models' replies in the spans"
    )
    # human gates (issue 23): decisions given beforehand; runner/engine/gates.py reads them (gate_answers)
    run.add_argument(
        "--approve", action="append", default=[], metavar="STAGE", help="approve the approve gate STAGE (repeatable)"
    )
    run.add_argument(
        "--answer",
        action="append",
        default=[],
        metavar="STAGE=@FILE",
        help="answer the ask gate STAGE: @FILE holds the answer (JSON), or give it inline (repeatable)",
    )
    run.epilog = (
        "exit codes: 0 ok, 1 failed or rejected at a gate, 2 usage, 3 internal bug, "
        "75 waiting at a human gate (continue with --approve or --answer), 130 interrupted, 143 terminated"
    )
    _add_dataset_arguments(run)

    # `runner eval WF --dataset FILE` (issue 24): a dataset run that requires assert: lists
    ev = sub.add_parser(
        "eval", help="run a workflow over a dataset and check its assert: lists; exit 1 below a threshold"
    )
    ev.add_argument("workflow", metavar="WF", nargs="?", help="the workflow file, with assert: lists")
    ev.add_argument(
        "--set", dest="sets", action="append", default=[], metavar="NAME=VALUE", help="an input for every row"
    )
    ev.add_argument(
        "--report-dir", metavar="DIR", help="where the run folder goes (default: the workflow's report.dir)"
    )
    ev.add_argument("--quiet", "-q", action="store_true", help="print only errors")
    ev.add_argument("--no-uvloop", action="store_true", help="use the standard asyncio loop")
    ev.add_argument(
        "--offline", action="store_true", help="replace every remote model (the judges too) by a scripted one"
    )
    ev_tape = ev.add_mutually_exclusive_group()
    ev_tape.add_argument(
        "--record", metavar="DIR", help="record every model request (the judges' too) into cassette DIR"
    )
    ev_tape.add_argument("--replay", metavar="DIR", help="answer model requests from cassette DIR, without the network")
    ev.add_argument("--strict", action="store_true", help="with --replay: a request not in the cassette fails the run")
    ev.add_argument(
        "--replay-timing", choices=["instant", "recorded"], help="with --replay: answer at once or as recorded"
    )
    ev.add_argument(
        "--annotations",
        action="store_true",
        help="print GitHub Actions annotations on stdout: each assertion that did not pass, at its line",
    )
    ev.set_defaults(input_file=None)
    _add_dataset_arguments(ev)
    # `runner eval diff OLD NEW` (issue 24): the rows that regressed between two eval runs, for CI
    ev_diff = _Parser(
        prog="runner eval diff",
        description="Compare two runs of an eval row by row (matched by key). Exit 1 when a row or one of its "
        "assertions passed in OLD and does not in NEW; 0 otherwise (fixes are listed, never failed).",
    )
    ev_diff.set_defaults(command="eval", eval_action="diff")
    ev_diff.add_argument("old", metavar="OLD", help="the earlier run folder (the baseline), or its results.jsonl")
    ev_diff.add_argument("new", metavar="NEW", help="the later run folder, or its results.jsonl")
    ev_diff.add_argument("--format", choices=["text", "json"], default="text", help="output format (default: text)")
    assert isinstance(ev, _Parser)
    ev.word_commands["diff"] = ev_diff

    from runner.validate.formats import FORMATS_BY_NAME  # noqa: PLC0415 - light: json and the formatters

    validate = sub.add_parser("validate", help="check workflow files and folders; exit 1 on problems")
    validate.add_argument(
        "paths", nargs="+", metavar="PATH", help="files (always checked), or folders searched for workflows"
    )
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
    validate.add_argument(
        "--allow-empty", action="store_true", help="exit 0 when the folders hold no workflow (default: exit 1)"
    )
    validate.add_argument(
        "--connect",
        action="store_true",
        help="also start the MCP servers and check that the tools the agents name exist there",
    )

    sub.add_parser("schema", help="print the workflow JSON Schema")

    cache = sub.add_parser("cache", help="look at or empty a file cache of embeddings")
    cache.add_argument("action", choices=["stats", "clear"])
    cache.add_argument("directory", metavar="DIR", help="the cache folder (an embeddings.<name>.cache.dir)")

    cassette = sub.add_parser(
        "cassette",
        help="what a recorded cassette holds (stats), or remove what a workflow no longer uses (prune)",
        usage="runner cassette stats DIR\n       runner cassette prune DIR WF [--set NAME=VALUE]... [--input FILE]... "
        "[--dry-run]",
        description="`stats`: what cassette DIR holds. `prune`: replay WF from DIR (strict, instant, no network; its "
        "tools and python stages run) once per --input FILE (or once with the defaults) and remove the entries no "
        "replay used.",
    )
    cassette.add_argument("action", choices=["stats", "prune"])
    cassette.add_argument("directory", metavar="DIR", help="the cassette folder (of `runner run --record DIR`)")
    cassette.add_argument("workflow", metavar="WF", nargs="?", help="prune: the workflow whose requests to keep")
    cassette.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME=VALUE", help="an input")
    cassette.add_argument(
        "--input", dest="input_files", action="append", default=[], metavar="FILE", help="inputs of one replay"
    )
    cassette.add_argument("--dry-run", action="store_true", help="list the unused entries, remove nothing")

    from runner.commands.report import REPORT_FORMATS  # noqa: PLC0415 - light: the writers load when used

    report = sub.add_parser(
        "report",
        help="print a saved report (summary, markdown, json, trace, html), or compare two: report diff A B",
        usage=f"runner report [-h] [--format {{{','.join(REPORT_FORMATS)}}}] FILE\n"
        "       runner report diff [-h] [--threshold PCT] A B",
        description="Print a saved report in any writer's format; `runner report diff A B` compares two runs.",
    )
    report.set_defaults(report_action="show")
    report.add_argument("file", metavar="FILE", help="a report written by `runner run` (its .json)")
    report.add_argument(
        "--format", choices=list(REPORT_FORMATS), default="text", help="output format (default: text, the summary)"
    )
    diff = _Parser(
        prog="runner report diff",
        description="Compare two runs of one workflow by stage and model. Exit 1 when B's wall time grew by more "
        "than the threshold or B failed where A succeeded; 0 otherwise (an improvement is reported, not failed).",
    )
    diff.set_defaults(command="report", report_action="diff")
    diff.add_argument("a", metavar="A", help="the earlier report (the baseline), or a folder: its newest report")
    diff.add_argument("b", metavar="B", help="the later report, or a folder (a run's --report-dir): its newest report")
    diff.add_argument(
        "--threshold",
        type=_percent,
        default=10.0,
        metavar="PCT",
        help="exit 1 when the wall time grew by more than PCT percent (default 10)",
    )
    assert isinstance(report, _Parser)
    report.word_commands["diff"] = diff

    # `runner serve WF... --mcp` (issue 22 item 4): workflows as MCP tools, from the extra runner[mcp]
    serve = sub.add_parser(
        "serve",
        help="serve workflows as MCP tools (stdio or streamable HTTP); needs runner[mcp]",
        description="Serve each workflow as an MCP tool: its inputs are the tool's arguments, progress is sent as "
        "its stages start and end, its final output is the answer. Reports go to the usual report folder.",
    )
    serve.add_argument("workflows", nargs="+", metavar="WF", help="the workflow files, one tool each")
    serve.add_argument("--mcp", action="store_true", help="speak the Model Context Protocol (the only protocol)")
    serve.add_argument(
        "--transport", choices=["stdio", "http"], default="stdio", help="stdio (default) or streamable HTTP"
    )
    serve.add_argument("--host", default="127.0.0.1", help="with --transport http: the address (default 127.0.0.1)")
    serve.add_argument(
        "--port", type=_port, default=8000, help="with --transport http: the port (default 8000; 0: any free one)"
    )
    serve.add_argument("--report-dir", metavar="DIR", help="where to write the reports (default: each report.dir)")
    serve.add_argument(
        "--offline", action="store_true", help="replace every remote model by a scripted one: no network, no key"
    )
    serve.add_argument("--no-uvloop", action="store_true", help="use the standard asyncio loop")

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
        from runner.validate.formats import format_error  # noqa: PLC0415

        sys.stderr.write(format_error(exc))
        return exc.exit_code
    except KeyboardInterrupt as exc:
        print(f"runner: {interrupts.describe()}", file=sys.stderr)
        return interrupts.exit_code(exc)
    except BrokenPipeError:
        return EXIT_ERROR
    except Exception:  # noqa: BLE001 - the last resort: a bug in runner, reported as one
        from runner.secrets import redact  # noqa: PLC0415

        print("runner: internal error (a bug in runner; please report it with this traceback):", file=sys.stderr)
        import traceback  # noqa: PLC0415 - only for an internal error

        sys.stderr.write(redact(traceback.format_exc()))
        return EXIT_BUG


def _otel_settings(args: argparse.Namespace) -> Any:
    """``--otel [ENDPOINT]`` and ``--otel-content`` (and the OTLP environment variables) as the run's
    :class:`~runner.report.otlp.OtelSettings`, or None; the extra is checked before anything runs."""
    import os  # noqa: PLC0415

    if args.otel is None and not args.otel_content and not any(k.startswith("OTEL_EXPORTER_OTLP") for k in os.environ):
        return None  # the common case, without loading the export's modules (start-up time, issue 14)
    from runner.report.otlp import check_installed, settings_from  # noqa: PLC0415 - imports no OpenTelemetry

    if isinstance(args.otel, str) and not args.otel.startswith(("http://", "https://")):
        raise UsageError(f"--otel takes an http:// or https:// URL, not {args.otel!r}")
    settings = settings_from(args.otel, content=args.otel_content)
    if settings is None:
        if args.otel_content:
            raise UsageError("--otel-content is for an OpenTelemetry export: add --otel [ENDPOINT]")
        return None
    check_installed("--otel" if args.otel else "OTEL_EXPORTER_OTLP_ENDPOINT is set")
    return settings


def _single_run_folder(folder: str | None) -> bool:
    """Is ``--resume``'s folder a single run's (its checkpoint there) rather than a dataset batch's? A folder with
    neither file is refused here, naming both (a missing folder is the batch's message, kept as it was)."""
    if folder is None:
        return False
    from pathlib import Path  # noqa: PLC0415

    path = Path(folder)
    if (path / "checkpoint.sqlite").is_file():
        return True
    if path.is_dir() and not (path / "ledger.sqlite").is_file():
        raise RunnerError(
            f"--resume {folder}: neither a run's checkpoint.sqlite nor a batch's ledger.sqlite in it; resume a run "
            "folder that `runner run` made (its path is printed as the run starts)"
        )
    return False


def dispatch(args: argparse.Namespace) -> int:
    if args.command == "eval" and getattr(args, "eval_action", None) == "diff":
        from runner.commands.variants import eval_diff_command  # noqa: PLC0415

        return eval_diff_command(args.old, args.new, args.format)
    if args.command == "eval":
        from runner.commands.dataset import batch_from_args  # noqa: PLC0415

        if args.dataset is None and args.resume is None:
            raise UsageError("runner eval needs the rows to check: runner eval WF --dataset FILE")
        return batch_from_args(args, require_asserts=True)
    if args.command == "run" and isinstance(args.otel, str) and args.workflow is None and ":" not in args.otel:
        args.workflow, args.otel = args.otel, True  # `runner run --otel WF`: the flag took the workflow's name
    if args.command == "run" and args.dataset is not None and (args.approve or args.answer):
        flag = "--approve" if args.approve else "--answer"
        raise UsageError(f"{flag} is for a single run, not with --dataset: runner run WF {flag} ...")
    single = args.command == "run" and args.dataset is None and _single_run_folder(args.resume)
    if args.command == "run" and args.resume is not None and not single and (args.approve or args.answer):
        flag = "--approve" if args.approve else "--answer"
        raise UsageError(
            f"{flag} is for a single run's --resume, not a batch's: its rows have no human gates to decide"
        )
    if args.command == "run" and (args.dataset is not None or args.resume is not None) and not single:
        from runner.commands.dataset import batch_from_args  # noqa: PLC0415

        if args.no_checkpoint:
            raise UsageError("--no-checkpoint is for a single run: a batch keeps its ledger (README: Datasets)")
        args.otel_settings = _otel_settings(args)  # a trace per row
        return batch_from_args(args)
    if args.command == "run":
        from runner.commands.run import run_command  # noqa: PLC0415

        if args.workflow is None and not single:
            raise UsageError("the workflow file is missing: runner run WF (or runner run --resume RUN_FOLDER)")
        if single and args.no_checkpoint:
            raise UsageError("--no-checkpoint: a resumed run goes on with its checkpoint; drop --no-checkpoint")
        for flag in ("retry_errors", "force", "mapping", "key", "keep", "limit", "shard", "max_errors", "junit"):
            if flag == "force" and single:
                continue
            if getattr(args, flag):
                name = "--" + {"mapping": "map"}.get(flag, flag).replace("_", "-")
                raise UsageError(f"{name} is for a batch: runner run WF --dataset FILE {name} ...")
        if args.executor != "local" or args.ray_address is not None or args.workers is not None:  # issue 18
            raise UsageError(
                "--executor, --ray-address and --workers are for a batch: runner run WF --dataset FILE ..."
            )

        return run_command(
            args.workflow,
            args.sets,
            otel=_otel_settings(args),
            report_dir=args.report_dir,
            quiet=args.quiet,
            use_uvloop=not args.no_uvloop,
            input_file=args.input_file,
            offline=args.offline,
            log_level=args.log_level,
            log_file=args.log_file,
            record=args.record,
            replay=args.replay,
            strict=args.strict,
            replay_timing=args.replay_timing,
            approve=args.approve,
            answer=args.answer,
            checkpoint=not args.no_checkpoint,
            resume=args.resume if single else None,
            force=args.force,
        )
    if args.command == "validate":
        from runner.commands.validate import validate_command  # noqa: PLC0415

        return validate_command(
            args.paths,
            fmt=args.format,
            out=sys.stdout,
            strict=args.strict,
            sets=args.sets,
            allow_empty=args.allow_empty,
            connect=args.connect,
        )
    if args.command == "cache":
        from runner.commands.cache import cache_command  # noqa: PLC0415

        return cache_command(args.action, args.directory, sys.stdout)
    if args.command == "cassette":
        from runner.commands.cassette import cassette_command  # noqa: PLC0415

        return cassette_command(
            args.action,
            args.directory,
            sys.stdout,
            workflow=args.workflow,
            sets=args.sets,
            input_files=args.input_files,
            dry_run=args.dry_run,
        )
    if args.command == "schema":
        from runner.resources import schema_path  # noqa: PLC0415

        sys.stdout.write(schema_path("workflow.schema.json").read_text(encoding="utf-8"))
        return EXIT_OK
    if args.command == "report":
        from runner.commands.report import diff_command, report_command  # noqa: PLC0415

        if args.report_action == "diff":
            return diff_command(args.a, args.b, threshold=args.threshold, out=sys.stdout)
        return report_command(args.file, fmt=args.format, out=sys.stdout)
    if args.command == "serve":
        from runner.commands.serve import serve_command  # noqa: PLC0415

        if not args.mcp:
            raise UsageError("runner serve needs a protocol: runner serve WF... --mcp")
        given = [f for f, default in (("host", "127.0.0.1"), ("port", 8000)) if getattr(args, f) != default]
        if args.transport != "http" and given:
            raise UsageError(f"--{given[0]} is for --transport http")
        return serve_command(
            args.workflows,
            mcp=args.mcp,
            transport=args.transport,
            host=args.host,
            port=args.port,
            report_dir=args.report_dir,
            offline=args.offline,
            use_uvloop=not args.no_uvloop,
        )
    if args.command == "graph":
        from runner.commands.graph import graph_command  # noqa: PLC0415

        return graph_command(args.workflow, fmt=args.format, out=sys.stdout)
    raise AssertionError(f"unhandled command {args.command!r}")
