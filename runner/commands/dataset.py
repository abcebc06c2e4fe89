"""``runner run WF --dataset FILE`` and ``runner run --resume RUN_FOLDER``: a workflow over every row of a dataset.

The run folder (``<report dir>/runs/<name>-<UTC stamp>``, named on stderr as the batch starts) holds
``results.jsonl`` (a line per row as it ends), ``ledger.sqlite`` (each row's state and attempts, the workflow's
hash and the batch's settings), and at the end ``report.json`` / ``report.md``, written also when the batch is
interrupted. A resume runs only the rows without a line in ``results.jsonl``, so after any number of
interruptions (Ctrl-C, SIGTERM, ``kill -9``) the file holds every row exactly once.

Over 400 lines: the batch's wiring (options, resume checks, the rows' callbacks, the final report and exit code)
reads best in one place; what assertions add (issue 24: verdicts per row, totals, JUnit) is in ``evals.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner import interrupts
from runner.dataset.batch import Batch, RowInput, RowResult
from runner.dataset.ledger import Ledger, LedgerError
from runner.dataset.progress import watch
from runner.dataset.read import check_readable, count_rows, read_rows
from runner.dataset.report import BatchStats, markdown
from runner.dataset.results import RESULTS_NAME, ResultsFile, reconcile
from runner.dataset.rows import RowInputs
from runner.dispatch import first_error
from runner.engine import loop as loops
from runner.engine.session import gc_tuned
from runner.errors import UsageError
from runner.fsutil import atomic_write_text, ensure_writable_dir
from runner.plan.compile import compile_workflow
from runner.report.document import now_utc
from runner.validate.check import load_workflow
from runner.workflow.offline import offline_workflow


@dataclass
class BatchOptions:
    """What ``runner run`` was given for a batch; the settings a resume takes from the ledger are marked."""

    workflow: str | None
    dataset: str | None = None  # from the ledger on resume
    sets: tuple[str, ...] = ()  # from the ledger on resume
    mapping: tuple[str, ...] = ()  # from the ledger on resume
    key: str | None = None  # from the ledger on resume
    keep: tuple[str, ...] = ()  # from the ledger on resume
    limit: int | None = None  # from the ledger on resume
    shard: str | None = None  # from the ledger on resume
    offline: bool = False  # from the ledger on resume
    concurrency: int = 8
    max_errors: int | None = None
    resume: str | None = None
    retry_errors: bool = False
    force: bool = False
    report_dir: str | None = None
    quiet: bool = False
    use_uvloop: bool = True
    progress: bool | None = None
    record: str | None = None  # a cassette every row's requests are recorded into (README: Record and replay)
    replay: str | None = None  # a cassette every row's requests are answered from
    strict: bool = False
    replay_timing: str | None = None
    junit: str | None = None  # a copy of the run folder's junit.xml written here (issue 24)
    require_asserts: bool = False  # `runner eval`: a workflow without assert: lists is a usage error
    otel: Any = None  # OpenTelemetry export (runner.report.otlp.OtelSettings): a trace per row
    variant: str | None = None  # the workflow's variant to run (issue 24; kept in the ledger for a resume)
    folder: Path | None = None  # the run folder, when runner eval's comparison of variants names it
    annotations: bool = False  # runner eval --annotations: GitHub annotations on stdout (issue 24)
    loaded: Any = None  # the workflow's records when runner eval has loaded it already (not read and checked twice)
    executor: str = "local"  # "ray": the rows run on Ray actors (issue 18, runner/dataset/onray)
    ray_address: str | None = None
    workers: int | None = None


def parse_shard(text: str) -> tuple[int, int]:
    """``--shard I/N``: this job takes the I-th of N shares of the rows (1 <= I <= N), rows I-1, I-1+N, ..."""
    i, sep, n = text.partition("/")
    try:
        index, count = int(i), int(n)
    except ValueError:
        index = count = 0
    if not sep or count < 1 or not 1 <= index <= count:
        raise UsageError(f"--shard {text}: expected I/N with 1 <= I <= N, such as 1/4")
    return index, count


def dataset_command(opts: BatchOptions) -> int:
    if opts.executor == "ray":  # said before anything is read: Ray missing, or flags it cannot take
        from runner.dataset.onray.connect import import_ray  # noqa: PLC0415

        import_ray(opts.ray_address)
        if opts.record or opts.replay:
            raise UsageError("--record and --replay run on the local executor: drop --executor ray")
    elif opts.ray_address is not None or opts.workers is not None:
        raise UsageError(f"{'--ray-address' if opts.ray_address else '--workers'} is for --executor ray")
    tape = None
    if opts.record or opts.replay or opts.strict or opts.replay_timing:  # the cassette's modules only when asked
        from runner.commands.cassette import open_tape  # noqa: PLC0415

        tape = open_tape(
            record=opts.record, replay=opts.replay, strict=opts.strict, timing=opts.replay_timing, offline=opts.offline
        )
    if opts.resume is not None:
        given = [flag for flag, value in _kept_on_resume(opts) if value]
        if given:
            raise UsageError(f"{', '.join(given)}: a resumed batch keeps its settings; drop them with --resume")
        folder = Path(opts.resume)
        ledger = Ledger.open(folder)
        settings = ledger.settings
        workflow_file = opts.workflow or settings["workflow"]
    else:
        if opts.dataset is None or opts.workflow is None:
            raise UsageError("--dataset FILE needs the workflow: runner run WF --dataset FILE")
        check_readable(opts.dataset)  # a missing file, an unknown format: said before anything is made
        settings = {
            "workflow": os.path.abspath(opts.workflow),
            "dataset": os.path.abspath(opts.dataset),
            "map": list(opts.mapping),
            "sets": list(opts.sets),
            "key": opts.key,
            "keep": list(opts.keep),
            "limit": opts.limit,
            "shard": opts.shard,
            "offline": opts.offline,
            "variant": opts.variant,
        }
        workflow_file = opts.workflow
        ledger = None
    if settings["shard"]:
        parse_shard(settings["shard"])
    wf = opts.loaded if opts.loaded is not None and opts.resume is None else load_workflow(workflow_file)
    if settings.get("variant") is not None:
        from runner.commands.variants import variant_of  # noqa: PLC0415

        wf = variant_of(wf, settings["variant"], workflow_file)
    if settings["offline"]:
        wf = offline_workflow(wf)
    from runner.dataset.rows import parse_map  # noqa: PLC0415

    rows = RowInputs(wf, parse_map(settings["map"]), settings["key"], settings["sets"])
    top = [sp.id for sp in wf.stages]
    unknown = [name for name in settings["keep"] if name not in top]
    if unknown:
        raise UsageError(f"--keep {','.join(unknown)}: no such top-level stage (stages: {', '.join(top)})")
    if opts.require_asserts and not wf.asserts:
        raise UsageError(
            f"{workflow_file}: runner eval needs assert: lists (top level or on a stage); runner run --dataset runs it "
            "without them"
        )
    if opts.junit is not None and not wf.asserts:
        raise UsageError(f"--junit {opts.junit}: {workflow_file} has no assert: lists to report")
    plan = compile_workflow(wf)
    ray_started = None
    if opts.executor == "ray":  # an unreachable cluster is said before a run folder is made
        from runner.dataset.onray.connect import connect  # noqa: PLC0415

        try:
            runs = Path(opts.report_dir or wf.report.dir) / "runs" if ledger is None else folder.parent
            base = os.path.dirname(os.path.abspath(workflow_file))
            ray_started = connect(opts.ray_address, opts.workers, base, _excludes(base, settings["dataset"], runs))
        except BaseException:
            if ledger is not None:
                ledger.close()
            raise
    if ledger is None:
        if opts.folder is not None:
            folder = opts.folder
        else:
            directory = opts.report_dir or wf.report.dir
            ensure_writable_dir(directory)
            stamp = now_utc().strftime("%Y%m%dT%H%M%S.%fZ")
            folder = Path(directory) / "runs" / f"{wf.name}-{stamp}"
        folder.mkdir(parents=True)
        ledger = Ledger.create(
            folder, {**settings, "workflow_sha256": wf.sha256, "dataset_stat": _stat(settings["dataset"])}
        )
    else:
        changed = []
        if settings.get("workflow_sha256") != wf.sha256:
            changed.append(
                f"{workflow_file}: the workflow changed since the batch in {folder} started; the rows done and the "
                "rows to come would not be of one workflow"
            )
        if settings.get("dataset_stat") != _stat(settings["dataset"]):
            changed.append(
                f"{settings['dataset']}: the dataset changed since the batch in {folder} started (its size or time "
                "of change); its rows may no longer be the rows the index names"
            )
        if changed and not opts.force:
            ledger.close()
            raise LedgerError(
                ". ".join(changed) + ". Pass --force to resume with them as they are now, or start a new batch"
            )
        if changed:
            settings = {**settings, "workflow_sha256": wf.sha256, "dataset_stat": _stat(settings["dataset"])}
            ledger.update_settings(settings)
    try:
        return _run(opts, folder, ledger, settings, plan, rows, tape, workflow_file)
    finally:
        ledger.close()
        if ray_started is not None:
            from runner.dataset.onray.connect import leave  # noqa: PLC0415

            leave(ray_started)


def _stat(path: str) -> list[int] | None:
    """The dataset's size and time of change: what a resume checks (hashing a large file would cost a read)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _kept_on_resume(opts: BatchOptions) -> list[tuple[str, object]]:
    """The batch settings a resume takes from the ledger, as given on this command line."""
    return [
        ("--dataset", opts.dataset),
        ("--set", opts.sets),
        ("--map", opts.mapping),
        ("--key", opts.key),
        ("--keep", opts.keep),
        ("--limit", opts.limit is not None),
        ("--shard", opts.shard),
        ("--offline", opts.offline),
    ]


