"""Checks that a Chrome trace-event document is valid and well nested (shared by the report tests)."""

from __future__ import annotations

from typing import Any


def assert_valid_trace(trace: dict[str, Any]) -> None:
    assert set(trace) >= {"traceEvents"}
    assert trace.get("displayTimeUnit") in ("ms", "ns")
    by_track: dict[tuple[int, int], list[tuple[int, int, str]]] = {}
    for event in trace["traceEvents"]:
        assert {"name", "ph", "pid", "tid"} <= set(event), event
        assert event["ph"] in ("X", "M", "i"), event
        assert isinstance(event["pid"], int) and isinstance(event["tid"], int)
        if event["ph"] == "M":
            assert event["name"] in ("process_name", "thread_name", "thread_sort_index")
            assert isinstance(event["args"], dict)
            continue
        assert isinstance(event["ts"], int) and event["ts"] >= 0, event  # microseconds
        if event["ph"] == "i":
            assert event["s"] in ("t", "p", "g")
            continue
        assert isinstance(event["dur"], int) and event["dur"] >= 0, event
        by_track.setdefault((event["pid"], event["tid"]), []).append(
            (event["ts"], event["ts"] + event["dur"], event["name"])
        )
    for track, spans in by_track.items():
        stack: list[tuple[int, int, str]] = []
        for begin, end, name in sorted(spans, key=lambda s: (s[0], -s[1])):
            while stack and stack[-1][1] <= begin:
                stack.pop()
            if stack:  # inside the enclosing span: it must contain this one whole
                assert end <= stack[-1][1], f"{name} [{begin}, {end}] crosses {stack[-1]} on track {track}"
            stack.append((begin, end, name))
