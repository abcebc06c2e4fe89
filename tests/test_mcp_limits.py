"""An MCP server's ``max_concurrency`` (issue 22): the calls in flight on it, counted by the server itself."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from runner.engine.session import run_plan
from runner.plan.compile import compile_workflow
from runner.validate.check import load_workflow
from runner.workflow.inputs import resolve_inputs

pytest.importorskip("mcp")

COUNTING_SERVER = '''\
import asyncio
from mcp.server import MCPServer

app = MCPServer("counting")
in_flight = 0
peak = 0


@app.tool()
async def hold(together: int) -> str:
    """Stay in flight until that many calls are (at most 5 s), then answer."""
    global in_flight, peak
    in_flight += 1
    peak = max(peak, in_flight)
    for _ in range(500):
        if in_flight >= together:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # one more call, were it let through, arrives while these are still here
    in_flight -= 1
    return "held"


@app.tool()
def most() -> str:
    """The most calls that were in flight at once."""
    return str(peak)


app.run()
'''


@pytest.mark.parametrize("bound", [1, 3])
def test_max_concurrency_bounds_the_calls_in_flight_on_a_server(tmp_path: Path, bound: int) -> None:
    (tmp_path / "counting.py").write_text(COUNTING_SERVER, encoding="utf-8")
    holds = ", ".join([f"{{name: hold, arguments: {{together: {bound}}}}}"] * 6)
    path = tmp_path / "wf.yaml"
    path.write_text(
        f"""\
version: 1
name: bound
mcp_servers:
  c: {{command: {sys.executable}, args: [counting.py], max_concurrency: {bound}}}
models:
  m:
    provider: scripted
    turns:
      - tool_calls: [{holds}]
      - tool_calls: [{{name: most, arguments: {{}}}}]
    reply: "{{{{ tool_results | join(' ') }}}}"
agents:
  a: {{model: m, tools: [{{mcp: c}}], max_parallel_tools: 6}}
stages:
  - {{id: s, agent: a, input: go}}
""",
        encoding="utf-8",
    )
    wf = load_workflow(path)
    outcome = run_plan(compile_workflow(wf), resolve_inputs(wf, []), run_dir=tmp_path / "run")
    assert outcome.status == "ok", outcome.error
    assert outcome.output.content == " ".join(["held"] * 6 + [str(bound)])
