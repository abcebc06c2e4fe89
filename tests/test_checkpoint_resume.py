"""Checkpoints and ``runner run --resume RUN_FOLDER`` for a single run (issue 23, item 1).

A real SQLite file in the run folder; the loopback OpenAI server counts the requests, so "a finished node is never
sent to a model again" is what the server saw. Kills are placed by events: the server holds the request of the
stage to kill in, and the test signals the process once the server has it."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import runner
from runner.engine.checkpoint import Checkpoint
from tests.conftest import ROOT, assert_valid_report, run_cli
from tests.oai_server import OAIServer, Plan
from tests.test_dataset_cli import cli

pytestmark = pytest.mark.timeout(90)


def chain(url: str, n: int = 10) -> str:
    """``n`` stages: the first ``n - 1`` ask the loopback server, each with the previous output; the last is a
    scripted model that joins every output, so the final output shows what each stage gave."""
    stages = "".join(
        f'  - {{id: s{i}, agent: a, input: "{{{{ prev }}}} then {i}"}}\n' if i > 1 else "  - {id: s1, agent: a}\n"
        for i in range(1, n)
    )
    joined = " ".join(f"{{{{ stages.s{i} }}}}" for i in range(1, n))
    return f"""\
version: 1
name: chain
inputs:
  topic: {{type: string}}
models:
  main:
    provider: openai
    base_url: "{url}"
    model: test-model
    stream: false
    retry: {{max_attempts: 1}}
  join: {{provider: scripted, reply: "{joined}"}}
agents:
  a: {{model: main, sys_prompt: "Go on."}}
  joiner: {{model: join}}
stages:
  - {{id: s1, agent: a, input: "{{{{ inputs.topic }}}}"}}
{stages[stages.index(chr(10)) + 1 :]}  - {{id: s{n}, agent: joiner}}
"""


def start(*args: str, cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "runner", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        cwd=cwd,
    )  # fmt: skip


def folder_of(reports: Path) -> Path:
    (folder,) = (reports / "runs").iterdir()
    return folder


def user_texts(server: OAIServer) -> list[str]:
    return [r.body["messages"][-1]["content"] for r in server.requests]


def latest_report(reports: Path) -> dict[str, Any]:
    path = max(reports.glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
    report: dict[str, Any] = json.loads(path.read_text())
    assert_valid_report(report)
    return report


def test_a_run_killed_during_stage_7_resumes_without_asking_stages_1_to_6_again(tmp_path: Path) -> None:
    release = threading.Event()
    with OAIServer() as server:
        # The uninterrupted run, for the output to compare with.
        server.plan(*[Plan(content=f"r{i}") for i in range(1, 10)])
        (tmp_path / "wf.yaml").write_text(chain(server.url))
        whole = run_cli("run", "wf.yaml", "-q", "--set", "topic=t", "--report-dir", "whole", cwd=tmp_path)
        assert whole.returncode == 0, whole.stderr
        server.reset()
        # Stages 1-6 answer; stage 7's request is held until the process is gone.
        server.plan(*[Plan(content=f"r{i}") for i in range(1, 7)], Plan(content="never", wait=release))
        proc = start("run", "wf.yaml", "-q", "--set", "topic=t", "--report-dir", "r", cwd=tmp_path)
        try:
            assert server.wait_for_requests(7, timeout=30), proc.stderr
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
        finally:
            release.set()
        assert proc.returncode == -signal.SIGKILL
        folder = folder_of(tmp_path / "r")
        server.reset()
        server.plan(*[Plan(content=f"r{i}") for i in range(7, 10)])
        resumed = run_cli("run", "--resume", str(folder.relative_to(tmp_path)), "-q", cwd=tmp_path)
        asked = user_texts(server)
    assert resumed.returncode == 0, resumed.stderr
    # Stages 7, 8 and 9 only: 1-6 came from the checkpoint, and stage 7 was sent stage 6's output from it.
    assert asked == ["r6 then 7", "r7 then 8", "r8 then 9"]
    assert resumed.stdout == whole.stdout == "r1 r2 r3 r4 r5 r6 r7 r8 r9\n"
    assert "run folder:" not in resumed.stderr  # --quiet
    report = latest_report(tmp_path / "r")
    assert report["run"]["resumed"] == {"folder": str(folder.relative_to(tmp_path)), "restored_nodes": 6}
    restored = [n["id"] for n in report["nodes"] if n.get("from_checkpoint")]
    assert restored == [f"s{i}" for i in range(1, 7)]
    assert report["models"]["main"]["requests"] == 3  # and one to the scripted joiner


def fanout(url: str) -> str:
    return f"""\
