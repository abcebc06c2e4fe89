"""Variants side by side, and two eval runs compared row by row (issue 24).

:func:`comparison` reads the run folder of each variant's batch (``results.jsonl`` and ``report.json``) into one
document (``schemas/eval-comparison.schema.json``): per variant the rows passed, failed and with errors, the pass
rate, whether its thresholds were met, latency p50 / p95, tokens and cost; and the rows whose verdicts differ
between variants. :func:`markdown` and :func:`terminal` show it.

:func:`regressions` compares two runs of one eval (``runner eval diff OLD NEW``): rows matched by their key, a
regression is a row or an assertion that passed in OLD and does not in NEW (a failure or an error).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from runner.dataset.report import percentile
from runner.dataset.results import RESULTS_NAME, read_lines
from runner.errors import RunnerError

SHOWN = 20  # the disagreeing rows a Markdown table or a terminal lists (the JSON holds them all)


def comparison(workflow: Mapping[str, Any], dataset: str, runs: Sequence[tuple[str, str, Path]]) -> dict[str, Any]:
    """The comparison document of ``runs``: (variant name, description, its batch's run folder), base first."""
    variants = []
    verdicts: dict[int, dict[str, Any]] = {}  # row index -> {"key": ..., variant -> verdict}
    for name, description, folder in runs:
        latencies: list[float] = []
        tokens = 0
        cost = 0.0
        for line in read_lines(folder / RESULTS_NAME):
            latencies.append(float(line.get("latency_s") or 0.0))
            used = line.get("tokens") or {}
            tokens += int(used.get("prompt", 0)) + int(used.get("completion", 0))
            cost += float(line.get("cost_usd") or 0.0)
            row = verdicts.setdefault(int(line["index"]), {"key": str(line.get("key", line["index"])), "by": {}})
            row["by"][name] = line.get("verdict") or ("error" if line.get("status") != "ok" else "pass")
        evals = _evals(folder)
        latencies.sort()
        variants.append(
            {
                "name": name,
                "description": description,
                "folder": str(folder),
                "rows": evals.get("rows", len(latencies)),
                "passed": evals.get("passed", 0),
                "failed": evals.get("failed", 0),
                "errors": evals.get("errors", 0),
                "pass_rate": evals.get("pass_rate", 0.0),
                "mean_score": evals.get("mean_score", 0.0),
                "met": bool(evals.get("met", False)),
                "worst": evals.get("worst"),
                "latency_p50_s": round(percentile(latencies, 0.5), 6) if latencies else 0.0,
                "latency_p95_s": round(percentile(latencies, 0.95), 6) if latencies else 0.0,
                "tokens": tokens,
                "judge_tokens": int(evals.get("judge_tokens", 0)),
                "cost_usd": round(cost, 8),
            }
        )
    names = [name for name, _, _ in runs]
    disagreements = []
    for index in sorted(verdicts):
        row = verdicts[index]
        seen = {row["by"].get(name, "missing") for name in names}
        if len(seen) > 1:
            disagreements.append(
                {"index": index, "key": row["key"], "verdicts": {n: row["by"].get(n, "missing") for n in names}}
            )
    return {
        "comparison_version": 1,
        "workflow": dict(workflow),
        "dataset": dataset,
        "variants": variants,
        "rows": len(verdicts),
        "disagreements": disagreements,
    }


def _evals(folder: Path) -> dict[str, Any]:
    try:
        doc = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # a batch interrupted before its report: the rows' lines still count
    evals = doc.get("evals")
    return evals if isinstance(evals, dict) else {}


def markdown(doc: Mapping[str, Any]) -> str:
    """The comparison for a pull request: one table of the variants, then the rows where they disagree."""
    names = [v["name"] for v in doc["variants"]]
    lines = [
        f"# Variants of {doc['workflow']['name']}",
        "",
        f"{doc['rows']} rows of `{doc['dataset']}`; the variants disagree on {len(doc['disagreements'])}.",
        "",
        "| variant | pass rate | passed | failed | errors | thresholds | latency p50 | latency p95 | tokens | cost |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for v in doc["variants"]:
        lines.append(
            f"| `{v['name']}` | {_pct(v['pass_rate'])} | {v['passed']} | {v['failed']} | {v['errors']} | "
            f"{'met' if v['met'] else '**not met**'} | {v['latency_p50_s']:.3f} s | {v['latency_p95_s']:.3f} s | "
            f"{v['tokens']} | ${v['cost_usd']:.4f} |"
        )
    if doc["disagreements"]:
        lines += ["", "## Rows where they disagree", "", "| row | " + " | ".join(f"`{n}`" for n in names) + " |"]
        lines.append("|---|" + "---|" * len(names))
        for row in doc["disagreements"][:SHOWN]:
            lines.append(f"| {row['key']} | " + " | ".join(row["verdicts"][n] for n in names) + " |")
        more = len(doc["disagreements"]) - SHOWN
        if more > 0:
            lines += ["", f"... and {more} more (comparison.json lists them all)."]
    return "\n".join(lines) + "\n"


def terminal(doc: Mapping[str, Any]) -> str:
    """The comparison as aligned columns for a terminal or a CI log."""
    head = ("variant", "pass rate", "passed", "failed", "errors", "thresholds", "p50 s", "p95 s", "tokens", "cost $")
    table = [head]
    for v in doc["variants"]:
        table.append(
            (
                v["name"],
                _pct(v["pass_rate"]),
                str(v["passed"]),
                str(v["failed"]),
                str(v["errors"]),
                "met" if v["met"] else "NOT met",
                f"{v['latency_p50_s']:.3f}",
                f"{v['latency_p95_s']:.3f}",
                str(v["tokens"]),
                f"{v['cost_usd']:.4f}",
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    out = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in table
    ]
    count = len(doc["disagreements"])
    out.append(f"rows where the variants disagree: {count}")
    for row in doc["disagreements"][:SHOWN]:
        out.append(f"  row {row['key']}: " + ", ".join(f"{n} {v}" for n, v in row["verdicts"].items()))
    if count > SHOWN:
        out.append(f"  ... and {count - SHOWN} more")
    return "\n".join(out) + "\n"


class DiffError(RunnerError):
    """``runner eval diff`` was given something that is not an eval's results."""


def read_run(path: str) -> dict[str, dict[str, Any]]:
    """An eval run's rows by key, in the dataset's order (results.jsonl holds them in the order they ended, which
    differs from run to run): ``path`` is a run folder (its ``results.jsonl``) or the file itself."""
    given = Path(path)
    results = given / RESULTS_NAME if given.is_dir() else given
    if not results.is_file():
        raise DiffError(
            f"{path}: no {RESULTS_NAME} here; give a run folder of runner eval (or runner run --dataset) or its "
            f"{RESULTS_NAME}"
        )
    rows: dict[str, dict[str, Any]] = {}
    for line in read_lines(results):
        if not isinstance(line, dict) or "index" not in line:
            raise DiffError(f"{results}: a line that is not a row's result: {str(line)[:80]}")
        if "verdict" not in line:
            raise DiffError(
                f"{results}: row {line.get('key', line['index'])} has no verdict: the workflow had no assert:"
            )
        rows[str(line.get("key", line["index"]))] = line
    return dict(sorted(rows.items(), key=lambda item: _index(item[1])))


def _index(line: Mapping[str, Any]) -> tuple[int, str]:
    index = line["index"]
    return (index, "") if isinstance(index, int) else (0, str(index))


def regressions(old: Mapping[str, Mapping[str, Any]], new: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Rows in both runs, by key: ``regressions`` (the row passed in OLD and does not in NEW, or one of its
    assertions did), ``fixes`` (the other way round), and the keys found in one run only."""
    found, fixed = [], []
    for key, before in old.items():
        after = new.get(key)
        if after is None:
            continue
        was, now = _by_name(before), _by_name(after)
        worse = [
            {"name": n, "old": was[n]["status"], "new": v["status"], "reason": v.get("reason", "")}
            for n, v in now.items()
            if n in was and was[n]["status"] == "pass" and v["status"] != "pass"
        ]
        better = [n for n, v in now.items() if n in was and was[n]["status"] != "pass" and v["status"] == "pass"]
        entry = {"key": key, "old": before["verdict"], "new": after["verdict"], "assertions": worse}
        if worse or (before["verdict"] == "pass" and after["verdict"] != "pass"):
            found.append(entry)
        elif better or (before["verdict"] != "pass" and after["verdict"] == "pass"):
            fixed.append({"key": key, "old": before["verdict"], "new": after["verdict"], "assertions": better})
    return {
        "compared": sum(1 for key in old if key in new),
        "regressions": found,
        "fixes": fixed,
        "only_old": [k for k in old if k not in new],
        "only_new": [k for k in new if k not in old],
    }


def _by_name(line: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {str(v["name"]): v for v in line.get("assertions") or ()}


def diff_text(doc: Mapping[str, Any], old: str, new: str) -> str:
    """``runner eval diff``'s report: a line per regression (and its assertions), then the fixes."""
    n, f = len(doc["regressions"]), len(doc["fixes"])
    out = [
        f"{doc['compared']} rows compared ({old} -> {new}): {n} regression{'' if n == 1 else 's'}, "
        f"{f} fix{'' if f == 1 else 'es'}"
    ]
    for row in doc["regressions"]:
        out.append(f"regression: row {row['key']}: {row['old']} -> {row['new']}")
        for a in row["assertions"]:
            out.append(f"  {a['name']}: {a['old']} -> {a['new']}" + (f" ({a['reason']})" if a["reason"] else ""))
    for row in doc["fixes"]:
        out.append(f"fixed: row {row['key']}: {row['old']} -> {row['new']}")
    for what in ("only_old", "only_new"):
        keys = doc[what]
        if keys:
            shown = ", ".join(keys[:10]) + (f" and {len(keys) - 10} more" if len(keys) > 10 else "")
            out.append(f"only in {'OLD' if what == 'only_old' else 'NEW'}: {len(keys)} rows ({shown})")
    return "\n".join(out) + "\n"


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%"
