"""The timing report: events -> a JSON document (``schemas/report.schema.json``), and from that document a
Markdown summary (:mod:`runner.report.markdown`), a Chrome trace (:mod:`runner.report.trace`), an HTML page with
the waterfall (:mod:`runner.report.html`), the terminal table and the comparison of two runs
(:mod:`runner.report.diff`).

Everything derives from the JSON document, so ``runner report FILE`` can show a saved run as the run itself
did. Every file is written atomically (a temporary file renamed into place).
"""

from __future__ import annotations

import json
import platform
import re
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner.errors import RunError
from runner.events import Recorder
from runner.fsutil import atomic_write_text
from runner.report.advice import Analysis, bottlenecks
from runner.report.critical_path import CATEGORIES, critical_path, summarize_path
from runner.report.layout import Layout, describe_workflow
from runner.report.spans import add_branch_spans, collect, span_dict, stats_from_events
from runner.report.stats import concurrency, endpoint_stats, model_stats
from runner.secrets import redact

__all__ = [
    "REPORT_VERSION",
    "FORMATS",
    "Layout",
    "ReportWriteError",
    "RunInfo",
    "agent_calls",
    "build_report",
    "count_statuses",
    "describe_workflow",
    "format_summary",
    "format_table",
    "node_status",
    "now_utc",
    "redact_inputs",
    "report_path",
    "write_outputs",
    "write_report",
]

REPORT_VERSION = 2
FORMATS = ("json", "markdown", "trace", "html")
REDACTED = "[redacted]"


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
    layout: Layout = field(default_factory=Layout)


_SECRET_WORDS = frozenset(
    {"key", "apikey", "token", "secret", "secrets", "password", "passwd", "pwd", "credential", "credentials", "auth"}
)
_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")


def is_secret_name(name: str) -> bool:
    """``api_key``, ``OPENAI_API_KEY``, ``accessToken``, ``db-password``: yes; ``max_tokens``, ``keywords``: no."""
    words = [w.lower() for w in _WORDS.findall(name)]
    return any(w in _SECRET_WORDS for w in words) or "apikey" in "".join(words)


