"""Workflows on the OpenAI-compatible provider against the loopback server: end to end, signals, leaks."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from runner.engine.session import run_plan
from runner.plan.compile import compile_workflow
from runner.validate.check import load_workflow
from tests.conftest import assert_valid_report, run_cli, start_cli
from tests.oai_server import OAIServer, Plan

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("secret_scan")]  # secrets: tests/secret_scan.py


def workflow(url: str, *, fan: int = 3, stream: bool = True, extra: str = "") -> str:
    return f"""\
version: 1
name: remote
models:
  main:
    provider: openai
    base_url: "{url}"
    model: test-model
    api_key_env: RUNNER_TEST_KEY
    stream: {str(stream).lower()}
    pool: {{max_connections: 2000}}
    retry: {{max_attempts: 2, initial_delay: 0.01}}
{extra}
agents:
  a: {{model: main, sys_prompt: "You look at {{{{ vars.item }}}}."}}
stages:
  - id: fan
    input: "Look at {{{{ vars.item }}}}."
    fanout: {{for_each: "{{{{ range({fan}) | list }}}}", agent: a}}
"""


def test_cli_run_streams_from_the_server_and_reports(tmp_path: Path) -> None:
    with OAIServer(api_key="sk-test-secret-123") as server:
        server.default = Plan(content="pooled answer", tokens=["pooled", " answer"])
        wf = tmp_path / "wf.yaml"
        wf.write_text(workflow(server.url))
        proc = run_cli(
            "run", str(wf), "--report-dir", str(tmp_path / "r"), env_extra={"RUNNER_TEST_KEY": "sk-test-secret-123"}
        )
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.splitlines()) == [f"[fan[{i}] a] pooled answer" for i in range(3)]
    bodies = [r.body for r in server.requests]
    assert sorted(b["messages"][1]["content"] for b in bodies) == [f"Look at {i}." for i in range(3)]
    assert all(b["stream"] is True and b["model"] == "test-model" for b in bodies)
    (path,) = (tmp_path / "r").glob("*.json")
    text = path.read_text()
    assert "sk-test-secret-123" not in text + proc.stdout + proc.stderr
    report = json.loads(text)
    assert_valid_report(report)
    branches = [n for n in report["nodes"] if n["id"].startswith("fan[")]
    assert all(n["status"] == "ok" and n["first_token_s"] is not None for n in branches)


def test_a_failing_server_fails_the_run_with_the_status_and_model(tmp_path: Path) -> None:
    with OAIServer() as server:
        server.default = Plan(status=500, body=b'{"error": {"message": "the GPU caught fire"}}')
        wf = tmp_path / "wf.yaml"
        wf.write_text(workflow(server.url, fan=1).replace("    api_key_env: RUNNER_TEST_KEY\n", ""))
        proc = run_cli("run", str(wf), "-q", "--report-dir", str(tmp_path / "r"))
    assert proc.returncode == 1
    assert "the GPU caught fire" in proc.stderr
    assert "test-model" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(server.requests) == 2  # retried once (max_attempts: 2), then failed


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_with_1000_requests_in_flight_exits_130_or_143_within_2_s(tmp_path: Path, sig: int) -> None:
    with OAIServer(latency=30) as server:
        wf = tmp_path / "wf.yaml"
        wf.write_text(workflow(server.url, fan=1000).replace("    api_key_env: RUNNER_TEST_KEY\n", ""))
        proc = start_cli("run", str(wf), "-q", "--report-dir", str(tmp_path / "r"))
        try:
            server.wait_for_requests(1000, timeout=20)
            assert len(server.requests) == 1000  # every request is in flight at the server
            sent = time.monotonic()
            proc.send_signal(sig)
            _, err = proc.communicate(timeout=10)
            elapsed = time.monotonic() - sent
        finally:
            proc.kill()
    assert proc.returncode == (143 if sig == signal.SIGTERM else 130), err  # 143: SIGTERM (issue 21)
    # Stopping promptly is the behaviour under test and only the clock outside the process sees it: a sanity
    # bound, 2 s for what takes 0.06 s on a quiet machine; the exact checks are the 1,001 cancelled nodes
    # below (each call would take 30 s to be answered).
    assert elapsed < 2, elapsed
    (path,) = (tmp_path / "r").glob("*.json")
    report = json.loads(path.read_text())
    assert_valid_report(report)
    assert report["run"]["status"] == "interrupted"
    assert sum(1 for n in report["nodes"] if n["status"] == "cancelled") == 1001


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc to count file descriptors")
def test_no_connection_or_fd_leaks_after_ok_failed_and_cancelled_runs(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("RUNNER_TEST_KEY", raising=False)
    with OAIServer(latency=0.05) as server:

        def plan(text: str):
            path = tmp_path / f"{abs(hash(text))}.yaml"
            path.write_text(text)
            return compile_workflow(load_workflow(path))

        ok = plan(workflow(server.url, fan=20).replace("    api_key_env: RUNNER_TEST_KEY\n", ""))
        run_plan(ok, {})  # warm up imports and first-use allocations
        deadline = time.monotonic() + 10  # the server closes its side of each connection the run closed
        while server._tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        threads, fds = threading.active_count(), _fds()
        assert run_plan(ok, {}).status == "ok"
        server.default = Plan(status=503)
        assert run_plan(ok, {}).status == "failed"
        server.default = Plan()
        server.latency = 5
        sent = len(server.requests)

        def interrupt() -> None:
            # Ctrl-C once the server holds all 20 requests of the run: every connection is in use
            server.wait_for_requests(sent + 20, timeout=20)
            os.kill(os.getpid(), signal.SIGINT)

        killer = threading.Thread(target=interrupt)
        killer.start()
        assert run_plan(ok, {}).status == "interrupted"
        killer.join()
        server.end_connections()  # its side of the 20 sockets, rather than after its 5 s sleeps
        deadline = time.monotonic() + 10
        while (server._tasks or _fds() > fds) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert threading.active_count() == threads
        # no more than before: the baseline may still count a socket of the warm-up that the server's side was
        # closing (CI saw 67 after against 70 before), never fewer leaked ones
        assert _fds() <= fds
