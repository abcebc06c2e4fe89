"""MCP servers as tool sources (issue 22): the faults of a server written with the SDK (tests/mcp_fault_server.py),
its lifecycle (start timeout, crash and one restart, no process left), the environment it receives, validate."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.engine.session import run_plan
from runner.plan.compile import compile_workflow
from runner.validate.check import check_file, load_workflow
from runner.workflow.inputs import resolve_inputs
from tests.conftest import ROOT, assert_valid_report, run_cli, start_cli

pytest.importorskip("mcp")

SERVER = ROOT / "tests" / "mcp_fault_server.py"


def workflow(tmp_path: Path, calls: str, *, flags: str = "", server: str = "", agent: str = "{mcp: f}") -> Path:
    """A workflow whose scripted model makes ``calls`` in its first turn, then answers with the tool results."""
    pids = tmp_path / "pids"
    text = f"""\
version: 1
name: t
mcp_servers:
  f:
    command: {sys.executable}
    args: [{SERVER}, --pids, {pids}{flags}]
    start_timeout: 20
{server}models:
  m:
    provider: scripted
    turns:
      - tool_calls: {calls}
    reply: "{{{{ tool_results | join(' || ') }}}}"
agents:
  a: {{model: m, tools: [{agent}]}}
stages:
  - {{id: s, agent: a, input: go}}