version: 1
name: fan
models:
  main:
    provider: openai
    base_url: "{url}"
    model: test-model
    stream: false
    retry: {{max_attempts: 1}}
agents:
  a: {{model: main}}
stages:
  - id: many
    fanout:
      for_each: "{{{{ [0, 1, 2, 3, 4, 5] }}}}"
      as: i
      agent: a
      max_concurrency: 2
    input: "item {{{{ vars.i }}}}"
  - {{id: after, agent: a, input: "{{{{ stages.many | map(attribute='content') | join(',') }}}}"}}
"""


def test_a_fan_out_stopped_half_way_keeps_its_finished_branches(tmp_path: Path) -> None:
    release = threading.Event()
    with OAIServer() as server:
        # Two at a time: when the server holds the 4th and 5th requests, branches 0-2 have finished.
        server.plan(*[Plan(content=f"b{i}") for i in range(3)], *[Plan(wait=release) for _ in range(2)])
        (tmp_path / "wf.yaml").write_text(fanout(server.url))
        proc = start("run", "wf.yaml", "-q", "--report-dir", "r", cwd=tmp_path)
        try:
            assert server.wait_for_requests(5, timeout=30)
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=30)
        finally:
            release.set()
        folder = folder_of(tmp_path / "r").relative_to(tmp_path)
        assert proc.returncode == 143
        assert stderr.splitlines()[-2:] == [
            f"runner: the nodes that finished are kept; continue with: runner run --resume {folder}",
            "runner: terminated; partial report written",
        ]
        kept = Checkpoint.open(tmp_path / folder)
        try:
            assert kept.done() == ["many[0]", "many[1]", "many[2]"]
        finally:
            kept.close()
        server.reset()
        server.plan(*[Plan(content=f"b{i}") for i in range(3, 6)], Plan(content="done"))
        resumed = run_cli("run", "--resume", str(folder), "-q", cwd=tmp_path)
        asked = user_texts(server)
    assert resumed.returncode == 0, resumed.stderr
    assert sorted(asked[:3]) == ["item 3", "item 4", "item 5"]  # the unfinished branches only
    # The kept branches' outputs in their places (which branch got which answer depends on the requests' order).
    joined = asked[3].split(",")
    assert (sorted(joined[:3]), sorted(joined[3:])) == (["b0", "b1", "b2"], ["b3", "b4", "b5"])
    assert resumed.stdout == "done\n"
    report = latest_report(tmp_path / "r")
    assert sorted(n["id"] for n in report["nodes"] if n.get("from_checkpoint")) == ["many[0]", "many[1]", "many[2]"]


TOOLS = """\
import os


def gate(input):
    if not os.path.exists(os.path.join(os.path.dirname(__file__), "fixed")):
        raise RuntimeError("the tool is broken")
    return input.upper()
"""


def fixable(url: str) -> str:
    return f"""\
version: 1
name: fixable
models:
  main:
    provider: openai
    base_url: "{url}"
    model: test-model
    stream: false
agents:
  a: {{model: main}}
stages:
  - {{id: ask, agent: a, input: "question"}}
  - {{id: gate, python: "ckpt_tools:gate"}}
  - {{id: last, agent: a}}
"""


def test_a_failed_python_stage_fixed_then_resumed(tmp_path: Path) -> None:
    (tmp_path / "ckpt_tools.py").write_text(TOOLS)
    with OAIServer() as server:
        server.plan(Plan(content="answer"), Plan(content="final"))
        (tmp_path / "wf.yaml").write_text(fixable(server.url))
        env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
        failed = run_cli("run", "wf.yaml", "-q", "--report-dir", "r", cwd=tmp_path, env_extra=env)
        folder = folder_of(tmp_path / "r").relative_to(tmp_path)
        assert failed.returncode == 1
        assert failed.stderr.splitlines()[-2:] == [
            f"runner: the nodes that finished are kept; continue with: runner run --resume {folder}",
            "runner: error: python stage 'gate' (ckpt_tools:gate) raised RuntimeError: the tool is broken",
        ]
        (tmp_path / "fixed").write_text("")
        resumed = run_cli("run", "--resume", str(folder), "-q", cwd=tmp_path, env_extra=env)
        asked = user_texts(server)
    assert resumed.returncode == 0, resumed.stderr
    assert asked == ["question", "ANSWER"]  # `ask` once, before the failure; `last` after the fix
    assert resumed.stdout == "final\n"


SCRIPTED = """\
version: 1
name: offline
inputs:
  topic: {type: string, default: "tea"}
