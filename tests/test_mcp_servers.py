"""MCP servers nobody here wrote (issue 22): mcp-server-time and mcp-server-git from PyPI over stdio, and npm's
@modelcontextprotocol/server-everything over stdio and streamable HTTP (``.ci/run`` installs it into .ci/node), with
tool-calling agents against the loopback OpenAI server."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.engine.session import run_plan
from runner.plan.compile import compile_workflow
from runner.validate.check import load_workflow
from runner.workflow.inputs import resolve_inputs
from tests.conftest import ROOT, assert_valid_report, run_cli
from tests.oai_server import OAIServer, Plan

pytest.importorskip("mcp")
pytestmark = pytest.mark.timeout(120)

# .ci/run installs it: npm install --prefix .ci/node @modelcontextprotocol/server-everything
EVERYTHING = ROOT / ".ci/node/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
NODE = shutil.which("node")
needs_everything = pytest.mark.skipif(
    NODE is None or not EVERYTHING.is_file(),
    reason="node or server-everything missing: npm install --prefix .ci/node @modelcontextprotocol/server-everything",
)


def run(path: Path, run_dir: Path) -> tuple[Any, dict[str, Any]]:
    wf = load_workflow(path)
    outcome = run_plan(compile_workflow(wf), resolve_inputs(wf, []), run_dir=run_dir)
    report = outcome.report()
    assert_valid_report(report)
    return outcome, report


def scripted_agent(calls: str) -> str:
    return f"""\
models:
  m:
    provider: scripted
    turns:
      - tool_calls: {calls}
    reply: "{{{{ tool_results | join(' || ') }}}}"
stages:
  - {{id: s, agent: a, input: go}}
"""


def children_running(pattern: str) -> list[int]:
    """Processes of this user whose command line holds ``pattern`` (and that are not zombies)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().split(") ", 1)[1][0]
        except (OSError, IndexError):
            continue
        if pattern in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def test_mcp_server_time_over_stdio_from_the_cli(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(
        """\
version: 1
name: clock
mcp_servers:
  time: {command: mcp-server-time, args: [--local-timezone, UTC]}
agents:
  a: {model: m, tools: [mcp.time.convert_time]}
"""
        + scripted_agent(
            "[{name: convert_time, arguments: {source_timezone: UTC, time: '12:00', target_timezone: Asia/Tokyo}}]"
        ),
        encoding="utf-8",
    )
    proc = run_cli("run", str(path), "--report-dir", str(tmp_path / "r"), timeout=90)
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout.split("] ", 1)[1])
    assert answer["source"]["timezone"] == "UTC" and answer["target"]["timezone"] == "Asia/Tokyo"
    assert answer["target"]["datetime"].endswith("T21:00:00+09:00")
    summary = [line for line in proc.stderr.splitlines() if line.startswith("mcp server time:")]
    assert len(summary) == 1 and summary[0].endswith(" s (stdio, 2 tools)"), proc.stderr
    report = json.loads(next((tmp_path / "r").glob("*.json")).read_text())
    assert [(n["tool"], n["server"], n["status"]) for n in report["nodes"] if n["kind"] == "tool"] == [
        ("mcp.time.convert_time", "time", "ok")
    ]
    (pid,) = report["mcp_servers"]["time"]["pids"]
    assert pid not in children_running("mcp-server-time")
    assert list((tmp_path / "r").glob("runs/*/mcp/time.stderr.log"))


