"""OpenTelemetry export (issue 22 item 5): the report's spans as OTLP, nested as the workflow nests them,
with the GenAI conventions' attributes, no secret and no prompt or reply text unless asked for, and a clear
exit 1 when the ``otel`` extra is missing. The receiver is :mod:`tests.otlp_receiver` (OpenTelemetry's own
protobuf classes decode what arrived); Arize Phoenix, a real receiver, is in ``test_otel_phoenix.py``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import runner
from runner.report.layout import describe_workflow
from runner.report.otel import otel_spans, parents, span_id_of, trace_id_of, traceparent
from tests.conftest import ROOT, run_cli
from tests.oai_server import OAIServer, Plan
from tests.otlp_receiver import Receiver

pytest.importorskip("opentelemetry.sdk.trace", reason="the otel extra (pip install -e '.[test]')")

NESTED = """\
version: 1
name: nested
models:
  m: {provider: scripted, reply: "ok"}
agents:
  a: {model: m}
stages:
  - id: each
    fanout:
      for_each: "{{ [1, 2] }}"
      as: x
      stages:
        - {id: inner, agent: a, input: "{{ vars.x }}"}
  - id: calls
    input: "{{ vars.y }}"
    fanout: {for_each: "{{ [1, 2] }}", as: y, agent: a}
  - id: both
    fanout:
      branches:
        - [{id: left, agent: a, input: "l"}]
        - [{id: right, agent: a, input: "r"}]
  - id: rounds
    loop:
      max_iterations: 2
      stages:
        - {id: step, agent: a, input: "s"}
  - id: route
    switch:
      on: "{{ 'b' }}"
      cases:
        b: [{id: picked, agent: a, input: "p"}]
      default: [{id: other, agent: a, input: "o"}]
"""

SECRET = "sk-otel-secret-7f3a9c"
PROMPT = "PROMPT-MARKER-q81"
REPLY = "REPLY-MARKER-z42"

OPENAI = """\
version: 1
name: otel-fan
inputs:
  n: {{type: integer, default: 3}}
models:
  gpt:
    provider: openai
    base_url: "{url}"
    model: test-model
    api_key_env: RUNNER_TEST_KEY
agents:
  writer: {{model: gpt, sys_prompt: "system {prompt}"}}
stages:
  - id: fan
    input: "{prompt} {{{{ vars.i }}}}"
    fanout:
      for_each: "{{{{ range(inputs.n) | list }}}}"
      as: i
      agent: writer
