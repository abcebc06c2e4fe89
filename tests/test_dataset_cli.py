"""``runner run WF --dataset FILE``, run as users run it: results.jsonl, bad rows, bounds, options, the report."""

from __future__ import annotations

import contextlib
import io
import json
import re
import sqlite3
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from runner.cli import main
from tests.conftest import ROOT, run_cli
from tests.oai_server import OAIServer, Plan

pytestmark = pytest.mark.timeout(60)

SCRIPTED = """\
version: 1
name: tickets
inputs:
  text: {type: string}
  n: {type: integer, default: 1}
models:
  m: {provider: scripted, reply: "{{ input }}!"}
agents:
  a: {model: m, sys_prompt: "Label it."}
stages:
  - {id: first, agent: a, input: "{{ inputs.text }} x{{ inputs.n }}"}
  - {id: second, agent: a, input: "{{ prev.content }}"}
"""


def remote(url: str) -> str:
    return f"""\
version: 1
name: remote
inputs:
  text: {{type: string}}
models:
  main:
    provider: openai
    base_url: "{url}"
    model: test-model
    stream: false
    retry: {{max_attempts: 1}}
agents:
  a: {{model: main, sys_prompt: "Label it."}}
stages:
  - {{id: label, agent: a, input: "{{{{ inputs.text }}}}"}}
"""


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``runner ARGS`` in this process (``runner.cli.main``, what the script calls): for the tests that need no
    process of their own, to keep the suite fast."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return subprocess.CompletedProcess(["runner", *args], code, out.getvalue(), err.getvalue())


def folder_of(reports: Path) -> Path:
    (folder,) = (reports / "runs").iterdir()
    return folder


def lines(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / "results.jsonl").read_text(encoding="utf-8").splitlines()]


def test_a_csv_dataset_with_quoted_newlines_and_unicode(tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(SCRIPTED)
    data = tmp_path / "tickets.csv"
    data.write_text('id,body,n\nA-1,"first line\nsecond, line",2\nB-2,"日本語 ""q"" 🙂",\n', encoding="utf-8")
    proc = run_cli(
        "run", str(wf), "--dataset", str(data), "--map", "body=text", "--key", "id", "--keep", "first",
        "--report-dir", str(tmp_path / "r"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    folder = folder_of(tmp_path / "r")
    got = sorted(lines(folder), key=lambda line: line["index"])
    assert [(g["index"], g["key"], g["status"], g["output"], g["stages"], g["error"]) for g in got] == [
        (0, "A-1", "ok", "first line\nsecond, line x2!!", {"first": "first line\nsecond, line x2!"}, None),
        (1, "B-2", "ok", '日本語 "q" 🙂 x1!!', {"first": '日本語 "q" 🙂 x1!'}, None),
    ]
    assert all(g["tokens"]["completion"] > 0 and g["latency_s"] > 0 for g in got)
    assert proc.stderr.splitlines()[0] == f"runner: batch of tickets over {data}; run folder: {folder}"
    report = json.loads((folder / "report.json").read_text())
    assert report["rows"] == {"ok": 2, "failed": 0, "skipped": 0, "rows_per_s": report["rows"]["rows_per_s"]}
    assert sorted(report["stages"]) == ["first", "second"]
    assert report["run"]["status"] == "ok"
    assert (folder / "report.md").read_text().startswith("## Batch `tickets`: ok\n")


def test_bad_rows_fail_located_and_the_batch_goes_on(tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(SCRIPTED)
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "a"}\n{"text": "b", "n": "two"}\nnot json\n{"n": 3}\n{"text": "e"}\n')
    proc = cli("run", str(wf), "--dataset", str(data), "--report-dir", str(tmp_path / "r"), "--concurrency", "1")
    assert proc.returncode == 1
    folder = folder_of(tmp_path / "r")
    got = {g["index"]: g for g in lines(folder)}
    assert {i: g["status"] for i, g in got.items()} == {0: "ok", 1: "failed", 2: "failed", 3: "failed", 4: "ok"}
    assert got[1]["error"] == f"{data}:2: row 1: input n: expected integer, got str"
    assert got[2]["error"] == f"{data}:3: row 2: not a JSON line: Expecting value"
    assert got[3]["error"].startswith(f"{data}:4: row 3: input text is required: pass a column text")
    assert proc.stderr.splitlines()[-1] == (
        f"runner: error: 3 of 5 rows failed; rerun them with: runner run --resume {folder} --retry-errors"
    )
    assert "Traceback" not in proc.stderr
    report = json.loads((folder / "report.json").read_text())
    assert [f["rows"] for f in report["failures"]] == [1, 1, 1]


def test_max_errors_stops_starting_rows(tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(SCRIPTED)
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"text": i}) + "\n" for i in range(50)))  # every row fails: not a string
    proc = cli(
        "run", str(wf), "--dataset", str(data), "--report-dir", str(tmp_path / "r"), "--max-errors", "3",
        "--concurrency", "1",
    )  # fmt: skip
    assert proc.returncode == 1
    folder = folder_of(tmp_path / "r")
    assert len(lines(folder)) == 3
    assert proc.stderr.splitlines()[-1] == (
        f"runner: error: stopped after 3 failed rows (--max-errors 3); see {folder / 'results.jsonl'}"
    )


