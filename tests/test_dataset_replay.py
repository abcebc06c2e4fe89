"""A dataset batch records its model traffic and replays it like a single run (issues 17 and 19): every row's
requests go through the one cassette, a strict replay with the server stopped gives the same results, and a
row whose request is not in the cassette fails the batch (exit 1, located, never a traceback)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli
from tests.oai_server import OAIServer, Plan
from tests.secret_scan import API_KEY, API_KEY_ENV

pytestmark = [pytest.mark.timeout(120)]


def workflow(url: str) -> str:
    return f"""\
version: 1
name: labels
inputs:
  text: {{type: string}}
models:
  main:
    provider: openai
    base_url: "{url}"
    model: test-model
    api_key_env: {API_KEY_ENV}
    stream: false
    retry: {{max_attempts: 1}}
agents:
  labeller: {{model: main, sys_prompt: "Label the ticket in one word."}}
stages:
  - {{id: label, agent: labeller, input: "{{{{ inputs.text }}}}"}}
report: {{dir: reports, formats: [json]}}
"""


def results(folder: Path) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]
    return sorted(lines, key=lambda line: line["index"])


def folder_of(stderr: str) -> Path:
    """The run folder a batch names on stderr as it starts."""
    for line in stderr.splitlines():
        if "runs/" in line:
            return Path(next(word for word in line.split() if "runs/" in word).rstrip(":,"))
    raise AssertionError(stderr)


def test_a_recorded_batch_replays_strictly_without_the_server(tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"text": f"ticket {i}"}) + "\n" for i in range(4)))
    env = {API_KEY_ENV: API_KEY}
    with OAIServer(api_key=API_KEY) as server:
        server.plan(*(Plan(content=f"label-{i}") for i in range(4)))
        wf = tmp_path / "wf.yaml"
        wf.write_text(workflow(server.url))
        recorded = run_cli(
            "run",
            str(wf),
            "--dataset",
            str(rows),
            "--concurrency",
            "1",
            "--record",
            "tape",
            "-q",
            cwd=tmp_path,
            env_extra=env,
        )
        assert recorded.returncode == 0, recorded.stderr
        assert len(server.requests) == 4
    assert len(list((tmp_path / "tape").glob("*.json"))) == 4
    before = results(tmp_path / folder_of(recorded.stderr))
    assert [line["output"] for line in before] == [f"label-{i}" for i in range(4)]
    # the server is gone: only the cassette can answer
    replayed = run_cli(
        "run", str(wf), "--dataset", str(rows), "--replay", "tape", "--strict", cwd=tmp_path, env_extra=env
    )
    assert replayed.returncode == 0, replayed.stderr
    assert "cassette tape: 4 answers replayed" in replayed.stderr
    after = results(tmp_path / folder_of(replayed.stderr))
    assert [(line["status"], line["output"]) for line in after] == [(line["status"], line["output"]) for line in before]
    # a row the cassette never saw: its request misses, the row fails and so does the batch
    rows.write_text(rows.read_text() + json.dumps({"text": "a new ticket"}) + "\n")
    missed = run_cli(
        "run", str(wf), "--dataset", str(rows), "--replay", "tape", "--strict", cwd=tmp_path, env_extra=env
    )
    assert missed.returncode == 1
    assert "Traceback" not in missed.stderr
    last = results(tmp_path / folder_of(missed.stderr))
    assert [line["status"] for line in last] == ["ok"] * 4 + ["failed"]
    assert (
        "stage 'label': model 'main' (test-model): the request is not in cassette tape (--strict)" in last[4]["error"]
    )
