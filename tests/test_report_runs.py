"""Runs with known timings, end to end: the critical path, the shares of the wall time and the bottleneck
named. Scripted models with fixed latencies, a slow tool, a slow python stage, a saturated
``max_concurrency``; and against the loopback OpenAI-compatible server: a saturated connection pool, a
rate limit and a retried server error."""

from __future__ import annotations

import time

import pytest

import runner.providers.openai  # noqa: F401 - imported ahead: a first run's imports would count as overhead
from runner.engine.session import run_plan
from runner.plan.compile import compile_workflow
from runner.validate.check import load_workflow
from runner.workflow.inputs import resolve_inputs
from tests.conftest import assert_valid_report
from tests.oai_server import OAIServer, Plan
from tests.trace_check import assert_valid_trace


def run(path):
    wf = load_workflow(path)
    outcome = run_plan(compile_workflow(wf), resolve_inputs(wf, []))
    report = outcome.report()
    assert_valid_report(report)
    from runner.report.trace import to_trace

    assert_valid_trace(to_trace(report))
    assert outcome.status == "ok", outcome.error
    return report


def slowest(report, prefix):
    branches = [n for n in report["nodes"] if n["id"].startswith(prefix + "[") and "." not in n["id"]]
    return max(branches, key=lambda n: n["end_s"])["id"]


def shares(report):
    return report["critical_path"]["share"]


def node(report, node_id):
    return next(n for n in report["nodes"] if n["id"] == node_id)


# The figures of a run are checked against the run's own raw figures (its node spans and recorded waits),
# and against the scripted latencies only from below (a wait never ends early): load stretches every
# figure, so two-sided bounds on them fail on a busy machine, while what the analysis decides (which part
# of a span goes to which cause) stays exact. 1e-5: the report rounds to microseconds.
EXACT = 1e-5


def assert_figure(figure: float, raw: float, at_least: float) -> None:
    """A figure of the analysis is the raw figure it comes from, and at least what the script makes it."""
    assert figure == pytest.approx(raw, abs=EXACT)
    assert figure >= at_least


def test_saturated_max_concurrency_is_named_with_its_setting(write_wf) -> None:
    path = write_wf(
        """\
version: 1
name: sat
models:
  m: {provider: scripted, reply: ok, latency: {first_token_ms: 100}}
agents:
  a: {model: m}
stages:
  - id: fan
    fanout: {for_each: [1, 2, 3, 4, 5, 6], agent: a, max_concurrency: 2}
"""
    )
    report = run(path)
    wall = report["run"]["wall_s"]
    assert report["critical_path"]["nodes"] == ["fan", slowest(report, "fan")]
    # three waves of 100 ms two at a time: the last branch waited two waves for its slot, then ran one
    last = node(report, slowest(report, "fan"))
    time = report["critical_path"]["time_s"]
    assert_figure(time["concurrency"], last["start_s"] - last["queued_s"], 0.2)
    assert_figure(time["model"], last["end_s"] - last["start_s"], 0.1)
    assert shares(report)["concurrency"] == pytest.approx(time["concurrency"] / wall, abs=1e-4)
    assert shares(report)["model"] == pytest.approx(time["model"] / wall, abs=1e-4)
    assert report["concurrency"]["peak"] == 2
    first = report["bottlenecks"][0]
    assert (first["cause"], first["subject"], first["setting"], first["value"]) == (
        "concurrency",
        "stages[0]",
        "stages[0].fanout.max_concurrency",
        2,
    )
    waits = [n["queue_wait_s"] for n in report["nodes"] if n["id"].startswith("fan[")]
    assert first["message"] == (
        f"branches of `fan` waited {first['seconds']:.2f} s for a slot on the critical path "
        f"({sum(w for w in waits if w > 0):.2f} s over {sum(1 for w in waits if w > 0)} branches in all): "
        "raise `stages[0].fanout.max_concurrency` above 2"
    )
    assert [b["cause"] for b in report["bottlenecks"]] == ["concurrency", "model"]


