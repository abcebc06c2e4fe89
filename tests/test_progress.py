"""The live progress line: counts from events, drawing and erasing, sharing the terminal with streamed output,
at most ~10 redraws a second, never on stdout; on a real terminal (a pty) and off with --quiet."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys
import time

from runner.calls import ChatResult, Usage
from runner.commands.run import run_command
from runner.events import Recorder
from runner.progress import CLEAR, ObservedStream, Progress
from tests.conftest import ROOT


class Clock:
    def __init__(self) -> None:
        self.now = 10.0

    def __call__(self) -> float:
        return self.now


def test_counts_and_line() -> None:
    clock = Clock()
    bar = Progress(io.StringIO(), width=200, clock=clock)
    rec = Recorder()
    rec.emit("started", "fan", {"kind": "fanout"})
    rec.emit("queued", "fan[0]")
    rec.emit("queued", "fan[1]")
    rec.emit("queued", "fan[2]")
    rec.emit("started", "fan[0]", {"kind": "agent"})
    rec.emit("started", "fan[1]", {"kind": "agent"})
    rec.emit("retry", "fan[1]", {"cause": "429", "attempt": 1, "delay": 0.1, "error": "x"})
    rec.emit("finished", "fan[0]", ChatResult("t", Usage(12000, 34)))
    clock.now = 12.5
    bar.tick(rec)
    assert (bar.done, bar.running, bar.queued, bar.retries) == (1, 1, 1, 1)
    assert bar.line() == "runner: 1 done, 1 running, 1 queued, tokens 12.0k in / 34 out, 1 retry, 2.5 s"
    rec.emit("failed", "fan[1]", {"error": "boom"})
    rec.emit("cancelled", "fan[2]", {"error": "cancelled"})
    rec.emit("failed", "fan", {"error": "boom"})
    bar.tick(rec)
    assert bar.line() == "runner: 3 done (1 failed), 0 running, 0 queued, tokens 12.0k in / 34 out, 1 retry, 2.5 s"
    # narrower: details are dropped, never cut mid-word while a shorter form fits (tests/test_hardening_report.py)
    assert Progress(io.StringIO(), width=30, clock=clock).line() == "0 done, 0 running, 0.0 s"


def test_draw_hide_and_the_shared_terminal() -> None:
    err, out = io.StringIO(), io.StringIO()
    bar = Progress(err, width=200, clock=Clock())
    stdout = ObservedStream(out, bar)
    bar.draw()
    assert err.getvalue() == CLEAR + "runner: 0 done, 0 running, 0 queued, tokens 0 in / 0 out, 0.0 s"
    stdout.write("[a] partial")  # output starts: the line steps aside, and waits while the output's line is open
    assert err.getvalue().endswith(CLEAR) and bar.shown is False
    bar.draw()
    assert bar.frames == 1
    stdout.write(" line\n")
    bar.draw()
    assert bar.frames == 2
    assert out.getvalue() == "[a] partial line\n"  # stdout gets exactly what was written
    assert stdout.isatty() is False  # the rest is the wrapped stream's


WF = """\
version: 1
name: prog
models:
  m: {provider: scripted, reply: "one two three", latency: {first_token_ms: 150, tokens_per_second: 50}}
agents:
  a: {model: m}
stages:
  - id: fan
    fanout: {for_each: [1, 2, 3, 4], agent: a, max_concurrency: 2}
  - {id: last, agent: a}