def test_limit_and_shard_split_the_rows(tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(SCRIPTED)
    data = tmp_path / "d.json"
    data.write_text(json.dumps([{"text": f"t{i}"} for i in range(10)]))
    seen = []
    for shard in ("1/3", "2/3", "3/3"):
        reports = tmp_path / shard.replace("/", "of")
        proc = cli("run", str(wf), "--dataset", str(data), "--shard", shard, "--report-dir", str(reports))
        assert proc.returncode == 0, proc.stderr
        seen.append(sorted(g["index"] for g in lines(folder_of(reports))))
    assert seen == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    proc = cli(
        "run", str(wf), "--dataset", str(data), "--shard", "2/3", "--limit", "2", "--report-dir", str(tmp_path / "l")
    )
    assert sorted(g["index"] for g in lines(folder_of(tmp_path / "l"))) == [1, 4]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--shard", "0/2"], "runner: error: --shard 0/2: expected I/N with 1 <= I <= N, such as 1/4"),
        (["--keep", "nope"], "runner: error: --keep nope: no such top-level stage (stages: first, second)"),
        (["--map", "x=txt"], "runner: error: --map x=txt: the workflow has no input 'txt' (did you mean 'text'?)"),
    ],
)
def test_usage_errors_are_said_before_anything_runs(tmp_path: Path, args: list[str], message: str) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(SCRIPTED)
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "a"}\n')
    proc = cli("run", str(wf), "--dataset", str(data), "--report-dir", str(tmp_path / "r"), *args)
    assert (proc.returncode, proc.stderr.strip()) == (2, message)
    assert not (tmp_path / "r").exists()


