"""The report document: a run's events -> the JSON document of ``schemas/report.schema.json``, and its JSON text.

Every other form of the report (:mod:`runner.report.formats`) is drawn from this document alone, so
``runner report FILE`` shows a saved run as the run itself did.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from runner.events import Recorder
from runner.report.advice import Analysis, bottlenecks
from runner.report.critical_path import CATEGORIES, critical_path, summarize_path
from runner.report.layout import Layout
from runner.report.spans import add_branch_spans, collect, span_dict, stats_from_events
from runner.report.stats import concurrency, endpoint_stats, model_stats
from runner.secrets import redact

REPORT_VERSION = 2
REDACTED = "[redacted]"


@dataclass(frozen=True)
class RunInfo:
    """What the report knows of a run from its start: its id, the workflow (name, file, sha256), the UTC start,
    the event loop, the inputs and the workflow's layout. Every span's time counts from ``t0``."""

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


def platform_name() -> str:
    """What ``platform.platform(terse=True)`` says on a POSIX system, without what it costs there: a
    ``uname -p`` subprocess and a scan of the interpreter's binary for its C library (about 3 ms a run)."""
    if not hasattr(os, "uname"):
        import platform  # noqa: PLC0415 - cheap where there is no uname (Windows)

        return platform.platform(terse=True)
    name = os.uname()
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""  # "glibc 2.36"; musl and macOS have none
    except (ValueError, OSError):
        libc = ""
    suffix = f"-with-{libc.replace(' ', '')}" if libc else ""
    return f"{name.sysname}-{name.release}-{name.machine}{suffix}"


