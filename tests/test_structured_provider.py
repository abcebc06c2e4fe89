"""Structured outputs against the loopback server (issue 16): the schema asked for natively, in JSON mode and in
the prompt; the value in ``stages.<id>.data``; repair turns for replies that do not parse or match; a stream cut
off mid-JSON retried without repeating text on screen; a model that never gets it right fails the stage with a
message, never a traceback; model params and ``extra_body`` on the wire."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import runner
from tests.conftest import assert_valid_report, run_cli
from tests.oai_server import OAIServer, Plan

pytestmark = pytest.mark.timeout(60)

SCHEMA = {
    "type": "object",
    "required": ["steps", "done"],
    "properties": {"steps": {"type": "array", "items": {"type": "string"}}, "done": {"type": "boolean"}},
}
VALUE = {"steps": ["sss"], "done": True}  # what the server makes of SCHEMA (tests/oai_server.py: instance)


def workflow(url: str, *, stream: bool = True, mode: str | None = None, output: str = "", extra: str = "") -> str:
    switch = f"\n    structured_output: {mode}" if mode else ""
    return f"""\
version: 1
name: structured
models:
  main:
    provider: openai
    base_url: "{url}"
    model: test-model
    stream: {str(stream).lower()}{switch}
    retry: {{max_attempts: 2, initial_delay: 0.01}}{extra}
agents:
  planner:
    model: main
    sys_prompt: "You plan."
    output: {{schema: {json.dumps(SCHEMA)}{output}}}
stages:
  - {{id: plan, agent: planner, input: "Plan a trip."}}