"""
    path = tmp_path / "wf.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def run(path: Path, run_dir: Path):
    wf = load_workflow(path)
    outcome = run_plan(compile_workflow(wf), resolve_inputs(wf, []), run_dir=run_dir)
    report = outcome.report()
    assert_valid_report(report)
    return outcome, report


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is not left running: it waits for its parent to read its status
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def pids_of(tmp_path: Path) -> list[int]:
    return [int(line) for line in (tmp_path / "pids").read_text().split()]


def test_one_turn_meets_every_kind_of_tool_result(tmp_path: Path) -> None:
    calls = (
        "[{name: echo, arguments: {text: hello}}, {name: slow, arguments: {seconds: 30}}, {name: boom, arguments: {}},"
        " {name: big, arguments: {megabytes: 50}}, {name: garbage, arguments: {}}]"
    )
    # three servers of the same program, each with its own settings: a per-call timeout of 1 s on h
    more = (
        f"  g: {{command: {sys.executable}, args: [{SERVER}, --pids, {tmp_path / 'pids'}], max_concurrency: 1}}\n"
        f"  h: {{command: {sys.executable}, args: [{SERVER}, --pids, {tmp_path / 'pids'}], timeout: 1}}\n"
    )
    agent = "{mcp: f, include: [echo, boom, garbage]}, mcp.g.big, mcp.h.slow"
    path = workflow(tmp_path, calls, flags=", --garbage", server=more, agent=agent)
    outcome, report = run(path, tmp_path / "run")
    assert outcome.status == "ok", outcome.error
    echo, slow, boom, big, garbage = outcome.output.content.split(" || ")
    assert echo == "hello"
    assert slow == "error: tool 'mcp.h.slow' timed out after 1 s"
    assert boom == ("error: tool 'boom' of mcp server 'f' failed: Error executing tool boom")
    # 50 MB cut to the agent's tool-message budget (2000 tokens: 8000 characters), with a note
    assert big == "x" * 8000 + (
        "\n[cut: the result of mcp.g.big was 52,428,800 characters; only the first 8,000 are shown "
        "(the agent's tool-message budget)]"
    )
    assert garbage == "answered after garbage"  # the lines that are not JSON-RPC are skipped
    tools = [(n["tool"], n["server"]) for n in report["nodes"] if n["kind"] == "tool"]
    assert tools == [
        ("mcp.f.echo", "f"),
        ("mcp.h.slow", "h"),
        ("mcp.f.boom", "f"),
        ("mcp.g.big", "g"),
        ("mcp.f.garbage", "f"),
    ]
    assert len(pids_of(tmp_path)) == 3
    assert not any(alive(pid) for pid in pids_of(tmp_path))
    assert (tmp_path / "run" / "mcp" / "f.stderr.log").is_file()
    assert (tmp_path / "run" / "mcp" / "g.stderr.log").is_file()


def test_a_crash_fails_the_call_with_the_stderr_tail_and_restarts_the_server_once(tmp_path: Path) -> None:
    path = workflow(tmp_path, "[{name: die, arguments: {}}]")
    text = path.read_text().replace(
        "    reply:",
        "      - tool_calls: [{name: echo, arguments: {text: back}}]\n    reply:",
    )
    path.write_text(text)
    outcome, report = run(path, tmp_path / "run")
    assert outcome.status == "ok", outcome.error
    died, echoed = outcome.output.content.split(" || ")
    assert died == (
        "error: mcp server 'f' exited with code 7 during a call of 'die'; its stderr ends:\n"
        "  fault server: dying in the middle of a call; it is restarted for the next call"
    )
    assert echoed == "back"
    first, second = pids_of(tmp_path)
    assert not alive(first) and not alive(second)
    assert report["mcp_servers"]["f"]["restarts"] == 1 and report["mcp_servers"]["f"]["transport"] == "stdio"
    assert report["mcp_servers"]["f"]["tools"] == 9  # every tool of tests/mcp_fault_server.py


def test_a_second_crash_fails_the_run(tmp_path: Path) -> None:
    path = workflow(tmp_path, "[{name: die, arguments: {}}]")
    text = path.read_text().replace(
        "    reply:",
        "      - tool_calls: [{name: die, arguments: {}}]\n    reply:",
    )
    path.write_text(text)
    outcome, _ = run(path, tmp_path / "run")
    assert outcome.status == "failed"
    assert str(outcome.error) == (
        "mcp server 'f' exited with code 7 during a call of 'die'; its stderr ends:\n"
        "  fault server: dying in the middle of a call\n"
        "  fault server: dying in the middle of a call; it was restarted once already, so the run stops"
    )
    assert not any(alive(pid) for pid in pids_of(tmp_path))


def test_a_server_that_exits_at_start_fails_the_run_before_any_model_call(tmp_path: Path) -> None:
    path = workflow(tmp_path, "[{name: echo, arguments: {text: x}}]", flags=", --exit-at-start")
    proc = run_cli("run", str(path), "--report-dir", str(tmp_path / "reports"), timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert (
        "mcp server 'f' exited with code 3 before it answered initialize and tools/list; its stderr ends:\n"
        "  fault server: cannot start, the configuration is missing"
    ) in proc.stderr
    assert "Traceback" not in proc.stderr
    report = json.loads(next((tmp_path / "reports").glob("*.json")).read_text())
    assert [n for n in report["nodes"] if n["kind"] == "agent"] == []  # no model was called


def test_a_server_that_never_answers_fails_within_its_start_timeout(tmp_path: Path) -> None:
    path = workflow(tmp_path, "[{name: echo, arguments: {text: x}}]", flags=", --silent")
    path.write_text(path.read_text().replace("start_timeout: 20", "start_timeout: 1.5"))
    started = time.monotonic()
    outcome, _ = run(path, tmp_path / "run")
    assert outcome.status == "failed"
    assert (
        str(outcome.error) == "mcp server 'f' did not answer initialize and tools/list within its start_timeout (1.5 s)"
    )
    assert time.monotonic() - started < 1.5 + 10  # the timeout, then at most the stop's graces (load)
    assert not any(alive(pid) for pid in pids_of(tmp_path))


def test_a_server_receives_only_the_variables_it_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNNER_TEST_SECRET_KEY", "sk-not-for-the-server")
    monkeypatch.setenv("RUNNER_TEST_ASKED", "yes")
    path = workflow(tmp_path, "[{name: env, arguments: {}}]")
    path.write_text(
        path.read_text().replace("    start_timeout: 20\n", "    start_timeout: 20\n    env: [RUNNER_TEST_ASKED]\n")
    )
    outcome, _ = run(path, tmp_path / "run")
    assert outcome.status == "ok", outcome.error
    names = set(json.loads(outcome.output.content))
    assert "RUNNER_TEST_ASKED" in names
    assert "RUNNER_TEST_SECRET_KEY" not in names and "PATH" not in names and "HOME" not in names
    for file in (tmp_path / "run").rglob("*"):
        if file.is_file():
            assert b"sk-not-for-the-server" not in file.read_bytes(), file


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_every_server_process(tmp_path: Path, sig: signal.Signals, code: int) -> None:
    release = tmp_path / "release"
    path = workflow(tmp_path, f"[{{name: wait_for, arguments: {{path: '{release}'}}}}]")
    proc = start_cli("run", str(path), "--report-dir", str(tmp_path / "reports"))
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "pids").exists() or not list((tmp_path / "reports").glob("runs/*/mcp/f.stderr.log")):
            assert time.monotonic() < deadline, "the server never started"
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        (pid,) = pids_of(tmp_path)
        time.sleep(0.5)  # the call is in flight (it waits for the release file, which never comes)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    assert not alive(pid)


def test_validate_locates_an_unknown_server_and_a_missing_command(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(
        """\