def _cost(models: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The priced models' cost and the calls left out of it, when any model declares pricing (else nothing)."""
    priced = [m["cost_usd"] for m in models.values() if "cost_usd" in m]
    if not priced:
        return {}
    unpriced = sum(m["calls"] for m in models.values() if "cost_usd" not in m)
    return {"cost_usd": round(sum(priced), 6), "unpriced_calls": unpriced}


def _limits(events: Sequence[Any]) -> dict[str, Any]:
    """``limits``: the run's budget (issue 23; :mod:`runner.engine.budget`), the limit that stopped the run and
    the audit's warnings, when the workflow has ``limits`` (else nothing)."""
    section: dict[str, Any] | None = None
    for _, kind, _, data in events:
        if kind == "limits":
            section = {**data, "stopped_by": None, "warnings": []}
        elif section is not None and kind == "limit_reached" and section["stopped_by"] is None:
            section["stopped_by"] = {k: data[k] for k in ("limit", "setting", "reached")}
        elif section is not None and kind == "limit_warning":
            section["warnings"].append(dict(data))
    return {} if section is None else {"limits": section}


def _gates(events: Sequence[Any]) -> dict[str, Any]:
    """``gates``: the human gates the run reached, in order, with what was decided, by whom and why (issue 23;
    the ``gate`` events of :mod:`runner.engine.gates`), when it reached any (else nothing)."""
    gates = [
        {
            "stage": node,
            "kind": data["kind"],
            "decision": data["decision"],
            "by": data.get("by"),
            "reason": None if data.get("reason") is None else redact(str(data["reason"])),
        }
        for _, kind, node, data in events
        if kind == "gate"
    ]
    return {"gates": gates} if gates else {}


def _resumed(events: Sequence[Any]) -> dict[str, Any]:
    """``resumed``: for a run resumed from its checkpoint (issue 23), the run folder and how many nodes came from
    the checkpoint rather than running (each such node says ``from_checkpoint``); else nothing."""
    section: dict[str, Any] | None = None
    restored = 0
    for _, kind, _, data in events:
        if kind == "resumed":
            section = {"folder": str(data["folder"])}
        elif kind == "restored":
            restored += 1
    return {} if section is None else {"resumed": {**section, "restored_nodes": restored}}


def _fallbacks(events: Sequence[Any]) -> dict[str, Any]:
    """``fallbacks``: by model, the calls that moved from it to a fallback model, by cause (issue 23), when
    any did (else nothing)."""
    counts: dict[str, dict[str, int]] = {}
    for _, kind, _, data in events:
        if kind == "fallback":
            by_cause = counts.setdefault(str(data["model"]), {})
            by_cause[str(data["cause"])] = by_cause.get(str(data["cause"]), 0) + 1
    return {"fallbacks": {m: dict(sorted(c.items())) for m, c in sorted(counts.items())}} if counts else {}


def _mcp_servers(events: Sequence[Any]) -> dict[str, Any]:
    """``mcp_servers``: by name, the MCP servers the run started (issue 22), when it started any (else nothing)."""
    servers: dict[str, dict[str, Any]] = {}
    for _, kind, name, data in events:
        if kind == "mcp_server":
            if name in servers:
                servers[name]["restarts"] = int(data.get("restart") or 0)
            else:
                servers[name] = {
                    "transport": data["transport"],
                    "startup_s": data["startup_s"],
                    "tools": data["tools"],
                    "restarts": int(data.get("restart") or 0),
                }
            if "pid" in data:
                servers[name].setdefault("pids", []).append(data["pid"])
    return {"mcp_servers": dict(sorted(servers.items()))} if servers else {}


def _costs(spans: Mapping[str, Any], layout: Layout) -> dict[str, Any]:
    """``costs``: the agent calls' cost by agent and by stage (a fan-out's or loop's branches under its id),
    when any model declares pricing; a group with an unpriced call says how many (its cost leaves them out)."""
    shapes = layout.models
    if not any(shape.pricing is not None for shape in shapes.values()):
        return {}
    by: dict[str, dict[str, dict[str, Any]]] = {"agents": {}, "stages": {}}
    for span in spans.values():
        if span.kind != "agent" or span.model is None or span.start is None:
            continue
        shape = shapes.get(span.model)
        pricing = shape.pricing if shape is not None else None
        tokens_in, tokens_out = span.tokens_in or 0, span.tokens_out or 0
        stage = _TOP.split(_BRANCH.sub("", span.id), 1)[0]  # fan[3]/inner, loop[0].x: under fan, loop
        for section, key in (("agents", span.agent or "?"), ("stages", stage)):
            entry = by[section].setdefault(key, {"calls": 0, "cost_usd": 0.0, "unpriced_calls": 0})
            entry["calls"] += 1
            if pricing is None:
                entry["unpriced_calls"] += 1
            else:
                entry["cost_usd"] += pricing.cost(tokens_in, tokens_out, span.tokens_cached)
    for group in by.values():
        for entry in group.values():
            entry["cost_usd"] = round(entry["cost_usd"], 6)
    return {"costs": {name: dict(sorted(group.items())) for name, group in by.items()}}


_BRANCH = re.compile(r"\[[^\]]*\]")
_TOP = re.compile(r"[/.]")


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
    from runner.version import __version__  # noqa: PLC0415

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
            "python": sys.version.split()[0],  # what platform.python_version() says
            "platform": platform_name(),
            "recorded": recorder.enabled,
            "inputs": redact_inputs(dict(info.inputs)),
            **_limits(recorder.events),
            **_gates(recorder.events),
            **_resumed(recorder.events),
        },
        "totals": {
            "nodes": len(nodes),
            "agents": len(agents),
            "tokens_in": sum(n.get("tokens_in", 0) for n in agents),
            "tokens_out": sum(n.get("tokens_out", 0) for n in agents),
            "requests": sum(m["requests"] for m in models.values()),
            "retries": sum(n["retries"] for n in agents),
            **_repairs(agents),
            **_cost(models),
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
        **_costs(spans, info.layout),
        **_fallbacks(recorder.events),
        **_mcp_servers(recorder.events),
        "endpoints": endpoint_stats(endpoints),
        "concurrency": concurrency(spans, wall),
        "cache": cache_section,
        "memory": _stats_section(memory, "agent") or recorded_memory,
        "nodes": nodes,
    }


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


def to_json(report: Mapping[str, Any]) -> str:
    """The JSON report's file: :func:`report_json` and a newline."""
    return report_json(report) + "\n"


def now_utc() -> datetime:
    return datetime.now(UTC)


def _repairs(agents: list[dict[str, Any]]) -> dict[str, int]:
    """``repairs``: the repair turns of structured outputs in the run (issue 16), when there were any."""
    total = sum(n.get("repairs", 0) for n in agents)
    return {"repairs": total} if total else {}
