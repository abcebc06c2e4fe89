"""Record a workflow's model traffic against the loopback server, stop the server, replay it (issue 19)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, assert_valid_report, run_cli
from tests.oai_server import OAIServer, Plan
from tests.secret_scan import API_KEY, API_KEY_ENV, SecretScan

pytestmark = [pytest.mark.timeout(90)]

SYSTEM = "You are careful.\nYou cite sources.\nYou answer in one line."


def workflow(url: str, *, system: str = SYSTEM, stream: bool = True) -> str:
    prompt = json.dumps(system)
    return f"""\
version: 1
name: taped
models:
  main:
    provider: openai
    base_url: "{url}"
    model: test-model
    api_key_env: {API_KEY_ENV}
    stream: {str(stream).lower()}
    params: {{temperature: 0.2}}
    retry: {{max_attempts: 1}}
tools:
  typed: {{function: "tests.toolbox:typed"}}
agents:
  researcher: {{model: main, sys_prompt: {prompt}, tools: [typed]}}
  writer: {{model: main, sys_prompt: "Write one line."}}
stages:
  - id: research
    agent: researcher
    input: "Find the count."
  - id: drafts
    input: "Draft it."
    fanout: {{for_each: "{{{{ range(3) | list }}}}", agent: writer}}
report: {{dir: reports, formats: [json]}}
"""


TOOL_CALL = [
    [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "typed", "arguments": ""}}],
    [{"index": 0, "function": {"arguments": '{"name": "x", "count": 2}'}}],
]


def plans(*, slow: bool = False) -> list[Plan]:
    """The research agent: a streamed tool call, then an answer; then the three drafts (the same request)."""
    pace = {"stall_before": 0.4, "stall_between": 0.02} if slow else {}
    usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    return [
        Plan(content="", tool_calls=TOOL_CALL, finish_reason="tool_calls", usage=usage, **pace),
        Plan(content="The count is 2, says typed.", usage={**usage, "completion_tokens": 9}, **pace),
        *(Plan(content=f"draft number {i}", usage={**usage, "prompt_tokens": 20 + i}, **pace) for i in range(3)),
    ]


AUDIT = """\
import sys

seen = []


def hook(event, args):
    if event in ("socket.connect", "socket.getaddrinfo") or (event == "socket.__new__" and args[1] in (2, 10)):
        seen.append(event)


sys.addaudithook(hook)
from runner.cli import main