version: 1
name: t
mcp_servers:
  files: {command: ./no-such-server, cwd: .}
  clock: {command: definitely-not-a-program-here}
models:
  m: {provider: scripted}
agents:
  a: {model: m, tools: [{mcp: file}, mcp.clok.now, {mcp: clock}]}
stages:
  - {id: s, agent: a, input: go}
""",
        encoding="utf-8",
    )
    _, problems = check_file(path)
    assert [(p.line, p.column, p.rule, p.message, p.hint) for p in problems] == [
        (
            4,
            20,
            "mcp-command",
            f"mcp server 'files': command './no-such-server' was not found (from {tmp_path})",
            "install the server, or give the program's path (relative to the server's cwd)",
        ),
        (
            5,
            20,
            "mcp-command",
            "mcp server 'clock': command 'definitely-not-a-program-here' was not found (on PATH)",
            "install the server, or give the program's path (relative to the server's cwd)",
        ),
        (
            9,
            31,
            "unknown-mcp-server",
            "agent 'a' lists mcp server 'file', which is not defined",
            "did you mean 'files'?",
        ),
        (
            9,
            38,
            "unknown-mcp-server",
            "agent 'a' lists mcp server 'clok', which is not defined",
            "did you mean 'clock'?",
        ),
    ]


def test_validate_connect_locates_an_unknown_tool_with_the_closest_name(tmp_path: Path) -> None:
    agent = "{mcp: f, include: [echo, slwo]}, mcp.f.boon"
    path = workflow(tmp_path, "[{name: echo, arguments: {text: x}}]", agent=agent)
    clean = run_cli("validate", str(path), timeout=60)
    assert clean.returncode == 0, clean.stdout + clean.stderr  # offline, the tools are not known
    proc = run_cli("validate", "--connect", "--format", "json", str(path), timeout=60, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    found = [(d["line"], d["column"], d["rule"], d["message"], d["hint"]) for d in json.loads(proc.stdout)["problems"]]
    assert (tmp_path / ".runner" / "connect" / "mcp" / "f.stderr.log").is_file()
    assert found == [
        (
            15,
            50,
            "unknown-tool",
            "agent 'a' lists tool 'slwo' of mcp server 'f', which the server does not have",
            "did you mean 'slow'?",
        ),
        (
            15,
            58,
            "unknown-tool",
            "agent 'a' lists tool 'boon' of mcp server 'f', which the server does not have",
            "did you mean 'boom'?",
        ),
    ]


def test_without_the_sdk_a_workflow_with_mcp_fails_at_once_saying_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mcp" else real(name, *a))
    path = workflow(tmp_path, "[{name: echo, arguments: {text: x}}]")
    outcome, _ = run(path, tmp_path / "run")
    assert outcome.status == "failed"
    assert str(outcome.error) == (
        f"{path}: this workflow uses mcp_servers, and the MCP SDK is not installed: pip install 'runner[mcp]'"
    )
    assert not (tmp_path / "pids").exists()  # nothing was started


def test_a_dataset_batch_starts_one_server_for_all_its_rows(tmp_path: Path) -> None:
    path = workflow(tmp_path, "[{name: echo, arguments: {text: '{{ inputs.word }}'}}]")
    path.write_text(path.read_text().replace("name: t\n", "name: t\ninputs:\n  word: {type: string}\n"))
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"word": f"w{i}"}) + "\n" for i in range(6)))
    proc = run_cli("run", str(path), "--dataset", str(rows), "--report-dir", str(tmp_path / "r"), timeout=90)
    assert proc.returncode == 0, proc.stderr
    results = [json.loads(line) for line in next((tmp_path / "r").rglob("results.jsonl")).read_text().splitlines()]
    assert sorted(r["output"] for r in results) == [f"w{i}" for i in range(6)]
    (pid,) = pids_of(tmp_path)  # one process for the six rows
    assert not alive(pid)


def test_runner_run_refuses_a_missing_command_before_any_model_call(tmp_path: Path) -> None:
    path = workflow(tmp_path, "[{name: echo, arguments: {text: x}}]")
    path.write_text(path.read_text().replace(f"command: {sys.executable}", "command: no-such-mcp-server-program"))
    proc = run_cli("run", str(path), "--report-dir", str(tmp_path / "r"), timeout=60)
    assert proc.returncode == 1
    assert f"{path}:5:14: error: mcp server 'f': command 'no-such-mcp-server-program' was not found (on PATH)" in (
        proc.stderr
    )
    assert not (tmp_path / "pids").exists()


def test_the_schema_takes_a_stdio_or_an_http_server_not_both(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(
        """\
