"""The report files every run writes (JSON, Markdown, trace), ``runner report FILE`` and ``runner report diff``,
and the guarantee that a report is whole: after a failure, a timeout, or a SIGKILL."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from runner.cli import main
from runner.report.summary import format_summary
from tests.conftest import ROOT, assert_valid_report, run_cli, wait_for_log
from tests.test_report_analysis import FAN_THEN_AGENT, build_report, fan_then_agent_events, info
from tests.trace_check import assert_valid_trace

ALL_FORMATS = """\
version: 1
name: fmt
models:
  m: {provider: scripted, reply: "hello", latency: {first_token_ms: 20}}
agents:
  a: {model: m}
stages:
  - id: fan
    fanout: {for_each: [1, 2, 3], agent: a, max_concurrency: 2}
  - {id: last, agent: a}
report: {formats: [json, markdown, trace]}
"""


def test_a_run_writes_json_markdown_and_trace_beside_each_other(write_wf, tmp_path) -> None:
    path = write_wf(ALL_FORMATS)
    proc = run_cli("run", str(path), "--report-dir", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    (report_path,) = sorted((tmp_path / "r").glob("*Z.json"))
    base = report_path.with_suffix("")
    md, trace = base.with_name(base.name + ".md"), base.with_name(base.name + ".trace.json")
    # beside each other, and the run folders (its checkpoint: issue 23)
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == sorted([report_path.name, md.name, trace.name, "runs"])
    report = json.loads(report_path.read_text())
    assert_valid_report(report)
    assert_valid_trace(json.loads(trace.read_text()))
    assert md.read_text().startswith("# Run `fmt`: ok in ")
    err = proc.stderr.splitlines()
    assert err[-3:] == [f"summary: {md}", f"trace: {trace}", f"report: {report_path}"]
    assert f"critical path: {' -> '.join(report['critical_path']['nodes'])}" in err


def saved(tmp_path: Path, name: str, end: float, workflow: str = "wf") -> Path:
    report = build_report(info(FAN_THEN_AGENT), fan_then_agent_events(), status="ok", end=end, error=None)
    report["workflow"]["name"] = workflow
    path = tmp_path / name
    path.write_text(json.dumps(report))
    return path


def test_report_prints_a_saved_reports_summary(tmp_path, capsys) -> None:
    path = saved(tmp_path, "a.json", 0.51)
    assert main(["report", str(path)]) == 0
    out = capsys.readouterr().out
    assert out == format_summary(json.loads(path.read_text())) + "\n"
    assert (
        "model m: 4 calls (5 requests), latency p50 0.200 p95 0.200 max 0.200 s, first token p50 0.050 p95 0.050 s, "
        "35 tokens/s, retries 429 x1, pool wait 0.020 s over 1, rate-limit wait 0.010 s over 1"
    ) in out.splitlines()
    assert out.splitlines()[-3:] == [
        "bottleneck 1: model `m` took 0.18 s of the critical path (2 calls): cap the output with "
        "`models.m.params.max_tokens`, use a faster model than `gpt-x`, or run more of the work in parallel",
        "bottleneck 2: branches of `notes` waited 0.10 s for a slot on the critical path (0.10 s over 3 branches in "
        "all): raise `stages[0].fanout.max_concurrency` above 2",
        "bottleneck 3: calls to `m` spent 0.10 s retrying on the critical path (1 retry in all: 429 x1): the server "
        "is rate limiting: set `models.m.rate_limit.requests_per_minute` below its limit",
    ]
    assert main(["report", str(path), "--format", "markdown"]) == 0
    assert capsys.readouterr().out.startswith("# Run `wf`: ok in 0.510 s\n")


def test_report_of_something_else_is_a_user_error(tmp_path, capsys) -> None:
    (tmp_path / "x.json").write_text("[1, 2]")
    (tmp_path / "bad.json").write_text("{nope")
    (tmp_path / "old.json").write_text('{"report_version": 1}')
    broken = json.loads(saved(tmp_path, "b.json", 0.5).read_text())
    del broken["run"]["wall_s"]
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    for name, message in [
        ("missing.json", "cannot read {p}: No such file or directory"),
        ("x.json", "{p} is not a runner report (no report_version)"),
        ("bad.json", "{p} is not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
        ("old.json", "{p} is a report of version 1; this runner reads version 2"),
        ("broken.json", "{p} is not a valid report: at run: 'wall_s' is a required property"),
    ]:
        p = tmp_path / name
        assert main(["report", str(p)]) == 1
        assert capsys.readouterr().err == f"runner: error: {message.format(p=p)}\n"


def test_diff_compares_stages_and_models_and_fails_on_a_slower_run(tmp_path, capsys) -> None:
    a, b = saved(tmp_path, "a.json", 0.5), saved(tmp_path, "b.json", 0.6)
    assert main(["report", "diff", str(a), str(b)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "wf: wall time 0.500 s -> 0.600 s (+20.0%): slower by more than 10%"
    assert out[2].split() == ["A", "B", "change"]
    rows = {tuple(line.split()[:2]): line.split()[2:] for line in out[3:]}
    assert rows[("notes[*]", "s")] == ["0.200", "0.200", "+0.0%", "slowest", "of", "3"]
    assert rows[("digest", "s")] == ["0.200", "0.200", "+0.0%"]
    assert ("model", "m") in rows  # "model m" then the metric: split in three
    assert main(["report", "diff", str(a), str(b), "--threshold", "25"]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith("(+20.0%): within 25%")
    assert main(["report", "diff", str(b), str(a)]) == 0
    capsys.readouterr()
    failed = json.loads(a.read_text())
    failed["run"]["status"], failed["run"]["error"] = "failed", "boom"
    (tmp_path / "f.json").write_text(json.dumps(failed))
    assert main(["report", "diff", str(a), str(tmp_path / "f.json")]) == 1
    assert capsys.readouterr().out.splitlines()[1].endswith("(failed): B did not succeed")


def test_diff_refuses_runs_of_different_workflows(tmp_path, capsys) -> None:
    a, b = saved(tmp_path, "a.json", 0.5), saved(tmp_path, "b.json", 0.5, workflow="other")
    assert main(["report", "diff", str(a), str(b)]) == 2
    assert capsys.readouterr().err == (
        f"runner: error: {a} and {b} are runs of different workflows ('wf' and 'other')\n"
    )
    assert main(["report", "diff", str(a)]) == 2
    assert main(["report", str(a), str(b)]) == 2


def test_failed_and_timed_out_runs_write_a_report(write_wf, tmp_path) -> None:
    failing = write_wf('version: 1\nname: bad\nstages:\n  - {id: one, python: "tests.toolbox:boom"}\n', "bad.yaml")
    slow = write_wf(
        "version: 1\nname: slow\ntimeout: 0.3\nmodels:\n  m: {provider: scripted, latency: {first_token_ms: 5000}}\n"
        "agents:\n  a: {model: m}\nstages:\n  - {id: one, agent: a, input: x}\n",
        "slow.yaml",
    )
    for wf, error in [
        (failing, "raised TypeError: boom() missing 1 required positional argument"),
        (slow, "the run timed out after 0.3 s (the workflow's 'timeout')"),
    ]:
        out = tmp_path / wf.stem
        proc = run_cli("run", str(wf), "--report-dir", str(out))
        assert proc.returncode == 1, proc.stderr
        (path,) = out.glob("*.json")
        report = json.loads(path.read_text())
        assert_valid_report(report)
        assert report["run"]["status"] == "failed"
        assert error in report["run"]["error"]
    assert report["nodes"][0]["status"] == "cancelled"
    assert report["critical_path"]["time_s"]["model"] > 0.25


SLOW = """\
version: 1
name: slow
models:
  m: {provider: scripted, latency: {first_token_ms: 20000}}
