"""The summary printed after a run (``runner report FILE`` prints it again, as its ``text`` format): a table of
the stages, where the time went on the critical path, each model's figures and the bottlenecks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runner.report.critical_path import CATEGORIES
from runner.report.nodes import agent_calls, count_statuses, group_nodes, node_status, outcomes
from runner.report.stats import median


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def _num(value: float | None) -> str:
    """A figure in a sentence: ``-`` where it is unknown (a blank would read as a typo)."""
    return "-" if value is None else f"{value:.3f}"


def _calls_text(made: int, waiting: int) -> str:
    text = f"{made} agent call{'' if made == 1 else 's'}"
    return text + (f" ({waiting} never started)" if waiting else "")


def cost_text(totals: Mapping[str, Any]) -> str:
    """``, cost $0.0123`` (and the calls it leaves out) when a model declares pricing; else nothing."""
    if "cost_usd" not in totals:
        return ""
    unpriced = totals.get("unpriced_calls", 0)
    return f", cost ${totals['cost_usd']:.4f}" + (f" ({unpriced} unpriced calls not counted)" if unpriced else "")


def format_table(report: Mapping[str, Any], *, max_rows: int = 30) -> str:
    """A short table: one row per stage, and one summary row per fan-out's branches."""
    run = report["run"]
    totals = report["totals"]
    lines = [
        f"run {report['workflow']['name']}: {run['status']} in {run['wall_s']:.3f} s on {run['loop']}; "
        f"{_calls_text(*agent_calls(report))}, tokens in/out {totals['tokens_in']}/{totals['tokens_out']}"
        + cost_text(totals)
    ]
    rows: list[tuple[str, ...]] = [("node", "kind", "status", "start", "1st tok", "end", "secs")]
    for entry in group_nodes(report["nodes"]):
        if isinstance(entry, Mapping):
            rows.append(_row(entry, entry["id"]))
            continue
        stage, spans = entry
        if len(spans) <= 3:
            rows.extend(_row(s, s["id"]) for s in spans)
            continue
        durations = [s["end_s"] - s["start_s"] for s in spans if s["end_s"] is not None and s["start_s"] is not None]
        p50 = median(durations) if durations else None
        rows.append(
            (
                f"{stage} x{len(spans)}",
                "branches",
                count_statuses(spans),
                "",
                "",
                "",
                f"p50 {_fmt(p50)} max {_fmt(max(durations))}" if durations else "",
            )
        )
    shown = rows[: max_rows + 1]
    widths = [max(len(r[i]) for r in shown) for i in range(len(shown[0]))]
    for r in shown:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    if len(rows) > len(shown):
        lines.append(f"... {len(rows) - len(shown)} more rows in the JSON report")
    return "\n".join(lines)


def _row(span: Mapping[str, Any], label: str) -> tuple[str, ...]:
    start, end = span.get("start_s"), span.get("end_s")
    secs = end - start if start is not None and end is not None else None
    return (
        label,
        span.get("kind", ""),
        node_status(span),
        _fmt(start),
        _fmt(span.get("first_token_s")),
        _fmt(end),
        _fmt(secs),
    )


def format_summary(report: Mapping[str, Any]) -> str:
    """The table, then where the time went on the critical path, then the bottlenecks."""
    lines = [format_table(report)]
    resumed = report["run"].get("resumed")
    if resumed is not None:
        n = resumed["restored_nodes"]
        nodes = f"{n} node{'' if n == 1 else 's'}"
        lines.append(f"resumed from {resumed['folder']}: {nodes} from the checkpoint, not run again")
    path = report["critical_path"]
    wall = report["run"]["wall_s"]
    if path["nodes"]:
        lines.append("critical path: " + " -> ".join(path["nodes"]))
    parts = [
        f"{c.replace('_', ' ')} {path['time_s'][c]:.3f} s ({path['share'].get(c, 0.0):.0%})"
        for c in CATEGORIES
        if path["time_s"].get(c, 0) > 0  # a report written before a category existed (gates) has none
    ]
    if parts:
        lines.append(f"of the {wall:.3f} s: " + ", ".join(parts))
    for name, m in report["models"].items():
        lat, ttft = m["latency_s"], m["ttft_s"]
        calls = f"{m['calls']} call{'s' if m['calls'] != 1 else ''} ({m['requests']} request"
        parts = [calls + ("s)" if m["requests"] != 1 else ")")]
        if lat["p50"] is not None:
            parts.append(f"latency p50 {_num(lat['p50'])} p95 {_num(lat['p95'])} max {_num(lat['max'])} s")
        else:  # latencies are those of successful calls
            parts.append("no call succeeded" if m["calls"] else "no call made")
        if ttft["p50"] is not None:
            parts.append(f"first token p50 {_num(ttft['p50'])} p95 {_num(ttft['p95'])} s")
        if m["tokens_per_s"] is not None:
            parts.append(f"{m['tokens_per_s']:.0f} tokens/s")
        if "cost_usd" in m:
            parts.append(f"${m['cost_usd']:.4f}")
        if m["retries"]:
            parts.append("retries " + ", ".join(f"{c} x{n}" for c, n in m["retries"].items()))
        for key, label in (("pool_wait", "pool wait"), ("rate_wait", "rate-limit wait")):
            if m[key]["count"]:
                parts.append(f"{label} {m[key]['total_s']:.3f} s over {m[key]['count']}")
        lines.append(f"model {name}: " + ", ".join(parts))
    for name, server in report.get("mcp_servers", {}).items():  # beside the tool spans that name them (issue 22)
        restarts = server["restarts"]
        again = f", restarted {restarts} time{'s' if restarts != 1 else ''} after a crash" if restarts else ""
        tools = f"{server['tools']} tool{'s' if server['tools'] != 1 else ''}"
        lines.append(
            f"mcp server {name}: started in {server['startup_s']:.3f} s ({server['transport']}, {tools}){again}"
        )
    for i, b in enumerate(report["bottlenecks"], 1):
        lines.append(f"bottleneck {i}: {b['message']}")
    lines.extend(outcomes(report))  # what ended each loop, which case each switch ran
    return "\n".join(lines)


def to_text(report: Mapping[str, Any]) -> str:
    """The summary as the ``text`` format prints it: :func:`format_summary` and a newline."""
    return format_summary(report) + "\n"