def redact_inputs(value: Any) -> Any:
    """Inputs as the report keeps them: anything under a name that looks like a secret is ``[redacted]``."""
    if isinstance(value, Mapping):
        return {k: REDACTED if is_secret_name(str(k)) else redact_inputs(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_inputs(v) for v in value]
    return value


def _stats_section(given: Mapping[str, Any] | Sequence[Any] | None, key: str) -> dict[str, dict[str, Any]]:
    """Stats objects (with ``as_dict()``) or dicts, in a list (named by their ``key`` field) or a mapping."""
    if not given:
        return {}
    items: list[tuple[str, Any]]
    if isinstance(given, Mapping):
        items = list(given.items())
    else:
        items = []
        for obj in given:
            as_dict = obj.as_dict() if hasattr(obj, "as_dict") else dict(obj)
            items.append((str(as_dict[key]), obj))
    out: dict[str, dict[str, Any]] = {}
    for name, obj in sorted(items, key=lambda kv: kv[0]):
        out[name] = dict(obj.as_dict() if hasattr(obj, "as_dict") else obj)
    return out


def build_report(
    info: RunInfo,
    recorder: Recorder,
    *,
    status: str,
    end: float,
    error: str | None,
    cache: Mapping[str, Any] | Sequence[Any] | None = None,
    memory: Mapping[str, Any] | Sequence[Any] | None = None,
) -> dict[str, Any]:
    """The report of one run. ``cache``: per-embedder cache stats (``EmbeddingStats`` or dicts);
    ``memory``: per-agent working-memory stats (``MemoryStats`` or dicts). Without them, the ``cache_stats``
    and ``memory_stats`` events recorded during the run fill these sections."""
    from runner import __version__  # noqa: PLC0415

    wall = max(0.0, end - info.t0)
    spans, endpoints = collect(recorder.events, info.t0)
    for span in spans.values():
        if span.status == "running":  # never finished: the run stopped under it
            span.status = "cancelled" if status == "interrupted" else "unfinished"
    add_branch_spans(spans, info.layout, status)
    recorded_cache, recorded_memory = stats_from_events(recorder.events)
    steps = critical_path(info.layout, spans, wall)
    summary = summarize_path(steps, wall)
    nodes = [span_dict(s) for s in spans.values()]
    agents = [n for n in nodes if n["kind"] == "agent"]
    models = model_stats(spans, info.layout.models)
    cache_section = _stats_section(cache, "embedder") or recorded_cache
    return {
        "report_version": REPORT_VERSION,
        "runner_version": __version__,
        "workflow": {"name": info.workflow, "file": info.file, "sha256": info.sha256},
        "run": {
            "id": info.run_id,
            "started_at": info.started_at.isoformat().replace("+00:00", "Z"),
            "status": status,
            "error": None if error is None else redact(error),
            "wall_s": round(wall, 6),
            "loop": info.loop,
            "python": platform.python_version(),
            "platform": platform.platform(terse=True),
            "recorded": recorder.enabled,
            "inputs": redact_inputs(dict(info.inputs)),
        },
        "totals": {
            "nodes": len(nodes),
            "agents": len(agents),
            "tokens_in": sum(n.get("tokens_in", 0) for n in agents),
            "tokens_out": sum(n.get("tokens_out", 0) for n in agents),
            "requests": sum(m["requests"] for m in models.values()),
            "retries": sum(n["retries"] for n in agents),
        },
        "critical_path": {
            "nodes": [s.node for s in steps],
            "steps": [
                {
                    "node": s.node,
                    "kind": s.kind,
                    "start_s": round(s.start, 6),
                    "end_s": round(s.end, 6),
                    **{f"{c}_s": round(s.time.get(c, 0.0), 6) for c in CATEGORIES if c != "overhead"},
                }
                for s in steps
            ],
            "time_s": {c: round(summary.time[c], 6) for c in CATEGORIES},
            "share": {c: round(summary.time[c] / wall, 4) if wall > 0 else 0.0 for c in CATEGORIES},
        },
        "bottlenecks": bottlenecks(Analysis(summary, spans, info.layout, wall, cache_section)),
        "models": models,
        "endpoints": endpoint_stats(endpoints),
        "concurrency": concurrency(spans, wall),
        "cache": cache_section,
        "memory": _stats_section(memory, "agent") or recorded_memory,
        "nodes": nodes,
    }


def report_path(directory: str | Path, info: RunInfo) -> Path:
    stamp = info.started_at.strftime("%Y%m%dT%H%M%S") + f".{info.started_at.microsecond // 1000:03d}Z"
    return Path(directory) / f"{info.workflow}-{stamp}.json"


def write_report(report: Mapping[str, Any], path: Path) -> Path:
    """The JSON report at ``path``, atomically; raises :class:`~runner.fsutil.WriteError` when it cannot be."""
    atomic_write_text(path, redact(report_json(report)) + "\n")  # every writer redacts what it writes
    return path


def report_json(report: Mapping[str, Any]) -> str:
    """The report as indented JSON, except that each of its ``nodes`` is one line.

    Python's C encoder does not indent, and its pure-Python one took 185 ms for a 10,000-node report
    (3.5 MB); one line a node takes 55 ms, and a long report reads better for it."""
    nodes = report.get("nodes")
    if not isinstance(nodes, list) or not nodes:
        return json.dumps(report, indent=1, ensure_ascii=False, default=str)
    marker = "runner-report-nodes-0f5c3e"  # stands for the list in the indented rest, then is replaced
    head = json.dumps({**report, "nodes": marker}, indent=1, ensure_ascii=False, default=str)
    encode = json.JSONEncoder(ensure_ascii=False, default=str).encode
    body = "[\n  " + ",\n  ".join(encode(node) for node in nodes) + "\n ]"
    before, found, after = head.rpartition(json.dumps(marker))
    assert found, "the marker is in the head"
    return before + body + after


class ReportWriteError(RunError):
    """Some of a run's report files could not be written; the others were. ``written`` lists the files
    written (the JSON report first when it was), ``failures`` each file that was not with its cause."""

    def __init__(self, written: Sequence[Path], failures: Sequence[tuple[Path, BaseException]]) -> None:
        self.written = list(written)
        self.failures = list(failures)
        super().__init__("\n".join(_failure_message(path, exc) for path, exc in self.failures))

    @property
    def is_bug(self) -> bool:
        """Whether a writer failed with something other than the file system's error: a bug in runner."""
        return any(not isinstance(exc, OSError) for _, exc in self.failures)


_WHAT = {".md": "the Markdown summary", ".trace.json": "the trace", ".html": "the waterfall", ".json": "the report"}


def _failure_message(path: Path, exc: BaseException) -> str:
    what = next(label for suffix, label in _WHAT.items() if path.name.endswith(suffix))
    if isinstance(exc, OSError):
        cause = exc.strerror or str(exc)
        return f"could not write {what} {path}: {cause}"
    return f"could not write {what} {path}: {type(exc).__name__}: {exc} (a bug in runner; please report it)"


def write_outputs(report: Mapping[str, Any], path: Path, formats: Sequence[str] = ("json",)) -> list[Path]:
    """The JSON report at ``path`` (always) and, beside it with the same base name, ``.md`` for ``markdown``,
    ``.trace.json`` for ``trace`` and ``.html`` for ``html``. Returns the paths written, the JSON first.

    Each file is made and written on its own: one that fails (a full disk, a crash in its writer) never stops
    the others. When any failed, raises :class:`ReportWriteError` after writing all the others."""
    base = path.with_suffix("")
    jobs: list[tuple[Path, Callable[[], str]]] = [(path, lambda: report_json(report) + "\n")]
    # every writer's text is redacted (runner/secrets.py) before it reaches the disk
    if "markdown" in formats:
        from runner.report.markdown import to_markdown  # noqa: PLC0415

        jobs.append((base.with_name(base.name + ".md"), lambda: to_markdown(report)))
    if "trace" in formats:
        from runner.report.trace import to_trace  # noqa: PLC0415

        trace = base.with_name(base.name + ".trace.json")
        jobs.append((trace, lambda: json.dumps(to_trace(report), separators=(",", ":")) + "\n"))
    if "html" in formats:
        from runner.report.html import to_html  # noqa: PLC0415

        jobs.append((base.with_name(base.name + ".html"), lambda: to_html(report)))
    written: list[Path] = []
    failures: list[tuple[Path, BaseException]] = []
    for target, render in jobs:
        try:
            atomic_write_text(target, redact(render()))
        except Exception as exc:  # noqa: BLE001 - each writer on its own; every failure is reported below
            failures.append((target, exc))
        else:
            written.append(target)
    if failures:
        raise ReportWriteError(written, failures)
    return written


def now_utc() -> datetime:
    return datetime.now(UTC)


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def node_status(node: Mapping[str, Any]) -> str:
    """A node's status as a reader says it: ``timed out`` for a node that its stage's ``timeout`` stopped."""
    if node.get("status") == "failed" and node.get("timeout_s") is not None:
        return "timed out"
    return str(node.get("status", ""))


_STATUS_ORDER = ("ok", "failed", "timed out", "cancelled", "unfinished", "not started", "skipped")


def count_statuses(nodes: Sequence[Mapping[str, Any]]) -> str:
    """The statuses of many nodes (a fan-out's branches) in a few words: ``3 ok, 1 failed, 28 not started``."""
    counts: dict[str, int] = {}
    for node in nodes:
        status = node_status(node)
        if status in ("cancelled", "unfinished") and node.get("start_s") is None:
            status = "not started"  # the run or a failing sibling stopped it while it waited for a slot
        counts[status] = counts.get(status, 0) + 1
    order = {s: i for i, s in enumerate(_STATUS_ORDER)}
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items(), key=lambda kv: (order.get(kv[0], 99), kv[0])))