agents:
  a: {model: m}
stages:
  - id: fan
    fanout: {for_each: [1, 2, 3], agent: a}
report: {formats: [json, markdown, trace]}
"""


def test_sigkill_mid_run_leaves_the_previous_reports_whole(write_wf, tmp_path) -> None:
    out = tmp_path / "r"
    out.mkdir()
    previous = saved(out, "slow-20260101T000000.000Z.json", 0.5, workflow="slow")
    before = previous.read_bytes()
    log = tmp_path / "run.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", "run", str(write_wf(SLOW)), "--report-dir", str(out)]
        + ["--log-level", "debug", "--log-file", str(log)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        # killed mid-run: once its log says the three calls are in flight (each would take 20 s)
        wait_for_log(log, lambda text: all(f"[fan[{i}]] started" in text for i in range(3)), proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    assert [p.name for p in out.iterdir() if p.name != "runs"] == [previous.name]  # runs/: the killed run's folder
    assert previous.read_bytes() == before


WRITER = """
import json, sys
from pathlib import Path
from runner.report.files import write_outputs
report = json.loads(Path(sys.argv[1]).read_text())
report["nodes"] = report["nodes"] * 100  # about 0.5 MB over the three files
target = Path(sys.argv[2])
n = 0
while True:
    report["run"]["id"] = str(n)
    write_outputs(report, target, ("json", "markdown", "trace"))
    if n == 0:
        print("ready", flush=True)  # one complete set exists; every later write replaces it
    n += 1
