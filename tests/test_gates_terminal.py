"""The human gates' terminal prompt (issue 23, item 2) as a person meets it: `runner run` in a tmux pane, keys
sent with send-keys, the screen read with capture-pane. Every wait polls the pane (or the exit-code file) for
what must appear next, with a deadline: bounded by events, not by sleeping."""

from __future__ import annotations

import itertools
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, assert_valid_report
from tests.test_gates import GATED

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

DEADLINE = 30.0
_SERVERS = itertools.count()


class Pane:
    """One tmux server (its own socket) running one command in a 120x40 pane."""

    def __init__(self, socket: str, command: str) -> None:
        self.socket = socket
        self.tmux("new-session", "-d", "-x", "120", "-y", "40", command)

    def tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], check=True, capture_output=True, text=True, timeout=10
        ).stdout

    def screen(self) -> str:
        """The pane's text, each line without its trailing spaces (tmux drops them)."""
        return _trimmed(self.tmux("capture-pane", "-p", "-S", "-100"))

    def wait_for(self, text: str) -> str:
        """The screen once ``text`` is on it (fails after the deadline, showing the screen)."""
        text = _trimmed(text)
        end = time.monotonic() + DEADLINE
        while True:
            screen = self.screen()
            if text in screen:
                return screen
            assert time.monotonic() < end, f"{text!r} did not appear:\n{screen}"
            time.sleep(0.05)

    def send(self, *keys: str) -> None:
        self.tmux("send-keys", *keys)


def _trimmed(text: str) -> str:
    return "\n".join(line.rstrip(" ") for line in text.split("\n"))


@pytest.fixture
def pane(tmp_path: Path) -> Iterator[tuple[Path, object]]:
    panes: list[Pane] = []

    def start(*args: str) -> Pane:
        env = f"env PYTHONPATH={shlex.quote(str(ROOT))} NO_COLOR=1"
        run = f"{env} {shlex.quote(sys.executable)} -m runner run {' '.join(shlex.quote(a) for a in args)}"
        exit_file = tmp_path / "exit-code"
        # the pane stays open after the run (sleep) so its last screen can be read
        command = f"cd {shlex.quote(str(tmp_path))} && {run}; echo $? > {shlex.quote(str(exit_file))}; sleep 60"
        # a server of its own per pane, never reused: a killed server's socket may linger a moment
        panes.append(Pane(f"runner-gates-{os.getpid()}-{next(_SERVERS)}", command))
        return panes[-1]

    try:
        yield tmp_path, start
    finally:
        for p in panes:
            subprocess.run(["tmux", "-L", p.socket, "kill-server"], capture_output=True, timeout=10)


def exit_code(folder: Path) -> int:
    path = folder / "exit-code"
    end = time.monotonic() + DEADLINE
    while not (path.exists() and path.read_text().strip()):
        assert time.monotonic() < end, "the run did not end"
        time.sleep(0.05)
    return int(path.read_text())


def the_report(folder: Path) -> dict[str, object]:
    (path,) = (folder / "reports").glob("*.json")
    report = json.loads(path.read_text(encoding="utf-8"))
    assert_valid_report(report)
    return report


def test_on_a_terminal_a_person_rejects_with_a_reason_and_the_run_ends_rejected(pane) -> None:
    folder, start = pane
    (folder / "wf.yaml").write_text(GATED, encoding="utf-8")
    p = start("wf.yaml", "--report-dir", "reports")
    screen = p.wait_for("Approve? [y/n] ")
    # the question, then what it shows, whole lines: the progress line does not cut into them
    assert "== approve: review ==\nPublish <uvloop>?\n-- draft --\n<uvloop>\nApprove? [y/n]" in screen
    p.send("later", "Enter")
    p.wait_for("please answer y or n\nApprove? [y/n] ")
    p.send("n", "Enter")
    p.wait_for("Reason (optional, Enter to skip): ")
    p.send("the draft is too short", "Enter")
    assert exit_code(folder) == 1
    screen = p.wait_for("runner: error:")
    assert "runner: error: approve gate 'review' was rejected (terminal): the draft is too short" in screen
    report = the_report(folder)
    assert report["run"]["status"] == "rejected"
    assert report["run"]["gates"] == [
        {
            "stage": "review",
            "kind": "approve",
            "decision": "rejected",
            "by": "terminal",
            "reason": "the draft is too short",
        }
    ]


