"""The batch report: what a dataset run did across its rows, as JSON (``schemas/batch-report.schema.json``) and
as Markdown for a pull request.

:class:`BatchStats` takes each row's result as it ends and keeps only aggregates and one float per row and
stage (for the percentiles): a 100,000-row batch holds a few megabytes here, never the rows' outputs.
"""

from __future__ import annotations

import re
import time
from array import array
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from runner.dataset.batch import RowResult

BATCH_REPORT_VERSION = 1
_LOCATION = re.compile(r"^.*?:\d+: row \d+: ")  # "data.csv:4: row 3: " names the row, not the cause
_NUMBERS = re.compile(r"\d+(?:\.\d+)?")


def percentile(ordered: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of sorted values, by linear interpolation between the nearest ranks."""
    if not ordered:
        return 0.0
    rank = q * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def cause_of(error: str) -> str:
    """A failure's cause, counted across rows: its first line without the row's location and numbers."""
    first = _LOCATION.sub("", error.splitlines()[0] if error else "unknown")
    return _NUMBERS.sub("N", first)[:200]


class BatchStats:
    """Aggregates of the rows that ended, for the progress line and the report."""

    def __init__(self, total: int | None = None) -> None:
        self.total = total  # rows to run in this invocation, when known
        self.ok = 0
        self.failed = 0
        self.skipped = 0  # done by an earlier invocation (a resume)
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.retries = 0
        self.cost_usd = 0.0
        self.unpriced_calls = 0
        self.priced = False  # whether any model of the workflow declares pricing (then the report gives cost)
        # One 8-byte float per row (and stage) for exact percentiles: 2.4 MB at 100,000 rows of two stages.
        self.latencies = array("d")
        self.stages: dict[str, array[float]] = {}
        self.waits: Counter[tuple[str, str]] = Counter()
        self.causes: Counter[str] = Counter()
        self.row_time = 0.0
        self.t0 = time.perf_counter()

    @property
    def done(self) -> int:
        return self.ok + self.failed

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, result: RowResult) -> None:
        if result.ok:
            self.ok += 1
        else:
            self.failed += 1
            self.causes[cause_of(result.error or "")] += 1
        stats = result.stats
        self.prompt_tokens += stats.prompt_tokens
        self.completion_tokens += stats.completion_tokens
        self.retries += stats.retries
        self.cost_usd += stats.cost_usd
        self.unpriced_calls += stats.unpriced_calls
        self.latencies.append(result.latency_s)
        self.row_time += result.latency_s
        for stage, seconds in stats.stages.items():
            self.stages.setdefault(stage, array("d")).append(seconds)
        self.waits.update(stats.waits)

    def progress(self) -> str:
        """One line: rows done / failed / total, rows per second, ETA and tokens."""
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        rate = self.done / elapsed
        total = f"/{self.total:,}" if self.total is not None else ""
        line = f"rows {self.done:,}{total} done, {self.failed:,} failed, {rate:,.1f} rows/s"
        if self.total is not None and rate > 0:
            line += f", ETA {_duration(max(self.total - self.done, 0) / rate)}"
        return line + f", {self.tokens:,} tokens"

    def final(self, wall_s: float) -> str:
        """The line said when the batch ends."""
        rate = self.done / max(wall_s, 1e-9)
        line = f"{self.done:,} rows: {self.ok:,} ok, {self.failed:,} failed in {wall_s:.2f} s ({rate:,.1f} rows/s)"
        if self.skipped:
            line += f"; {self.skipped:,} done before"
        return line + f"; {self.tokens:,} tokens"

    def document(
        self,
        *,
        workflow: Mapping[str, Any],
        run: Mapping[str, Any],
        concurrency: Sequence[Mapping[str, Any]] = (),
    ) -> dict[str, Any]:
        """The report's JSON document."""
        wall = max(float(run.get("wall_s", 0.0)), 1e-9)
        stages = {}
        for name, values in self.stages.items():
            ordered = sorted(values)
            stages[name] = {
                "rows": len(ordered),
                "p50_s": round(percentile(ordered, 0.5), 6),
                "p95_s": round(percentile(ordered, 0.95), 6),
                "p99_s": round(percentile(ordered, 0.99), 6),
                "max_s": round(ordered[-1], 6),
            }
        ordered = sorted(self.latencies)
        bottlenecks = [
            {
                "cause": cause,
                "name": name,
                "seconds": round(seconds, 6),
                "share": round(seconds / self.row_time, 4) if self.row_time > 0 else 0.0,
            }
            for (cause, name), seconds in sorted(self.waits.items(), key=lambda kv: -kv[1])
            if seconds > 0
        ]
        return {
            "batch_report_version": BATCH_REPORT_VERSION,
            "workflow": dict(workflow),
            "run": dict(run),
            "rows": {
                "ok": self.ok,
                "failed": self.failed,
                "skipped": self.skipped,
                "rows_per_s": round(self.done / wall, 3),
            },
            "latency": {
                "p50_s": round(percentile(ordered, 0.5), 6),
                "p95_s": round(percentile(ordered, 0.95), 6),
                "p99_s": round(percentile(ordered, 0.99), 6),
            },
            "stages": stages,
            "failures": [{"cause": c, "rows": n} for c, n in self.causes.most_common()],
            "bottlenecks": bottlenecks,
            "advice": advice(bottlenecks),
            "tokens": {"prompt": self.prompt_tokens, "completion": self.completion_tokens, "retries": self.retries},
            **(
                {"cost": {"usd": round(self.cost_usd, 6), "unpriced_calls": self.unpriced_calls}} if self.priced else {}
            ),
            "concurrency": list(concurrency),
        }


_FIX = {
    "rate limit": "raise `models.{name}.rate_limit` if the provider allows it, or expect the batch to take this long",
    "pool": "raise `models.{name}.pool.max_connections`",
    "max_concurrency": "raise `max_concurrency` of fan-out `{name}`",
    "retries": "look at the failure causes: rows spent this time backing off before retrying `{name}`",
}


def advice(bottlenecks: Sequence[Mapping[str, Any]]) -> list[str]:
    """Batch-level advice: the causes that held rows for at least 5% of their time, largest first (three)."""
    lines = []
    for b in bottlenecks[:3]:
        if b["share"] < 0.05:
            break
        what = {
            "rate limit": "`{name}`'s rate limit",
            "pool": "a connection to `{name}`",
            "max_concurrency": "a slot of fan-out `{name}`",
            "retries": "retries of `{name}`",
        }[b["cause"]]
        fix = _FIX[b["cause"]].format(name=b["name"])
        lines.append(f"rows waited {b['share']:.0%} of their time on {what.format(name=b['name'])}: {fix}")
    return lines


def markdown(doc: Mapping[str, Any]) -> str:
    """The report as Markdown, for a pull request."""
    run, rows, wf = doc["run"], doc["rows"], doc["workflow"]
    out = [
        f"## Batch `{wf['name']}`: {run['status']}",
        "",
        f"{rows['ok']:,} ok, {rows['failed']:,} failed"
        + (f", {rows['skipped']:,} done before this resume" if rows["skipped"] else "")
        + f" in {run['wall_s']:.2f} s ({rows['rows_per_s']:,.1f} rows/s, {run['concurrency']} at once); "
        f"dataset `{run['dataset']}`",
        "",
        "| stage | rows | p50 | p95 | p99 | max |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lat = doc["latency"]
    out.append(
        f"| (row) | {rows['ok'] + rows['failed']:,} | {lat['p50_s']:.3f} s | {lat['p95_s']:.3f} s | "
        f"{lat['p99_s']:.3f} s | |"
    )
    for name, s in doc["stages"].items():
        out.append(
            f"| `{name}` | {s['rows']:,} | {s['p50_s']:.3f} s | {s['p95_s']:.3f} s | {s['p99_s']:.3f} s | "
            f"{s['max_s']:.3f} s |"
        )
    tokens = doc["tokens"]
    out += [
        "",
        f"Tokens: {tokens['prompt']:,} prompt, {tokens['completion']:,} completion; {tokens['retries']:,} retries.",
    ]
    if "cost" in doc:
        cost = doc["cost"]
        unpriced = f" ({cost['unpriced_calls']:,} calls on models without pricing not counted)"
        out += ["", f"Cost: ${cost['usd']:.4f}" + (unpriced if cost["unpriced_calls"] else "") + "."]
    if doc["failures"]:
        out += ["", "| failure cause | rows |", "|---|---:|"]
        out += [f"| {f['cause'].replace('|', '/')} | {f['rows']:,} |" for f in doc["failures"][:20]]
    if doc["bottlenecks"]:
        out += ["", "| rows waited on | seconds | share of row time |", "|---|---:|---:|"]
        out += [f"| {b['cause']} `{b['name']}` | {b['seconds']:.2f} | {b['share']:.0%} |" for b in doc["bottlenecks"]]
    if doc["advice"]:
        out += [""] + [f"- {line}" for line in doc["advice"]]
    if doc["concurrency"]:
        out += ["", "| at | model | rows in flight | why |", "|---:|---|---:|---|"]
        out += [f"| {c['at_s']:.1f} s | `{c['model']}` | {c['limit']} | {c['reason']} |" for c in doc["concurrency"]]
    return "\n".join(out) + "\n"


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds // 60 % 60:02d} min"
