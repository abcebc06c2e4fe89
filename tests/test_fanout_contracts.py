"""Inside a fan-out branch, the contracts that libraries rely on hold, because a branch is a real asyncio Task.

Each case runs a whole workflow through the engine (as `runner run` does) on both loops: anyio's
``fail_after`` / ``move_on_after``, httpx on its own httpcore transport, the OpenAI SDK in a tool, the
provider on an httpx transport a program passes in, context variables, sibling cancellation, and a user's
ExceptionGroup unwrapped to its first error. (Issue 14: fan-out branches used to be hand-driven coroutines
that anyio could not cancel.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.engine.session import RunOutcome, run_plan
from runner.plan.compile import compile_workflow
from runner.providers import PROVIDERS, ProviderType
from runner.validate.check import load_workflow
from runner.workflow.inputs import resolve_inputs
from tests import contract_tools
from tests.conftest import LOOPS, assert_valid_report
from tests.oai_server import OAIServer, Plan

pytestmark = [pytest.mark.timeout(30), pytest.mark.parametrize("loop", LOOPS)]


def run(path: Path, loop: str, sets: tuple[str, ...] = ()) -> tuple[RunOutcome, dict[str, Any]]:
    wf = load_workflow(path)
    outcome = run_plan(compile_workflow(wf), resolve_inputs(wf, list(sets)), use_uvloop=loop == "uvloop")
    report = outcome.report()
    assert_valid_report(report)
    return outcome, report


def python_fanout(function: str, *, before: str = "", on_error: str = "fail_fast", items: int = 3) -> str:
    return f"""\
version: 1
name: contracts
inputs:
  url: {{type: string, default: ""}}
stages:
{before}  - id: fan
    fanout:
      for_each: "{{{{ range({items}) | list }}}}"
      on_error: {on_error}
      stages:
        - {{id: work, python: "{function}", input: "{{{{ inputs.url or ('item ' ~ vars.item) }}}}"}}
"""


def contents(outcome: RunOutcome) -> list[str]:
    assert outcome.status == "ok", outcome.error
    return [o.content for o in outcome.output]


def test_anyio_deadlines_fire_inside_a_branch(write_wf: Any, loop: str) -> None:
    outcome, _ = run(write_wf(python_fanout("tests.contract_tools:anyio_deadlines")), loop)
    assert contents(outcome) == [f"item {i}: move_on_after fired=True, fail_after fired=True" for i in range(3)]


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A server that reads requests and never answers."""
    with OAIServer() as server:
        server.default = Plan(stall_before=60)
        yield server.url + "/models"


def test_httpx_on_its_own_transport_times_out_inside_a_branch(write_wf: Any, loop: str, silent_server: str) -> None:
    path = write_wf(python_fanout("tests.contract_tools:httpx_with_timeout"))
    outcome, _ = run(path, loop, (f"url={silent_server}",))
    assert contents(outcome) == ["httpx read timeout"] * 3


def sdk_workflow(timeout: float) -> str:
    return f"""\
version: 1
name: sdk-tool
inputs:
  url: {{type: string}}
tools:
  ask: {{function: "tests.contract_tools:ask_sdk"}}
models:
  m:
    provider: scripted
    turns:
      - tool_calls:
          - name: ask
            arguments: {{url: "{{{{ inputs.url }}}}", question: "q{{{{ vars.item }}}}", timeout: {timeout}}}
    reply: "{{{{ tool_results[0] }}}}"
agents:
  asker: {{model: m, tools: [ask]}}
stages:
  - id: fan
    input: "go"
    fanout: {{for_each: "{{{{ range(4) | list }}}}", agent: asker}}
"""


def test_the_openai_sdk_works_in_a_tool_inside_a_fanout(write_wf: Any, loop: str) -> None:
    with OAIServer() as server:
        server.default = Plan(content="from the server")
        outcome, _ = run(write_wf(sdk_workflow(5)), loop, (f"url={server.url}",))
    assert contents(outcome) == [f"q{i}: from the server" for i in range(4)]
    assert sorted(r.body["messages"][0]["content"] for r in server.requests) == [f"q{i}" for i in range(4)]


def test_the_openai_sdk_timeout_fires_in_a_tool_inside_a_fanout(write_wf: Any, loop: str) -> None:
    with OAIServer() as server:
        server.default = Plan(stall_before=60)
        outcome, _ = run(write_wf(sdk_workflow(0.05)), loop, (f"url={server.url}",))
    assert contents(outcome) == [f"q{i}: the SDK timed out" for i in range(4)]


