"""``runner serve WF... --mcp`` (issue 22 item 4): workflows served as MCP tools, over stdio and streamable HTTP.

Real parts: the server is ``python -m runner serve`` as a user starts it; the clients are the official SDK's
``mcp.Client`` and the MCP Inspector's CLI mode (a third-party client, from the npm registry: ``.ci/run``
installs it into ``.ci/node``). The models are scripted, or an OpenAI-compatible model on the test's own HTTP
server on 127.0.0.1 (``tests/oai_server.py``) where the sharing of connections between calls is checked.
Every server started here is stopped here; every wait is bounded and ends on what the server said or sent.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.cli import main
from runner.workflow.toolschema import input_schema, output_schema
from tests.conftest import ROOT
from tests.oai_server import OAIServer, Plan

mcp = pytest.importorskip("mcp", reason="runner[mcp] is not installed")
anyio = pytest.importorskip("anyio")

from mcp import Client  # noqa: E402
from mcp.client.stdio import StdioServerParameters, stdio_client  # noqa: E402
from mcp.shared.exceptions import MCPError  # noqa: E402

# one worker runs this module (pytest-xdist): its HTTP server starts once
pytestmark = pytest.mark.xdist_group("serve-mcp")

INSPECTOR = ROOT / ".ci" / "node" / "node_modules" / ".bin" / "mcp-inspector"
BOUND = 30  # seconds: only bounds a hang; every wait ends on an event first

CLASSIFY = """\
version: 1
name: classify
description: Labels a support ticket.
inputs:
  ticket: {type: string, description: "the ticket's text"}
  tags: {type: array, items: string, default: [support]}
  urgent: {type: boolean, default: false}
  weight: {type: number, default: 0.5}
  limit: {type: integer, default: 3}
  extra: {type: object, default: {}}
models:
  m:
    provider: scripted
    reply: "{{ {'label': 'billing' if 'invoice' in inputs.ticket else 'other', 'urgent': inputs.urgent} | tojson }}"
    latency: {first_token_ms: 5, tokens_per_second: 1000}
agents:
  classifier:
    model: m
    sys_prompt: "Label the ticket."
    output:
      schema:
        type: object
        required: [label, urgent]
        properties:
          label: {enum: [billing, other]}
          urgent: {type: boolean}
stages:
  - id: read
    agent: classifier
    input: "{{ inputs.ticket }}"
  - id: label
    agent: classifier
    input: "{{ inputs.ticket }}"
report: {dir: reports}
"""

SLOW = """\
version: 1
name: slow
description: Waits a minute for its model.
models:
  m: {provider: scripted, reply: "done", latency: {first_token_ms: 60000, tokens_per_second: 100}}
agents:
  a: {model: m, sys_prompt: "You wait."}
stages:
  - id: first
    agent: a
    input: "go"
  - id: second
    agent: a
report: {dir: reports}
"""

OPENAI = """\
version: 1
name: ask
description: Asks a model on an OpenAI-compatible endpoint.
inputs:
  question: {type: string}
models:
  m:
    provider: openai
    model: test-model
    base_url: "{url}"
    stream: false
    pool: {max_connections: 2}
agents:
  a: {model: m, sys_prompt: "Answer."}
stages:
  - id: answer
    agent: a
    input: "{{ inputs.question }}"
