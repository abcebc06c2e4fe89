"""Two runs of one workflow side by side: wall time, stages (fan-out branches folded) and models.

Pure: takes two report documents, gives rows and the wall-time change; the command prints them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from runner.report.nodes import group_nodes


@dataclass(frozen=True, slots=True)
class Row:
    subject: str
    metric: str
    a: float | None
    b: float | None
    note: str = ""

    @property
    def change(self) -> float | None:
        """Relative change in percent; None when either side is missing or A is 0."""
        if self.a is None or self.b is None or self.a == 0:
            return None
        return (self.b - self.a) / self.a * 100


def _duration(span: Mapping[str, Any]) -> float | None:
    start, end = span.get("start_s"), span.get("end_s")
    return end - start if start is not None and end is not None else None


def stage_times(report: Mapping[str, Any]) -> dict[str, tuple[float | None, str]]:
    """Stage key -> (seconds, note): a node's duration; for fan-out branches folded under ``<stage>[*]`` the
    slowest branch's (the one its fan-out waited for)."""
    out: dict[str, tuple[float | None, str]] = {}
    for entry in group_nodes(report["nodes"]):
        if isinstance(entry, Mapping):
            out[entry["id"]] = (_duration(entry), "")
            continue
        key, spans = entry
        durations = [d for s in spans if (d := _duration(s)) is not None]
        out[key] = (max(durations) if durations else None, f"slowest of {len(spans)}")
    return out


MODEL_METRICS: tuple[tuple[str, Callable[[Mapping[str, Any]], Any]], ...] = (
    ("latency p50 s", lambda m: m["latency_s"]["p50"]),
    ("latency p95 s", lambda m: m["latency_s"]["p95"]),
    ("ttft p50 s", lambda m: m["ttft_s"]["p50"]),
    ("requests", lambda m: m["requests"]),
    ("retries", lambda m: sum(m["retries"].values())),
    ("pool wait s", lambda m: m["pool_wait"]["total_s"]),
    ("rate wait s", lambda m: m["rate_wait"]["total_s"]),
    ("tokens/s", lambda m: m["tokens_per_s"]),
)


def compare(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[Row]:
    rows = [Row("run", "wall s", a["run"]["wall_s"], b["run"]["wall_s"])]
    sa, sb = stage_times(a), stage_times(b)
    for key in list(sa) + [k for k in sb if k not in sa]:
        (va, na), (vb, nb) = sa.get(key, (None, "")), sb.get(key, (None, ""))
        rows.append(Row(key, "s", va, vb, na or nb))
    ma, mb = a["models"], b["models"]
    for name in list(ma) + [k for k in mb if k not in ma]:
        for metric, get in MODEL_METRICS:
            va = get(ma[name]) if name in ma else None
            vb = get(mb[name]) if name in mb else None
            rows.append(Row(f"model {name}", metric, va, vb))
    return rows


def wall_change(a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    """Percent change of the wall time from A to B (infinite when A took no time and B did)."""
    wa, wb = a["run"]["wall_s"], b["run"]["wall_s"]
    if wa == 0:
        return 0.0 if wb == 0 else float("inf")
    return float((wb - wa) / wa * 100)


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def format_diff(a: Mapping[str, Any], b: Mapping[str, Any], *, threshold: float) -> tuple[str, bool]:
    """The comparison as text, and whether B regressed: its wall time grew by more than ``threshold`` percent,
    or A succeeded and B did not."""
    change = wall_change(a, b)
    slower = change > threshold
    broke = a["run"]["status"] == "ok" and b["run"]["status"] != "ok"
    if math.isinf(change):
        verdict = "slower (A took no time)"
    elif slower:
        verdict = f"slower by more than {threshold:g}%"
    elif change < -threshold:  # an improvement is said as one; only a regression fails the comparison
        verdict = f"faster by more than {threshold:g}%"
    else:
        verdict = f"within {threshold:g}%"
    shown = "" if math.isinf(change) else f" ({change:+.1f}%)"
    walls = f"{a['run']['wall_s']:.3f} s -> {b['run']['wall_s']:.3f} s"
    lines = [
        f"{a['workflow']['name']}: wall time {walls}{shown}: {verdict}",
        f"A: run {a['run']['id']} ({a['run']['status']}), B: run {b['run']['id']} ({b['run']['status']})"
        + (": B did not succeed" if broke else ""),
    ]
    regressed = slower or broke
    table = [("", "", "A", "B", "change", "")]
    for row in compare(a, b)[1:]:
        if row.a is None and row.b is None:
            continue
        pct = row.change
        table.append(
            (row.subject, row.metric, _num(row.a), _num(row.b), "" if pct is None else f"{pct:+.1f}%", row.note)
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for r in table:
        cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1])]
        cells += [r[i].rjust(widths[i]) for i in (2, 3, 4)] + [r[5]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines), regressed