models:
  m: {provider: scripted, reply: "on {{ input }}"}
agents:
  a: {model: m}
  b: {model: m, sys_prompt: "Be brief."}
stages:
  - {id: one, agent: a, input: "{{ inputs.topic }}"}
  - {id: two, agent: b}
  - {id: three, agent: a}
"""


def failing(tmp_path: Path) -> str:
    """SCRIPTED with a last stage that fails: a python stage whose function raises."""
    (tmp_path / "ckpt_boom.py").write_text("def boom(input):\n    raise RuntimeError('boom')\n")
    return SCRIPTED.replace("{id: three, agent: a}", '{id: three, python: "ckpt_boom:boom"}')


def failed_run(tmp_path: Path) -> Path:
    """The folder of a run of SCRIPTED whose last stage failed; the workflow fixed since."""
    wf = tmp_path / "wf.yaml"
    wf.write_text(failing(tmp_path))
    proc = cli("run", str(wf), "-q", "--set", "topic=rain", "--report-dir", str(tmp_path / "r"))
    assert proc.returncode == 1, proc.stderr
    wf.write_text(SCRIPTED)
    return folder_of(tmp_path / "r")


def test_an_edited_stage_is_refused_by_name_and_force_resumes_with_it(tmp_path: Path) -> None:
    folder = failed_run(tmp_path)
    wf = tmp_path / "wf.yaml"
    # `three` was fixed (allowed: it did not finish, but its definition changed, so it is named), and agent b's
    # prompt changed, which changes stage `two`, which uses it.
    wf.write_text(SCRIPTED.replace("Be brief.", "Be very brief."))
    refused = cli("run", "--resume", str(folder))
    assert refused.returncode == 1
    assert refused.stderr == (
        f"runner: error: {wf}: the workflow changed since the run in {folder} started (stages 'two' changed, 'three' "
        "changed); outputs kept from before would not be of the workflow as it is. Pass --force to resume with it "
        "as it is now (finished stages are kept), or start a new run\n"
    )
    forced = cli("run", "--resume", str(folder), "--force", "-q")
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout == "on on on rain\n"  # the same inputs (topic=rain); `one` and `two` from the checkpoint
    again = cli("run", "--resume", str(folder))
    assert again.returncode == 0
    assert again.stderr == (
        f"runner: the run in {folder} already finished; there is nothing to resume (its report is in "
        f"{tmp_path / 'r'})\n"
    )


def test_a_resume_keeps_its_inputs_and_refuses_new_ones(tmp_path: Path) -> None:
    folder = failed_run(tmp_path)
    proc = cli("run", "--resume", str(folder), "--set", "topic=sun")
    assert proc.returncode == 2
    assert proc.stderr == (
        "runner: error: --set: a resumed run keeps the inputs and settings it started with; drop them with --resume\n"
    )


def test_a_corrupt_or_foreign_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    folder = failed_run(tmp_path)
    path = folder / "checkpoint.sqlite"
    for name in ("checkpoint.sqlite-wal", "checkpoint.sqlite-shm"):
        (folder / name).unlink(missing_ok=True)
    path.write_bytes(b"this is no database at all, only text" * 200)
    proc = cli("run", "--resume", str(folder))
    assert proc.returncode == 1
    assert proc.stderr == (
        f"runner: error: {path}: not a runner checkpoint (file is not a database); the file is damaged or is "
        "another file\n"
    )
    path.unlink()
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE nodes (x)")
        db.execute("CREATE TABLE meta (key, value)")
        db.execute("INSERT INTO meta VALUES ('format', 'something-else')")
    db.close()
    proc = cli("run", "--resume", str(folder))
    assert proc.returncode == 1
    assert proc.stderr == (
        f"runner: error: {path}: not a runner checkpoint (an SQLite database of something else); leave it alone\n"
    )
    path.unlink()
    proc = cli("run", "--resume", str(folder))
    assert proc.returncode == 1
    assert proc.stderr == (
        f"runner: error: --resume {folder}: neither a run's checkpoint.sqlite nor a batch's ledger.sqlite in it; "
        "resume a run folder that `runner run` made (its path is printed as the run starts)\n"
    )


def test_the_run_folder_is_named_as_the_run_starts_and_no_checkpoint_keeps_none(tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(SCRIPTED)
    proc = cli("run", str(wf), "--report-dir", str(tmp_path / "kept"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines()[0] == f"run folder: {folder_of(tmp_path / 'kept')}"
    assert (folder_of(tmp_path / "kept") / "checkpoint.sqlite").is_file()
    batch = cli("run", str(wf), "--dataset", str(wf), "--no-checkpoint")
    assert (batch.returncode, batch.stderr) == (
        2,
        "runner: error: --no-checkpoint is for a single run: a batch keeps its ledger (README: Datasets)\n",
    )
    proc = cli("run", str(wf), "-q", "--no-checkpoint", "--report-dir", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert not (tmp_path / "r" / "runs").exists()


TOOL_TURNS = """\
version: 1
name: turns
limits: {max_model_calls: LIMIT}
models:
  m:
    provider: scripted
    turns:
      - tool_calls: [{name: shout, arguments: {text: hi}}]
    reply: "done {{ input }}"
