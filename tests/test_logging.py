"""Logging: the workflow's ``logging`` section and ``--log-level``/``--log-file``, text and JSON lines with the
run id and node id, secrets redacted, and a queue between the event loop and a slow disk."""

from __future__ import annotations

import io
import json
import logging
import threading

import pytest

from runner.calls import ChatResult, Usage
from runner.cli import main
from runner.errors import RunnerError
from runner.events import Recorder
from runner.logs import EventLog, Redactor, configure_logging, secret_env_names, secret_values
from runner.validate.check import load_workflow
from runner.workflow.records import LoggingSpec
from tests.conftest import run_cli
from tests.oai_server import OAIServer, Plan

WF = """\
version: 1
name: logged
models:
  m: {{provider: scripted, reply: hi, latency: {{first_token_ms: 20}}}}
agents:
  a: {{model: m}}
stages:
  - id: fan
    fanout: {{for_each: [1, 2], agent: a}}
  - {{id: last, agent: a}}
{logging}
"""


def test_the_logging_section_becomes_a_record(write_wf) -> None:
    wf = load_workflow(write_wf(WF.format(logging="logging: {level: info, file: run.log, format: json}")))
    assert wf.logging == LoggingSpec(level="info", file="run.log", format="json")
    assert load_workflow(write_wf(WF.format(logging=""), "plain.yaml")).logging == LoggingSpec()
    proc = run_cli("validate", str(write_wf(WF.format(logging="logging: {level: loud}"), "bad.yaml")))
    assert proc.returncode == 1
    assert "logging.level" in proc.stdout or "loud" in proc.stdout


