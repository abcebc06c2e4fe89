"""SIGINT and SIGTERM at any moment (issue 21): a clean exit (130 for SIGINT, 143 for SIGTERM), never a
traceback, and a valid partial report whenever the run had started.

The moments are spread deterministically, three ways:

- **Announced points**: the run itself says where it is on its stderr pipe (the ``run ... started`` log line,
  and python stages that print a marker), and the test signals as it reads each one.
- **A sweep of fixed delays from 0.02 s**, measured from the moment runner's handlers exist. A signal during
  the interpreter's own start (``site``, ``runpy``: 20-40 ms on this machine, more under load, before any
  line of runner runs) gets Python's default action, which no program can change; the first statement of
  the package, under ``python -m runner``, installs the handlers (tested below on its own). So the process
  starts as ``python -m runner`` does, up to that import, and then waits on stdin; the test writes "go",
  waits the delay and signals. Everything after the package import is in the sweep: importing the CLI,
  parsing, loading and compiling, the run, the report.
- **Each phase in-process**, where a signal is sent from inside the step it must interrupt (building the
  parser, loading the workflow, opening the run, writing the report): exact, whatever the machine's load.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from runner.cli import main
from tests.conftest import ROOT, assert_valid_report

SIG = """\
version: 1
name: sig
models:
  m: {provider: scripted, reply: "one two three four", latency: {first_token_ms: 300, tokens_per_second: 20}}
agents:
  a: {model: m}
stages:
  - id: first
    python: "announce:first"
  - id: fan
    fanout: {for_each: "{{ range(50) | list }}", agent: a}
  - id: last
    python: "announce:last"
"""

ANNOUNCE = """\
import sys
import time


def first():
    sys.stderr.write("@first\\n")  # one write: the log's thread writes to the same pipe
    sys.stderr.flush()
    time.sleep(0.1)
    return "first"


def last():
    sys.stderr.write("@last\\n")
    sys.stderr.flush()
    time.sleep(0.3)
    return "last"