"""


def assert_whole(folder: Path) -> None:
    names = {p.name for p in folder.iterdir() if not p.name.startswith(".")}
    assert names == {"r.json", "r.md", "r.trace.json"}  # temporary files start with a dot
    assert_valid_report(json.loads((folder / "r.json").read_text()))
    assert_valid_trace(json.loads((folder / "r.trace.json").read_text()))
    md = (folder / "r.md").read_text()
    assert md.startswith("# Run `wf`") and md.endswith("\n")


def test_sigkill_while_writing_never_leaves_a_half_written_file(tmp_path) -> None:
    """A writer rewrites the three files in a loop; meanwhile they are read again and again (a reader must
    never see half a file), then the writer is killed at two different moments (what it leaves is whole)."""
    source = saved(tmp_path, "src.json", 0.5)
    target = tmp_path / "out" / "r.json"
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(WRITER))
    for rewrites in (2, 1):  # killed at two different moments: after this many sets written while reading
        proc = subprocess.Popen(
            [sys.executable, str(script), str(source), str(target)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        try:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
            # read until the reads have seen the writer replace the files (its run id counts its sets), so
            # the reads overlap rewrites; a deadline would say nothing of how many came while reading
            seen: set[str] = set()
            while len(seen) <= rewrites:
                assert_whole(target.parent)
                seen.add(json.loads(target.read_text())["run"]["id"])
                assert proc.poll() is None
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            proc.kill()
            if proc.stdout is not None:
                proc.stdout.close()
        assert_whole(target.parent)


def test_report_command_writes_to_the_given_stream(tmp_path) -> None:
    from runner.commands.report import report_command

    out = io.StringIO()
    assert report_command(str(saved(tmp_path, "a.json", 0.5)), out=out) == 0
    assert out.getvalue().startswith("run wf: ok in 0.500 s on uvloop; 4 agent calls")


def test_the_json_report_is_indented_with_one_line_a_node(tmp_path) -> None:
    """Python's JSON encoder is C only without indent: each node goes on one line (a 10,000-node report is
    written in a third of the time), the rest is indented, and the file reads back to the same document."""
    from runner.report.document import report_json

    report = json.loads(saved(tmp_path, "src.json", 0.5).read_text())
    report["nodes"][0]["error"] = 'quote " and é, \n newline'  # escaped inside its line
    text = report_json(report)
    assert json.loads(text) == report
    lines = text.splitlines()
    node_lines = [line for line in lines if line.startswith('  {"id": ')]
    assert len(node_lines) == len(report["nodes"]) and len(report["nodes"]) > 1
    assert [json.loads(line.rstrip(",")) for line in node_lines] == report["nodes"]
    assert lines[1].startswith(' "report_version": ')  # the rest keeps its indentation
    assert report_json({**report, "nodes": []}) == json.dumps({**report, "nodes": []}, indent=1, ensure_ascii=False)
