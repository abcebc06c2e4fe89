"""A child workflow whose agents use MCP servers (issues 22 items 1-3 together): its servers start once for the
run, shared by every stage and branch that runs the child, and stop with the run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from runner.engine.session import run_plan
from runner.plan.compile import compile_workflow
from runner.validate.check import load_workflow
from runner.workflow.inputs import resolve_inputs
from tests.conftest import ROOT
from tests.test_mcp_faults import alive, pids_of

pytest.importorskip("mcp")
pytestmark = pytest.mark.timeout(60)


def test_a_childs_mcp_tools_run_through_one_server_for_every_branch(tmp_path: Path) -> None:
    (tmp_path / "child.yaml").write_text(
        f"""\
version: 1
name: child
mcp_servers:
  f: {{command: {sys.executable}, args: [{ROOT / "tests" / "mcp_fault_server.py"}, --pids, {tmp_path / "pids"}]}}
models:
  m:
    provider: scripted
    turns:
      - tool_calls: [{{name: echo, arguments: {{text: "{{{{ input }}}}"}}}}]
    reply: "echoed {{{{ tool_results | join(' ') }}}}"
agents:
  a: {{model: m, tools: [{{mcp: f}}]}}
stages:
  - {{id: s, agent: a}}
""",
        encoding="utf-8",
    )
    parent = tmp_path / "parent.yaml"
    parent.write_text(
        """\
version: 1
name: parent
stages:
  - id: each
    fanout: {for_each: "{{ ['a', 'b', 'c'] }}", as: item, workflow: child.yaml, inputs: {}}
    input: "{{ vars.item }}"
""",
        encoding="utf-8",
    )
    wf = load_workflow(parent)
    outcome = run_plan(compile_workflow(wf), resolve_inputs(wf, []), run_dir=tmp_path / "run")
    assert outcome.status == "ok", outcome.error
    assert [str(o) for o in outcome.output] == ["echoed a", "echoed b", "echoed c"]
    (pid,) = pids_of(tmp_path)  # one server process for the three runs of the child
    assert not alive(pid)
    assert (tmp_path / "run" / "children" / "child" / "mcp" / "f.stderr.log").is_file()