def test_a_slow_tool_is_named(write_wf) -> None:
    path = write_wf(
        """\
version: 1
name: tooly
tools:
  slow_async: {function: "tests.toolbox:slow_async"}
models:
  m:
    provider: scripted
    latency: {first_token_ms: 50}
    turns:
      - tool_calls: [{name: slow_async, arguments: {seconds: 0.3}}]
    reply: done
agents:
  a: {model: m, tools: [slow_async]}
stages:
  - {id: look, agent: a, input: go}
"""
    )
    report = run(path)
    assert report["critical_path"]["nodes"] == ["look"]
    time = report["critical_path"]["time_s"]
    look = node(report, "look")
    ((tool,),) = [look["tool_spans"]]
    assert_figure(time["tools"], tool["end_s"] - tool["start_s"], 0.299)  # uvloop's timers may end 1 ms early
    # the rest of the stage: two model calls of 50 ms around the tool call
    rest = look["end_s"] - look["start_s"] - time["tools"]
    assert_figure(time["model"], rest, 0.1)
    first = report["bottlenecks"][0]
    assert (first["cause"], first["subject"], first["setting"]) == ("tools", "slow_async", "tools.slow_async.timeout")
    assert first["message"] == (
        f"tool `slow_async` ran {first['seconds']:.2f} s on the critical path (1 call in all): make it faster or "
        "cache its results; `tools.slow_async.timeout` bounds it"
    )
    assert report["nodes"][0]["tool_calls"] == 1


def test_a_slow_python_stage_is_named(write_wf) -> None:
    path = write_wf(
        """\
version: 1
name: py
models:
  m: {provider: scripted, reply: ok, latency: {first_token_ms: 50}}
agents:
  a: {model: m}
stages:
  - {id: ask, agent: a, input: go}
  - {id: crunch, python: "tests.test_report_runs:slow_stage"}
"""
    )
    report = run(path)
    assert report["critical_path"]["nodes"] == ["ask", "crunch"]
    time = report["critical_path"]["time_s"]
    ask, crunch = node(report, "ask"), node(report, "crunch")
    assert_figure(time["python"], crunch["end_s"] - crunch["start_s"], 0.3)
    assert_figure(time["model"], ask["end_s"] - ask["start_s"], 0.05)
    first = report["bottlenecks"][0]
    assert (first["cause"], first["subject"], first["setting"]) == ("python", "stages[1]", None)
    assert first["message"] == (
        f"python stage `crunch` (`tests.test_report_runs:slow_stage`) took {first['seconds']:.2f} s of the critical "
        "path: make the function faster, or async if it waits on I/O"
    )


def slow_stage(input: str) -> str:
    time.sleep(0.3)
    return input.upper()


def oai_workflow(url: str, *, pool: int | None = None, rpm: int | None = None, retry: str = "", n: int = 6) -> str:
    extra = ""
    if pool is not None:
        extra += f"\n    pool: {{max_connections: {pool}}}"
    if rpm is not None:
        extra += f"\n    rate_limit: {{requests_per_minute: {rpm}}}"
    if retry:
        extra += f"\n    retry: {retry}"
    items = ", ".join(str(i) for i in range(n))
    return f"""\
version: 1
name: oai
models:
  main:
    provider: openai
    base_url: {url}
    model: test-model
    stream: false{extra}
agents:
  a: {{model: main}}
stages:
  - id: fan
    input: "item {{{{ vars.item }}}}"
    fanout: {{for_each: [{items}], agent: a}}
"""


@pytest.fixture
def server():
    with OAIServer(latency=0.1) as srv:
        yield srv