"""

ZYGOTE = """
import runpy, sys
args = sys.argv[1:]
sys.argv = ["-m", *args]  # as `python -m runner ARGS` has them while it imports the package
sys.orig_argv = [sys.executable, "-m", "runner", *args]
import runner  # the first thing `python -m runner` does: it installs the signal handlers
print("ready", flush=True)
sys.stdin.readline()
runpy.run_module("runner", run_name="__main__", alter_sys=True)
"""

CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


@pytest.fixture
def workflow(tmp_path: Path) -> Path:
    (tmp_path / "announce.py").write_text(ANNOUNCE)
    wf = tmp_path / "sig.yaml"
    wf.write_text(SIG)
    return wf


def check_outcome(code: int | None, err: str, sig: int, reports: Path, *, started: bool) -> None:
    """The exit code of the signal, no traceback, and a valid report if the run had started (and only a
    valid one, if any, otherwise)."""
    assert code == CODES[sig], err
    assert "Traceback" not in err, err
    found = list(reports.glob("*.json")) if reports.is_dir() else []
    if started:
        assert len(found) == 1, err
    for path in found:
        report = json.loads(path.read_text())
        assert_valid_report(report)
        assert report["run"]["status"] in ("interrupted", "ok")


# -- announced points ------------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("point", ["started", "@first", "@last"])
def test_a_signal_at_an_announced_point(workflow: Path, tmp_path: Path, sig: int, point: str) -> None:
    reports = tmp_path / "r"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runner",
            "run",
            str(workflow),
            "--report-dir",
            str(reports),
            "-q",
            "--log-level",
            "info",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=tmp_path,
    )
    try:
        assert proc.stderr is not None
        seen = []
        for line in proc.stderr:  # bounded by the run: it ends, and the pipe with it
            seen.append(line)
            if (point == "started" and " of sig started " in line) or line == f"{point}\n":
                break
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    err = "".join(seen) + err
    check_outcome(proc.returncode, err, sig, reports, started=True)
    (path,) = reports.glob("*.json")
    assert json.loads(path.read_text())["run"]["status"] == "interrupted"
    said = "terminated" if sig == signal.SIGTERM else "interrupted"
    assert err.endswith(f"runner: {said}; partial report written\n")


# -- sweeps of fixed delays ------------------------------------------------------------------------------

FROM_START = [0.02, 0.04, 0.07, 0.11, 0.17, 0.25, 0.35]  # after the handlers exist: the start, up to the run
INTO_RUN = [0.0, 0.08, 0.2, 0.4, 0.8]  # after "run ... started": the run lasts at least 0.9 s


def sweep(workflow: Path, tmp_path: Path, delays: list[float], *, anchor: str) -> None:
    """Run the workflow once per delay and signal, seven at a time (the machine's two cores are shared, and
    any moment is as good as another), each signalled ``delay`` s after its anchor; check every outcome."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cases = [(delay, sig) for delay in delays for sig in (signal.SIGINT, signal.SIGTERM)]
    results: dict[tuple[float, int], tuple[int | None, str]] = {}

    def one(delay: float, sig: int) -> None:
        reports = tmp_path / f"r-{delay}-{int(sig)}"
        args = ["run", str(workflow), "--report-dir", str(reports), "-q", "--log-level", "info"]
        command = [sys.executable, "-c", ZYGOTE, *args] if anchor == "go" else [sys.executable, "-m", "runner", *args]
        proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        seen = []
        try:
            assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
            if anchor == "go":
                assert proc.stdout.readline() == "ready\n"
                proc.stdin.write("go\n")
                proc.stdin.flush()
            else:
                for line in proc.stderr:  # bounded: the run ends, and the pipe with it
                    seen.append(line)
                    if " of sig started " in line:
                        break
            time.sleep(delay)
            proc.send_signal(sig)
            _, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
            proc.wait(timeout=10)
        results[(delay, sig)] = (proc.returncode, "".join(seen) + err)

    for start in range(0, len(cases), 7):
        threads = [threading.Thread(target=one, args=case) for case in cases[start : start + 7]]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert len(results) == len(cases)
    for (delay, sig), (code, err) in sorted(results.items()):
        started = " of sig started " in err
        try:
            check_outcome(code, err, sig, tmp_path / f"r-{delay}-{int(sig)}", started=started)
            if anchor == "started":
                assert err.endswith("partial report written\n"), err
        except AssertionError as exc:
            raise AssertionError(f"{signal.Signals(sig).name} {delay} s after {anchor}: {exc}") from None


def test_a_signal_at_any_moment_of_the_start(workflow: Path, tmp_path: Path) -> None:
    sweep(workflow, tmp_path, FROM_START, anchor="go")


def test_a_signal_at_any_moment_of_the_run(workflow: Path, tmp_path: Path) -> None:
    sweep(workflow, tmp_path, INTO_RUN, anchor="started")


# -- each phase, in-process ----------------------------------------------------------------------------------


def _kill_self(sig: int) -> None:
    os.kill(os.getpid(), sig)