def test_mcp_server_git_reads_a_repository(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git = {"cwd": repo, "check": True, "capture_output": True}
    subprocess.run(["git", "init", "-q", "-b", "main"], **git)  # type: ignore[call-overload]
    (repo / "notes.txt").write_text("hello\n")
    path = tmp_path / "wf.yaml"
    path.write_text(
        f"""\
version: 1
name: repo
mcp_servers:
  git: {{command: mcp-server-git, args: [--repository, {repo}], env: [PATH]}}
agents:
  a: {{model: m, tools: [{{mcp: git, include: [git_status]}}]}}
"""
        + scripted_agent(f"[{{name: git_status, arguments: {{repo_path: '{repo}'}}}}]"),
        encoding="utf-8",
    )
    outcome, report = run(path, tmp_path / "run")
    assert outcome.status == "ok", outcome.error
    assert "notes.txt" in outcome.output.content and "On branch main" in outcome.output.content
    assert report["mcp_servers"]["git"]["tools"] >= 10  # every tool was listed; the agent was given one


def fanout_workflow(url: str, server: str, *, fan: int, call: str, extra: str = "") -> str:
    return f"""\
version: 1
name: fan
mcp_servers:
  everything: {server}
models:
  main:
    provider: openai
    base_url: "{url}"
    model: test-model
    api_key_env: RUNNER_TEST_KEY
    stream: false
    pool: {{max_connections: 200}}
agents:
  a: {{model: main, tools: [{{mcp: everything, include: [{call}]}}]}}
stages:
  - id: fan
    input: "item {{{{ vars.item }}}}"
    fanout: {{for_each: "{{{{ range({fan}) | list }}}}", agent: a, max_concurrency: {fan}}}
{extra}"""


def tool_calling(name: str, arguments: Any) -> Any:
    """The loopback model: its first answer calls the tool, its second repeats the tool's result."""

    def respond(body: dict[str, Any]) -> Plan:
        last = body["messages"][-1]
        if last["role"] == "tool":
            return Plan(content=f"tool said: {last['content']}")
        item = last["content"].split()[-1]
        args = arguments(item) if callable(arguments) else arguments
        call = {"id": f"call_{item}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
        return Plan(content="", tool_calls=[call], finish_reason="tool_calls")

    return respond


@pytest.fixture
def oai(monkeypatch: pytest.MonkeyPatch) -> Iterator[OAIServer]:
    monkeypatch.setenv("RUNNER_TEST_KEY", "sk-test-mcp")
    with OAIServer() as server:
        yield server


@needs_everything
def test_a_50_way_fanout_shares_one_server_everything_process_and_calls_it_concurrently(
    tmp_path: Path, oai: OAIServer
) -> None:
    oai.responder = tool_calling("trigger-long-running-operation", {"duration": 2, "steps": 1})
    path = tmp_path / "wf.yaml"
    server = f"{{command: {NODE}, args: [{EVERYTHING}, stdio], max_concurrency: 50, timeout: 60}}"
    path.write_text(fanout_workflow(oai.url, server, fan=50, call="trigger-long-running-operation"))
    outcome, report = run(path, tmp_path / "run")
    assert outcome.status == "ok", outcome.error
    assert [o.content for o in outcome.output] == [
        "tool said: Long running operation completed. Duration: 2 seconds, Steps: 1."
    ] * 50
    assert len(report["mcp_servers"]["everything"]["pids"]) == 1  # one process for the 50 branches
    tools = [n for n in report["nodes"] if n["kind"] == "tool"]
    assert len(tools) == 50 and {n["tool"] for n in tools} == {"mcp.everything.trigger-long-running-operation"}
    # each call takes 2 s in the server: 50 of them one after the other would take 100 s
    spread = max(n["end_s"] for n in tools) - min(n["start_s"] for n in tools)
    assert spread < 50, spread
    overlapping = max(sum(1 for o in tools if o["start_s"] <= n["start_s"] < o["end_s"]) for n in tools)
    assert overlapping >= 10
    # the tool's JSON Schema reached the model as the server gave it
    sent = oai.requests[0].body["tools"]
    assert [t["function"]["name"] for t in sent] == ["trigger-long-running-operation"]
    assert sent[0]["function"]["parameters"] == listed_schemas()["trigger-long-running-operation"]


def listed_schemas() -> dict[str, Any]:
    """The input schemas server-everything lists, asked with the SDK's own client (what it gives depends on the
    version npm installed, and on the zod its dependencies resolved to)."""
    import anyio  # noqa: PLC0415
    from mcp import Client  # noqa: PLC0415
    from mcp.client.stdio import StdioServerParameters, stdio_client  # noqa: PLC0415

    async def listed() -> dict[str, Any]:
        params = StdioServerParameters(command=str(NODE), args=[str(EVERYTHING), "stdio"])
        with open(os.devnull, "w") as errlog, anyio.fail_after(60):  # noqa: ASYNC230 - /dev/null, once
            async with Client(stdio_client(params, errlog=errlog)) as client:
                return {t.name: t.input_schema for t in (await client.list_tools()).tools}

    return anyio.run(listed)


@needs_everything
def test_killing_the_server_mid_run_fails_the_calls_clearly_and_leaves_no_process(
    tmp_path: Path, oai: OAIServer
) -> None:
    oai.responder = tool_calling("trigger-long-running-operation", {"duration": 30, "steps": 1})
    marker = f"everything-kill-{os.getpid()}"
    path = tmp_path / "wf.yaml"
    server = f"{{command: {NODE}, args: [{EVERYTHING}, stdio, {marker}], max_concurrency: 50}}"
    path.write_text(fanout_workflow(oai.url, server, fan=50, call="trigger-long-running-operation"))
    killed: list[int] = []

    def kill_when_the_calls_are_out() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            firsts = [r for r in oai.requests if r.body["messages"][-1]["role"] == "user"]
            pids = children_running(marker)
            if len(firsts) == 50 and pids:
                time.sleep(0.5)  # the 50 calls reach the server (each then runs 30 s)
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
                killed.extend(pids)
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_when_the_calls_are_out)
    killer.start()
    outcome, report = run(path, tmp_path / "run")
    killer.join()
    assert len(killed) == 1
    assert outcome.status == "ok", outcome.error  # each branch's model was told, and answered
    said = {o.content for o in outcome.output}
    assert said == {
        "tool said: error: mcp server 'everything' exited with code -9 during a call of "
        "'trigger-long-running-operation'; its stderr ends:\n  Starting default (STDIO) server...; it is restarted "
        "for the next call"
    }
    assert {n["status"] for n in report["nodes"] if n["kind"] == "tool"} == {"failed"}
    assert children_running(marker) == []


@needs_everything
def test_server_everything_over_streamable_http_with_a_header_from_the_environment(
    tmp_path: Path, oai: OAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"PATH": os.environ["PATH"], "PORT": str(port), "HOME": str(tmp_path)}
    proc = subprocess.Popen([str(NODE), str(EVERYTHING), "streamableHttp"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # bounded by the pytest timeout; the server says when it listens
            if "listening on port" in line:
                break
        monkeypatch.setenv("RUNNER_TEST_MCP_TOKEN", "token-for-the-server")
        oai.responder = tool_calling("echo", lambda item: {"message": f"hello {item}"})
        server = (
            f"{{url: 'http://127.0.0.1:{port}/mcp', "
            "headers: {Authorization: {env: RUNNER_TEST_MCP_TOKEN, prefix: 'Bearer '}}}"
        )
        path = tmp_path / "wf.yaml"
        path.write_text(fanout_workflow(oai.url, server, fan=3, call="echo"))
        outcome, report = run(path, tmp_path / "run")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        assert proc.stderr is not None
        proc.stderr.close()
    assert outcome.status == "ok", outcome.error
    assert [o.content for o in outcome.output] == [f"tool said: Echo: hello {i}" for i in range(3)]
    assert report["mcp_servers"]["everything"]["transport"] == "http"
    assert "pids" not in report["mcp_servers"]["everything"]
    for file in (tmp_path / "run").rglob("*"):
        if file.is_file():
            assert b"token-for-the-server" not in file.read_bytes(), file


@needs_everything
def test_server_everything_sees_only_the_variables_it_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNNER_TEST_SECRET_TOKEN", "secret-value-for-nobody")
    monkeypatch.setenv("RUNNER_TEST_SHARED", "shared-value")
    path = tmp_path / "wf.yaml"
    path.write_text(
        f"""\
version: 1
name: env
mcp_servers:
  everything: {{command: {NODE}, args: [{EVERYTHING}, stdio], env: [RUNNER_TEST_SHARED]}}
agents:
  a: {{model: m, tools: [mcp.everything.get-env]}}
"""
        + scripted_agent("[{name: get-env, arguments: {}}]")
    )
    outcome, _ = run(path, tmp_path / "run")
    assert outcome.status == "ok", outcome.error
    seen = json.loads(outcome.output.content)
    assert seen.get("RUNNER_TEST_SHARED") == "shared-value"
    assert "RUNNER_TEST_SECRET_TOKEN" not in seen
    assert "secret-value-for-nobody" not in outcome.output.content
    assert sys.executable  # the server is node: nothing of Python's environment leaked into it either
    assert not any(k.startswith("PYTHON") or k == "VIRTUAL_ENV" for k in seen), sorted(seen)