def test_on_a_terminal_a_wrong_answer_is_refused_with_its_path_and_asked_again(pane) -> None:
    folder, start = pane
    (folder / "wf.yaml").write_text(GATED, encoding="utf-8")
    p = start("wf.yaml", "--report-dir", "reports", "--approve", "review")
    # the whole prompt: a bare "> " (trimmed to ">") would match the draft's "<uvloop>" on a slow machine
    screen = p.wait_for("(answer: one of blog, mail)\n> ")
    assert "== ask: pick ==\nWhich channel?\n(answer: one of blog, mail)\n>" in screen
    p.send('{"channel": "blog", "copies": 0}', "Enter")
    p.wait_for("refused: at $.copies: 0 is less than the minimum of 1; try again\n> ")
    p.send("fax", "Enter")
    p.wait_for('refused: at $.channel: expected one of "blog", "mail", got "fax"; try again\n> ')
    p.send("mail", "Enter")
    assert exit_code(folder) == 0
    p.wait_for("[publish writer] <mail <uvloop>>")
    report = the_report(folder)
    assert report["run"]["status"] == "ok"
    assert [(g["stage"], g["decision"], g["by"]) for g in report["run"]["gates"]] == [
        ("review", "approved", "command line"),
        ("pick", "answered", "terminal"),
    ]


def test_on_a_terminal_no_decision_within_the_timeout_lets_on_timeout_approve(pane) -> None:
    folder, start = pane
    text = GATED.replace('message: "Publish {{ stages.draft.content }}?"', 'message: "Publish?"\n      timeout: 0.3')
    text = text.replace("      show: [draft]\n", "      show: [draft]\n      on_timeout: approve\n")
    (folder / "wf.yaml").write_text(text, encoding="utf-8")
    p = start("wf.yaml", "--report-dir", "reports", "--answer", "pick=blog")
    p.wait_for("(no decision within 0.3 s: approve)\nApprove? [y/n] ")
    assert exit_code(folder) == 0  # nobody typed: the timeout decided
    report = the_report(folder)
    assert report["run"]["gates"][0] == {
        "stage": "review",
        "kind": "approve",
        "decision": "approved",
        "by": "timeout",
        "reason": "no decision within 0.3 s",
    }


def test_on_a_terminal_no_answer_within_an_asks_timeout_answers_its_default(pane) -> None:
    folder, start = pane
    text = GATED.replace('      question: "Which channel?"\n', '      question: "Which channel?"\n      timeout: 0.3\n')
    text = text.replace(
        "        required: [channel]\n", "        required: [channel]\n      default: {channel: mail}\n"
    )
    (folder / "wf.yaml").write_text(text, encoding="utf-8")
    p = start("wf.yaml", "--report-dir", "reports", "--approve", "review")
    p.wait_for('(answer: one of blog, mail)\n(no answer within 0.3 s: the answer is {"channel": "mail"})\n> ')
    assert exit_code(folder) == 0  # nobody typed: the default answered
    p.wait_for("[publish writer] <mail <uvloop>>")
    report = the_report(folder)
    assert report["run"]["gates"][1] == {
        "stage": "pick",
        "kind": "ask",
        "decision": "answered",
        "by": "timeout",
        "reason": None,
    }


def test_on_a_terminal_end_of_input_leaves_the_gate_waiting(pane) -> None:
    folder, start = pane
    (folder / "wf.yaml").write_text(GATED, encoding="utf-8")
    p = start("wf.yaml", "--report-dir", "reports")
    p.wait_for("Approve? [y/n] ")
    p.send("C-d")
    assert exit_code(folder) == 75
    p.wait_for("runner: approve gate 'review' is waiting for a decision: the terminal's input ended")
    report = the_report(folder)
    assert report["run"]["status"] == "waiting"
    assert report["run"]["gates"] == [
        {"stage": "review", "kind": "approve", "decision": "waiting", "by": None, "reason": None}
    ]


def test_ctrl_c_at_the_prompt_interrupts_the_run_with_a_partial_report(pane) -> None:
    folder, start = pane
    (folder / "wf.yaml").write_text(GATED, encoding="utf-8")
    p = start("wf.yaml", "--report-dir", "reports")
    p.wait_for("Approve? [y/n] ")
    p.send("C-c")
    assert exit_code(folder) == 130
    p.wait_for("runner: interrupted; partial report written")
    report = the_report(folder)
    assert report["run"]["status"] == "interrupted"
    assert {n["id"]: n["status"] for n in report["nodes"]} == {"draft": "ok", "review": "cancelled"}