def test_json_lines_carry_the_run_id_and_node_ids(write_wf, tmp_path) -> None:
    log = tmp_path / "logs" / "run.log"
    path = write_wf(WF.format(logging=f"logging: {{level: info, file: {log}, format: json}}"))
    proc = run_cli("run", str(path), "-q", "--report-dir", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    (report_path,) = (tmp_path / "r").glob("*.json")
    run_id = json.loads(report_path.read_text())["run"]["id"]
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert {r["run_id"] for r in records} == {run_id}
    assert {r["logger"] for r in records} == {"runner"}
    finished = {r["node_id"]: r for r in records if r.get("event") == "finished"}
    assert set(finished) == {"fan", "fan[0]", "fan[1]", "last"}
    assert finished["last"]["level"] == "info"
    assert finished["last"]["message"].startswith("finished in ")
    assert finished["last"]["message"].endswith(", tokens 2 in / 1 out")  # "hi\n\nhi" in, "hi" out
    assert records[0]["message"] == f"run {run_id} of logged started (uvloop)"
    assert records[-1]["message"].startswith("run ok in ")
    assert records[-1]["node_id"] is None
    assert all(r["ts"].endswith("Z") for r in records)


def test_command_line_flags_win_over_the_workflow(write_wf, tmp_path) -> None:
    path = write_wf(WF.format(logging=f"logging: {{level: error, file: {tmp_path / 'never.log'}}}"))
    log = tmp_path / "cli.log"
    code = main(
        ["run", str(path), "-q", "--report-dir", str(tmp_path / "r"), "--log-level", "debug", "--log-file", str(log)]
    )
    assert code == 0
    assert not (tmp_path / "never.log").exists()
    lines = log.read_text().splitlines()
    assert any(" DEBUG   runner: [fan[0]] started (kind agent, agent a, model m)" in line for line in lines)
    assert any(" INFO    runner: [last] finished in " in line for line in lines)
    assert logging.getLogger("runner").handlers == []  # restored after the run


def test_an_unwritable_log_file_is_a_user_error(write_wf, tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with (
        pytest.raises(RunnerError, match=r"^cannot open the log file .*/file/x.log: "),
        configure_logging(file=str(blocker / "x.log")),
    ):
        pass


def test_secrets_and_bearer_tokens_never_reach_the_output(monkeypatch) -> None:
    monkeypatch.setenv("MY_API_KEY", "sk-live-0123456789")
    stream = io.StringIO()
    with configure_logging(
        level="debug", fmt="json", secrets=secret_values(["MY_API_KEY", "UNSET_VAR"]), stream=stream, run_id="r1"
    ):
        log = logging.getLogger("runner")
        log.warning(
            "sent key sk-live-0123456789 with header Authorization: Bearer sk-live-0123456789", extra={"node_id": "n"}
        )
        log.info("other token: bearer abc.def-ghi", extra={"node_id": "n"})
    text = stream.getvalue()
    assert "sk-live" not in text and "abc.def" not in text
    first, second = (json.loads(line) for line in text.splitlines())
    assert first["message"] == "sent key [redacted] with header Authorization: Bearer [redacted]"
    assert (first["run_id"], first["node_id"], first["level"]) == ("r1", "n", "warning")
    assert second["message"] == "other token: bearer [redacted]"
    assert Redactor(["short"])("a short word") == "a short word"  # values under 6 characters are no secrets


def test_a_run_against_a_keyed_endpoint_logs_no_key(write_wf, tmp_path, monkeypatch) -> None:
    key = "sk-test-secret-4242"
    monkeypatch.setenv("LOOP_KEY", key)
    with OAIServer(latency=0.01) as server:
        # a retry is logged at warning with the server's message, which echoes the key
        server.plan(Plan(status=500, body=json.dumps({"error": {"message": f"bad key {key}"}}).encode()))
        server.api_key = key
        path = write_wf(
            f"""\
version: 1
name: keyed
models:
  main: {{provider: openai, base_url: "{server.url}", model: t, api_key_env: LOOP_KEY, stream: false,
         retry: {{initial_delay: 0.01, jitter: none}}}}
agents:
  a: {{model: main}}
stages:
  - {{id: ask, agent: a, input: hello}}
logging: {{level: debug, format: json}}
"""
        )
        wf = load_workflow(path)
        assert secret_env_names(wf) == ["LOOP_KEY"]
        log = tmp_path / "k.log"
        assert main(["run", str(path), "-q", "--report-dir", str(tmp_path / "r"), "--log-file", str(log)]) == 0
    text = log.read_text()
    assert key not in text
    retry = next(json.loads(line) for line in text.splitlines() if json.loads(line).get("event") == "retry")
    assert retry["level"] == "warning" and retry["node_id"] == "ask"
    assert retry["message"].startswith("attempt 1 failed (500); retrying in 0.01 s: model 'main'")
    assert retry["message"].endswith("HTTP 500: bad key [api key]")


class StuckStream(io.StringIO):
    """A disk that takes nothing until released; it records which threads wrote to it. A write from the
    caller's thread goes through at once (so a broken logger fails the test rather than hanging it)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.writers: set[str] = set()

    def write(self, text: str) -> int:
        self.writers.add(threading.current_thread().name)
        if threading.current_thread() is not threading.main_thread():
            self.release.wait(10)
        return super().write(text)


def test_a_slow_disk_never_blocks_the_caller() -> None:
    stream = StuckStream()
    with configure_logging(level="info", stream=stream):
        log = logging.getLogger("runner")
        for i in range(20):
            log.info("record %d", i)
        # every call has returned while the disk has taken nothing yet: the writes wait in another thread
        assert stream.getvalue() == ""
        stream.release.set()
    assert stream.writers and threading.main_thread().name not in stream.writers
    assert stream.getvalue().count("record ") == 20  # all written when the block ends


def test_event_log_levels() -> None:
    stream = io.StringIO()
    rec = Recorder()
    with configure_logging(level="info", stream=stream, run_id="r"):
        events = EventLog(logging.getLogger("runner"), t0=0.0)
        rec.emit("started", "n", {"kind": "agent", "agent": "a", "model": "m"}, at=1.0)
        rec.emit("pool_wait", "n", {"wait": 0.2}, at=1.2)
        rec.emit("finished", "n", ChatResult("x", Usage(3, 4)), at=1.5)
        rec.emit("failed", "o", {"error": "boom"}, at=1.6)
        events.tick(rec)
    lines = [line.split(" ", 2)[2] for line in stream.getvalue().splitlines()]
    assert lines == [
        "INFO    runner: [n] finished in 0.500 s, tokens 3 in / 4 out",
        "WARNING runner: [o] failed: boom",
    ]