report: {dir: reports}
"""

CLASSIFY_TOOL_SCHEMA = {
    "type": "object",
    "properties": {
        "ticket": {"type": "string", "description": "the ticket's text"},
        "tags": {"type": "array", "items": {"type": "string"}, "default": ["support"]},
        "urgent": {"type": "boolean", "default": False},
        "weight": {"type": "number", "default": 0.5},
        "limit": {"type": "integer", "default": 3},
        "extra": {"type": "object", "default": {}},
    },
    "additionalProperties": False,
    "required": ["ticket"],
}
CLASSIFY_OUTPUT_SCHEMA = {
    "type": "object",
    "required": ["label", "urgent"],
    "properties": {"label": {"enum": ["billing", "other"]}, "urgent": {"type": "boolean"}},
}
PROGRESS = [
    (1.0, 4.0, "stage read started"),
    (2.0, 4.0, "stage read finished"),
    (3.0, 4.0, "stage label started"),
    (4.0, 4.0, "stage label finished"),
]


@pytest.fixture
def served(tmp_path: Path) -> Path:
    """A folder holding the served workflows; the servers run there (reports go to its reports/)."""
    (tmp_path / "classify.yaml").write_text(CLASSIFY, encoding="utf-8")
    (tmp_path / "slow.yaml").write_text(SLOW, encoding="utf-8")
    return tmp_path


def _env() -> dict[str, str]:
    return {"PYTHONPATH": str(ROOT), "NO_COLOR": "1", "RUNNER_CACHE_DIR": os.environ.get("RUNNER_CACHE_DIR", "")}


def _stdio(folder: Path, errlog: Any, *workflows: str) -> Any:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "runner", "serve", *workflows, "--mcp"],
        env=_env(),
        cwd=folder,
    )
    return stdio_client(params, errlog=errlog)


def _reports(folder: Path, name: str) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((folder / "reports").glob(f"{name}-*.json"))]


def _wait_for_line(path: Path, text: str) -> str:
    """The server's stderr (a file) once it holds ``text``."""
    deadline = time.monotonic() + BOUND
    while time.monotonic() < deadline:
        log = path.read_text(encoding="utf-8") if path.exists() else ""
        if text in log:
            return log
        time.sleep(0.02)
    raise AssertionError(f"the server did not say {text!r} within {BOUND} s:\n{log}")


# -- the schemas, in-process ------------------------------------------------------------------------------------


def test_the_input_schema_is_made_from_the_inputs(write_wf: Any) -> None:
    import runner

    wf = runner.load(write_wf(CLASSIFY, "classify.yaml"))
    assert input_schema(wf) == CLASSIFY_TOOL_SCHEMA
    assert output_schema(wf) == CLASSIFY_OUTPUT_SCHEMA
    slow = runner.load(write_wf(SLOW, "slow.yaml"))
    assert input_schema(slow) == {"type": "object", "properties": {}, "additionalProperties": False}
    assert output_schema(slow) is None  # a text reply: the answer is its text only


# -- the SDK's client over stdio --------------------------------------------------------------------------------