"""


def _by_id(spans: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {s["span_id"]: s for s in spans}


def _node_parents(spans: list[dict[str, Any]]) -> dict[str, str | None]:
    """Node id -> the node id of its parent span (None: the run's root)."""
    by = _by_id(spans)
    out: dict[str, str | None] = {}
    for s in spans:
        node = s["attributes"].get("runner.node.id")
        if node is not None:
            out[node] = by[s["parent_id"]]["attributes"].get("runner.node.id")
    return out


def test_spans_nest_as_the_workflow_nests_its_stages(tmp_path: Path) -> None:
    wf = runner.load(NESTED)
    result = runner.run(wf, run_dir=tmp_path)
    assert result.status == "ok"
    shown = {n["id"] for n in result.report["nodes"]}
    assert parents(describe_workflow(wf), shown) == {
        "each[0]": "each",
        "each[1]": "each",
        "each[0].inner": "each[0]",
        "each[1].inner": "each[1]",
        "calls[0]": "calls",
        "calls[1]": "calls",
        "both[0]": "both",
        "both[1]": "both",
        "left": "both[0]",
        "right": "both[1]",
        "rounds[1]": "rounds",
        "rounds[2]": "rounds",
        "rounds[1].step": "rounds[1]",
        "rounds[2].step": "rounds[2]",
        "picked": "route",
    }
    spans = otel_spans(result.report, describe_workflow(wf))
    root = spans[0]
    assert (root.name, root.parent_id) == ("invoke_workflow nested", None)
    assert root.trace_id == trace_id_of(result.report["run"]["id"], result.report["run"]["started_at"])
    seen = {root.span_id}
    for span in spans[1:]:  # every parent before its children, every child inside its parent's time
        assert span.parent_id in seen, span.name
        seen.add(span.span_id)
    assert len(seen) == len(spans)


def test_traceparent_names_a_nodes_span() -> None:
    trace = trace_id_of("abc123", "2026-12-06T18:00:00.000001Z")
    sid = span_id_of(trace, "fan[3]")
    assert traceparent(trace, sid) == f"00-{trace:032x}-{sid:016x}-01"
    assert len(traceparent(trace, sid)) == 55
    assert sid != span_id_of(trace, "fan[4]") and sid == span_id_of(trace, "fan[3]")


def _export_run(
    tmp_path: Path, *flags: str, n: int = 3
) -> tuple[subprocess.CompletedProcess[str], Receiver, dict[str, Any], list[dict[str, str]]]:
    with OAIServer(api_key=SECRET) as server, Receiver() as receiver:
        server.default = Plan(content=f"{REPLY} done", usage={"prompt_tokens": 11, "completion_tokens": 7})
        path = tmp_path / "wf.yaml"
        path.write_text(OPENAI.format(url=server.url, prompt=PROMPT), encoding="utf-8")
        proc = run_cli(
            "run",
            str(path),
            "-q",
            "--set",
            f"n={n}",
            "--report-dir",
            str(tmp_path / "r"),
            "--otel",
            receiver.url,
            *flags,
            env_extra={"RUNNER_TEST_KEY": SECRET},
        )
    reports = sorted((tmp_path / "r").glob("*.json"))
    headers = [r.headers for r in server.requests]
    return proc, receiver, json.loads(reports[-1].read_text()) if reports else {}, headers


def test_cli_exports_the_reports_spans_with_genai_attributes_and_no_text_or_secret(tmp_path: Path) -> None:
    proc, receiver, report, headers = _export_run(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert receiver.paths == ["/v1/traces"]
    raw = b"".join(receiver.bodies)
    for text in (SECRET, PROMPT, REPLY, "RUNNER_TEST_KEY"):
        assert text.encode() not in raw, text
    spans = receiver.spans()
    roots = [s for s in spans if s["parent_id"] is None]
    assert [r["name"] for r in roots] == ["invoke_workflow otel-fan"]
    assert {s["trace_id"] for s in spans} == {roots[0]["trace_id"]}
    assert roots[0]["resource"]["service.name"] == "runner" and spans[0]["scope"] == "runner"
    assert _node_parents(spans) == {"fan": None, "fan[0]": "fan", "fan[1]": "fan", "fan[2]": "fan"}
    calls = [s for s in spans if s["attributes"].get("gen_ai.operation.name") == "chat"]
    assert len(calls) == 3
    for call in calls:
        attrs = call["attributes"]
        assert call["name"] == "chat test-model" and call["kind"] == 3  # SPAN_KIND_CLIENT
        assert {k: attrs[k] for k in attrs if k.startswith("gen_ai.")} == {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.system": "openai",
            "gen_ai.request.model": "test-model",
            "gen_ai.response.model": "test-model",  # as the server named it in its answer
            "gen_ai.agent.name": "writer",
            "gen_ai.usage.input_tokens": 11,
            "gen_ai.usage.output_tokens": 7,
        }
    nodes = {n["id"]: n for n in report["nodes"]}
    for call in calls:  # times are the report's: the span of fan[i] is its node, to the microsecond
        node = nodes[call["attributes"]["runner.node.id"]]
        assert abs((call["end"] - call["start"]) / 1e9 - (node["end_s"] - node["queued_s"])) < 2e-6
    assert sum(c["attributes"]["gen_ai.usage.input_tokens"] for c in calls) == report["totals"]["tokens_in"]
    # each model request named its call's span (W3C traceparent), in the run's trace
    sent = sorted(h["traceparent"] for h in headers)
    assert sent == sorted(f"00-{roots[0]['trace_id']}-{c['span_id']}-01" for c in calls)


def test_otel_content_puts_the_replies_in_the_spans_and_still_no_secret(tmp_path: Path) -> None:
    proc, receiver, _, _ = _export_run(tmp_path, "--otel-content", n=1)
    assert proc.returncode == 0, proc.stderr
    raw = b"".join(receiver.bodies)
    assert SECRET.encode() not in raw
    (call,) = [s for s in receiver.spans() if s["attributes"].get("gen_ai.operation.name") == "chat"]
    assert json.loads(call["attributes"]["gen_ai.output.messages"]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": f"{REPLY} done"}]}
    ]


def test_tool_calls_are_execute_tool_spans_under_their_call(tmp_path: Path) -> None:
    with Receiver() as receiver:
        result = runner.run(ROOT / "workflows" / "tool-agent.yaml", run_dir=tmp_path, otel=receiver.url)
    assert result.status == "ok"
    spans = receiver.spans()
    by = _by_id(spans)
    tools = sorted((s for s in spans if s["name"].startswith("execute_tool")), key=lambda s: s["name"])
    assert [(t["name"], t["attributes"]["gen_ai.tool.name"]) for t in tools] == [
        ("execute_tool lookup", "lookup"),
        ("execute_tool word_count", "word_count"),
    ]
    for tool in tools:
        parent = by[tool["parent_id"]]
        assert parent["attributes"]["runner.node.id"] == "research"
        assert parent["start"] <= tool["start"] <= tool["end"] <= parent["end"]


def test_a_failed_export_warns_and_keeps_the_runs_exit_code(tmp_path: Path, write_wf: Callable[..., Path]) -> None:
    path = write_wf(ONE)
    with Receiver(status=400) as receiver:
        proc = run_cli("run", str(path), "-q", "--report-dir", str(tmp_path / "r"), "--otel", receiver.url)
    assert proc.returncode == 0
    assert proc.stdout == "hi\n"
    sent = "failed: 0 of 2 spans sent"
    assert proc.stderr == f"runner: warning: OpenTelemetry export to {receiver.url}/v1/traces {sent}\n"


def test_the_environment_variable_asks_for_the_export(tmp_path: Path, write_wf: Callable[..., Path]) -> None:
    path = write_wf(ONE)
    with Receiver() as receiver:
        proc = run_cli(
            "run",
            str(path),
            "-q",
            "--report-dir",
            str(tmp_path / "r"),
            env_extra={"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url},
        )
        assert proc.returncode == 0, proc.stderr
        assert [s["name"] for s in receiver.spans()] == ["invoke_workflow one", "chat m"]
        # `--otel WF`: the flag without an endpoint, before the workflow's name
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url}
        proc = run_cli("run", "--otel", str(path), "-q", "--report-dir", str(tmp_path / "r"), env_extra=env)
        assert proc.returncode == 0, proc.stderr
        assert len(receiver.bodies) == 2
        # the SDK's own switch turns the variable off
        off = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_SDK_DISABLED": "true"}
        proc = run_cli("run", str(path), "-q", "--report-dir", str(tmp_path / "r"), env_extra=off)
        assert proc.returncode == 0, proc.stderr
        assert len(receiver.bodies) == 2


ONE = """
version: 1
name: one
models: {m: {provider: scripted, reply: "hi"}}
agents: {a: {model: m}}
stages: [{id: s, agent: a, input: "x"}]
"""


@pytest.fixture
def without_otel(tmp_path: Path) -> dict[str, str]:
    """PYTHONPATH that hides the installed OpenTelemetry behind an empty ``opentelemetry`` package."""
    shadow = tmp_path / "shadow"
    (shadow / "opentelemetry").mkdir(parents=True)
    (shadow / "opentelemetry" / "__init__.py").write_text("")
    return {"PYTHONPATH": f"{shadow}{os.pathsep}{ROOT}"}


@pytest.mark.parametrize(
    ("args", "env", "why"),
    [
        (["--otel"], {}, "--otel"),
        ([], {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}, "OTEL_EXPORTER_OTLP_ENDPOINT is set"),
    ],
)
def test_without_the_extra_the_run_stops_before_it_starts(
    tmp_path: Path, write_wf: Callable[..., Path], without_otel: dict[str, str], args: list[str], env: dict, why: str
) -> None:
    path = write_wf(ONE)
    proc = run_cli("run", str(path), *args, "--report-dir", str(tmp_path / "r"), env_extra={**without_otel, **env})
    assert proc.returncode == 1
    assert proc.stderr == (
        f"runner: error: {why}: exporting the run's spans needs OpenTelemetry, which is not installed; "
        "install it with: pip install 'runner[otel]'\n"
    )
    assert not (tmp_path / "r").exists()  # nothing ran


def test_bad_flags_are_usage_errors(tmp_path: Path, write_wf: Callable[..., Path]) -> None:
    path = write_wf(ONE)
    proc = run_cli("run", str(path), "--otel", "localhost:4318", "--report-dir", str(tmp_path / "r"))
    assert proc.returncode == 2
    assert "runner: error: --otel takes an http:// or https:// URL, not 'localhost:4318'" in proc.stderr
    proc = run_cli("run", str(path), "--otel-content", "--report-dir", str(tmp_path / "r"))
    assert proc.returncode == 2
    assert "--otel-content is for an OpenTelemetry export: add --otel [ENDPOINT]" in proc.stderr
    with pytest.raises(ValueError, match="otel must be True or an http:// or https:// URL, not 'localhost:4318'"):
        runner.run(ONE, otel="localhost:4318")


def test_a_plain_run_imports_no_opentelemetry(tmp_path: Path, write_wf: Callable[..., Path]) -> None:
    path = write_wf(ONE)
    probe = textwrap.dedent(
        """
        import sys
        from runner.cli import main
        code = main(sys.argv[1:])
        print(code, sorted(m for m in sys.modules if m.startswith(("opentelemetry", "runner.report.ot"))))
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    proc = subprocess.run(
        [sys.executable, "-c", probe, "run", str(path), "-q", "--report-dir", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "PYTHONPATH": str(ROOT)},
        cwd=tmp_path,
    )
    assert proc.stdout.splitlines()[-1] == "0 []", proc.stderr


INTERRUPTED = """
version: 1
name: stopped
models:
  fast: {provider: scripted, reply: "quick"}
  slow: {provider: scripted, reply: "late", latency: {first_token_ms: 60000}}
agents:
  a: {model: fast}
  b: {model: slow}
stages:
  - {id: first, agent: a, input: "x"}
  - {id: waiting, agent: b, input: "y"}
"""


def test_an_interrupted_run_exports_what_it_has(tmp_path: Path, write_wf: Callable[..., Path]) -> None:
    path = write_wf(INTERRUPTED)
    with Receiver() as receiver:
        proc = subprocess.Popen(
            [sys.executable, "-m", "runner", "run", str(path), "-q", "--report-dir", str(tmp_path / "r")]
            + ["--log-level", "debug", "--otel", receiver.url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            cwd=tmp_path,
        )
        try:
            assert proc.stderr is not None
            for line in proc.stderr:  # bounded by the run: it ends, and the pipe with it
                if "waiting" in line and "started" in line:
                    break
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
            proc.wait(timeout=10)
        spans = receiver.spans()
    assert proc.returncode == 130, err
    assert err.endswith("runner: interrupted; partial report written\n")
    root = next(s for s in spans if s["parent_id"] is None)
    assert root["attributes"]["runner.run.status"] == "interrupted" and root["status"] == 2  # STATUS_CODE_ERROR
    status = {s["attributes"]["runner.node.id"]: s for s in spans if "runner.node.id" in s["attributes"]}
    assert status["first"]["attributes"]["runner.status"] == "ok" and status["first"]["status"] == 1
    assert status["waiting"]["attributes"]["runner.status"] == "cancelled"
    assert status["waiting"]["attributes"]["error.type"] == "cancelled"


def test_the_api_warns_when_the_export_fails_and_returns_the_result(tmp_path: Path) -> None:
    with Receiver(status=400) as receiver, pytest.warns(RuntimeWarning) as caught:
        result = runner.run(ONE, run_dir=tmp_path, otel=receiver.url)
    assert result.status == "ok" and result.output.content == "hi"
    assert [str(w.message) for w in caught] == [
        f"OpenTelemetry export to {receiver.url}/v1/traces failed: 0 of 2 spans sent"
    ]


ROWS = """
version: 1
name: rows
inputs:
  text: {type: string}
models: {m: {provider: scripted, reply: "seen"}}
agents: {a: {model: m}}
stages:
  - id: fan
    input: "{{ inputs.text }} {{ vars.i }}"
    fanout: {for_each: "{{ [1, 2] }}", as: i, agent: a}
"""


def test_a_dataset_run_exports_one_trace_per_row(tmp_path: Path, write_wf: Callable[..., Path]) -> None:
    path = write_wf(ROWS)
    data = tmp_path / "rows.csv"
    data.write_text("text\nalpha\nbeta\ngamma\n", encoding="utf-8")
    with Receiver() as receiver:
        proc = run_cli(
            "run", str(path), "--dataset", str(data), "-q", "--report-dir", str(tmp_path / "r"), "--otel", receiver.url
        )
        spans = receiver.spans()
    assert proc.returncode == 0, proc.stderr
    roots = sorted((s for s in spans if s["parent_id"] is None), key=lambda s: s["attributes"]["runner.row.index"])
    assert [(r["name"], r["attributes"]["runner.row.index"]) for r in roots] == [
        ("invoke_workflow rows", 0),
        ("invoke_workflow rows", 1),
        ("invoke_workflow rows", 2),
    ]
    assert len({r["trace_id"] for r in roots}) == 3
    assert len({r["attributes"]["runner.batch.id"] for r in roots}) == 1
    for root in roots:
        mine = [s for s in spans if s["trace_id"] == root["trace_id"]]
        assert _node_parents(mine) == {"fan": None, "fan[0]": "fan", "fan[1]": "fan"}
        assert root["attributes"]["runner.run.status"] == "ok"
    raw = b"".join(receiver.bodies)
    assert b"alpha" not in raw and b"seen" not in raw


def test_requests_carry_traceparent_only_when_the_run_is_traced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNNER_TEST_KEY", SECRET)
    with OAIServer(api_key=SECRET) as server, Receiver() as receiver:
        wf = runner.load(OPENAI.format(url=server.url, prompt=PROMPT))
        plain = runner.run(wf, {"n": 2}, run_dir=tmp_path)
        assert plain.status == "ok"
        assert [r.headers.get("traceparent") for r in server.requests] == [None, None]
        traced = runner.run(wf, {"n": 2}, run_dir=tmp_path, otel=receiver.url)
        assert traced.status == "ok"
        sent = sorted(r.headers["traceparent"] for r in server.requests[2:])
        spans = receiver.spans()
    calls = [s for s in spans if s["attributes"].get("gen_ai.operation.name") == "chat"]
    assert sent == sorted(f"00-{c['trace_id']}-{c['span_id']}-01" for c in calls)
    assert len(sent) == 2


def test_a_dataset_rows_requests_name_the_rows_spans(tmp_path: Path) -> None:
    data = tmp_path / "rows.csv"
    data.write_text("n\n1\n2\n", encoding="utf-8")
    with OAIServer(api_key=SECRET) as server, Receiver() as receiver:
        path = tmp_path / "wf.yaml"
        path.write_text(OPENAI.format(url=server.url, prompt=PROMPT), encoding="utf-8")
        proc = run_cli(
            "run", str(path), "--dataset", str(data), "-q", "--report-dir", str(tmp_path / "r"),
            "--otel", receiver.url, env_extra={"RUNNER_TEST_KEY": SECRET},
        )  # fmt: skip
        sent = sorted(r.headers["traceparent"] for r in server.requests)
        spans = receiver.spans()
    assert proc.returncode == 0, proc.stderr
    calls = [s for s in spans if s["attributes"].get("gen_ai.operation.name") == "chat"]
    assert len(calls) == 3 and len({c["trace_id"] for c in calls}) == 2  # row 0: one call, row 1: two
    assert sent == sorted(f"00-{c['trace_id']}-{c['span_id']}-01" for c in calls)


def test_each_exports_a_trace_per_row(tmp_path: Path) -> None:
    with Receiver() as receiver:
        results = list(runner.each(ROWS, [{"text": "a"}, {"text": "b"}], run_dir=tmp_path, otel=receiver.url))
        spans = receiver.spans()
    assert sorted(r.status for r in results) == ["ok", "ok"]
    roots = [s for s in spans if s["parent_id"] is None]
    assert sorted(r["attributes"]["runner.row.index"] for r in roots) == [0, 1]
    assert len({r["trace_id"] for r in roots}) == 2
    assert len(spans) == 2 * 4  # a root, the fan-out and its two calls a row


@pytest.mark.parametrize("content", [False, True], ids=["plain", "content"])
def test_a_failed_calls_error_text_goes_in_its_span_only_with_content(tmp_path: Path, content: bool) -> None:
    refusal = f'{{"error": {{"message": "{REPLY} cannot be said", "type": "invalid_request_error"}}}}'.encode()
    with OAIServer(api_key=SECRET) as server, Receiver() as receiver:
        server.default = Plan(status=400, body=refusal)
        path = tmp_path / "wf.yaml"
        path.write_text(OPENAI.format(url=server.url, prompt=PROMPT), encoding="utf-8")
        flags = ["--otel-content"] if content else []
        proc = run_cli(
            "run", str(path), "-q", "--set", "n=1", "--report-dir", str(tmp_path / "r"), "--otel", receiver.url,
            *flags, env_extra={"RUNNER_TEST_KEY": SECRET},
        )  # fmt: skip
        raw = b"".join(receiver.bodies)
        spans = receiver.spans()
    assert proc.returncode == 1
    assert REPLY in proc.stderr  # the run's own message says it
    assert SECRET.encode() not in raw
    (call,) = [s for s in spans if s["attributes"].get("gen_ai.operation.name") == "chat"]
    assert call["status"] == 2 and call["attributes"]["error.type"] == "failed"  # STATUS_CODE_ERROR
    assert (REPLY.encode() in raw) is content