def agent_calls(report: Mapping[str, Any]) -> tuple[int, int]:
    """The agent calls made (agent nodes that started) and those that never started: an interrupted or failed
    run also has agent nodes still waiting for a fan-out slot, which made no request."""
    agents = [n for n in report["nodes"] if n.get("kind") == "agent"]
    if not agents:  # a report recorded without nodes: only the total is known
        return int(report["totals"]["agents"]), 0
    made = sum(1 for n in agents if n.get("start_s") is not None)
    skipped = sum(1 for n in agents if n.get("start_s") is None and n.get("status") == "skipped")  # by `when:`
    return made, len(agents) - made - skipped


def _num(value: float | None) -> str:
    """A figure in a sentence: ``-`` where it is unknown (a blank would read as a typo)."""
    return "-" if value is None else f"{value:.3f}"


def _calls_text(made: int, waiting: int) -> str:
    text = f"{made} agent call{'' if made == 1 else 's'}"
    return text + (f" ({waiting} never started)" if waiting else "")


def format_table(report: Mapping[str, Any], *, max_rows: int = 30) -> str:
    """A short table: one row per stage, and one summary row per fan-out's branches."""
    run = report["run"]
    totals = report["totals"]
    lines = [
        f"run {report['workflow']['name']}: {run['status']} in {run['wall_s']:.3f} s on {run['loop']}; "
        f"{_calls_text(*agent_calls(report))}, tokens in/out {totals['tokens_in']}/{totals['tokens_out']}"
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
        p50 = statistics.median(durations) if durations else None
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


_BRANCH_INDEX = re.compile(r"\[\d+(?:\.\d+)?\]")


def stage_key(node_id: str) -> str:
    """A node's stage with branch indices folded: ``notes[3]`` -> ``notes[*]``, ``per[1].first`` ->
    ``per[*].first``, ``digest.tool[0.1]`` -> ``digest.tool[*]``."""
    return _BRANCH_INDEX.sub("[*]", node_id)


def group_nodes(nodes: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any] | tuple[str, list[Mapping[str, Any]]]]:
    """Nodes in order, those of fan-out branches gathered under their stage key where the first of them stood."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    order: list[Mapping[str, Any] | tuple[str, list[Mapping[str, Any]]]] = []
    for span in nodes:
        key = stage_key(span["id"])
        if key == span["id"]:
            order.append(span)
            continue
        if key not in groups:
            groups[key] = []
            order.append((key, groups[key]))
        groups[key].append(span)
    return order


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
    path = report["critical_path"]
    wall = report["run"]["wall_s"]
    if path["nodes"]:
        lines.append("critical path: " + " -> ".join(path["nodes"]))
    parts = [
        f"{c.replace('_', ' ')} {path['time_s'][c]:.3f} s ({path['share'][c]:.0%})"
        for c in CATEGORIES
        if path["time_s"][c] > 0
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
        if m["retries"]:
            parts.append("retries " + ", ".join(f"{c} x{n}" for c, n in m["retries"].items()))
        for key, label in (("pool_wait", "pool wait"), ("rate_wait", "rate-limit wait")):
            if m[key]["count"]:
                parts.append(f"{label} {m[key]['total_s']:.3f} s over {m[key]['count']}")
        lines.append(f"model {name}: " + ", ".join(parts))
    for i, b in enumerate(report["bottlenecks"], 1):
        lines.append(f"bottleneck {i}: {b['message']}")
    return "\n".join(lines)
