"""Issue 24's bars at their size: a 1,000-row labelled eval with a field-equals, a regex, a Python and an LLM-judge
assertion against the loopback server (the judge a second model on it): each assertion's pass, fail and error
counts equal those computed from the labels exactly; a threshold not met exits 1 and the Markdown names the worst
assertion; the same eval replayed from its cassette gives identical verdicts without opening a socket."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.oai_server import OAIServer
from tests.test_eval_runs import ROWS, cli, expected, folder_of, responder, results, setup

pytestmark = pytest.mark.timeout(240)

N = 1000
# the ten kinds of row of test_eval_runs (a judge that repairs, one that never gives a verdict, a crashing Python
# assertion on R-7), a hundred times each
MANY = [{**ROWS[i % len(ROWS)], "id": f"R-{i}"} for i in range(N)]


def test_a_thousand_rows_counted_exactly_then_replayed_without_a_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tape = tmp_path / "tape"
    with OAIServer() as server:
        server.responder = responder
        wf, data = setup(tmp_path, server.url, "jsonl", label_threshold=0.9, top_threshold=0.05)
        data.write_text("".join(json.dumps(r) + "\n" for r in MANY))
        proc = cli(
            "eval", str(wf), "--dataset", str(data), "--key", "id", "--concurrency", "64",
            "--report-dir", str(tmp_path / "a"), "--record", str(tape), "--quiet",
        )  # fmt: skip
    want = expected(MANY)
    folder = folder_of(tmp_path / "a")
    evals = json.loads((folder / "report.json").read_text())["evals"]
    got = {a["name"]: {k: a[k] for k in ("passed", "failed", "errors")} for a in evals["assertions"]}
    assert got == want
    assert sum(want["judge"].values()) == N and want["short"]["errors"] == 1 and want["judge"]["errors"] == N // 10
    # the label list needs 90% and gets 70%: exit 1, the worst assertion named
    assert proc.returncode == 1
    label_rate = want["label"]["passed"] / N
    assert (
        f"runner: error: stages.classify.assert: {want['label']['passed']} of {N} rows passed "
        f"({label_rate * 100:.1f}%), below the threshold 90.0%"
    ) in proc.stderr.splitlines()
    rates = {n: c["passed"] / N for n, c in want.items()}
    worst = min(rates, key=lambda n: (rates[n], list(want).index(n)))
    assert evals["worst"] == worst
    assert f"Worst assertion: `{worst}`." in (folder / "report.md").read_text().splitlines()

    # replayed: the server is gone, and no socket may even connect (the standard loop, whose sockets are Python's)
    connects: list[Any] = []
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            connects.append(address)
            raise OSError("a replayed eval opened a socket")
        real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", lambda self, address: connects.append(address) or 111)
    again = cli(
        "eval", str(wf), "--dataset", str(data), "--key", "id", "--concurrency", "64", "--no-uvloop",
        "--report-dir", str(tmp_path / "b"), "--replay", str(tape), "--strict", "--quiet",
    )  # fmt: skip
    assert again.returncode == 1, again.stderr  # the same threshold, not met the same way
    assert connects == []
    first = [(line["key"], line["assertions"]) for line in results(folder)]
    second = [(line["key"], line["assertions"]) for line in results(folder_of(tmp_path / "b"))]
    assert first == second