def test_stdio_lists_calls_with_progress_refuses_bad_arguments_and_cancels(served: Path) -> None:
    """One server for the whole session (its start imports the SDK: seconds under load)."""
    errors = served / "server.err"

    async def session() -> dict[str, Any]:
        seen: dict[str, Any] = {"progress": [], "cancelled": []}

        async def progress(step: float, total: float | None, message: str | None) -> None:
            seen["progress"].append((step, total, message))

        with anyio.fail_after(BOUND), errors.open("w") as errlog:
            async with Client(_stdio(served, errlog, "classify.yaml", "slow.yaml")) as client:
                seen["tools"] = (await client.list_tools()).tools
                seen["ok"] = await client.call_tool(
                    "classify", {"ticket": "my invoice", "urgent": True}, progress_callback=progress
                )
                for name, arguments in [
                    ("bad-type", {"ticket": 3}),
                    ("missing", {"urgent": True}),
                    ("unknown-field", {"ticket": "x", "tiket": "y"}),
                    ("bad-item", {"ticket": "x", "tags": ["a", 1]}),
                ]:
                    with pytest.raises(MCPError) as caught:
                        await client.call_tool("classify", arguments)
                    seen[name] = caught.value.message
                with pytest.raises(MCPError) as unknown:
                    await client.call_tool("clasify", {"ticket": "x"})
                seen["unknown-tool"] = unknown.value.message

                # Cancellation: the client cancels a call while its run waits for its model.
                started = anyio.Event()

                async def slow_progress(step: float, total: float | None, message: str | None) -> None:
                    seen["cancelled"].append(message)
                    started.set()

                async with anyio.create_task_group() as group:
                    group.start_soon(lambda: client.call_tool("slow", {}, progress_callback=slow_progress))
                    await started.wait()  # the run is in its first stage
                    group.cancel_scope.cancel()  # the SDK sends notifications/cancelled
                # The server says so once the run has wound down and its report is written; it still serves.
                await anyio.to_thread.run_sync(_wait_for_line, errors, "runner: slow interrupted")
                seen["after"] = await client.call_tool("classify", {"ticket": "hello"})
        return seen

    seen = anyio.run(session)
    tools = {tool.name: tool for tool in seen["tools"]}
    assert list(tools) == ["classify", "slow"]
    assert tools["classify"].description == "Labels a support ticket."
    assert tools["classify"].input_schema == CLASSIFY_TOOL_SCHEMA
    assert tools["classify"].output_schema == CLASSIFY_OUTPUT_SCHEMA
    assert tools["slow"].description == "Waits a minute for its model."
    assert tools["slow"].output_schema is None

    ok = seen["ok"]
    assert ok.is_error is False
    assert ok.structured_content == {"label": "billing", "urgent": True}
    assert json.loads(ok.content[0].text) == {"label": "billing", "urgent": True}
    assert seen["progress"] == PROGRESS
    first, after = _reports(served, "classify")  # the refused calls ran nothing
    assert first["run"]["status"] == after["run"]["status"] == "ok"
    assert ok.meta["runner/status"] == "ok"
    assert ok.meta["runner/report"] == str(Path("reports") / Path(ok.meta["runner/report"]).name)
    assert (served / ok.meta["runner/report"]).is_file()

    assert seen["bad-type"] == "classify: invalid arguments: input ticket: expected string, got int"
    assert seen["missing"] == (
        'classify: invalid arguments: input ticket is required: pass "ticket" in the arguments (classify.yaml:5:3)'
    )
    assert seen["unknown-field"] == "classify: invalid arguments: input 'tiket' is not declared by the workflow"
    assert seen["bad-item"] == "classify: invalid arguments: input tags: item 1 (1) is not of type string"
    assert seen["unknown-tool"] == "unknown tool 'clasify': this server serves classify, slow"

    assert seen["cancelled"] == ["stage first started"]
    [report] = _reports(served, "slow")
    assert report["run"]["status"] == "interrupted"
    nodes = {node["id"]: node for node in report["nodes"]}
    assert nodes["first"]["status"] == "cancelled"
    assert "second" not in nodes
    assert seen["after"].structured_content == {"label": "other", "urgent": False}
    log = errors.read_text(encoding="utf-8")
    assert f"; report: {ok.meta['runner/report']}\n" in log
    assert "runner: slow interrupted in " in log


def test_stdio_stops_on_sigterm_with_143(served: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", "serve", "slow.yaml", "--mcp"],
        cwd=served,
        env={**os.environ, **_env()},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        hello = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
        proc.stdin.write(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello}) + "\n")
        proc.stdin.flush()
        answer = json.loads(proc.stdout.readline())  # it serves: the handshake's answer
        assert answer["result"]["serverInfo"]["name"] == "runner"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=BOUND)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert (proc.returncode, err) == (143, "runner: terminated\n")


# -- streamable HTTP --------------------------------------------------------------------------------------------