tools:
  shout: {function: "ckpt_tools:shout"}
agents:
  a: {model: m, tools: [shout]}
stages:
  - {id: one, agent: a, input: "1"}
  - {id: two, agent: a, input: "2"}
  - {id: three, agent: a, input: "3"}
"""


def test_a_resumed_runs_limits_count_every_call_it_made_tool_turns_too(tmp_path: Path) -> None:
    """Each stage makes two model calls (a tool turn, then the reply). The checkpoint keeps what the budget counted,
    so a resumed run's limits see every call of the earlier parts, not one per finished stage."""
    (tmp_path / "ckpt_tools.py").write_text("def shout(text: str) -> str:\n    return text.upper()\n")
    wf = tmp_path / "wf.yaml"

    def resumed(limit: int) -> runner.Result:
        wf.write_text(TOOL_TURNS.replace("LIMIT", str(limit)))
        return runner.run(str(wf), resume=tmp_path / "run")

    wf.write_text(TOOL_TURNS.replace("LIMIT", "3"))
    first = runner.run(str(wf), run_dir=tmp_path / "run", checkpoint=True)
    assert first.status == "failed" and "3 model calls made" in str(first.error)  # one's 2, two's tool turn
    again = resumed(3)  # the same limit: nothing more may be asked
    assert again.status == "failed" and "3 model calls made" in str(again.error)
    assert again.report["totals"]["tokens_out"] == 0
    # 6: two (asked again from its start: its first answer was not kept) takes calls 4 and 5, three's tool turn
    # the 6th; its reply would be the 7th. Counted one per finished stage (2), three would have gone through.
    more = resumed(6)
    assert more.status == "failed" and "6 model calls made" in str(more.error)
    done = resumed(8)  # three from its start again: calls 7 and 8
    assert done.status == "ok", done.error
    assert str(done.output) == "done 3"


def test_a_budget_stop_resumes_with_a_raised_limit(tmp_path: Path) -> None:
    text = chain("{url}", 5).replace("agents:", "limits: {max_model_calls: LIMIT}\nagents:", 1)
    with OAIServer() as server:
        server.plan(*[Plan(content=f"r{i}") for i in range(1, 5)])
        wf = tmp_path / "wf.yaml"
        wf.write_text(text.replace("{url}", server.url).replace("LIMIT", "2"))
        stopped = run_cli("run", "wf.yaml", "-q", "--set", "topic=t", "--report-dir", "r", cwd=tmp_path)
        folder = folder_of(tmp_path / "r").relative_to(tmp_path)
        assert stopped.returncode == 1
        assert stopped.stderr.splitlines()[-1] == (
            "runner: error: run stopped by limits.max_model_calls = 2: 2 model calls made; to finish the run, raise "
            f"limits.max_model_calls in wf.yaml and resume it: runner run --resume {folder}"
        )
        # The limit is the whole run's: 2 calls were made, so a limit of 3 lets one more through.
        wf.write_text(text.replace("{url}", server.url).replace("LIMIT", "3"))
        again = run_cli("run", "--resume", str(folder), "-q", cwd=tmp_path)
        assert again.returncode == 1
        assert len(server.requests) == 3
        wf.write_text(text.replace("{url}", server.url).replace("LIMIT", "10"))
        done = run_cli("run", "--resume", str(folder), "-q", cwd=tmp_path)
        asked = user_texts(server)
    assert done.returncode == 0, done.stderr
    assert asked == ["t", "r1 then 2", "r2 then 3", "r3 then 4"]
    assert done.stdout == "r1 r2 r3 r4\n"