"""


@pytest.fixture(scope="module")
def server() -> Any:
    with OAIServer() as s:
        yield s


@pytest.fixture(autouse=True)
def _fresh(server: OAIServer) -> None:
    server.reset()


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_the_schema_is_asked_for_natively_and_the_value_is_the_stage_data(server: OAIServer, stream: bool) -> None:
    server.plan(Plan(json_reply="valid"))
    result = runner.run(workflow(server.url, stream=stream))
    assert result.status == "ok", result.error
    assert result.stages["plan"].data == VALUE
    assert json.loads(result.stages["plan"].content) == VALUE
    (request,) = server.requests
    assert request.body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "planner", "schema": SCHEMA, "strict": False},
    }
    assert request.body["messages"][0] == {"role": "system", "content": "You plan."}  # no schema in the prompt
    assert "repairs" not in result.report["totals"]


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_json_mode_puts_the_schema_in_the_system_prompt(server: OAIServer, stream: bool) -> None:
    server.plan(Plan(json_reply="valid"))
    result = runner.run(workflow(server.url, stream=stream, mode="json_object"))
    assert result.status == "ok", result.error
    assert result.stages["plan"].data == VALUE
    (request,) = server.requests
    assert request.body["response_format"] == {"type": "json_object"}
    assert request.body["messages"][0]["content"] == (
        "You plan.\n\nReply with only a JSON value that matches this JSON Schema, with no other text before or "
        f"after it:\n{json.dumps(SCHEMA)}"
    )


def test_prompt_mode_sends_no_response_format_and_reads_a_fenced_reply(server: OAIServer) -> None:
    fenced = "```json\n" + json.dumps(VALUE) + "\n```"
    server.plan(Plan(content=fenced))
    extra = "\n    params: {response_format: {type: json_object}, temperature: 0}"
    result = runner.run(workflow(server.url, mode="prompt", extra=extra))
    assert result.status == "ok", result.error
    assert result.stages["plan"].data == VALUE
    (request,) = server.requests
    assert "response_format" not in request.body  # the model's own params give way to the structured output
    assert request.body["temperature"] == 0
    assert "matches this JSON Schema" in request.body["messages"][0]["content"]


@pytest.mark.parametrize("fault", ["invalid", "truncated"])
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_a_reply_that_does_not_match_gets_a_repair_turn(server: OAIServer, fault: str, stream: bool) -> None:
    server.plan(Plan(json_reply=fault), Plan(json_reply="valid"))
    result = runner.run(workflow(server.url, stream=stream))
    assert result.status == "ok", result.error
    assert result.stages["plan"].data == VALUE
    first, second = server.requests
    whole = json.dumps(VALUE)
    bad = json.dumps({"steps": "not a list", "done": True}) if fault == "invalid" else whole[: len(whole) // 2]
    said, repair = second.body["messages"][-2:]
    assert said == {"role": "assistant", "content": bad}
    problem = (
        "the value does not match the schema at $.steps: expected array, got string"
        if fault == "invalid"
        else "the reply is not complete JSON (Expecting ',' delimiter at line 1, column 17): it may have been cut off"
    )
    assert repair == {
        "role": "user",
        "content": f"Your last reply could not be used: {problem}. Reply again with only a JSON value that "
        f"matches this JSON Schema, and nothing else:\n{json.dumps(SCHEMA)}",
    }
    assert second.body["response_format"] == first.body["response_format"]
    (node,) = result.report["nodes"]
    assert node["repairs"] == 1
    assert result.report["totals"]["repairs"] == 1
    assert node["tokens_out"] == 6  # both turns counted (3 each, the server's usage)
    assert_valid_report(result.report)


def test_a_model_that_never_matches_fails_the_stage_with_where_and_what(server: OAIServer, tmp_path: Path) -> None:
    server.default = Plan(json_reply="invalid")
    wf = tmp_path / "wf.yaml"
    wf.write_text(workflow(server.url))
    proc = run_cli("run", str(wf), "-q", "--report-dir", str(tmp_path / "r"))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    reply = json.dumps({"steps": "not a list", "done": True})
    message = (
        "agent 'planner' (node plan) gave no valid structured output (1 repair turn, output.max_repairs=1): the "
        f"value does not match the schema at $.steps: expected array, got string; the reply began: {reply!r}"
    )
    assert message in proc.stderr
    assert len(server.requests) == 2
    (path,) = (tmp_path / "r").glob("*.json")
    report = json.loads(path.read_text())
    assert report["run"]["status"] == "failed"
    assert report["totals"]["repairs"] == 1
    assert report["nodes"][0]["repairs"] == 1
    assert report["nodes"][0]["error"] == message


def test_the_reply_quoted_in_the_failure_stops_at_200_characters(server: OAIServer) -> None:
    long = json.dumps({"steps": ["x" * 300], "done": "yes"})
    server.default = Plan(content=long)
    result = runner.run(workflow(server.url, output=", max_repairs: 0"))
    assert result.status == "failed"
    assert str(result.error) == (
        "agent 'planner' (node plan) gave no valid structured output (no repair turn, output.max_repairs=0): the "
        f"value does not match the schema at $.done: expected boolean, got string; the reply began: {long[:200]!r}..."
    )
    assert len(server.requests) == 1


def test_a_stream_cut_off_mid_json_is_retried_and_nothing_is_shown_twice(server: OAIServer, tmp_path: Path) -> None:
    server.plan(Plan(json_reply="valid", drop_after=4), Plan(json_reply="valid"))
    wf = tmp_path / "wf.yaml"
    wf.write_text(workflow(server.url))
    proc = run_cli("run", str(wf), "--report-dir", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"[plan planner] {json.dumps(VALUE)}\n"
    assert len(server.requests) == 2
    report = json.loads(next((tmp_path / "r").glob("*.json")).read_text())
    assert report["nodes"][0]["retries"] == 1
    assert "repairs" not in report["nodes"][0]


def test_a_repaired_reply_is_shown_after_a_note_that_the_first_is_void(server: OAIServer, tmp_path: Path) -> None:
    server.plan(Plan(json_reply="invalid"), Plan(json_reply="valid"))
    wf = tmp_path / "wf.yaml"
    wf.write_text(workflow(server.url))
    proc = run_cli("run", str(wf), "--report-dir", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    bad = json.dumps({"steps": "not a list", "done": True})
    assert proc.stdout == (
        f"[plan planner] {bad}\n[plan planner] (retried: the partial answer above is void; the new answer follows)\n"
        f"[plan planner] {json.dumps(VALUE)}\n"
    )


def test_a_tool_calling_agent_finishes_with_a_structured_answer(server: OAIServer) -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "nap", "arguments": '{"seconds": 0}'}}
    server.plan(Plan(content="", tool_calls=[call], finish_reason="tool_calls"), Plan(json_reply="valid"))
    text = workflow(server.url, stream=False).replace(
        '    sys_prompt: "You plan."\n', '    sys_prompt: "You plan."\n    tools: [nap]\n'
    )
    text = text.replace("agents:\n", 'tools:\n  nap: {function: "tests.toolbox:slow_sync"}\nagents:\n')
    result = runner.run(text)
    assert result.status == "ok", result.error
    assert result.stages["plan"].data == VALUE
    first, second = server.requests
    assert first.body["tools"][0]["function"]["name"] == "nap"
    assert first.body["response_format"]["type"] == "json_schema"  # the final answer is asked for from the start
    assert second.body["messages"][-1] == {"role": "tool", "tool_call_id": "c1", "content": "slept 0"}


def test_params_and_extra_body_reach_the_wire(server: OAIServer) -> None:
    server.plan(Plan(json_reply="valid"))
    extra = (
        "\n    params:\n      tool_choice: none\n      parallel_tool_calls: false\n      reasoning_effort: low\n"
        "      logprobs: true\n      top_logprobs: 2\n      n: 1\n"
        "      extra_body: {enable_thinking: false, guided_decoding_backend: xgrammar}"
    )
    result = runner.run(workflow(server.url, extra=extra))
    assert result.status == "ok", result.error
    (request,) = server.requests
    body = request.body
    assert {k: body[k] for k in ("tool_choice", "parallel_tool_calls", "reasoning_effort", "logprobs", "n")} == {
        "tool_choice": "none",
        "parallel_tool_calls": False,
        "reasoning_effort": "low",
        "logprobs": True,
        "n": 1,
    }
    assert body["top_logprobs"] == 2
    assert body["enable_thinking"] is False and body["guided_decoding_backend"] == "xgrammar"
    assert "extra_body" not in body