def test_batch_flags_without_a_dataset_are_usage_errors(tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(SCRIPTED)
    proc = cli("run", str(wf), "--retry-errors")
    assert (proc.returncode, proc.stderr.strip()) == (
        2,
        "runner: error: --retry-errors is for a batch: runner run WF --dataset FILE --retry-errors ...",
    )
    proc = cli("run")
    assert (proc.returncode, proc.stderr.strip()) == (
        2,
        "runner: error: the workflow file is missing: runner run WF (or runner run --resume RUN_FOLDER)",
    )


def test_rows_in_flight_are_bounded_and_connections_reused_across_rows(tmp_path: Path) -> None:
    """--concurrency 3: the server holds each answer until three requests wait at once (a barrier: what the
    server saw, not timings), never sees a fourth, and serves all 12 rows over the model's 3 connections."""
    barrier = threading.Barrier(3)
    with OAIServer() as server:
        server.plan(*[Plan(content=f"label {i}", wait=barrier) for i in range(12)])
        wf = tmp_path / "wf.yaml"
        wf.write_text(remote(server.url))
        data = tmp_path / "d.jsonl"
        data.write_text("".join(json.dumps({"text": f"t{i}"}) + "\n" for i in range(12)))
        proc = run_cli(
            "run", str(wf), "--dataset", str(data), "--concurrency", "3", "--report-dir", str(tmp_path / "r")
        )
    assert proc.returncode == 0, proc.stderr
    assert server.max_in_flight == 3
    assert server.connections == 3
    got = lines(folder_of(tmp_path / "r"))
    assert sorted(g["index"] for g in got) == list(range(12))
    assert sorted(r.body["messages"][1]["content"] for r in server.requests) == sorted(f"t{i}" for i in range(12))


def test_the_batch_report_matches_its_schema(tmp_path: Path) -> None:
    from jsonschema import Draft202012Validator

    wf = tmp_path / "wf.yaml"
    wf.write_text(SCRIPTED)
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "a"}\n{"text": 1}\n')
    cli("run", str(wf), "--dataset", str(data), "--report-dir", str(tmp_path / "r"))
    report = json.loads((folder_of(tmp_path / "r") / "report.json").read_text())
    schema = json.loads((ROOT / "schemas" / "batch-report.schema.json").read_text())
    assert sorted(e.message for e in Draft202012Validator(schema).iter_errors(report)) == []
    assert report["failures"] == [{"cause": "input text: expected string, got int", "rows": 1}]