version: 1
name: t
mcp_servers:
  both: {command: x, url: "http://127.0.0.1:9/mcp"}
models:
  m: {provider: scripted}
agents:
  a: {model: m, tools: [{mcp: both, only: [x]}]}
stages:
  - {id: s, agent: a, input: go}
""",
        encoding="utf-8",
    )
    _, problems = check_file(path)
    assert [(p.line, p.rule) for p in problems] == [(4, "schema"), (8, "schema")]


def test_a_workflow_without_mcp_imports_none_of_it(tmp_path: Path) -> None:
    path = tmp_path / "plain.yaml"
    path.write_text(
        "version: 1\nname: plain\nmodels:\n  m: {provider: scripted}\nagents:\n  a: {model: m}\n"
        "stages:\n  - {id: s, agent: a, input: go}\n",
        encoding="utf-8",
    )
    code = (
        "import json, sys\n"
        "from runner.cli import main\n"
        f"codes = [main(['validate', {str(path)!r}]), main(['run', {str(path)!r}, '--quiet', '--report-dir', "
        f"{str(tmp_path / 'r')!r}])]\n"
        "print(json.dumps([codes, sorted(m for m in sys.modules if m.split('.')[0] in ('mcp', 'mcp_types', 'anyio', "
        "'httpx2') or m.startswith('runner.mcp'))]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == [[0, 0], []]


def test_a_traced_runs_tool_calls_carry_the_calls_span_to_the_server_and_an_untraced_one_nothing(
    tmp_path: Path,
) -> None:
    # OpenTelemetry (issue 22): the request's _meta carries W3C traceparent, where MCP servers read it (the SDK's
    # own server opens its span under it), naming the span the report exports for the call.
    from runner.engine.session import Session, run_session  # noqa: PLC0415
    from runner.events import span_id_of, started_at_text, trace_id_of, traceparent  # noqa: PLC0415

    path = workflow(tmp_path, "[{name: trace, arguments: {}}]")
    wf = load_workflow(path)
    for traced in (True, False):
        session = Session(
            compile_workflow(wf), resolve_inputs(wf, []), run_dir=tmp_path / f"run-{traced}", traced=traced
        )
        outcome = run_session(session, quiet=True)
        assert outcome.status == "ok", outcome.error
        (tool,) = [n["id"] for n in outcome.report()["nodes"] if n["kind"] == "tool"]
        if traced:
            trace = trace_id_of(outcome.info.run_id, started_at_text(outcome.info.started_at))
            assert outcome.output.content == traceparent(trace, span_id_of(trace, tool))
        else:
            assert outcome.output.content == "none"
