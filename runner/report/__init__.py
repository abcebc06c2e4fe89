"""The timing report: events -> a JSON document (``schemas/report.schema.json``) and a terminal table."""

from __future__ import annotations

import json
import platform
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner.events import Recorder
from runner.fsutil import atomic_write_text
from runner.providers.base import ChatResult

REPORT_VERSION = 1


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    workflow: str
    file: str
    sha256: str
    started_at: datetime
    t0: float  # perf_counter at the start
    loop: str
    inputs: Mapping[str, Any]


def build_report(info: RunInfo, recorder: Recorder, *, status: str, end: float, error: str | None) -> dict[str, Any]:
    from runner import __version__  # noqa: PLC0415

    t0 = info.t0
    nodes: dict[str, dict[str, Any]] = {}
    for at, kind, node_id, data in recorder.events:
        span = nodes.get(node_id)
        if span is None:
            span = nodes[node_id] = {
                "id": node_id,
                "kind": "agent",
                "status": "running",
                "queued_s": None,
                "start_s": None,
                "first_token_s": None,
                "end_s": None,
            }
        rel = round(at - t0, 6)
        if kind == "queued":
            span["queued_s"] = rel
        elif kind == "started":
            span["start_s"] = rel
            if span["queued_s"] is None:
                span["queued_s"] = rel
            if data:
                span.update(data)
        elif kind == "skipped":
            span["status"] = "skipped"
            if data:
                span.update(data)
        elif kind in ("finished", "failed", "cancelled"):
            span["end_s"] = rel
            span["status"] = {"finished": "ok", "failed": "failed", "cancelled": "cancelled"}[kind]
            if isinstance(data, ChatResult):
                first = data.first_token_at
                span["first_token_s"] = round(first - t0, 6) if first is not None else None
                span["tokens_in"] = data.usage.prompt_tokens
                span["tokens_out"] = data.usage.completion_tokens
                span["attempts"] = data.attempts
            elif data:
                span.update(data)
    spans = list(nodes.values())
    for span in spans:
        if span["status"] == "running":  # never finished: the run stopped under it
            span["status"] = "cancelled" if status == "interrupted" else "unfinished"
    wall = round(end - t0, 6)
    return {
        "report_version": REPORT_VERSION,
        "runner_version": __version__,
        "workflow": {"name": info.workflow, "file": info.file, "sha256": info.sha256},
        "run": {
            "id": info.run_id,
            "started_at": info.started_at.isoformat().replace("+00:00", "Z"),
            "status": status,
            "error": error,
            "wall_s": wall,
            "loop": info.loop,
            "python": platform.python_version(),
            "inputs": dict(info.inputs),
        },
        "totals": {
            "nodes": len(spans),
            "agents": sum(1 for s in spans if s["kind"] == "agent"),
            "tokens_in": sum(s.get("tokens_in", 0) for s in spans),
            "tokens_out": sum(s.get("tokens_out", 0) for s in spans),
        },
        "nodes": spans,
    }


def report_path(directory: str | Path, info: RunInfo) -> Path:
    stamp = info.started_at.strftime("%Y%m%dT%H%M%S") + f".{info.started_at.microsecond // 1000:03d}Z"
    return Path(directory) / f"{info.workflow}-{stamp}.json"


def write_report(report: Mapping[str, Any], path: Path) -> Path:
    atomic_write_text(path, json.dumps(report, indent=1, ensure_ascii=False, default=str) + "\n")
    return path


def now_utc() -> datetime:
    return datetime.now(UTC)


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def format_table(report: Mapping[str, Any], *, max_rows: int = 30) -> str:
    """A short table: one row per stage, and one summary row per fan-out's branches."""
    run = report["run"]
    totals = report["totals"]
    lines = [
        f"run {report['workflow']['name']}: {run['status']} in {run['wall_s']:.3f} s on {run['loop']}; "
        f"{totals['agents']} agent calls, tokens in/out {totals['tokens_in']}/{totals['tokens_out']}"
    ]
    rows: list[tuple[str, ...]] = [("node", "kind", "status", "start", "1st tok", "end", "secs")]
    groups: dict[str, list[Mapping[str, Any]]] = {}
    order: list[str | Mapping[str, Any]] = []  # a span, or a group's name where its first span stood
    for span in report["nodes"]:
        node = span["id"]
        if "[" not in node:
            order.append(span)
            continue
        group = node[: node.index("[")]
        if group not in groups:
            groups[group] = []
            order.append(group)
        groups[group].append(span)
    for entry in order:
        if not isinstance(entry, str):
            rows.append(_row(entry, entry["id"]))
            continue
        stage, spans = entry, groups[entry]
        if len(spans) <= 3:
            rows.extend(_row(s, s["id"]) for s in spans)
            continue
        durations = [s["end_s"] - s["start_s"] for s in spans if s["end_s"] is not None and s["start_s"] is not None]
        ok = sum(1 for s in spans if s["status"] == "ok")
        p50 = statistics.median(durations) if durations else None
        rows.append(
            (
                f"{stage}[*] x{len(spans)}",
                "branches",
                f"{ok} ok",
                "",
                "",
                "",
                f"p50 {_fmt(p50)} max {_fmt(max(durations) if durations else None)}",
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
        span["status"],
        _fmt(start),
        _fmt(span.get("first_token_s")),
        _fmt(end),
        _fmt(secs),
    )