class HTTPServer:
    """``runner serve --transport http --port 0`` in the background; its URL read from what it says."""

    def __init__(self, folder: Path, *workflows: str) -> None:
        self.folder = folder
        self.oai: OAIServer | None = None
        self.errors = folder / "http.err"
        self.log = self.errors.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runner", "serve", *workflows, "--mcp", "--transport", "http", "--port", "0"],
            cwd=folder,
            env={**os.environ, **_env()},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        line = _wait_for_line(self.errors, "/mcp\n")
        self.url = line.split(" at ", 1)[1].split()[0]

    def stop(self) -> int:
        """SIGINT, as Ctrl-C; the exit code (killed after the bound, which fails the test that asks)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(BOUND)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HTTPServer]:
    """One HTTP server for the module's HTTP tests, serving the scripted workflows and one whose model is on an
    OpenAI-compatible server of the test's (``server.oai``)."""
    folder = tmp_path_factory.mktemp("served")
    (folder / "classify.yaml").write_text(CLASSIFY, encoding="utf-8")
    (folder / "slow.yaml").write_text(SLOW, encoding="utf-8")
    with OAIServer() as oai:
        oai.default = Plan(content="forty-two")
        (folder / "ask.yaml").write_text(OPENAI.replace("{url}", oai.url), encoding="utf-8")
        cached = OPENAI.replace("{url}", oai.url).replace("name: ask", "name: cached")
        cached = cached.replace("model: test-model", "model: cached-model\n    cache: {responses: {dir: answers}}")
        (folder / "cached.yaml").write_text(cached, encoding="utf-8")
        server = HTTPServer(folder, "classify.yaml", "slow.yaml", "ask.yaml", "cached.yaml")
        server.oai = oai
        try:
            yield server
        finally:
            server.stop()


def test_http_serves_on_loopback_with_progress_in_both_protocol_eras(http_server: HTTPServer) -> None:
    assert http_server.url.startswith("http://127.0.0.1:")

    async def session(mode: str) -> tuple[list[Any], Any, list[Any]]:
        seen: list[Any] = []

        async def progress(step: float, total: float | None, message: str | None) -> None:
            seen.append((step, total, message))

        with anyio.fail_after(BOUND):
            async with Client(http_server.url, mode=mode) as client:  # type: ignore[arg-type]
                tools = (await client.list_tools()).tools
                result = await client.call_tool("classify", {"ticket": "an invoice"}, progress_callback=progress)
        return tools, result, seen

    for mode in ("auto", "legacy"):  # 2026-07-28 and the initialize handshake (the Inspector's era)
        tools, result, seen = anyio.run(session, mode)
        assert [t.name for t in tools] == ["classify", "slow", "ask", "cached"]
        assert tools[0].input_schema == CLASSIFY_TOOL_SCHEMA
        assert result.structured_content == {"label": "billing", "urgent": False}
        assert seen == PROGRESS


def test_http_stops_on_sigint_cancelling_the_calls_in_flight(served: Path) -> None:
    server = HTTPServer(served, "classify.yaml", "slow.yaml")
    answers: list[Any] = []
    try:

        async def session() -> None:
            with anyio.fail_after(BOUND):
                async with Client(server.url) as client:
                    started = anyio.Event()

                    async def progress(step: float, total: float | None, message: str | None) -> None:
                        started.set()

                    async with anyio.create_task_group() as group:

                        async def call() -> None:
                            answers.append(await client.call_tool("slow", {}, progress_callback=progress))

                        group.start_soon(call)
                        await started.wait()
                        server.proc.send_signal(signal.SIGINT)

        anyio.run(session)
    finally:
        code = server.stop()
    log = server.errors.read_text(encoding="utf-8")
    assert code == 130, log
    assert log.endswith("runner: interrupted\n"), log
    assert "runner: slow interrupted in " in log
    [answer] = answers  # the call answered before the server went away
    assert answer.is_error is True
    assert answer.content[0].text == "the run of slow was interrupted: the server is stopping"
    [report] = _reports(served, "slow")
    assert report["run"]["status"] == "interrupted"


def test_concurrent_calls_share_one_provider_and_its_pool(http_server: HTTPServer) -> None:
    calls = 8
    oai = http_server.oai
    assert oai is not None
    oai.reset()  # the module's other calls are not counted (a connection they left open may serve these)
    oai.default = Plan(content="forty-two")

    async def session() -> list[Any]:
        results: list[Any] = []
        with anyio.fail_after(BOUND):
            async with Client(http_server.url) as client:
                async with anyio.create_task_group() as group:
                    for i in range(calls):

                        async def call(i: int = i) -> None:
                            results.append(await client.call_tool("ask", {"question": f"q{i}"}))

                        group.start_soon(call)
                results.append(await client.call_tool("ask", {"question": "once more"}))
        return results

    results = anyio.run(session)
    assert [r.content[0].text for r in results] == ["forty-two"] * (calls + 1)
    assert len(oai.requests) == calls + 1
    # One client for the server's life: its pool of 2 connections served every call, concurrent or not (a
    # provider per call opens one connection per call at least: 9 here).
    assert oai.connections <= 2