code = main(sys.argv[1:])
sys.stderr.write(f"\\nINTERNET SOCKETS {len(seen)}\\n")
sys.exit(code)
"""


def audited(tmp_path: Path, *args: str) -> tuple[int, str, str, int]:
    """``runner ARGS`` in a process whose every internet socket, connection and name lookup is counted (an
    audit hook; on the standard asyncio loop, whose sockets are Python's: uvloop's would not be seen)."""
    script = tmp_path / "audited.py"
    script.write_text(AUDIT)
    import subprocess

    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "NO_COLOR": "1", API_KEY_ENV: API_KEY}
    proc = subprocess.run(
        [sys.executable, str(script), *args, "--no-uvloop"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    head, _, tail = proc.stderr.rpartition("\nINTERNET SOCKETS ")
    return proc.returncode, proc.stdout, head, int(tail.split()[0])


def report_of(folder: Path) -> dict[str, Any]:
    (path,) = folder.glob("*.json")
    report: dict[str, Any] = json.loads(path.read_text())
    assert_valid_report(report)
    return report


def outputs(report: dict[str, Any]) -> dict[str, tuple[str, int, int]]:
    return {n["id"]: (n["status"], n.get("tokens_in"), n.get("tokens_out")) for n in report["nodes"]}


def record(tmp_path: Path, *, slow: bool = False) -> tuple[Path, Path, str]:
    """Record the workflow (audited: the positive control, it does open sockets); the server is gone after."""
    with OAIServer(api_key=API_KEY) as server:
        server.plan(*plans(slow=slow))
        wf = tmp_path / "wf.yaml"
        wf.write_text(workflow(server.url))
        code, out, err, sockets = audited(tmp_path, "run", str(wf), "--record", "tape", "--report-dir", "rec", "-q")
        assert code == 0, err
        assert sockets > 0  # the audit sees a real run's connections
        assert len(server.requests) == 5
    return wf, tmp_path / "tape", out


def test_a_recorded_run_replays_offline_with_the_same_outputs_and_tokens(
    tmp_path: Path, secret_scan: SecretScan
) -> None:
    wf, tape, recorded_out = record(tmp_path)
    assert len(list(tape.glob("*.json"))) == 5
    # the server is stopped: a request to it would fail the run
    code, out, err, sockets = audited(tmp_path, "run", str(wf), "--replay", "tape", "--strict", "--report-dir", "rep")
    assert code == 0, err
    assert sockets == 0
    assert "cassette tape: 5 answers replayed" in err
    assert "[research researcher] The count is 2, says typed." in out
    recorded, replayed = report_of(tmp_path / "rec"), report_of(tmp_path / "rep")
    assert outputs(replayed) == outputs(recorded)
    assert replayed["models"]["main"]["tokens_in"] == recorded["models"]["main"]["tokens_in"] == 11 * 2 + 20 + 21 + 22
    assert replayed["models"]["main"]["tokens_out"] == recorded["models"]["main"]["tokens_out"]
    quiet = run_cli(
        "run",
        str(wf),
        "--replay",
        str(tape),
        "--strict",
        "-q",
        "--report-dir",
        str(tmp_path / "q"),
        env_extra={API_KEY_ENV: API_KEY},
    )
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout == recorded_out
    secret_scan.add_folder(tape)


def test_the_same_request_made_n_times_is_answered_by_n_recordings_in_order(tmp_path: Path) -> None:
    wf, tape, recorded_out = record(tmp_path)
    drafts = [json.loads(p.read_text()) for p in sorted(tape.glob("*.json"))]
    keys = [d["key"] for d in drafts]
    repeated = {k for k in keys if keys.count(k) == 3}
    assert len(repeated) == 1  # the three drafts are one request, recorded as -1, -2 and -3
    (key,) = repeated
    names = sorted(p.name for p in tape.glob(f"{key[:16]}-*.json"))
    assert names == [f"{key[:16]}-{n}.json" for n in (1, 2, 3)]
    answers = [json.loads((tape / name).read_text())["response"]["chunks"] for name in names]
    texts = ["".join(text for _, text in chunks) for chunks in answers]
    assert len(set(texts)) == 3  # three answers to one request
    proc = run_cli(
        "run",
        str(wf),
        "--replay",
        str(tape),
        "--strict",
        "-q",
        "--report-dir",
        str(tmp_path / "r"),
        env_extra={API_KEY_ENV: API_KEY},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == recorded_out  # each branch got the answer its request got when recorded
    # a fourth draft has no recording: a strict replay says so and fails
    wf.write_text(wf.read_text().replace("range(3)", "range(4)"))
    proc = run_cli(
        "run",
        str(wf),
        "--replay",
        str(tape),
        "--strict",
        "--report-dir",
        str(tmp_path / "r"),
        env_extra={API_KEY_ENV: API_KEY},
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert (
        f"runner: error: stage 'drafts[3]': model 'main' (test-model): the same request was made 4 times, but "
        f"cassette {tape} holds 3 recording(s) of it (--strict); record the workflow again with "
        f"`runner run WF --record {tape}`\n"
    ) in proc.stderr


def test_an_edited_template_fails_a_strict_replay_naming_the_stage_and_the_changed_line(tmp_path: Path) -> None:
    wf, tape, _ = record(tmp_path)
    wf.write_text(wf.read_text().replace("You cite sources.", "You cite two sources."))
    proc = run_cli(
        "run",
        str(wf),
        "--replay",
        str(tape),
        "--strict",
        "--report-dir",
        str(tmp_path / "r"),
        env_extra={API_KEY_ENV: API_KEY},
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    error = proc.stderr[proc.stderr.index("runner: error:") :]
    name = next(
        p.name for p in tape.glob("*.json") if "Find the count." in p.read_text() and '"tool"' not in p.read_text()
    )
    assert error.startswith(
        f"runner: error: stage 'research': model 'main' (test-model): the request is not in cassette {tape} "
        f"(--strict); the closest recorded request ({name}, recorded by stage 'research') differs:\n"
        "    @@ messages[0] (system) @@\n"
        "        You are careful.\n"
        "    -   You cite sources.\n"
        "    +   You cite two sources.\n"
        "        You answer in one line.\n"
        "hint: if the change is intended, record again with "
    ), error


def test_a_changed_parameter_and_a_new_tool_show_in_the_diff(tmp_path: Path) -> None:
    wf, tape, _ = record(tmp_path)
    text = wf.read_text().replace("temperature: 0.2", "temperature: 0.7")
    wf.write_text(text)
    proc = run_cli(
        "run",
        str(wf),
        "--replay",
        str(tape),
        "--strict",
        "--report-dir",
        str(tmp_path / "r"),
        env_extra={API_KEY_ENV: API_KEY},
    )
    assert proc.returncode == 1
    assert (
        "    @@ temperature @@\n"
        '      stream_options: {"include_usage": true}\n'
        "    - temperature: 0.2\n"
        "    + temperature: 0.7\n"
        '      tools[0] (typed): {"function": {"description": "Echo typed arguments.", "name": "typed", "paramet...\n'
        "hint: "
    ) in proc.stderr
    text = (
        text.replace("temperature: 0.7", "temperature: 0.2")
        .replace(
            '  typed: {function: "tests.toolbox:typed"}',
            '  typed: {function: "tests.toolbox:typed"}\n  shout: {function: "tests.toolbox:release"}',
        )
        .replace("tools: [typed]", "tools: [typed, shout]")
    )
    wf.write_text(text)
    proc = run_cli(
        "run",
        str(wf),
        "--replay",
        str(tape),
        "--strict",
        "--report-dir",
        str(tmp_path / "r"),
        env_extra={API_KEY_ENV: API_KEY},
    )
    assert proc.returncode == 1
    assert "\n    @@ tools[1] (shout) @@\n" in proc.stderr
    assert '\n    + tools[1] (shout): {"function": {"description": "shout"' in proc.stderr


def test_replay_without_strict_records_the_new_requests(tmp_path: Path) -> None:
    wf, tape, _ = record(tmp_path)
    with OAIServer(api_key=API_KEY) as server:
        server.default = Plan(content="a fresh draft")
        wf.write_text(workflow(server.url).replace("range(3)", "range(4)"))
        proc = run_cli(
            "run", str(wf), "--replay", str(tape), "--report-dir", str(tmp_path / "r"), env_extra={API_KEY_ENV: API_KEY}
        )
        assert proc.returncode == 0, proc.stderr
        assert len(server.requests) == 1  # only the fourth draft went to the server
    assert "cassette" in proc.stderr and "5 answers replayed, 1 recorded" in proc.stderr
    assert len(list(tape.glob("*.json"))) == 6
    proc = run_cli(
        "run",
        str(wf),
        "--replay",
        str(tape),
        "--strict",
        "--report-dir",
        str(tmp_path / "r"),
        env_extra={API_KEY_ENV: API_KEY},
    )
    assert proc.returncode == 0, proc.stderr


def test_recorded_timing_reproduces_the_per_model_latency(tmp_path: Path) -> None:
    wf, tape, _ = record(tmp_path, slow=True)
    proc = run_cli(
        "run",
        str(wf),
        "--replay",
        str(tape),
        "--replay-timing",
        "recorded",
        "--strict",
        "--report-dir",
        str(tmp_path / "timed"),
        env_extra={API_KEY_ENV: API_KEY},
    )
    assert proc.returncode == 0, proc.stderr
    recorded, replayed = report_of(tmp_path / "rec"), report_of(tmp_path / "timed")
    for figure in ("p50", "max"):
        was, now = recorded["models"]["main"]["latency_s"][figure], replayed["models"]["main"]["latency_s"][figure]
        assert was >= 0.4  # every answer waited at least the server's stall
        # a replay waits until each chunk's recorded offset: never early, and late only by scheduling delays
        assert abs(now - was) <= 0.05 * was, (figure, was, now)
    instant = run_cli(
        "run",
        str(wf),
        "--replay",
        str(tape),
        "--strict",
        "--report-dir",
        str(tmp_path / "fast"),
        env_extra={API_KEY_ENV: API_KEY},
    )
    assert instant.returncode == 0
    assert report_of(tmp_path / "fast")["models"]["main"]["latency_s"]["max"] < 0.4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--strict"], "runner: error: --strict needs --replay DIR"),
        (["--replay-timing", "recorded"], "runner: error: --replay-timing needs --replay DIR\n"),
        (
            ["--record", "t", "--offline"],
            "runner: error: --offline replaces every remote model by a scripted one: it cannot go with --record\n",
        ),
    ],
)
def test_options_that_do_not_go_together_are_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    proc = run_cli("run", "workflows/quickstart.yaml", *args, "--report-dir", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.startswith(message)


def test_replaying_a_missing_cassette_is_a_clear_error(tmp_path: Path) -> None:
    proc = run_cli(
        "run", "workflows/quickstart.yaml", "--replay", str(tmp_path / "nope"), "--report-dir", str(tmp_path)
    )
    assert proc.returncode == 1
    assert proc.stderr == (
        f"runner: error: cassette {tmp_path / 'nope'}: no such folder; record one first with "
        f"`runner run WF --record {tmp_path / 'nope'}`\n"
    )