@pytest.mark.parametrize("stream", [True, False])
def test_a_fanout_over_an_openai_model_on_a_given_httpx_transport(
    write_wf: Any, loop: str, stream: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transport a program passes in (here httpx's own, httpcore: anyio's locks and timeouts underneath)
    serves every branch of a fan-out. The provider registry is the seam: its openai entry is replaced by a
    factory that passes the transport, as ``transport=`` does."""
    monkeypatch.setitem(PROVIDERS, "openai", ProviderType("openai", "tests.contract_tools:openai_on_httpx_transport"))
    contract_tools.TRANSPORTS.clear()
    with OAIServer() as server:
        server.default = Plan(content="pooled answer", tokens=["pooled", " answer"])
        path = write_wf(
            f"""\
version: 1
name: given-transport
models:
  main:
    provider: openai
    base_url: "{server.url}"
    model: test-model
    stream: {str(stream).lower()}
    timeout: {{read: 5}}
    pool: {{max_connections: 4}}
agents:
  a: {{model: main}}
stages:
  - id: fan
    input: "Look at {{{{ vars.item }}}}."
    fanout: {{for_each: "{{{{ range(20) | list }}}}", agent: a, max_concurrency: 8}}
"""
        )
        outcome, report = run(path, loop)
    assert contents(outcome) == ["pooled answer"] * 20
    assert len(server.requests) == 20
    assert server.connections <= 4  # the given transport's own pool served them
    assert all(n["status"] == "ok" for n in report["nodes"])
    assert len(contract_tools.TRANSPORTS) == 1


def test_each_branch_sees_the_callers_context_and_keeps_its_own(write_wf: Any, loop: str) -> None:
    before = '  - {id: setup, python: "tests.contract_tools:set_outer"}\n'
    outcome, _ = run(write_wf(python_fanout("tests.contract_tools:read_and_set", before=before, items=4)), loop)
    assert contents(outcome) == [f"outer -> item {i}" for i in range(4)]


def test_a_sync_stage_in_a_worker_thread_sees_its_branchs_context(write_wf: Any, loop: str) -> None:
    before = '  - {id: setup, python: "tests.contract_tools:set_outer"}\n'
    outcome, _ = run(write_wf(python_fanout("tests.contract_tools:read_in_thread", before=before)), loop)
    assert contents(outcome) == ["outer"] * 3


def test_the_first_failure_cancels_the_siblings_and_is_the_runs_error(write_wf: Any, loop: str) -> None:
    contract_tools.CLEANED.clear()
    contract_tools.WAITING.clear()
    outcome, report = run(write_wf(python_fanout("tests.contract_tools:fail_when", items=4)), loop)
    assert outcome.status == "failed"
    assert (
        str(outcome.error)
        == "python stage 'fan[0].work' (tests.contract_tools:fail_when) raised RuntimeError: item 0 broke"
    )
    assert sorted(contract_tools.CLEANED) == ["cleaned 1", "cleaned 2", "cleaned 3"]
    status = {n["id"]: n["status"] for n in report["nodes"]}
    assert status["fan[0].work"] == "failed"
    assert [status[f"fan[{i}].work"] for i in (1, 2, 3)] == ["cancelled"] * 3
    assert report["run"]["error"] == str(outcome.error)


@pytest.mark.parametrize("on_error", ["fail_fast", "collect"])
def test_a_users_exception_group_is_unwrapped_to_its_first_error(write_wf: Any, loop: str, on_error: str) -> None:
    outcome, report = run(write_wf(python_fanout("tests.contract_tools:group_failure", on_error=on_error)), loop)
    message = (
        "python stage 'fan[{i}].work' (tests.contract_tools:group_failure) raised LookupError: "
        "child 1 of item {i} found nothing"
    )
    if on_error == "collect":
        assert outcome.status == "ok"
        assert [o.error for o in outcome.output] == [message.format(i=i) for i in range(3)]
    else:
        assert outcome.status == "failed"
        assert str(outcome.error) in [message.format(i=i) for i in range(3)]
        assert report["run"]["error"] == str(outcome.error)


def test_a_tools_exception_group_reaches_the_model_as_its_first_error(write_wf: Any, loop: str) -> None:
    path = write_wf(
        """\
version: 1
name: group-tool
tools:
  grouped: {function: "tests.contract_tools:group_tool"}
models:
  m:
    provider: scripted
    turns:
      - tool_calls: [{name: grouped, arguments: {item: "{{ vars.item }}"}}]
    reply: "{{ tool_results[0] }}"
agents:
  a: {model: m, tools: [grouped]}
stages:
  - id: fan
    input: "go"
    fanout: {for_each: "{{ range(2) | list }}", agent: a}
"""
    )
    outcome, _ = run(path, loop)
    assert contents(outcome) == [
        f"error: tool 'grouped' raised LookupError: child 1 of item {i} found nothing" for i in range(2)
    ]