def test_the_ledger_counts_attempts(tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(SCRIPTED)
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "a"}\n{"text": 1}\n')
    cli("run", str(wf), "--dataset", str(data), "--report-dir", str(tmp_path / "r"))
    folder = folder_of(tmp_path / "r")
    cli("run", "--resume", str(folder), "--retry-errors")
    with sqlite3.connect(folder / "ledger.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        states = db.execute("SELECT idx, state, attempts FROM rows ORDER BY idx").fetchall()
    assert states == [(0, "done", 1), (1, "failed", 2)]


def test_a_json_array_that_breaks_part_way_keeps_the_rows_before_it(tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(SCRIPTED)
    data = tmp_path / "d.json"
    data.write_text('[{"text": "a"},\n {"text": "b"},\n {"text": "c"} oops]')
    proc = cli("run", str(wf), "--dataset", str(data), "--report-dir", str(tmp_path / "r"), "--concurrency", "1")
    assert proc.returncode == 1
    folder = folder_of(tmp_path / "r")
    assert sorted(g["index"] for g in lines(folder)) == [0, 1, 2]
    assert proc.stderr.splitlines()[-1] == (
        f"runner: error: {data}:3: expected ',' or ']' after an item, found 'o'; the file is not a JSON array"
    )
    assert json.loads((folder / "report.json").read_text())["run"]["status"] == "failed"


def test_a_results_file_that_cannot_be_written_is_said_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runner import fsutil

    wf = tmp_path / "wf.yaml"
    wf.write_text(SCRIPTED)
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "a"}\n{"text": "b"}\n')

    def full(path: str) -> None:
        if path.endswith("results.jsonl"):
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(fsutil, "fault", full)
    proc = cli("run", str(wf), "--dataset", str(data), "--report-dir", str(tmp_path / "r"))
    folder = folder_of(tmp_path / "r")
    assert (proc.returncode, proc.stderr.splitlines()[-1]) == (
        1,
        f"runner: error: could not write {folder / 'results.jsonl'}: No space left on device",
    )
    assert "Traceback" not in proc.stderr


def test_progress_lines_in_ci_and_on_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a terminal (CI): a summary line each CI_SUMMARY_EVERY seconds; a terminal: the line redrawn in place.
    The rows take 2 x 100 ms of simulated latency, so the 10 ms period ticks during the batch whatever the load."""
    from runner.commands import dataset
    from runner.dataset import progress

    monkeypatch.setattr(progress, "CI_SUMMARY_EVERY", 0.01)
    monkeypatch.setattr(progress, "LIVE_EVERY", 0.01)
    wf = tmp_path / "wf.yaml"
    wf.write_text(SCRIPTED.replace('reply: "{{ input }}!"', 'reply: "{{ input }}!", latency: {first_token_ms: 100}'))
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "a"}\n{"text": "b"}\n{"text": "c"}\n')
    proc = cli("run", str(wf), "--dataset", str(data), "--report-dir", str(tmp_path / "ci"))
    assert proc.returncode == 0, proc.stderr
    ticks = [line for line in proc.stderr.splitlines() if line.startswith("runner: rows ")]
    assert ticks, proc.stderr
    assert all(
        re.fullmatch(r"runner: rows \d/3 done, 0 failed, [\d.]+ rows/s(, ETA \d+ s)?, [\d,]+ tokens", t) for t in ticks
    )
    assert re.search(
        r"^runner: 3 rows: 3 ok, 0 failed in [\d.]+ s \([\d.]+ rows/s\); [\d,]+ tokens$", proc.stderr, re.M
    )

    err = io.StringIO()
    options = dataset.BatchOptions(str(wf), dataset=str(data), report_dir=str(tmp_path / "tty"), progress=True)
    with contextlib.redirect_stderr(err):
        assert dataset.dataset_command(options) == 0
    drawn = err.getvalue()
    assert "\r\x1b[Krows " in drawn and "runner: rows " not in drawn


def test_each_row_keeps_its_working_memory_history_apart(tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(
        SCRIPTED.replace(
            'agents:\n  a: {model: m, sys_prompt: "Label it."}',
            "memory:\n  working: {max_total_tokens: 3000}\n"
            'agents:\n  a: {model: m, sys_prompt: "Label it.", memory: working}',
        )
    )
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "a"}\n{"text": "b"}\n')
    proc = cli("run", str(wf), "--dataset", str(data), "--report-dir", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    folder = folder_of(tmp_path / "r")
    for index, text in ((0, "a"), (1, "b")):
        history = (folder / "rows" / str(index) / "memory" / "first.jsonl").read_text()
        assert f"{text} x1" in history and ("b x1" if text == "a" else "a x1") not in history


def test_set_gives_every_row_a_value_its_own_column_overrides(tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(SCRIPTED)
    data = tmp_path / "d.csv"
    data.write_text("text,n\na,\nb,5\n")
    proc = cli("run", str(wf), "--dataset", str(data), "--set", "n=7", "--report-dir", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    got = {g["index"]: g["output"] for g in lines(folder_of(tmp_path / "r"))}
    assert got == {0: "a x7!!", 1: "b x5!!"}
    bad = cli("run", str(wf), "--dataset", str(data), "--set", "n=many", "--set", "txt=a")
    assert (bad.returncode, bad.stderr) == (
        2,
        "runner: error: --set n: expected an integer, got 'many'\n"
        "--set 'txt=a': expected NAME=VALUE for an input of the workflow (did you mean 'text'?)\n",
    )
    given = cli("run", str(wf), "--dataset", str(data), "--input", "x.yaml")
    assert (given.returncode, given.stderr) == (
        2,
        "runner: error: --input: a batch takes its inputs from --dataset rows (and --set values for every row)\n",
    )


def test_a_dataset_that_cannot_be_read_is_said_before_a_run_folder_is_made(tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(SCRIPTED)
    for name, message in [
        ("missing.jsonl", "no such file"),
        ("rows.txt", "unknown format; name the file with one of .csv, .json, .jsonl, .ndjson, .parquet"),
    ]:
        (tmp_path / "rows.txt").write_text("x")
        proc = cli("run", str(wf), "--dataset", str(tmp_path / name), "--report-dir", str(tmp_path / "r"))
        assert (proc.returncode, proc.stderr) == (1, f"runner: error: --dataset {tmp_path / name}: {message}\n")
    assert not (tmp_path / "r").exists()
