"""The Chrome trace-event file (``.trace.json``): opens in Perfetto and ``chrome://tracing``.

Each node is a complete event (``ph: X``) from its queueing to its end. Nodes go on tracks ("lanes")
assigned greedily, so spans that overlap in time never share a track; inside an agent's span, on its
track, nest the wait for a fan-out slot, the attempts and back-offs of retries, the waits for the rate
limiter and a pool connection, and tool calls; the first token is an instant event. Times are integer
microseconds since the run started, so nesting is exact.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Mapping
from typing import Any

PID = 1


def _us(seconds: float) -> int:
    """Microseconds since the run started; never before it (trace viewers start the timeline at 0, and a
    report edited by hand, or written by a clock that stepped back, may hold a time below 0)."""
    return max(0, round(seconds * 1_000_000))


def assign_lanes(intervals: list[tuple[int, int]]) -> list[int]:
    """A lane per interval such that intervals on one lane never overlap (touching is fine): greedy by start,
    the lowest free lane first. O(n log n): a wide fan-out has as many lanes as branches in flight."""
    order = sorted(range(len(intervals)), key=lambda i: (intervals[i][0], -intervals[i][1], i))
    busy: list[tuple[int, int]] = []  # (end, lane), a heap
    free: list[int] = []  # lanes free again, a heap
    lanes = [0] * len(intervals)
    count = 0
    for i in order:
        begin, end = intervals[i]
        while busy and busy[0][0] <= begin:
            heapq.heappush(free, heapq.heappop(busy)[1])
        if free:
            lane = heapq.heappop(free)
        else:
            lane, count = count, count + 1
        lanes[i] = lane
        heapq.heappush(busy, (end, lane))
    return lanes


Item = tuple[str, str, int, int, dict[str, Any]]  # name, category, begin, end, args


def _sequence(items: list[Item], lo: int, hi: int) -> list[Item]:
    """``items`` in order of their begin, clamped into [lo, hi] and apart from each other; empty ones dropped."""
    out: list[Item] = []
    cursor = lo
    for name, cat, b, e, args in sorted(items, key=lambda i: (i[2], i[3])):
        b, e = max(b, cursor), min(e, hi)
        if e > b:
            out.append((name, cat, b, e, args))
            cursor = e
    return out


def agent_children(node: Mapping[str, Any], begin: int, end: int) -> list[tuple[Item, list[Item]]]:
    """The spans nested in an agent's span, each with the spans nested in it: the wait for a fan-out slot, each
    failed attempt (from where it began: the start, or the end of the tool call or back-off before it) and its
    back-off, the waits for the rate limiter and a pool connection, tool calls; after retries, the final attempt
    holds what happened during it."""
    start = node.get("start_s")
    if start is None:
        return [(item, []) for item in _sequence([("wait for a fan-out slot", "queue", begin, end, {})], begin, end)]
    s = _us(start)
    tools = [
        (f"tool {t['tool']}", "tool", _us(t["start_s"]), _us(t["end_s"]), {"ok": t["ok"]})
        for t in node.get("tool_spans", [])
    ]
    marks = [s] + [t[3] for t in tools]

    def began(at: int, extra: list[int]) -> int:
        return max(m for m in marks + extra + [s] if m <= at) if at >= s else s

    top: list[Item] = [("wait for a fan-out slot", "queue", begin, s, {})]
    windows: list[tuple[int, int]] = []
    retries = node.get("retry_events", [])
    for k, r in enumerate(retries, 1):
        at = _us(r["at_s"])
        attempt_begin = began(at, [w[1] for w in windows])
        back = at + _us(r["delay_s"])
        top.append((f"attempt {k} failed ({r['cause']})", "attempt", attempt_begin, at, {"cause": r["cause"]}))
        top.append(("back-off", "retry", at, back, {"delay_s": r["delay_s"]}))
        windows.append((attempt_begin, back))

    def outside(at: int) -> bool:
        return not any(b < at <= e for b, e in windows)

    waits: list[Item] = []
    rate_ends: list[int] = []
    for w in node.get("rate_waits", []):
        at = _us(w["at_s"])
        if outside(at):
            waits.append((f"rate limiter ({w['limit']})", "rate_limit", at - _us(w["wait_s"]), at, {}))
            rate_ends.append(at)
    for w in node.get("pool_waits", []):
        at = _us(w["at_s"])
        if outside(at):
            frm = began(at, [e for _, e in windows] + rate_ends)
            waits.append(("wait for a connection", "pool", frm, frm + _us(w["wait_s"]), {}))
    inner = waits + tools
    if not retries:
        return [(item, []) for item in _sequence(top + inner, begin, end)]
    final_begin = windows[-1][1]
    top.append((f"attempt {len(retries) + 1}", "attempt", final_begin, end, {}))
    top += [i for i in inner if i[2] < final_begin]  # before the last back-off: beside the attempts
    last = [i for i in inner if i[2] >= final_begin]
    out: list[tuple[Item, list[Item]]] = []
    for item in _sequence(top, begin, end):
        nested = _sequence(last, item[2], item[3]) if item[1] == "attempt" and "failed" not in item[0] else []
        out.append((item, nested))
    return out


def to_trace(report: Mapping[str, Any]) -> dict[str, Any]:
    wall = _us(report["run"]["wall_s"])
    ids = {n["id"] for n in report["nodes"]}
    nodes = [
        n
        for n in report["nodes"]
        if (n.get("queued_s") is not None or n.get("start_s") is not None)
        and not (n["kind"] == "tool" and n.get("parent") in ids)  # nested in its caller's span instead
    ]
    intervals = []
    for n in nodes:
        begin = _us(n["queued_s"] if n.get("queued_s") is not None else n["start_s"])
        end = _us(n["end_s"]) if n.get("end_s") is not None else wall
        intervals.append((begin, max(begin, end)))
    lanes = assign_lanes(intervals)
    name = f"runner: {report['workflow']['name']} ({report['run']['id']})"
    events: list[dict[str, Any]] = [
        {"name": "process_name", "ph": "M", "pid": PID, "tid": 0, "args": {"name": name}},
    ]
    for lane in sorted(set(lanes)):
        events.append(
            {"name": "thread_name", "ph": "M", "pid": PID, "tid": lane + 1, "args": {"name": f"lane {lane + 1}"}}
        )
        events.append(
            {"name": "thread_sort_index", "ph": "M", "pid": PID, "tid": lane + 1, "args": {"sort_index": lane + 1}}
        )
    for n, (begin, end), lane in zip(nodes, intervals, lanes, strict=True):
        tid = lane + 1
        args = {
            k: n[k]
            for k in ("status", "agent", "model", "tokens_in", "tokens_out", "attempts", "error")
            if n.get(k) is not None
        }
        events.append(
            {
                "name": n["id"],
                "cat": n["kind"],
                "ph": "X",
                "ts": begin,
                "dur": end - begin,
                "pid": PID,
                "tid": tid,
                "args": args,
            }
        )
        if n["kind"] != "agent":
            continue
        for item, nested in agent_children(n, begin, end):
            for child, cat, b, e, cargs in (item, *nested):
                events.append(
                    {"name": child, "cat": cat, "ph": "X", "ts": b, "dur": e - b, "pid": PID, "tid": tid, "args": cargs}
                )
        if n.get("first_token_s") is not None:
            ts = min(max(_us(n["first_token_s"]), begin), end)
            events.append(
                {"name": "first token", "cat": "token", "ph": "i", "s": "t", "ts": ts, "pid": PID, "tid": tid}
            )
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "workflow": report["workflow"]["name"],
            "run_id": report["run"]["id"],
            "status": report["run"]["status"],
            "wall_s": report["run"]["wall_s"],
        },
    }


def to_trace_json(report: Mapping[str, Any]) -> str:
    """The trace file's text: :func:`to_trace` as compact JSON (a wide run has many events)."""
    return json.dumps(to_trace(report), separators=(",", ":")) + "\n"