def test_a_saturated_pool_is_named_with_its_setting(write_wf, server) -> None:
    report = run(write_wf(oai_workflow(server.url, pool=2)))
    wall = report["run"]["wall_s"]
    assert report["critical_path"]["nodes"] == ["fan", slowest(report, "fan")]
    # six calls of 100 ms on two connections: the last waited two rounds for one (less the moments the calls
    # before it took to start)
    last = node(report, slowest(report, "fan"))
    time = report["critical_path"]["time_s"]
    assert_figure(time["pool"], last["pool_wait_s"], 0.19)
    assert shares(report)["pool"] == pytest.approx(time["pool"] / wall, abs=1e-4)
    assert report["models"]["main"]["pool_wait"]["count"] == 4
    first = report["bottlenecks"][0]
    assert (first["cause"], first["subject"], first["setting"], first["value"]) == (
        "pool",
        "main",
        "models.main.pool.max_connections",
        2,
    )
    pool = report["models"]["main"]["pool_wait"]
    assert first["message"] == (
        f"calls to `main` waited {first['seconds']:.2f} s for a connection on the critical path "
        f"({pool['total_s']:.2f} s over 4 calls in all): raise `models.main.pool.max_connections` above 2"
    )


def test_a_rate_limit_is_named_with_its_setting(write_wf, server) -> None:
    # 120 requests a minute: a bucket of 2 refilled at 2 a second; three calls: two at once, one after 0.5 s
    report = run(write_wf(oai_workflow(server.url, rpm=120, n=3)))
    assert report["critical_path"]["nodes"] == ["fan", "fan[2]"]
    # the third call waits 0.5 s for the bucket to refill (less only the microseconds the calls took to start)
    wait = node(report, "fan[2]")["rate_wait_s"]
    assert_figure(report["critical_path"]["time_s"]["rate_limit"], wait, 0.45)
    first = report["bottlenecks"][0]
    assert (first["cause"], first["subject"], first["setting"], first["value"]) == (
        "rate_limit",
        "main",
        "models.main.rate_limit.requests_per_minute",
        120,
    )
    rate = report["models"]["main"]["rate_wait"]
    assert rate["count"] == 1
    assert first["message"] == (
        f"calls to `main` waited {first['seconds']:.2f} s for the rate limiter (requests_per_minute) on the "
        f"critical path ({rate['total_s']:.2f} s over 1 call in all): raise "
        "`models.main.rate_limit.requests_per_minute` above 120 if your quota allows"
    )


def test_a_rate_limit_wait_includes_the_time_queued_behind_other_callers(write_wf, server) -> None:
    report = run(write_wf(oai_workflow(server.url, rpm=120, n=4)))
    # the fourth call waits 0.5 s behind the third, then 0.5 s of its own: both are its wait
    assert report["critical_path"]["nodes"] == ["fan", "fan[3]"]
    wait = node(report, "fan[3]")["rate_wait_s"]
    assert_figure(report["critical_path"]["time_s"]["rate_limit"], wait, 0.95)


def test_a_retried_server_error_counts_as_retries(write_wf, server) -> None:
    server.plan(Plan(status=500))
    path = write_wf(oai_workflow(server.url, retry="{initial_delay: 0.3, jitter: none}", n=1))
    report = run(path)
    node = next(n for n in report["nodes"] if n["id"] == "fan[0]")
    assert (node["attempts"], node["retries"]) == (2, 1)
    assert report["models"]["main"]["retries"] == {"500": 1}
    time = report["critical_path"]["time_s"]
    # retries: the failed attempt (100 ms at least) and the 300 ms back-off; model: the attempt that answered
    ((retry,),) = [node["retry_events"]]
    retried = retry["at_s"] - node["start_s"] + retry["delay_s"]
    assert (retry["delay_s"], retry["at_s"] - node["start_s"] >= 0.1) == (0.3, True)
    assert time["retries"] == pytest.approx(retried, abs=EXACT)
    assert_figure(time["model"], node["end_s"] - node["start_s"] - retried, 0.1)
    first = report["bottlenecks"][0]
    assert (first["cause"], first["setting"]) == ("retries", "models.main.retry")
    assert first["message"] == (
        f"calls to `main` spent {first['seconds']:.2f} s retrying on the critical path (1 retry in all: 500 x1): "
        "the endpoint is failing: check its health; `models.main.retry` sets the back-off"
    )