def test_a_model_s_response_cache_serves_the_calls(http_server: HTTPServer) -> None:
    oai = http_server.oai
    assert oai is not None

    async def session() -> list[Any]:
        with anyio.fail_after(BOUND):
            async with Client(http_server.url) as client:
                return [await client.call_tool("cached", {"question": "same"}) for _ in range(2)]

    first, second = anyio.run(session)
    assert second.content[0].text == first.content[0].text
    sent = [r for r in oai.requests if r.body["model"] == "cached-model"]
    assert len(sent) == 1  # the second call was answered from the cache (models.m.cache.responses)
    assert len(list((http_server.folder / "answers").glob("*.json"))) == 1


def test_a_failed_run_is_an_error_answer_with_its_reason_and_report(http_server: HTTPServer) -> None:
    oai = http_server.oai
    assert oai is not None
    oai.plan(Plan(status=400, body=b'{"error": {"message": "no such model: test-model"}}'))

    async def session() -> Any:
        with anyio.fail_after(BOUND):
            async with Client(http_server.url) as client:
                return await client.call_tool("ask", {"question": "why?"})

    result = anyio.run(session)
    assert result.is_error is True
    assert result.structured_content is None
    assert result.content[0].text == (
        f"the run of ask failed: model 'm' (test-model at {oai.url}): HTTP 400: no such model: test-model"
    )
    assert result.meta["runner/status"] == "failed"
    report = json.loads((http_server.folder / result.meta["runner/report"]).read_text(encoding="utf-8"))
    assert report["run"]["status"] == "failed"


# -- the MCP Inspector's CLI mode: a third-party client ---------------------------------------------------------

needs_inspector = pytest.mark.skipif(
    not INSPECTOR.exists() or shutil.which("node") is None,
    reason="the MCP Inspector is not installed: npm install --prefix .ci/node @modelcontextprotocol/inspector",
)


