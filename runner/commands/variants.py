"""``runner eval WF --dataset FILE`` of a workflow with ``variants:``, and ``runner eval diff OLD NEW`` (issue 24).

With variants, the eval is one batch per variant over the same rows, the workflow as written (``base``) first,
one after the other (each with the whole ``--concurrency``, so their latencies compare), each in its own run
folder under one comparison folder::

    <report dir>/runs/<name>-<UTC stamp>/
        variants/base/        results.jsonl, report.json, report.md, junit.xml, ledger.sqlite
        variants/<variant>/   the same
        comparison.json       (schemas/eval-comparison.schema.json), comparison.md

Each variant's folder is a batch like any other: ``runner run --resume`` continues it (its ledger names the
variant). The comparison is printed as a table; the exit code is 1 when a variant's thresholds are not met or its
rows failed, as for one batch.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from runner.errors import UsageError


def variant_of(wf: Any, name: str, workflow_file: str) -> Any:
    """The workflow of variant ``name`` of ``wf``; a usage error naming the variants when it has none of that name."""
    from runner.workflow.variants import pick  # noqa: PLC0415

    try:
        return pick(wf, name)
    except KeyError:
        names = ", ".join(["base", *(v.name for v in wf.variants)])
        raise UsageError(f"{workflow_file}: no variant '{name}' (variants: {names})") from None


def variants_command(opts: Any, batch: Callable[[Any], int]) -> int:
    """Run ``opts`` (a :class:`~runner.commands.dataset.BatchOptions`) through ``batch`` (the dataset command)
    once per variant and compare them; a workflow without variants is the plain batch."""
    from runner.validate.check import load_workflow  # noqa: PLC0415

    if opts.resume is not None:
        return _resume(opts, batch)
    wf = load_workflow(opts.workflow)
    if not wf.variants:
        return batch(dataclasses.replace(opts, loaded=wf))
    if opts.junit is not None:
        raise UsageError(
            f"--junit {opts.junit}: {opts.workflow} has variants, each with its own junit.xml in its folder "
            "(variants/<name>/junit.xml)"
        )
    if opts.dataset is None:
        raise UsageError("--dataset FILE needs the workflow: runner eval WF --dataset FILE")
    from runner.dataset.read import check_readable  # noqa: PLC0415
    from runner.fsutil import ensure_writable_dir  # noqa: PLC0415
    from runner.report.document import now_utc  # noqa: PLC0415

    check_readable(opts.dataset)
    directory = opts.report_dir or wf.report.dir
    ensure_writable_dir(directory)
    stamp = now_utc().strftime("%Y%m%dT%H%M%S.%fZ")
    top = Path(directory) / "runs" / f"{wf.name}-{stamp}"
    if not opts.quiet:
        print(
            f"runner: {len(wf.variants) + 1} variants of {wf.name} over {opts.dataset}; comparison folder: {top}",
            file=sys.stderr,
        )
    return _compare(opts, batch, wf, top, str(Path(opts.dataset).resolve()), dataclasses.replace(opts, loaded=wf))


def _compare(opts: Any, batch: Callable[[Any], int], wf: Any, top: Path, dataset: str, fresh: Any) -> int:
    """Each variant's batch in ``top/variants/<name>``, one after the other (resumed where its folder has a
    ledger, else started from ``fresh``'s settings), then the comparison of those that ran."""
    from runner.dataset.compare import comparison, markdown  # noqa: PLC0415
    from runner.fsutil import atomic_write_text  # noqa: PLC0415

    runs = [("base", wf.description, top / "variants" / "base")]
    runs += [(v.name, v.description, top / "variants" / v.name) for v in wf.variants]
    err = sys.stderr
    codes = []
    done = []
    for name, description, folder in runs:
        if not opts.quiet:
            print(f"runner: variant {name}", file=err)
        if (folder / "ledger.sqlite").is_file():
            code = batch(dataclasses.replace(opts, resume=str(folder), workflow=None))
        else:
            code = batch(
                dataclasses.replace(fresh, resume=None, variant=None if name == "base" else name, folder=folder)
            )
        done.append((name, description, folder))
        codes.append(code)
        if code not in (0, 1):  # interrupted: the variants not run are not compared
            print(f"runner: continue the comparison with: runner eval --resume {top}", file=err)
            break
    doc = comparison({"name": wf.name, "file": wf.file, "sha256": wf.sha256}, dataset, done)
    atomic_write_text(top / "comparison.json", json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    atomic_write_text(top / "comparison.md", markdown(doc))
    _show(doc, top, err, opts.quiet)
    return max(codes, key=lambda c: (c not in (0, 1), c))


def _resume(opts: Any, batch: Callable[[Any], int]) -> int:
    """``runner eval --resume COMPARISON_FOLDER``: each variant's batch resumed (or started, for a variant the
    interrupted comparison had not reached) with the settings of the first one's ledger, then compared again."""
    from runner.dataset.ledger import Ledger  # noqa: PLC0415
    from runner.validate.check import load_workflow  # noqa: PLC0415

    top = Path(opts.resume)
    if opts.junit is not None:
        raise UsageError(f"--junit {opts.junit}: each variant of {top} has its own junit.xml in its folder")
    ledger = Ledger.open(top / "variants" / "base")
    try:
        settings = ledger.settings
    finally:
        ledger.close()
    wf = load_workflow(opts.workflow or settings["workflow"])
    fresh = dataclasses.replace(
        opts,
        workflow=settings["workflow"],
        dataset=settings["dataset"],
        sets=tuple(settings["sets"]),
        mapping=tuple(settings["map"]),
        key=settings["key"],
        keep=tuple(settings["keep"]),
        limit=settings["limit"],
        shard=settings["shard"],
        offline=settings["offline"],
    )
    return _compare(opts, batch, wf, top, settings["dataset"], fresh)


def _show(doc: dict[str, Any], top: Path, out: TextIO, quiet: bool) -> None:
    from runner.dataset.compare import terminal  # noqa: PLC0415

    if quiet:
        return
    out.write(terminal(doc))
    print(f"comparison: {top / 'comparison.md'}", file=out)


def eval_diff_command(old: str, new: str, fmt: str = "text", out: TextIO | None = None) -> int:
    """``runner eval diff OLD NEW``: the per-row regressions of NEW against OLD; exit 1 when there is one."""
    from runner.dataset.compare import diff_text, read_run, regressions  # noqa: PLC0415

    stream = out or sys.stdout
    doc = regressions(read_run(old), read_run(new))
    if fmt == "json":
        stream.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    else:
        stream.write(diff_text(doc, old, new))
    return 1 if doc["regressions"] else 0