def _run(
    opts: BatchOptions,
    folder: Path,
    ledger: Ledger,
    settings: dict[str, Any],
    plan: Any,
    rows: RowInputs,
    tape: Any = None,
    workflow_file: str | None = None,
) -> int:
    results_path = folder / RESULTS_NAME
    written = reconcile(results_path, drop_failed=opts.retry_errors)
    ledger.reconcile(written)
    if opts.retry_errors:
        ledger.reopen_failed()
    finished = ledger.finished()
    del written
    shard = parse_shard(settings["shard"]) if settings["shard"] else None
    dataset = settings["dataset"]

    def selected() -> Iterator[tuple[int, str, dict[str, Any], str | None, bool]]:
        taken = 0
        for row in read_rows(dataset):
            if shard is not None and row.index % shard[1] != shard[0] - 1:
                continue
            if settings["limit"] is not None and taken >= settings["limit"]:
                return
            taken += 1
            yield row.index, row.where, row.values, row.problem, row.from_text

    evaluating = bool(plan.workflow.asserts)
    columns: dict[int, dict[str, Any]] = {}  # the rows in flight's columns, for their assertions (issue 24)

    def inputs() -> Iterator[RowInput]:
        for index, where, values, problem, from_text in selected():
            if index in finished:
                continue
            if evaluating:
                columns[index] = dict(values)
            if problem is not None:
                yield RowInput(index, rows.key_of(index, values), None, f"{where}: row {index}: {problem}")
                continue
            prepared = rows.prepare(index, where, values, from_text=from_text)
            yield RowInput(index, prepared.key, prepared.inputs, prepared.error)

    stats = BatchStats()
    stats.priced = any(spec.config is not None and spec.config.pricing for spec in plan.workflow.models.values())
    stats.skipped = len(finished)
    err = sys.stderr
    print(f"runner: batch of {plan.workflow.name} over {dataset}; run folder: {folder}", file=err, flush=True)
    show = (not opts.quiet and err.isatty()) if opts.progress is None else opts.progress
    out = ResultsFile(results_path)
    keep = tuple(settings["keep"])
    batch_id = folder.name
    stopped: list[str] = []

    pending_inputs: dict[int, Any] = {}

    def on_start(row: RowInput) -> None:
        ledger.started(row.index, row.key)
        if evaluating:
            pending_inputs[row.index] = row.inputs or {}

    evaluator: list[Any] = []  # made when the batch has opened the judges' providers
    verdicts: Any = None  # the rows' verdicts, added up as they end
    if evaluating:
        from runner.commands.evals import BatchVerdicts, checked_line  # noqa: PLC0415

        formats = plan.workflow.report.formats  # the JUnit XML and the verdicts' page when asked for
        verdicts = BatchVerdicts(
            plan.workflow, junit="junit" in formats or opts.junit is not None, page="html" in formats
        )

    def on_result(result: RowResult) -> Any:
        if evaluating:
            return _evaluated(result)
        _ended(result, result.line(keep))
        return None

    async def _evaluated(result: RowResult) -> None:
        inputs, row = pending_inputs.pop(result.index, {}), columns.pop(result.index, {})
        _ended(result, await checked_line(evaluator[0], result, result.line(keep), inputs, row))

    def _ended(result: RowResult, line: dict[str, Any]) -> None:
        worker = batch.worker_of.pop(result.index, None) if on_ray else None
        if worker is not None:  # which Ray worker ran the row (issue 18)
            line["worker"] = worker
        out.append(line)  # first the line: results.jsonl decides what is done
        ledger.ended(result.index, result.key, result.ok, result.error)
        if verdicts is not None:
            verdicts.add(line)
        stats.add(result)
        if opts.max_errors is not None and stats.failed >= opts.max_errors and not stopped:
            stopped.append(f"stopped after {stats.failed} failed rows (--max-errors {opts.max_errors})")
            batch.stop(stopped[0])

    tracer = None
    if opts.otel is not None:
        from runner.report.layout import describe_workflow  # noqa: PLC0415
        from runner.report.otel import RowTracer  # noqa: PLC0415

        wf = plan.workflow
        tracer = RowTracer(describe_workflow(wf), wf.name, wf.sha256, batch_id, content=opts.otel.content)
    batch: Any
    on_ray = opts.executor == "ray"
    if on_ray:
        from runner.dataset.onray.driver import RayBatch  # noqa: PLC0415

        batch = RayBatch(
            plan,
            workflow_file=workflow_file or plan.workflow.file,
            offline=bool(settings["offline"]),
            concurrency=opts.concurrency,
            workers=opts.workers,
            run_dir=folder,
            batch_id=batch_id,
            tracer=tracer,
        )
    else:
        batch = Batch(
            plan,
            concurrency=opts.concurrency,
            run_dir=folder,
            batch_id=batch_id,
            wrapper=tape,
            tracer=tracer,
            repeat=plan.workflow.repeat,
        )
    started_at = now_utc()

    async def main() -> None:
        task = asyncio.current_task()
        detach = interrupts.attach(asyncio.get_running_loop(), task) if task is not None else None
        watcher = asyncio.get_running_loop().create_task(
            watch(stats, _counter(dataset, settings, len(finished)), err, show)
        )
        try:
            async with batch:
                if evaluating:
                    from runner.commands.evals import evaluator_for  # noqa: PLC0415

                    # a Ray batch keeps no resources on the driver: the similar assertions' embedders open here
                    shared = {} if on_ray else batch.resources.embedders
                    evaluator.append(evaluator_for(plan, batch.providers, tape, shared))
                try:
                    await batch.run(inputs(), on_result, on_start)
                finally:
                    if evaluator:
                        await evaluator[0].aclose()
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            if detach is not None:
                detach()

    status, error = "ok", None
    interrupts.begin_run()
    try:
        # fewer garbage collections while rows are in flight, as for a single run: a full collection walks every
        # row's live objects and the batch's (one costs ~25 ms in a 1,000-row batch, bench/evals.py)
        with gc_tuned():
            loops.run(main, use_uvloop=opts.use_uvloop, quiet=True)
    except (KeyboardInterrupt, asyncio.CancelledError):
        status = "interrupted"
    except Exception as exc:  # noqa: BLE001 - a dataset that breaks part way, a disk that fills: said below
        status, error = "failed", first_error(exc)  # the rows' task group wraps it
    finally:
        interrupts.end_run()
        out.close()
    if show:
        err.write("\r\x1b[K")
    otel_problem = None
    if tracer is not None and tracer.spans:  # the rows that ran, also when the batch was interrupted
        from runner.report.otlp import export  # noqa: PLC0415 - OpenTelemetry loads only when asked for

        otel_problem = export(tracer.spans, opts.otel)
    if status == "ok" and (stats.failed or stopped):
        status = "failed"
    wall = (now_utc() - started_at).total_seconds()
    doc = stats.document(
        workflow={"name": plan.workflow.name, "file": plan.workflow.file, "sha256": plan.workflow.sha256},
        run={
            "status": status,
            "started_at": started_at.isoformat().replace("+00:00", "Z"),
            "wall_s": round(wall, 6),
            "dataset": dataset,
            "concurrency": opts.concurrency,
            "folder": str(folder),
            "error": stopped[0] if stopped else (str(error) if error is not None else None),
        },
        concurrency=batch.adaptive.changes,
    )
    if on_ray:  # which worker ran what (issue 18): the report's workers, a track each in a trace
        doc["workers"] = batch.document()
        batch.write_trace(folder)
    unmet: list[str] = []
    if evaluating:
        unmet = verdicts.finish(
            doc,
            folder,
            results_path if finished else None,  # rows that ended in earlier runs: read back
            evaluator,
            opts.junit,
            wall,
            opts.annotations,
            settings.get("variant"),
        )
    atomic_write_text(folder / "report.json", json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    extra = _evals_section(doc) if evaluating else ""
    if "workers" in doc:
        from runner.dataset.onray.report import workers_markdown  # noqa: PLC0415

        extra = workers_markdown(doc["workers"]) + extra
    atomic_write_text(folder / "report.md", markdown(doc) + extra)
    if not opts.quiet:
        print(f"runner: {stats.final(wall)}", file=err)
        if evaluating:
            ev = doc["evals"]
            print(
                f"runner: assertions: {ev['passed']} of {ev['rows']} rows passed every assertion, {ev['failed']} "
                f"failed, {ev['errors']} with errors; thresholds {'met' if ev['met'] else 'NOT met'}; "
                f"junit: {folder / 'junit.xml'}",
                file=err,
            )
        for line in doc["advice"]:
            print(f"runner: {line}", file=err)
        print(f"results: {results_path}\nreport: {folder / 'report.md'}", file=err)
    for warning in batch.limit_warnings.values():  # limits in audit mode: each limit once for the batch
        print(f"runner: warning: {warning}", file=err)
    if otel_problem is not None:
        print(f"runner: warning: {otel_problem}", file=err)
    if status == "interrupted" or interrupts.received() is not None:
        print(
            f"runner: {interrupts.describe()}; partial report written; continue with: runner run --resume {folder}",
            file=err,
        )
        return interrupts.exit_code()
    if error is not None:
        raise error
    if stopped:
        print(f"runner: error: {stopped[0]}; see {results_path}", file=err)
        return 1
    if tape is not None:
        from runner.commands.cassette import tape_outcome  # noqa: PLC0415

        if tape_outcome(tape, "failed" if stats.failed else "ok", None, quiet=opts.quiet):
            return 1
    for line in unmet:
        print(f"runner: error: {line}", file=err)
    if stats.failed:
        print(
            f"runner: error: {stats.failed} of {stats.done} rows failed; rerun them with: "
            f"runner run --resume {folder} --retry-errors",
            file=err,
        )
        return 1
    return 1 if unmet else 0


def _excludes(folder: str, dataset: str, runs: Path) -> list[str]:
    """What the Ray workers' copy of the workflow's folder leaves out: the dataset and the run folders, when
    they are inside it (the driver reads and writes those; Ray's upload is limited to 500 MiB)."""
    base = Path(folder).resolve()
    out = []
    ray_tmp = Path(os.environ.get("RAY_TMPDIR") or "/tmp/ray").resolve()  # where a local Ray keeps its sessions
    for path in (Path(dataset).resolve(), runs.resolve(), ray_tmp):
        if path.is_relative_to(base) and path != base:
            out.append("/" + path.relative_to(base).as_posix())
    return out


def _evals_section(doc: dict[str, Any]) -> str:
    from runner.evals.summary import markdown as evals_markdown  # noqa: PLC0415

    return "\n" + evals_markdown(doc["evals"])


def _counter(dataset: str, settings: dict[str, Any], skip: int) -> Callable[[], int]:
    """How many rows this invocation runs: the dataset counted (in a thread), its shard and limit applied."""

    def total() -> int:
        n = count_rows(dataset)
        if settings["shard"]:
            i, k = parse_shard(settings["shard"])
            n = len(range(i - 1, n, k))
        if settings["limit"] is not None:
            n = min(n, settings["limit"])
        return max(n - skip, 0)

    return total


def _compared(folder: str | None) -> bool:
    """Whether a --resume folder is a comparison of variants (runner eval resumes each variant's batch)."""
    return folder is not None and (Path(folder) / "variants" / "base").is_dir()


def batch_from_args(args: Any, *, require_asserts: bool = False) -> int:
    """The ``runner run`` namespace (``runner/cli.py``) as :class:`BatchOptions`."""
    if args.input_file is not None:
        raise UsageError("--input: a batch takes its inputs from --dataset rows (and --set values for every row)")
    opts = BatchOptions(
        workflow=args.workflow,
        dataset=args.dataset,
        sets=tuple(args.sets),
        mapping=tuple(args.mapping),
        key=args.key,
        keep=tuple(k.strip() for k in (args.keep or "").split(",") if k.strip()),
        limit=args.limit,
        shard=args.shard,
        offline=args.offline,
        concurrency=args.concurrency,
        max_errors=args.max_errors,
        resume=args.resume,
        retry_errors=args.retry_errors,
        force=args.force,
        report_dir=args.report_dir,
        quiet=args.quiet,
        use_uvloop=not args.no_uvloop,
        record=args.record,
        replay=args.replay,
        strict=args.strict,
        replay_timing=args.replay_timing,
        junit=args.junit,
        otel=getattr(args, "otel_settings", None),
        require_asserts=require_asserts,
        annotations=bool(getattr(args, "annotations", False)),
        executor=args.executor,
        ray_address=args.ray_address,
        workers=args.workers,
    )
    if require_asserts and (opts.resume is None and opts.workflow is not None or _compared(opts.resume)):
        from runner.commands.variants import variants_command  # noqa: PLC0415

        return variants_command(opts, dataset_command)  # the batch itself when the workflow has no variants
    return dataset_command(opts)
