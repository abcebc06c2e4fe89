"""The report from recorded events with exact, made-up times: spans, the critical path, its split into
causes, per-model figures, concurrency, bottlenecks, redaction, the Markdown summary and the trace."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from runner.calls import ChatResult, Usage
from runner.events import NullRecorder, Recorder
from runner.report.document import RunInfo, build_report, is_secret_name, redact_inputs
from runner.report.layout import Layout, ModelShape, StageShape
from runner.report.markdown import to_markdown
from runner.report.stats import percentile
from tests.conftest import assert_valid_report
from tests.trace_check import assert_valid_trace

START = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
SHA = "0" * 64


def info(layout: Layout, inputs: dict | None = None) -> RunInfo:
    return RunInfo("run1", "wf", "wf.yaml", SHA, START, 0.0, "uvloop", inputs or {}, layout)


def result(tokens_in: int = 10, tokens_out: int = 5, first: float | None = None, attempts: int = 1) -> ChatResult:
    return ChatResult("text", Usage(tokens_in, tokens_out), first_token_at=first, attempts=attempts)


MODELS = {"m": ModelShape("m", "openai", "gpt-x", max_connections=8, requests_per_minute=60)}
FAN_THEN_AGENT = Layout(
    stages=(
        StageShape("notes", "stages[0]", "each_agent", "a", "m", max_concurrency=2),
        StageShape("digest", "stages[1]", "agent", "e", "m"),
    ),
    models=MODELS,
)
AGENT_A = {"kind": "agent", "agent": "a", "model": "m"}


def fan_then_agent_events() -> Recorder:
    rec = Recorder()
    e = rec.emit
    e("started", "notes", {"kind": "fanout"}, at=0.001)
    for i in range(3):
        e("queued", f"notes[{i}]", at=0.002)
    e("started", "notes[0]", AGENT_A, at=0.003)
    e("started", "notes[1]", AGENT_A, at=0.003)
    e("finished", "notes[0]", result(first=0.053), at=0.103)
    e("started", "notes[2]", AGENT_A, at=0.104)
    e("retry", "notes[2]", {"cause": "429", "attempt": 1, "delay": 0.05, "error": "HTTP 429"}, at=0.154)
    e("finished", "notes[1]", result(), at=0.203)
    e("rate_wait", "notes[2]", {"wait": 0.01, "limit": "requests_per_minute"}, at=0.214)
    e("pool_wait", "notes[2]", {"wait": 0.02}, at=0.234)
    e("finished", "notes[2]", result(attempts=2), at=0.304)
    e("finished", "notes", None, at=0.305)
    e("started", "digest", {"kind": "agent", "agent": "e", "model": "m"}, at=0.306)
    e("started", "digest.tool[0.0]", {"kind": "tool", "tool": "search", "parent": "digest"}, at=0.356)
    e("finished", "digest.tool[0.0]", None, at=0.446)
    e("finished", "digest", result(20, 8), at=0.506)
    return rec


def test_critical_path_goes_through_the_slowest_branch_and_splits_the_wall_time() -> None:
    report = build_report(info(FAN_THEN_AGENT), fan_then_agent_events(), status="ok", end=0.51, error=None)
    assert_valid_report(report)
    path = report["critical_path"]
    assert path["nodes"] == ["notes", "notes[2]", "digest"]
    assert path["time_s"] == {
        "model": 0.18,
        "pool": 0.02,
        "rate_limit": 0.01,
        "concurrency": 0.102,
        "retries": 0.1,
        "tools": 0.09,
        "python": 0.0,
        "gates": 0.0,
        "overhead": 0.008,
    }
    assert sum(path["time_s"].values()) == pytest.approx(report["run"]["wall_s"])
    assert path["share"]["model"] == round(0.18 / 0.51, 4)
    step = path["steps"][1]
    assert step == {
        "node": "notes[2]",
        "kind": "agent",
        "start_s": 0.002,
        "end_s": 0.304,
        "model_s": 0.07,
        "pool_s": 0.02,
        "rate_limit_s": 0.01,
        "concurrency_s": 0.102,
        "retries_s": 0.1,
        "tools_s": 0.0,
        "python_s": 0.0,
        "gates_s": 0.0,
    }


def test_bottlenecks_name_the_top_three_causes_with_the_setting_to_change() -> None:
    report = build_report(info(FAN_THEN_AGENT), fan_then_agent_events(), status="ok", end=0.51, error=None)
    assert [(b["cause"], b["subject"], b["setting"], b["value"]) for b in report["bottlenecks"]] == [
        ("model", "m", "models.m.params.max_tokens", None),
        ("concurrency", "stages[0]", "stages[0].fanout.max_concurrency", 2),
        ("retries", "m", "models.m.rate_limit.requests_per_minute", None),
    ]
    assert [b["message"] for b in report["bottlenecks"]] == [
        "model `m` took 0.18 s of the critical path (2 calls): cap the output with `models.m.params.max_tokens`, "
        "use a faster model than `gpt-x`, or run more of the work in parallel",
        "branches of `notes` waited 0.10 s for a slot on the critical path (0.10 s over 3 branches in all): "
        "raise `stages[0].fanout.max_concurrency` above 2",
        "calls to `m` spent 0.10 s retrying on the critical path (1 retry in all: 429 x1): the server is rate "
        "limiting: set `models.m.rate_limit.requests_per_minute` below its limit",
    ]
    assert report["bottlenecks"][0]["seconds"] == 0.18
    assert report["bottlenecks"][0]["share"] == round(0.18 / 0.51, 4)


def test_per_model_figures_and_concurrency() -> None:
    report = build_report(info(FAN_THEN_AGENT), fan_then_agent_events(), status="ok", end=0.51, error=None)
    assert report["models"] == {
        "m": {
            "provider": "openai",
            "model": "gpt-x",
            "calls": 4,
            "ok": 4,
            "failed": 0,
            "requests": 5,
            "latency_s": {"p50": 0.2, "p95": 0.2, "max": 0.2},
            "ttft_s": {"p50": 0.05, "p95": 0.05},
            "tokens_in": 50,
            "tokens_out": 23,
            "tokens_per_s": round(23 / 0.65, 3),
            "retries": {"429": 1},
            "pool_wait": {"count": 1, "total_s": 0.02, "max_s": 0.02},
            "rate_wait": {"count": 1, "total_s": 0.01, "max_s": 0.01},
        }
    }
    assert report["concurrency"] == {"peak": 2, "mean": round(0.7 / 0.51, 3)}
    assert report["totals"] == {"nodes": 6, "agents": 4, "tokens_in": 50, "tokens_out": 23, "requests": 5, "retries": 1}


def test_node_spans_carry_waits_attempts_and_their_tool_calls() -> None:
    report = build_report(info(FAN_THEN_AGENT), fan_then_agent_events(), status="ok", end=0.51, error=None)
    nodes = {n["id"]: n for n in report["nodes"]}
    assert nodes["notes[2]"] == {
        "id": "notes[2]",
        "kind": "agent",
        "status": "ok",
        "queued_s": 0.002,
        "start_s": 0.104,
        "first_token_s": None,
        "end_s": 0.304,
        "queue_wait_s": 0.102,
        "agent": "a",
        "model": "m",
        "attempts": 2,
        "retries": 1,
        "pool_wait_s": 0.02,
        "rate_wait_s": 0.01,
        "retry_events": [{"at_s": 0.154, "delay_s": 0.05, "cause": "429"}],
        "pool_waits": [{"at_s": 0.234, "wait_s": 0.02}],
        "rate_waits": [{"at_s": 0.214, "wait_s": 0.01, "limit": "requests_per_minute"}],
        "tokens_in": 10,
        "tokens_out": 5,
    }
    assert nodes["digest"]["tool_calls"] == 1 and nodes["digest"]["tool_s"] == 0.09
    assert nodes["digest.tool[0.0]"]["kind"] == "tool"
    assert nodes["digest.tool[0.0]"]["parent"] == "digest"
    assert nodes["notes"]["kind"] == "fanout"


BRANCHES = Layout(
    stages=(
        StageShape("prep", "stages[0]", "python", function="mod:prep"),
        StageShape(
            "fan",
            "stages[1]",
            "branches",
            max_concurrency=1,
            branches=(
                (StageShape("a", "stages[1].fanout.branches[0][0]", "agent", "x", "s"),),
                (
                    StageShape("b1", "stages[1].fanout.branches[1][0]", "agent", "x", "s"),
                    StageShape("b2", "stages[1].fanout.branches[1][1]", "agent", "x", "s"),
                ),
            ),
        ),
    ),
    models={"s": ModelShape("s", "scripted")},
)
AGENT_X = {"kind": "agent", "agent": "x", "model": "s"}


def branches_events() -> Recorder:
    rec = Recorder()
    e = rec.emit
    e("started", "prep", {"kind": "python", "function": "mod:prep"}, at=0.0)
    e("failed", "prep", {"error": "flaky"}, at=0.1)
    e("retry", "prep", {"cause": "RunError", "error": "flaky", "scope": "stage", "attempt": 1, "delay": 0.1}, at=0.1)
    e("started", "prep", {"kind": "python", "function": "mod:prep"}, at=0.2)
    e("finished", "prep", None, at=0.3)
    e("started", "fan", {"kind": "fanout"}, at=0.3)
    e("queued", "fan[0]", at=0.3)
    e("queued", "fan[1]", at=0.3)
    e("started", "a", AGENT_X, at=0.3)
    e("finished", "a", result(), at=0.5)
    e("started", "b1", AGENT_X, at=0.5)
    e("finished", "b1", result(), at=0.6)
    e("started", "b2", AGENT_X, at=0.6)
    e("finished", "b2", result(), at=0.7)
    e("finished", "fan", None, at=0.7)
    return rec


def test_listed_branches_get_spans_and_the_path_runs_through_their_stages() -> None:
    report = build_report(info(BRANCHES), branches_events(), status="ok", end=0.7, error=None)
    assert_valid_report(report)
    nodes = {n["id"]: n for n in report["nodes"]}
    assert (nodes["fan[1]"]["kind"], nodes["fan[1]"]["status"]) == ("branch", "ok")
    assert (nodes["fan[1]"]["queued_s"], nodes["fan[1]"]["start_s"], nodes["fan[1]"]["end_s"]) == (0.3, 0.5, 0.7)
    assert nodes["prep"]["status"] == "ok" and "error" not in nodes["prep"]
    path = report["critical_path"]
    assert path["nodes"] == ["prep", "fan", "fan[1]", "b1", "b2"]
    assert path["time_s"] == {
        "model": 0.2,
        "pool": 0.0,
        "rate_limit": 0.0,
        "concurrency": 0.2,
        "retries": 0.2,
        "tools": 0.0,
        "python": 0.1,
        "gates": 0.0,
        "overhead": 0.0,
    }
    assert [(b["cause"], b["subject"], b["setting"]) for b in report["bottlenecks"]] == [
        ("model", "s", "models.s.latency"),
        ("concurrency", "stages[1]", "stages[1].fanout.max_concurrency"),
        ("retries", "stages[0]", "stages[0].retry"),
    ]
    assert report["bottlenecks"][2]["message"] == (
        "stage `prep` failed and was retried as a whole for 0.20 s on the critical path: fix what fails (see the "
        "node's error); `stages[0].retry` sets the attempts and back-off"
    )


def test_per_item_pipelines_and_an_interrupted_run() -> None:
    layout = Layout(
        stages=(
            StageShape(
                "per",
                "stages[0]",
                "each_stages",
                stages=(
                    StageShape("first", "stages[0].fanout.stages[0]", "agent", "x", "s"),
                    StageShape("second", "stages[0].fanout.stages[1]", "agent", "x", "s"),
                ),
            ),
        ),
        models={"s": ModelShape("s", "scripted")},
    )
    rec = Recorder()
    e = rec.emit
    e("started", "per", {"kind": "fanout"}, at=0.0)
    for i in range(2):
        e("started", f"per[{i}].first", AGENT_X, at=0.0)
        e("finished", f"per[{i}].first", result(), at=0.1)
        e("started", f"per[{i}].second", AGENT_X, at=0.1)
    e("finished", "per[0].second", result(), at=0.2)
    e("cancelled", "per[1].second", {"error": "cancelled"}, at=0.5)
    e("cancelled", "per", {"error": "cancelled"}, at=0.5)
    report = build_report(info(layout), rec, status="interrupted", end=0.5, error="interrupted")
    assert_valid_report(report)
    nodes = {n["id"]: n for n in report["nodes"]}
    assert [(nodes[b]["kind"], nodes[b]["status"]) for b in ("per[0]", "per[1]")] == [
        ("branch", "ok"),
        ("branch", "cancelled"),
    ]
    assert report["critical_path"]["nodes"] == ["per", "per[1]", "per[1].first", "per[1].second"]
    assert report["critical_path"]["time_s"]["model"] == 0.5


def test_a_run_that_never_finished_a_node_counts_it_to_the_end() -> None:
    rec = Recorder()
    rec.emit("started", "digest", {"kind": "agent", "agent": "e", "model": "m"}, at=0.1)
    report = build_report(info(FAN_THEN_AGENT), rec, status="failed", end=1.0, error="boom")
    assert_valid_report(report)
    assert report["nodes"][0]["status"] == "unfinished"
    assert report["critical_path"]["time_s"]["model"] == 0.9
    assert report["critical_path"]["time_s"]["overhead"] == 0.1


def test_recording_off_gives_a_valid_report_without_nodes() -> None:
    rec = NullRecorder()
    rec.emit("started", "x", AGENT_A)
    assert rec.events == []
    report = build_report(info(FAN_THEN_AGENT), rec, status="ok", end=0.25, error=None)
    assert_valid_report(report)
    assert report["run"]["recorded"] is False
    assert report["nodes"] == [] and report["bottlenecks"] == []
    assert report["critical_path"]["time_s"]["overhead"] == 0.25


def test_cache_and_memory_sections_take_stats_objects_or_dicts() -> None:
    from runner.embeddings.cache_stats import EmbeddingStats

    stats = EmbeddingStats("default", 3, 1, 0, 0, 0, 0, 10, 20, 0.01, 0.02, 1, 1, 4, 80)
    memory = {"analyst": {"tokens_before": 900, "tokens_after": 400, "summaries": 2, "compactions": 1}}
    report = build_report(
        info(FAN_THEN_AGENT), Recorder(), status="ok", end=0.1, error=None, cache=[stats], memory=memory
    )
    assert_valid_report(report)
    assert report["cache"]["default"]["hits"] == 3 and report["cache"]["default"]["bytes_written"] == 20
    assert report["memory"] == memory
    md = to_markdown(report)
    assert "| `default` | 3 | 1 | 0 | 10 | 20 |" in md
    assert "| `analyst` | 900 | 400 | 2 | 1 |" in md


def test_secret_looking_inputs_are_redacted() -> None:
    assert [
        is_secret_name(n)
        for n in (
            "api_key",
            "OPENAI_API_KEY",
            "accessToken",
            "db-password",
            "apiKey",
            "secret",
            "max_tokens",
            "keywords",
            "topic",
            "monkey",
        )
    ] == [True, True, True, True, True, True, False, False, False, False]
    inputs = {"topic": "x", "api_key": "sk-1", "nested": {"token": "t", "n": 1}, "items": [{"password": "p"}]}
    assert redact_inputs(inputs) == {
        "topic": "x",
        "api_key": "[redacted]",
        "nested": {"token": "[redacted]", "n": 1},
        "items": [{"password": "[redacted]"}],
    }
    report = build_report(info(FAN_THEN_AGENT, inputs), Recorder(), status="ok", end=0.1, error=None)
    assert report["run"]["inputs"]["api_key"] == "[redacted]"


def test_percentiles_are_nearest_rank() -> None:
    values = [0.5, 0.1, 0.4, 0.2, 0.3]
    assert [percentile(values, q) for q in (50, 95, 100)] == [0.3, 0.5, 0.5]
    assert percentile([], 50) is None
    assert percentile(list(range(1, 21)), 95) == 19


def test_markdown_summary() -> None:
    report = build_report(info(FAN_THEN_AGENT), fan_then_agent_events(), status="ok", end=0.51, error=None)
    md = to_markdown(report)
    lines = md.splitlines()
    assert lines[0] == "# Run `wf`: ok in 0.510 s"
    assert "Critical path: `notes` → `notes[2]` → `digest`" in lines
    assert "| model latency | 0.180 | 35.3% |" in lines
    assert "| waiting for a fan-out slot (`max_concurrency`) | 0.102 | 20.0% |" in lines
    assert f"1. {report['bottlenecks'][0]['message']}" in lines
    assert "| `m` (gpt-x) | 4 | 5 | 0.200 / 0.200 / 0.200 | 0.050 / 0.050 | 35.385 | 429 x1 | 0.020 | 0.010 |" in lines
    assert "| `digest` | agent | e | ok | 0.306 | 0.506 | 0.200 |  | 1 | 20 / 8 |" in lines


def test_trace_is_valid_with_lanes_and_nested_retries() -> None:
    report = build_report(info(FAN_THEN_AGENT), fan_then_agent_events(), status="ok", end=0.51, error=None)
    from runner.report.trace import to_trace

    trace = to_trace(report)
    assert_valid_trace(trace)
    spans = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    by_name = {e["name"]: e for e in spans}
    # notes[2]: queued at 2 ms, waited for its slot, failed once, backed off, then waited and answered
    lane = by_name["notes[2]"]["tid"]
    on_lane = [
        (e["name"], e["ts"], e["dur"])
        for e in spans
        if e["tid"] == lane and e["ts"] >= 2000 and e["ts"] + e["dur"] <= 304000
    ]
    assert on_lane == [
        ("notes[2]", 2000, 302000),
        ("wait for a fan-out slot", 2000, 102000),
        ("attempt 1 failed (429)", 104000, 50000),
        ("back-off", 154000, 50000),
        ("attempt 2", 204000, 100000),
        ("rate limiter (requests_per_minute)", 204000, 10000),
        ("wait for a connection", 214000, 20000),
    ]
    assert by_name["tool search"]["tid"] == by_name["digest"]["tid"]
    # the fan-out and its three overlapping branches take four lanes; digest reuses the first free one
    assert len({by_name[n]["tid"] for n in ("notes", "notes[0]", "notes[1]", "notes[2]")}) == 4
    assert by_name["digest"]["tid"] == 1


def test_cache_and_memory_figures_recorded_during_the_run_fill_their_sections() -> None:
    rec = fan_then_agent_events()
    rec.emit("cache_stats", "default", {"embedder": "hashing/v1/256", "hits": 4, "misses": 1, "evictions": 0})
    base = {
        "agent": "a",
        "mode": "auto",
        "budget": 3000,
        "tokens_before": 100,
        "tokens_after": 80,
        "max_tokens_after": 80,
        "summaries": 1,
        "summary_seconds": 0.5,
    }
    rec.emit("memory_stats", "notes[0]", base)
    rec.emit("memory_stats", "notes[1]", {**base, "tokens_before": 300, "max_tokens_after": 120, "summaries": 0})
    rec.emit("memory", "notes[1]", {"agent": "a", "action": "compact"})
    report = build_report(info(FAN_THEN_AGENT), rec, status="ok", end=0.51, error=None)
    assert_valid_report(report)
    assert report["cache"] == {"default": {"embedder": "hashing/v1/256", "hits": 4, "misses": 1, "evictions": 0}}
    assert report["memory"] == {
        "a": {
            "agent": "a",
            "mode": "auto",
            "budget": 3000,
            "tokens_before": 400,
            "tokens_after": 160,
            "max_tokens_after": 120,
            "summaries": 1,
            "summary_seconds": 1.0,
            "calls": 2,
        }
    }
    assert report["endpoints"] == {}  # figures are no endpoints


def test_a_retry_after_a_tool_call_counts_from_the_tool_calls_end() -> None:
    layout = Layout(stages=(StageShape("s", "stages[0]", "agent", "a", "m"),), models=MODELS)
    rec = Recorder()
    e = rec.emit
    e("started", "s", {"kind": "agent", "agent": "a", "model": "m"}, at=0.0)
    e("started", "s.tool[0.0]", {"kind": "tool", "tool": "look", "parent": "s"}, at=0.1)
    e("finished", "s.tool[0.0]", None, at=0.3)
    e("retry", "s", {"cause": "500", "attempt": 1, "delay": 0.1, "error": "HTTP 500"}, at=0.4)
    e("pool_wait", "s", {"wait": 0.02}, at=0.55)
    e("finished", "s", result(attempts=3), at=0.6)
    report = build_report(info(layout), rec, status="ok", end=0.6, error=None)
    assert_valid_report(report)
    assert report["critical_path"]["time_s"] == {
        "model": 0.18,
        "pool": 0.02,
        "rate_limit": 0.0,
        "concurrency": 0.0,
        "retries": 0.2,
        "tools": 0.2,
        "python": 0.0,
        "gates": 0.0,
        "overhead": 0.0,
    }
    from runner.report.trace import to_trace

    trace = to_trace(report)
    assert_valid_trace(trace)
    assert [(ev["name"], ev["ts"], ev["dur"]) for ev in trace["traceEvents"] if ev["ph"] == "X"] == [
        ("s", 0, 600000),
        ("tool look", 100000, 200000),
        ("attempt 1 failed (500)", 300000, 100000),
        ("back-off", 400000, 100000),
        ("attempt 2", 500000, 100000),
        ("wait for a connection", 500000, 20000),
    ]


def test_tools_in_parallel_count_once_and_share_the_time() -> None:
    layout = Layout(stages=(StageShape("s", "stages[0]", "agent", "a", "m"),), models=MODELS)
    rec = Recorder()
    e = rec.emit
    e("started", "s", {"kind": "agent", "agent": "a", "model": "m"}, at=0.0)
    e("started", "s.tool[0.0]", {"kind": "tool", "tool": "slow", "parent": "s"}, at=0.1)
    e("started", "s.tool[0.1]", {"kind": "tool", "tool": "quick", "parent": "s"}, at=0.1)
    e("finished", "s.tool[0.1]", None, at=0.2)
    e("finished", "s.tool[0.0]", None, at=0.4)
    e("finished", "s", result(), at=0.5)
    report = build_report(info(layout), rec, status="ok", end=0.5, error=None)
    assert report["critical_path"]["time_s"]["tools"] == 0.3
    assert report["critical_path"]["time_s"]["model"] == 0.2
    assert [(b["subject"], b["seconds"]) for b in report["bottlenecks"] if b["cause"] == "tools"] == [
        ("slow", 0.225),
        ("quick", 0.075),
    ]


def test_lanes_never_overlap_and_reuse_the_lowest_free_one() -> None:
    import random

    from runner.report.trace import assign_lanes

    assert assign_lanes([(0, 10), (0, 5), (5, 8), (6, 12), (10, 11)]) == [0, 1, 1, 2, 0]
    rng = random.Random(7)
    intervals = [(b, b + rng.randint(0, 50)) for b in (rng.randint(0, 500) for _ in range(400))]
    lanes = assign_lanes(intervals)
    for lane in set(lanes):
        mine = sorted(iv for iv, ln in zip(intervals, lanes, strict=True) if ln == lane)
        assert all(a[1] <= b[0] for a, b in zip(mine, mine[1:], strict=False))
    # as many lanes as intervals overlap at the busiest moment, no more
    peak = max(sum(1 for b, e in intervals if b <= t < e) for t in range(560))
    assert max(lanes) + 1 == max(peak, 1)


def test_stage_retries_are_told_from_provider_retries() -> None:
    layout = Layout(stages=(StageShape("s", "stages[0]", "agent", "a", "m"),), models=MODELS)
    rec = Recorder()
    e = rec.emit
    e("started", "s", {"kind": "agent", "agent": "a", "model": "m"}, at=0.0)
    e("retry", "s", {"cause": "timeout", "attempt": 1, "delay": 0.0, "error": "timeout.read fired"}, at=0.1)
    e("failed", "s", {"error": "stage 's' timed out after 0.3 s"}, at=0.3)
    e("retry", "s", {"cause": "stage 's' timed out after 0.3 s", "attempt": 1, "delay": 0.1}, at=0.3)
    e("started", "s", {"kind": "agent", "agent": "a", "model": "m"}, at=0.4)
    e("finished", "s", result(), at=0.5)
    report = build_report(info(layout), rec, status="ok", end=0.5, error=None)
    assert report["models"]["m"]["retries"] == {"stage": 1, "timeout": 1}
    node = report["nodes"][0]
    assert (node["status"], node["start_s"], node["retries"]) == ("ok", 0.0, 2)
    assert "error" not in node
    assert report["critical_path"]["time_s"]["retries"] == 0.4
    assert report["bottlenecks"][0]["setting"] == "stages[0].retry"