def test_a_signal_while_the_parser_is_built(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 21: the parser was built outside the handler, so an early Ctrl-C printed a traceback."""
    import runner.cli as cli

    real = cli.build_parser

    def interrupted_build() -> object:
        _kill_self(signal.SIGINT)
        return real()

    monkeypatch.setattr(cli, "build_parser", interrupted_build)
    assert main(["--version"]) == 130
    assert capsys.readouterr() == ("", "runner: interrupted\n")


def test_a_signal_during_an_import_is_raised_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Raised inside an import, an interruption can surface where Python only reports it, or make the
    interpreter kill itself with SIGINT at exit (-2) although the CLI caught it. So it waits for the import."""
    import importlib

    import runner.cli as cli

    (tmp_path / "slow_module.py").write_text(
        "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\nfor _ in range(1000):\n    pass\nDONE = True\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    real = cli.build_parser

    def importing_build() -> object:
        assert importlib.import_module("slow_module").DONE  # the import ran to its end
        return real()

    monkeypatch.setattr(cli, "build_parser", importing_build)
    monkeypatch.delitem(sys.modules, "slow_module", raising=False)  # and again after the test
    assert main(["--version"]) == 143
    out, err = capsys.readouterr()
    assert (out.startswith("runner "), err) == (True, "runner: terminated\n")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_the_workflow_loads(
    workflow: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], sig: int
) -> None:
    import runner.commands.run as run

    real = run.load_workflow

    def interrupted_load(path: str) -> object:
        _kill_self(sig)
        return real(path)

    monkeypatch.setattr(run, "load_workflow", interrupted_load)
    assert main(["run", str(workflow), "--report-dir", str(tmp_path / "r"), "-q"]) == CODES[sig]
    said = "terminated" if sig == signal.SIGTERM else "interrupted"
    assert capsys.readouterr() == ("", f"runner: {said}\n")
    assert not (tmp_path / "r").exists()  # nothing started, nothing written


def test_a_signal_while_the_run_opens_cancels_it_once_it_can(
    workflow: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGTERM killed runner outright in the first 0.2 s (issue 21): before the run's task could be cancelled.
    A signal then is remembered, and cancels the run as soon as there is a task to cancel."""
    import runner.engine.session as session

    real = session.load_user_code

    def interrupted_open(plan: object) -> object:
        _kill_self(signal.SIGTERM)
        return real(plan)  # type: ignore[arg-type]

    monkeypatch.setattr(session, "load_user_code", interrupted_open)
    assert main(["run", str(workflow), "--report-dir", str(tmp_path / "r"), "-q"]) == 143
    out, err = capsys.readouterr()
    assert out == "" and "@last" not in err  # the first stage may run: it starts before the first await
    assert err.endswith("runner: terminated; partial report written\n")
    (path,) = (tmp_path / "r").glob("*.json")
    report = json.loads(path.read_text())
    assert_valid_report(report)
    assert report["run"]["status"] == "interrupted"


def test_a_signal_while_the_report_is_written_waits_for_it(
    workflow: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import runner.commands.run as run

    real = run.write_outputs

    def interrupted_write(*args: object, **kwargs: object) -> object:
        _kill_self(signal.SIGINT)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(run, "write_outputs", interrupted_write)
    fast = workflow.read_text().replace("first_token_ms: 300", "first_token_ms: 1")
    workflow.write_text(fast)
    assert main(["run", str(workflow), "--report-dir", str(tmp_path / "r"), "-q"]) == 130
    out, err = capsys.readouterr()
    assert out == "last\n"  # the run had finished: its output is printed
    assert err == "@first\n@last\nrunner: interrupted; report written\n"
    (path,) = (tmp_path / "r").glob("*.json")
    report = json.loads(path.read_text())
    assert_valid_report(report)
    assert report["run"]["status"] == "ok"


def test_the_handlers_are_put_back_after_main(capsys: pytest.CaptureFixture[str]) -> None:
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    assert main(["--version"]) == 0
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    assert capsys.readouterr().out.startswith("runner ")


def test_importing_runner_changes_no_handler() -> None:
    code = (
        "import signal; before = signal.getsignal(signal.SIGTERM); import runner, runner.cli; "
        "print(signal.getsignal(signal.SIGTERM) is before)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout == "True\n", proc.stderr


def test_python_m_runner_installs_the_handlers_as_the_package_is_imported() -> None:
    code = (
        "import sys, signal; sys.argv = ['-m', 'run']; sys.orig_argv = [sys.executable, '-m', 'runner', 'run']; "
        "import runner; print(signal.getsignal(signal.SIGINT).__module__, signal.getsignal(signal.SIGTERM).__module__)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout == "runner.interrupts runner.interrupts\n", proc.stderr