"""


def run_captured(monkeypatch, path, tmp_path, progress: bool) -> tuple[str, str, float]:
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    start = time.perf_counter()
    assert run_command(str(path), [], report_dir=str(tmp_path / "r"), progress=progress) == 0
    return out.getvalue(), err.getvalue(), time.perf_counter() - start


def test_progress_never_touches_stdout_and_redraws_at_most_ten_times_a_second(write_wf, tmp_path, monkeypatch) -> None:
    path = write_wf(WF)
    plain_out, plain_err, _ = run_captured(monkeypatch, path, tmp_path, progress=False)
    out, err, took = run_captured(monkeypatch, path, tmp_path, progress=True)
    assert out == plain_out
    assert CLEAR not in plain_err
    frames = err.count(CLEAR + "runner: ")
    assert 3 <= frames <= took * 10 + 1
    assert "runner: 5 done, 0 running, 0 queued" in err or "runner: 4 done" in err
    # the line is erased when the run ends: what follows is the summary
    tail = err[err.rindex(CLEAR) + len(CLEAR) :]
    assert tail.startswith("run prog: ok in ")


def pty_run(args: list[str], *, both: bool = False) -> tuple[int, str, str]:
    """Run ``python -m runner ARGS`` with stderr on a pseudo-terminal and stdout on a pipe (or on the same
    terminal with ``both``)."""
    master, slave = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", *args],
        stdout=slave if both else subprocess.PIPE,
        stderr=slave,
        cwd=ROOT,
        env=env,
    )
    os.close(slave)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 10)
            if not ready:
                break
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed its end
                break
            if not data:
                break
            chunks.append(data)
        out = proc.stdout.read().decode() if proc.stdout else ""
        proc.wait(10)
    finally:
        proc.kill()
        os.close(master)
        if proc.stdout:
            proc.stdout.close()
    return proc.returncode, out, b"".join(chunks).decode()


def test_on_a_terminal_the_line_is_drawn_and_quiet_turns_it_off(write_wf, tmp_path) -> None:
    path = write_wf(WF)
    code, out, err = pty_run(["run", str(path), "--report-dir", str(tmp_path / "r")])
    assert code == 0, err
    assert CLEAR + "runner: " in err
    assert out.count("one two three") == 5
    code, out, err = pty_run(["run", str(path), "-q", "--report-dir", str(tmp_path / "r")])
    assert code == 0
    assert err == ""
    assert out == "one two three\n"


def screen(raw: str) -> list[str]:
    """The lines a terminal shows for ``raw``: the pty's CR LF as newlines, CLEAR erasing the current line."""
    lines, current = [], ""
    text = raw.replace("\r\n", "\n")
    i = 0
    while i < len(text):
        if text.startswith(CLEAR, i):
            current, i = "", i + len(CLEAR)
        elif text[i] == "\n":
            lines.append(current)
            current, i = "", i + 1
        else:
            current, i = current + text[i], i + 1
    return lines + ([current] if current else [])


def test_streamed_output_and_the_line_share_one_terminal_without_garbling(write_wf, tmp_path) -> None:
    path = write_wf(WF)
    code, _, raw = pty_run(["run", str(path), "--report-dir", str(tmp_path / "r")], both=True)
    assert code == 0, raw
    assert CLEAR + "runner: " in raw  # the line was drawn
    shown = screen(raw)
    assert shown.pop(0).startswith("run folder: ")  # named as the run starts (issue 23)
    streamed = [line for line in shown if line.startswith("[")]
    assert streamed == [f"[fan[{i}] a] one two three" for i in range(4)] + ["[last a] one two three"]
    assert not any(line.startswith("runner: ") for line in shown)  # erased at the end, no leftovers
    assert shown[len(streamed)].startswith("run prog: ok in ")


def test_branches_that_run_stages_stop_counting_as_queued_when_their_fanout_ends() -> None:
    bar = Progress(io.StringIO(), width=200, clock=Clock())
    rec = Recorder()
    rec.emit("started", "fan", {"kind": "fanout"})
    rec.emit("queued", "fan[0]")
    rec.emit("queued", "fan[1]")
    rec.emit("started", "a", {"kind": "agent"})
    bar.tick(rec)
    assert (bar.running, bar.queued) == (1, 2)
    rec.emit("finished", "a", None)
    rec.emit("started", "b", {"kind": "agent"})
    rec.emit("finished", "b", None)
    rec.emit("finished", "fan", None)
    bar.tick(rec)
    assert (bar.done, bar.running, bar.queued) == (2, 0, 0)


def test_log_records_on_the_same_terminal_erase_the_line_first() -> None:
    import logging

    from runner.logs import configure_logging

    err = io.StringIO()
    bar = Progress(err, width=200, clock=Clock())
    bar.draw()
    with configure_logging(level="warning", stream=ObservedStream(err, bar)):
        logging.getLogger("runner").warning("careful", extra={"node_id": "n"})
    text = err.getvalue()
    line = CLEAR + "runner: 0 done, 0 running, 0 queued, tokens 0 in / 0 out, 0.0 s"
    assert text.startswith(line + CLEAR)  # drawn, then erased before the record
    assert text[len(line + CLEAR) :].endswith(" WARNING runner: [n] careful\n")
    assert bar.at_line_start and not bar.shown
    bar.draw()
    assert bar.frames == 2