def _inspector(*args: str, cwd: Path) -> Any:
    proc = subprocess.run(
        [str(INSPECTOR), "--cli", *args],
        cwd=cwd,
        env={**os.environ, **_env()},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def _serve_args() -> list[str]:
    return [sys.executable, "-m", "runner", "serve", "classify.yaml", "slow.yaml", "--mcp"]


@needs_inspector
def test_the_inspector_lists_and_calls_over_stdio(served: Path) -> None:
    listed = _inspector(*_serve_args(), "--method", "tools/list", cwd=served)
    assert [t["name"] for t in listed["tools"]] == ["classify", "slow"]
    assert listed["tools"][0]["inputSchema"] == CLASSIFY_TOOL_SCHEMA
    call = ["--method", "tools/call", "--tool-name", "classify", "--tool-arg", "ticket=an invoice"]
    called = _inspector(*_serve_args(), *call, cwd=served)
    assert called["structuredContent"] == {"label": "billing", "urgent": False}
    assert called["isError"] is False


@needs_inspector
def test_the_inspector_lists_and_calls_over_http(http_server: HTTPServer) -> None:
    url, served = http_server.url, http_server.folder
    listed = _inspector(url, "--transport", "http", "--method", "tools/list", cwd=served)
    assert [t["name"] for t in listed["tools"]] == ["classify", "slow", "ask", "cached"]
    call = ["--method", "tools/call", "--tool-name", "classify", "--tool-arg", "ticket=hello", "urgent=true"]
    called = _inspector(url, "--transport", "http", *call, cwd=served)
    assert called["structuredContent"] == {"label": "other", "urgent": True}


# -- what is refused before serving -----------------------------------------------------------------------------


def test_invalid_workflows_are_refused_before_serving(served: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (served / "bad.yaml").write_text(CLASSIFY.replace("agent: classifier\n    input", "agent: clasifier\n    input", 1))
    (served / "twin.yaml").write_text(SLOW.replace("description:", "# a copy\ndescription:"), encoding="utf-8")
    os.chdir(served)
    assert main(["serve", "bad.yaml", "slow.yaml", "--mcp"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        "bad.yaml:29:12: error: stage 'read' uses agent 'clasifier', which is not defined [unknown-agent]\n"
    )
    assert main(["validate", "bad.yaml", "slow.yaml"]) == 1
    shown = capsys.readouterr().out  # the problems as runner validate shows them (its summary counts files checked)
    assert err.splitlines()[:-1] == shown.splitlines()[:-1]
    assert main(["serve", "slow.yaml", "twin.yaml", "--mcp"]) == 1
    assert capsys.readouterr().err == (
        "runner: error: twin.yaml:2:7: name: 'slow' is also the name of slow.yaml; each served workflow is a tool "
        "named by its `name:`, so give one of them another name\n"
    )
    assert main(["serve", "slow.yaml"]) == 2
    assert capsys.readouterr().err == "runner: error: runner serve needs a protocol: runner serve WF... --mcp\n"
    assert main(["serve", "slow.yaml", "--mcp", "--port", "9000"]) == 2
    assert capsys.readouterr().err == "runner: error: --port is for --transport http\n"


def test_an_address_that_cannot_be_listened_on_is_said_before_serving(
    served: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    monkeypatch.chdir(served)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "slow.yaml", "--mcp", "--transport", "http", "--port", str(port)]) == 1
    assert capsys.readouterr().err == (
        f"runner: error: --host 127.0.0.1 --port {port}: cannot listen there: Address already in use\n"
    )
    assert main(["serve", "slow.yaml", "--mcp", "--transport", "http", "--port", "70000"]) == 2
    assert "argument --port: expected a port from 0 to 65535, got '70000'" in capsys.readouterr().err


def test_progress_counts_the_top_level_stages_only() -> None:
    from runner.commands.mcp_tools import StageProgress
    from runner.live.events import NodeFailed, NodeFinished, NodeSkipped, NodeStarted, Token

    progress = StageProgress(("plan", "notes", "digest"))
    events = [
        NodeStarted(0.0, "plan", "agent"),
        Token(0.1, "plan", "a", "text"),
        NodeFinished(0.2, "plan", "agent", 0.2),
        NodeSkipped(0.2, "notes", "when gave false"),
        NodeStarted(0.3, "digest", "agent"),
        NodeStarted(0.3, "digest.tool[0.1]", "tool"),
        NodeFailed(0.4, "digest", "agent", 0.1, "boom"),
    ]
    assert [progress.of(e) for e in events] == [
        (1.0, 6.0, "stage plan started"),
        None,
        (2.0, 6.0, "stage plan finished"),
        (4.0, 6.0, "stage notes skipped: when gave false"),
        (5.0, 6.0, "stage digest started"),
        None,
        (6.0, 6.0, "stage digest failed: boom"),
    ]
    assert progress.of(NodeStarted(0.5, "digest", "agent")) == (7.0, None, "stage digest started")  # a rerun


def test_without_the_extra_serve_says_how_to_install_it(
    served: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "mcp", None)  # as if runner[mcp] were not installed
    monkeypatch.chdir(served)
    assert main(["serve", "slow.yaml", "--mcp"]) == 1
    assert capsys.readouterr().err == (
        "runner: error: runner serve --mcp needs the MCP SDK, which is not installed: pip install 'runner[mcp]'\n"
    )


def test_nothing_but_serve_imports_mcp(served: Path) -> None:
    code = (
        "import sys; from runner.cli import main; "
        "assert main(['run', 'classify.yaml', '--set', 'ticket=x', '-q']) == 0; "
        "assert main(['validate', 'classify.yaml']) == 0; "
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('mcp', 'mcp_types', 'uvicorn', 'starlette')); "
        "print(loaded)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=served,
        env={**os.environ, **_env()},
        capture_output=True,
        text=True,
        timeout=BOUND,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "[]"
