"""The Markdown summary written beside the JSON report: readable in a pull request or
``$GITHUB_STEP_SUMMARY``. Built from the JSON document alone."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from runner.report.critical_path import CATEGORIES, CATEGORY_LABELS
from runner.report.nodes import agent_calls, count_statuses, group_nodes, node_status, outcomes
from runner.report.stats import median
from runner.report.summary import cost_text


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _calls_fact(made: int, waiting: int, requests: int, retries: int) -> str:
    never = f", {waiting} never started" if waiting else ""
    return f"{made}{never} ({requests} requests, {retries} retries)"


def _several(*values: Any) -> str:
    """Figures that share a cell (``p50 / p95 / max``): empty when none is known, ``-`` for one that is not."""
    if all(v is None for v in values):
        return ""
    return " / ".join(_cell(v) or "-" for v in values)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], right_from: int = 1) -> list[str]:
    align = ["---" if i < right_from else "---:" for i in range(len(header))]
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return out


def to_markdown(report: Mapping[str, Any], *, max_node_rows: int = 40) -> str:
    run, wf, totals = report["run"], report["workflow"], report["totals"]
    lines = [f"# Run `{wf['name']}`: {run['status']} in {run['wall_s']:.3f} s", ""]
    facts: list[tuple[str, Any]] = [
        ("workflow", f"`{wf['file']}` (sha256 `{wf['sha256'][:12]}`)"),
        ("run", f"`{run['id']}`, started {run['started_at']}"),
        ("runner", f"{report['runner_version']}, Python {run['python']}, {run['loop']}"),
    ]
    if run["error"]:
        facts.append(("error", run["error"]))
    facts += [
        ("agent calls", _calls_fact(*agent_calls(report), totals["requests"], totals["retries"])),
        ("tokens in / out", f"{totals['tokens_in']} / {totals['tokens_out']}"),
        ("in-flight requests", f"peak {report['concurrency']['peak']}, mean {report['concurrency']['mean']:g}"),
    ]
    if "cost_usd" in totals:  # a model declares pricing
        facts.append(("cost", cost_text(totals).removeprefix(", cost ")))
    lines += _table(["", ""], facts, right_from=2)
    path = report["critical_path"]
    lines += ["", "## Where the time went", ""]
    if path["nodes"]:
        lines += ["Critical path: " + " → ".join(f"`{n}`" for n in path["nodes"]), ""]
    rows = [
        (CATEGORY_LABELS[c], path["time_s"][c], f"{path['share'].get(c, 0.0):.1%}")
        for c in CATEGORIES
        if path["time_s"].get(c, 0) > 0  # a report written before a category existed (gates) has none
    ]
    lines += _table(["on the critical path", "seconds", "share of wall time"], rows)
    if report["bottlenecks"]:
        lines += ["", "## Bottlenecks", ""]
        lines += [f"{i}. {b['message']}" for i, b in enumerate(report["bottlenecks"], 1)]
    ended = outcomes(report)
    if ended:
        lines += ["", "## Loops and switches", ""]
        lines += [f"- {line}" for line in ended]
    gates = report["run"].get("gates")
    if gates:  # issue 23: who decided at each human gate, and why
        lines += ["", "## Human gates", ""]
        decided = [(f"`{g['stage']}`", g["kind"], g["decision"], g["by"] or "-", g["reason"] or "-") for g in gates]
        lines += _table(["gate", "kind", "decision", "by", "reason"], decided, right_from=5)
    if report["models"]:
        lines += ["", "## Models", ""]
        header = [
            "model",
            "calls",
            "requests",
            "latency p50 / p95 / max s",
            "TTFT p50 / p95 s",
            "tokens/s",
            "retries",
            "pool wait s",
            "rate wait s",
        ]
        mrows = []
        for name, m in report["models"].items():
            lat, ttft = m["latency_s"], m["ttft_s"]
            retries = ", ".join(f"{c} x{n}" for c, n in m["retries"].items()) or "0"
            mrows.append(
                (
                    f"`{name}`" + (f" ({m['model']})" if m.get("model") else ""),
                    m["calls"],
                    m["requests"],
                    _several(lat["p50"], lat["p95"], lat["max"]),
                    _several(ttft["p50"], ttft["p95"]),
                    m["tokens_per_s"],
                    retries,
                    float(m["pool_wait"]["total_s"]),  # seconds, also when a total of none is written as 0
                    float(m["rate_wait"]["total_s"]),
                )
            )
        lines += _table(header, mrows)
    lines += _budget_section(report)
    lines += _mcp_section(report)
    lines += ["", "## Nodes", ""]
    nrows: list[tuple[Any, ...]] = []
    for entry in group_nodes(report["nodes"]):
        spans = [entry] if isinstance(entry, Mapping) else entry[1]
        if isinstance(entry, Mapping) or len(spans) <= 3:
            nrows += [_node_row(s) for s in spans]
            continue
        durations = [s["end_s"] - s["start_s"] for s in spans if s["end_s"] is not None and s["start_s"] is not None]
        waits = [s["queue_wait_s"] for s in spans if s.get("queue_wait_s") is not None]
        nrows.append(
            (
                f"`{entry[0]}` x{len(spans)}",
                spans[0]["kind"],
                spans[0].get("agent"),
                count_statuses(spans),
                "",
                "",
                f"p50 {median(durations):.3f}, max {max(durations):.3f}" if durations else "",
                f"max {max(waits):.3f}" if waits else "",
                sum(s.get("attempts", 0) for s in spans),
                f"{sum(s.get('tokens_in', 0) for s in spans)} / {sum(s.get('tokens_out', 0) for s in spans)}",
            )
        )
    header = [
        "node",
        "kind",
        "agent",
        "status",
        "start s",
        "end s",
        "seconds",
        "queue wait s",
        "attempts",
        "tokens in / out",
    ]
    lines += _table(header, nrows[:max_node_rows], right_from=4)
    if len(nrows) > max_node_rows:
        lines += ["", f"{len(nrows) - max_node_rows} more rows in the JSON report."]
    if report["cache"]:
        lines += ["", "## Embedding cache", ""]
        lines += _table(
            ["embedder", "hits", "misses", "evictions", "bytes read", "bytes written"],
            [
                (
                    f"`{k}`",
                    v.get("hits"),
                    v.get("misses"),
                    v.get("evictions"),
                    v.get("bytes_read"),
                    v.get("bytes_written"),
                )
                for k, v in report["cache"].items()
            ],
        )
    if report["memory"]:
        lines += ["", "## Working memory", ""]
        lines += _table(
            ["agent", "tokens before", "tokens after", "summaries", "compactions"],
            [
                (f"`{k}`", v.get("tokens_before"), v.get("tokens_after"), v.get("summaries"), v.get("compactions"))
                for k, v in report["memory"].items()
            ],
        )
    return "\n".join(lines) + "\n"


def _node_row(s: Mapping[str, Any]) -> tuple[Any, ...]:
    start, end = s.get("start_s"), s.get("end_s")
    tokens = _several(s.get("tokens_in"), s.get("tokens_out"))
    status = node_status(s) + (f": {s['error']}" if s.get("error") else "")
    return (
        f"`{s['id']}`",
        s["kind"],
        s.get("agent"),
        status,
        start,
        end,
        end - start if start is not None and end is not None else None,
        s.get("queue_wait_s") or None,
        s.get("attempts"),
        tokens,
    )


def _budget_section(report: Mapping[str, Any]) -> list[str]:
    """Cost by agent and by stage, the limits and the fallback moves (issue 23), for what the report has."""
    costs, limits, moved = report.get("costs"), report["run"].get("limits"), report.get("fallbacks")
    if not costs and not limits and not moved:
        return []
    lines = ["", "## Cost, limits and fallbacks", ""]
    if limits:
        stopped = limits.get("stopped_by")
        said = [f"limits ({limits['mode']}): " + ", ".join(f"{k} {v:g}" for k, v in limits["settings"].items())]
        if stopped:
            said.append(f"stopped by `{stopped['limit']}` at {stopped['reached']:g} (limit {stopped['setting']:g})")
        said += [f"crossed `{w['limit']}` at {w['reached']:g} (limit {w['setting']:g})" for w in limits["warnings"]]
        lines += [f"- {line}" for line in said] + [""]
    if moved:
        lines += [
            f"- calls moved from `{model}` to its fallback: " + ", ".join(f"{c} x{n}" for c, n in causes.items())
            for model, causes in moved.items()
        ] + [""]
    for group in ("agents", "stages"):
        entries = costs[group].items() if costs else ()
        rows = [(f"`{name}`", c["calls"], f"${c['cost_usd']:.4f}", c["unpriced_calls"]) for name, c in entries]
        if rows:
            lines += _table([group[:-1], "calls", "cost", "unpriced calls"], rows) + [""]
    return lines[:-1] if lines[-1] == "" else lines


def _mcp_section(report: Mapping[str, Any]) -> list[str]:
    """The MCP servers the run started (issue 22): how, how fast, how often they were restarted, and the tool calls
    the run sent each (from the tool nodes that name their server)."""
    servers = report.get("mcp_servers")
    if not servers:
        return []
    rows = []
    for name, server in servers.items():
        calls = [n for n in report["nodes"] if n.get("kind") == "tool" and n.get("server") == name]
        took = sorted(
            n["end_s"] - n["start_s"] for n in calls if n.get("start_s") is not None and n.get("end_s") is not None
        )
        failed = sum(node_status(n) != "ok" for n in calls)
        rows.append(
            (
                f"`{name}`",
                server["transport"],
                server["tools"],
                float(server["startup_s"]),
                server["restarts"],
                len(calls),
                failed,
                _several(median(took) if took else None, took[-1] if took else None),
            )
        )
    header = ["server", "transport", "tools", "started in s", "restarts", "calls", "failed", "call p50 / max s"]
    return ["", "## MCP servers", ""] + _table(header, rows, right_from=2)
