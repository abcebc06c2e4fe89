"""Fallback models (issue 23): a failure of a cause the model's ``fallback.on`` names moves the call's next
attempt to the next model; a 429 skips the model for its cooldown. Against the loopback OpenAI server, one
server standing for both models (the request body's ``model`` says which was asked)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import assert_valid_report, run_cli
from tests.oai_server import OAIServer, Plan

pytestmark = pytest.mark.timeout(60)

WF = """\
version: 1
name: fb
models:
  primary:
    provider: openai
    base_url: {url}
    model: gpt-a
    stream: false
    retry: {{max_attempts: 3, initial_delay: 0.01, max_delay: 0.01}}
    pricing: {{input: 1000, output: 1000}}
    fallback: {fallback}
  backup:
    provider: openai
    base_url: {url}
    model: gpt-b
    stream: false
    pricing: {{input: 2000, output: 2000}}
agents:
  a: {{model: primary}}
stages:
{stages}
"""

STORM = """\
  - id: storm
    input: "hello {{ vars.n }}"
    fanout: {for_each: "{{ [1, 2, 3, 4, 5] }}", as: n, agent: a, max_concurrency: 5}
  - {id: cooling, agent: a, input: "hello"}
  - {id: pause, python: "naps:nap"}
  - {id: again, agent: a, input: "hello"}
"""

ONE = '  - {id: one, agent: a, input: "hello"}\n'

CONTEXT_LENGTH = json.dumps(
    {
        "error": {
            "message": "This model's maximum context length is 8 tokens. However, you requested 900 tokens.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    }
).encode()


def _run(tmp_path: Path, server: OAIServer, fallback: str, stages: str) -> tuple[Any, dict[str, Any]]:
    (tmp_path / "wf.yaml").write_text(WF.format(url=server.url, fallback=fallback, stages=stages))
    # the pause outlasts the 0.3 s cooldown: time.monotonic only grows, so the cooldown is over after it
    nap = "import time\n\n\ndef nap(*args, **kwargs):\n    time.sleep(0.4)\n    return 'ok'\n"
    (tmp_path / "naps.py").write_text(nap)
    proc = run_cli("run", "wf.yaml", "--quiet", "--report-dir", "r", cwd=tmp_path)
    (path,) = (tmp_path / "r").glob("*.json")
    report = json.loads(path.read_text())
    assert_valid_report(report)
    return proc, report


def _asked(server: OAIServer) -> list[str]:
    return [r.body["model"] for r in server.requests]


def test_a_429_storm_moves_to_the_fallback_at_once_and_back_after_the_cooldown(tmp_path: Path) -> None:
    with OAIServer() as server:
        held = threading.Barrier(5)  # the five 429s are answered together: the storm hits every branch
        server.plan_for("gpt-a", *(Plan(status=429, wait=held) for _ in range(5)))
        proc, report = _run(tmp_path, server, "{models: [backup], on: [429], cooldown: 0.3}", STORM)
        asked = _asked(server)
    assert proc.returncode == 0, proc.stderr
    # each branch: one request to gpt-a (a 429 is not retried when the fallback takes it), then gpt-b; the stage
    # during the cooldown goes to gpt-b without asking gpt-a; after the cooldown, gpt-a answers again
    assert sorted(asked[:5]) == ["gpt-a"] * 5
    assert sorted(asked[5:10]) == ["gpt-b"] * 5
    assert asked[10:] == ["gpt-b", "gpt-a"]
    assert report["fallbacks"] == {"primary": {"429": 5, "cooldown": 1}}
    models = {name: (m["calls"], m["ok"]) for name, m in report["models"].items()}
    assert models == {"backup": (6, 6), "primary": (1, 1)}  # a call is counted under the model that answered
    assert report["models"]["backup"]["cost_usd"] == pytest.approx(6 * 8 * 2000 / 1e6)


def test_server_errors_are_retried_first_then_move(tmp_path: Path) -> None:
    with OAIServer() as server:
        server.plan_for("gpt-a", *(Plan(status=503) for _ in range(3)))
        proc, report = _run(tmp_path, server, "{models: [backup]}", ONE)
        asked = _asked(server)
    assert proc.returncode == 0, proc.stderr
    assert asked == ["gpt-a", "gpt-a", "gpt-a", "gpt-b"]  # primary's retry: 3 attempts, then the fallback
    assert report["fallbacks"] == {"primary": {"5xx": 1}}
    assert report["nodes"][0]["retries"] == 2


def test_a_context_length_error_moves_to_the_fallback(tmp_path: Path) -> None:
    with OAIServer() as server:
        server.plan_for("gpt-a", Plan(status=400, body=CONTEXT_LENGTH))
        proc, report = _run(tmp_path, server, "{models: [backup], on: [context_length]}", ONE)
        asked = _asked(server)
    assert proc.returncode == 0, proc.stderr
    assert asked == ["gpt-a", "gpt-b"]
    assert report["fallbacks"] == {"primary": {"context_length": 1}}


def test_a_cause_not_named_fails_the_run_on_the_model(tmp_path: Path) -> None:
    with OAIServer() as server:
        server.plan_for("gpt-a", Plan(status=400, body=CONTEXT_LENGTH))
        proc, report = _run(tmp_path, server, "{models: [backup]}", ONE)  # default on: no context_length
        asked = _asked(server)
    assert asked == ["gpt-a"]
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "fallbacks" not in report
    assert proc.stderr.splitlines()[-1].startswith("runner: error: model 'primary' (gpt-a at http://127.0.0.1:")
    assert "HTTP 400: This model's maximum context length is 8 tokens." in proc.stderr


def test_when_every_model_fails_the_last_error_is_the_runs(tmp_path: Path) -> None:
    with OAIServer() as server:
        server.plan_for("gpt-a", Plan(status=429))
        server.plan_for("gpt-b", Plan(status=400))
        proc, report = _run(tmp_path, server, "{models: [backup], on: [429]}", ONE)
        asked = _asked(server)
    assert asked == ["gpt-a", "gpt-b"]
    assert proc.returncode == 1
    assert "model 'backup' (gpt-b at " in proc.stderr.splitlines()[-1]
    assert report["fallbacks"] == {"primary": {"429": 1}}


VALIDATE = """\
version: 1
name: fbv
models:
  primary:
    provider: openai
    base_url: http://127.0.0.1:9/v1
    model: gpt-a
    fallback: {fallback}
  backup:
    provider: openai
    base_url: http://127.0.0.1:9/v1
    model: gpt-b
    stream: {stream}
    fallback: {back}
  fixed: {{provider: scripted, reply: "not json"}}
