"""The command line, run as users run it: a subprocess, real files, exit codes, stdout and stderr."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from tests.conftest import ROOT, assert_valid_report, run_cli, start_cli, wait_for_log


def reports_in(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.json"))


def test_run_quickstart_streams_prints_the_table_and_writes_the_report(tmp_path) -> None:
    proc = run_cli("run", "workflows/quickstart.yaml", "--report-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "[notes[0] analyst] On performance: uvloop versus the default asyncio loop looks promising; measure it "
        "before you switch.",
        "[notes[1] analyst] On reliability: uvloop versus the default asyncio loop looks promising; measure it "
        "before you switch.",
        "[notes[2] analyst] On cost: uvloop versus the default asyncio loop looks promising; measure it before "
        "you switch.",
        "[digest editor] Digest of 3 notes: analyst, analyst, analyst agree that it is worth measuring.",
    ]
    err = proc.stderr.splitlines()
    assert err.pop(0).startswith("run folder: ")  # named as the run starts (issue 23)
    assert err[0].startswith("run quickstart: ok in ")
    assert err[1].split() == ["node", "kind", "status", "start", "1st", "tok", "end", "secs"]
    assert [line.split()[0] for line in err[2:7]] == ["notes", "notes[0]", "notes[1]", "notes[2]", "digest"]
    (path,) = reports_in(tmp_path)
    assert err[-1] == f"report: {path}"
    assert path.name.startswith("quickstart-") and path.name.endswith("Z.json")
    report = json.loads(path.read_text())
    assert_valid_report(report)
    assert report["run"]["status"] == "ok" and report["run"]["loop"] == "uvloop"
    assert [n["id"] for n in report["nodes"]] == ["notes", "notes[0]", "notes[1]", "notes[2]", "digest"]
    assert report["run"]["inputs"]["perspectives"] == ["performance", "reliability", "cost"]


def test_quiet_prints_only_the_final_output(tmp_path) -> None:
    proc = run_cli(
        "run", "workflows/quickstart.yaml", "-q", "--report-dir", str(tmp_path), "--set", "perspectives=speed,cost"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "Digest of 2 notes: analyst, analyst agree that it is worth measuring.\n"
    assert proc.stderr == ""
    assert len(reports_in(tmp_path)) == 1


def test_bad_set_value_is_a_user_error(tmp_path) -> None:
    proc = run_cli("run", "workflows/quickstart.yaml", "--report-dir", str(tmp_path), "--set", "topicc=x")
    assert proc.returncode == 1
    assert proc.stderr == "runner: error: --set topicc: unknown input (did you mean 'topic'?)\n"
    assert "Traceback" not in proc.stderr


def test_invalid_workflow_exits_1_with_located_messages_and_no_traceback(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("version: 1\nname: x\nstages:\n  - {id: a, agentt: b}\n")
    for command in (["run", str(path)], ["graph", str(path)], ["validate", str(path)]):
        proc = run_cli(*command)
        assert proc.returncode == 1, command
        assert "Traceback" not in proc.stderr + proc.stdout
        assert f"{path}:4:13: error: unknown key 'agentt' in stages[0] (id='a') [schema]" in proc.stderr + proc.stdout


def test_usage_errors_exit_2() -> None:
    proc = run_cli("frobnicate")
    assert proc.returncode == 2
    assert "invalid choice: 'frobnicate'" in proc.stderr
    assert run_cli("run").returncode == 2
    assert run_cli("validate", "--format", "xml", "workflows").returncode == 2


def test_schema_command_prints_the_workflow_schema() -> None:
    proc = run_cli("schema")
    assert proc.returncode == 0
    assert json.loads(proc.stdout) == json.loads((ROOT / "schemas" / "workflow.schema.json").read_text())


def test_graph_text_and_mermaid() -> None:
    text = run_cli("graph", "workflows/quickstart.yaml")
    assert text.returncode == 0
    assert text.stdout == (
        "quickstart: 2 stages\n"
        "  1. notes: fanout for each perspective in {{ inputs.perspectives }}, max 8 at once\n"
        "     each: agent analyst (model analyst_model, scripted)\n"
        "  2. digest: agent editor (model editor_model, scripted)\n"
    )
    mermaid = run_cli("graph", "workflows/quickstart.yaml", "--format", "mermaid")
    assert mermaid.returncode == 0
    lines = mermaid.stdout.splitlines()
    assert lines[0] == "flowchart TD"
    assert "  n_notes_join --> n_digest" in lines
    assert not any("{{ " in line for line in lines)  # braces are escaped as entities


def test_python_dash_m_and_version() -> None:
    proc = run_cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.startswith("runner 0.1.0")


def test_ctrl_c_exits_130_and_leaves_a_valid_partial_report(tmp_path) -> None:
    wf = tmp_path / "slow.yaml"
    wf.write_text(
        "version: 1\nname: slow\nmodels:\n  m: {provider: scripted, latency: {first_token_ms: 20000}}\n"
        "agents:\n  a: {model: m}\nstages:\n  - id: fan\n    fanout: {for_each: [1, 2, 3], agent: a}\n"
    )
    log = tmp_path / "run.log"
    proc = start_cli(
        "run", str(wf), "--report-dir", str(tmp_path / "r"), "--log-level", "debug", "--log-file", str(log)
    )
    try:
        # Ctrl-C once the run's own log says the fan-out's three calls are in flight
        wait_for_log(log, lambda text: all(f"[fan[{i}]] started" in text for i in range(3)), proc)
        proc.send_signal(signal.SIGINT)
        start = time.monotonic()
        out, err = proc.communicate(timeout=10)
        # a sanity bound on what only the clock outside sees (the calls would take 20 s); exact: the report
        assert time.monotonic() - start < 2
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted; partial report written" in err
    (path,) = reports_in(tmp_path / "r")
    report = json.loads(path.read_text())
    assert_valid_report(report)
    assert report["run"]["status"] == "interrupted"
    assert {n["id"]: n["status"] for n in report["nodes"]} == {
        "fan": "cancelled",
        "fan[0]": "cancelled",
        "fan[1]": "cancelled",
        "fan[2]": "cancelled",
    }


def test_input_file_and_set_override(tmp_path) -> None:
    inputs = tmp_path / "in.yaml"
    inputs.write_text("topic: event loops\nperspectives: [latency, memory]\n")
    proc = run_cli(
        "run",
        "workflows/quickstart.yaml",
        "-q",
        "--report-dir",
        str(tmp_path),
        "--input",
        str(inputs),
        "--set",
        'perspectives=["a", "b", "c", "d"]',
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "Digest of 4 notes: analyst, analyst, analyst, analyst agree that it is worth measuring.\n"
    bad = tmp_path / "bad.yaml"
    bad.write_text("- not a mapping\n")
    proc = run_cli("run", "workflows/quickstart.yaml", "--input", str(bad))
    assert proc.returncode == 1
    assert proc.stderr == f"runner: error: {bad}:1:1: --input needs a mapping of input names to values\n"


def test_offline_replaces_remote_models_and_needs_no_key(tmp_path) -> None:
    wf = tmp_path / "remote.yaml"
    wf.write_text(
        "version: 1\nname: remote\nmodels:\n  main: {provider: openai, base_url: 'https://example.invalid/v1', "
        "model: qwen-plus, api_key_env: RUNNER_TEST_UNSET_KEY}\nagents:\n  a: {model: main}\n"
        "stages:\n  - {id: s, agent: a, input: 'hello {{ run.name }}'}\n"
    )
    env_free = run_cli("run", str(wf), "-q", "--report-dir", str(tmp_path))
    assert env_free.returncode == 1
    assert "RUNNER_TEST_UNSET_KEY (api_key_env) is not set" in env_free.stderr
    proc = run_cli("run", str(wf), "-q", "--offline", "--report-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "[offline reply of a to: hello remote]\n"


def test_cache_stats_and_clear_through_the_cli(tmp_path) -> None:
    import shutil

    shutil.copytree(ROOT / "workflows", tmp_path / "wf", ignore=shutil.ignore_patterns(".runner", "__pycache__"))
    wf = str(tmp_path / "wf" / "long-term-memory.yaml")
    for _ in range(2):
        assert run_cli("run", wf, "-q", "--report-dir", str(tmp_path)).returncode == 0
    cache = tmp_path / "wf" / ".runner" / "cache" / "embeddings"
    stats = run_cli("cache", "stats", str(cache))
    assert stats.returncode == 0
    assert stats.stdout.splitlines()[1].split() == ["files:", "2"]  # the question and the first run's answer
    cleared = run_cli("cache", "clear", str(cache))
    assert cleared.returncode == 0 and cleared.stdout.startswith("removed 2 cache files (")
    missing = run_cli("cache", "stats", str(tmp_path / "nope"))
    assert missing.returncode == 1


def test_working_memory_files_go_to_a_run_folder_beside_the_reports(tmp_path) -> None:
    import shutil

    shutil.copytree(ROOT / "workflows", tmp_path / "wf", ignore=shutil.ignore_patterns(".runner", "__pycache__"))
    proc = run_cli("run", str(tmp_path / "wf" / "long-conversation.yaml"), "--report-dir", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp_path / "r" / "runs").iterdir()
    assert run_dir.name.startswith("long-conversation-")
    assert f"run files: {run_dir}" in proc.stderr.splitlines()
    assert len((run_dir / "memory" / "read.jsonl").read_text().splitlines()) == 27