def test_the_python_api_resumes_a_run(tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(failing(tmp_path))
    first = runner.run(str(wf), {"topic": "fog"}, run_dir=tmp_path / "run", checkpoint=True)
    assert first.status == "failed"
    wf.write_text(SCRIPTED)
    with pytest.raises(runner.RunnerError, match=r"\(stage 'three' changed\)"):
        runner.run(str(wf), resume=tmp_path / "run")
    resumed = runner.run(str(wf), resume=tmp_path / "run", force=True)
    assert (resumed.status, str(resumed.output)) == ("ok", "on on on fog")
    restored = [n["id"] for n in resumed.report["nodes"] if n.get("from_checkpoint")]
    assert restored == ["one", "two"]
    with pytest.raises(ValueError, match="a resumed run keeps the inputs"):
        runner.run(str(wf), {"topic": "x"}, resume=tmp_path / "run")


def test_runner_stream_keeps_and_resumes_a_checkpoint(tmp_path: Path) -> None:
    """runner.stream takes checkpoint, resume and force as runner.run does: the resumed run's events come from the
    checkpoint for the stages that finished, and leaving the block lets go of the folder (a run may resume it)."""
    import asyncio

    wf = tmp_path / "wf.yaml"
    wf.write_text(failing(tmp_path))

    async def streamed(**kwargs: Any) -> tuple[runner.Result, list[str]]:
        async with runner.stream(str(wf), **kwargs) as run:
            kinds = [type(event).__name__ async for event in run]
        return run.result, kinds

    first, _ = asyncio.run(streamed(inputs={"topic": "fog"}, run_dir=tmp_path / "run", checkpoint=True))
    assert first.status == "failed"
    wf.write_text(SCRIPTED)
    with pytest.raises(runner.RunnerError, match=r"\(stage 'three' changed\)"):
        runner.stream(str(wf), resume=tmp_path / "run")
    resumed, kinds = asyncio.run(streamed(resume=tmp_path / "run", force=True))
    assert (resumed.status, str(resumed.output)) == ("ok", "on on on fog")
    assert kinds[-1] == "RunFinished"
    restored = [n["id"] for n in resumed.report["nodes"] if n.get("from_checkpoint")]
    assert restored == ["one", "two"]
    # the block let go of the folder's lock: the finished run can be opened again (and says it is finished)
    again = runner.run(str(wf), resume=tmp_path / "run")
    assert (again.status, str(again.output)) == ("ok", "on on on fog")


@pytest.mark.parametrize(
    "name", ["review-loop", "routing", "per-item-pipeline", "branches", "orchestrator-workers", "collect-errors"]
)
def test_nested_nodes_restore_loops_switches_pipelines_and_branches(tmp_path: Path, name: str) -> None:
    """Every kind of stage at any depth: with only the nested nodes left in the checkpoint (as a kill in the middle
    of a loop or a fan-out leaves it), the resumed run rebuilds the same output without a model call."""
    import shutil

    shutil.copytree(ROOT / "workflows", tmp_path / "workflows", ignore=shutil.ignore_patterns("reports", ".runner"))
    wf = str(tmp_path / "workflows" / f"{name}.yaml")
    first = runner.run(wf, run_dir=tmp_path / "run", checkpoint=True)
    assert first.status == "ok"
    top = {stage.id for stage in runner.load(wf).stages}
    with sqlite3.connect(tmp_path / "run" / "checkpoint.sqlite") as db:
        rows = list(db.execute("SELECT node, value FROM nodes"))
        # the top-level stages whose output is made of nested nodes' (a fan-out's, a loop's, a switch's)
        outer = [node for node, value in rows if node in top and not value.startswith('{"$output":')]
        assert outer and len(outer) < len(rows)
        db.executemany("DELETE FROM nodes WHERE node = ?", [(n,) for n in outer])
        db.execute("UPDATE meta SET value = 'running' WHERE key = 'status'")
    db.close()
    kept = Checkpoint.open(tmp_path / "run")
    left = kept.nodes  # the branches of a fan-out over an agent are kept together, in rows of their own
    kept.close()
    again = runner.run(wf, resume=tmp_path / "run")
    assert (again.status, str(again.output)) == ("ok", str(first.output))
    assert sum(m["calls"] for m in again.report["models"].values()) == 0
    assert again.report["run"]["resumed"]["restored_nodes"] == left