agents:
  a:
    model: primary
    output: {{schema: {{type: object, properties: {{x: {{type: integer}}}}, required: [x]}}}}
stages:
  - {{id: one, agent: a, input: "hello"}}
"""


@pytest.mark.parametrize(
    ("fallback", "stream", "back", "where", "message"),
    [
        ("{models: [backpu]}", "true", "{models: [fixed]}", "8:25",
         "model 'primary' falls back to model 'backpu', which is not defined [invalid-setting]"),
        ("{models: [primary]}", "true", "{models: [fixed]}", "8:25",
         "model 'primary' falls back to itself [invalid-setting]"),
        ("{models: [backup]}", "true", "{models: [primary]}", "8:25",
         "model 'primary' falls back to 'backup', which falls back to it: primary -> backup -> primary "
         "[invalid-setting]"),
        ("{models: [backup]}", "false", "{models: [fixed]}", "8:25",
         "model 'backup' cannot stand in for model 'primary': 'primary' streams its replies and 'backup' has "
         "stream: false [invalid-setting]"),
        ("{models: [fixed]}", "true", "{models: [fixed]}", "8:25",
         "model 'fixed' cannot stand in for model 'primary': its reply does not fit the structured output of "
         "agent 'a': the reply is not JSON (Expecting value at line 1, column 1) [invalid-setting]"),
    ],
)  # fmt: skip
def test_bad_fallbacks_are_located_errors(
    tmp_path: Path, fallback: str, stream: str, back: str, where: str, message: str
) -> None:
    (tmp_path / "wf.yaml").write_text(VALIDATE.format(fallback=fallback, stream=stream, back=back))
    proc = run_cli("validate", "wf.yaml", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[0] == f"wf.yaml:{where}: error: {message}"


def test_a_model_used_only_as_a_fallback_is_used(tmp_path: Path) -> None:
    # fixed is primary's second fallback (backup's own fallback is not followed: it alone would not use fixed)
    text = VALIDATE.format(fallback="{models: [backup, fixed]}", stream="true", back="{models: [fixed]}")
    (tmp_path / "wf.yaml").write_text(text.replace('reply: "not json"', "reply: '{\"x\": 1}'"))
    proc = run_cli("validate", "wf.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout.splitlines() == ["1 file(s) valid"]
