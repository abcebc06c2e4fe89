"""The response cache for development: ``models.<name>.cache: {responses: {dir, ttl, max_size}}`` (issue 19)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import assert_valid_report, run_cli
from tests.oai_server import OAIServer, Plan

pytestmark = [pytest.mark.timeout(90)]


def workflow(url: str, *, cache: str = "{dir: answers}", fan: int = 3, extra: str = "") -> str:
    return f"""\
version: 1
name: cached
models:
  main:
    provider: openai
    base_url: "{url}"
    model: test-model
    stream: true
    retry: {{max_attempts: 2, initial_delay: 0.01}}
    cache: {{responses: {cache}}}
{extra}
agents:
  a: {{model: main, sys_prompt: "You look at {{{{ vars.item }}}}."}}
stages:
  - id: fan
    input: "Look at {{{{ vars.item }}}}."
    fanout: {{for_each: "{{{{ range({fan}) | list }}}}", agent: a}}
"""


def run(tmp_path: Path, wf: Path, name: str) -> tuple[Any, dict[str, Any]]:
    proc = run_cli("run", str(wf), "-q", "--report-dir", str(tmp_path / name))
    assert proc.returncode == 0, proc.stderr
    (path,) = (tmp_path / name).glob("*.json")
    report = json.loads(path.read_text())
    assert_valid_report(report)
    return proc, report


def test_a_request_made_again_is_answered_from_the_cache_and_shows_in_the_report(tmp_path: Path) -> None:
    with OAIServer() as server:
        wf = tmp_path / "wf.yaml"
        wf.write_text(workflow(server.url))
        first, report = run(tmp_path, wf, "one")
        assert len(server.requests) == 3
        assert report["cache"]["models.main"] | {"bytes_written": 0} == {
            "hits": 0, "misses": 3, "evictions": 0, "bytes_read": 0, "bytes_written": 0,
            "dir": str(tmp_path / "answers"), "problem": None,
        }  # fmt: skip
        assert len(list((tmp_path / "answers").glob("*.json"))) == 3
        second, report = run(tmp_path, wf, "two")
        assert len(server.requests) == 3  # nothing more was sent
        assert second.stdout == first.stdout
        assert report["cache"]["models.main"]["hits"] == 3
        assert report["cache"]["models.main"]["misses"] == 0
        assert report["models"]["main"]["tokens_out"] > 0  # the cached answers' usage is read as the model's
        # a changed prompt is a miss
        wf.write_text(workflow(server.url).replace("You look at", "You study"))
        run(tmp_path, wf, "three")
        assert len(server.requests) == 6


def test_errors_are_never_cached(tmp_path: Path) -> None:
    with OAIServer() as server:
        server.plan(Plan(status=503), Plan(content="after a retry"))
        wf = tmp_path / "wf.yaml"
        wf.write_text(workflow(server.url, fan=1))
        run(tmp_path, wf, "one")
        (entry,) = (tmp_path / "answers").glob("*.json")
        assert "503" not in entry.read_text()
        server.default = Plan(status=400)
        wf.write_text(workflow(server.url, fan=1).replace("Look at", "Check"))
        proc = run_cli("run", str(wf), "-q", "--report-dir", str(tmp_path / "r"))
        assert proc.returncode == 1
        assert len(list((tmp_path / "answers").glob("*.json"))) == 1


def test_expired_answers_are_misses_and_removed(tmp_path: Path) -> None:
    with OAIServer() as server:
        wf = tmp_path / "wf.yaml"
        wf.write_text(workflow(server.url, cache="{dir: answers, ttl: 3600}", fan=2))
        run(tmp_path, wf, "one")
        entries = sorted((tmp_path / "answers").glob("*.json"))
        hour_ago = os.stat(entries[0]).st_mtime - 3601
        os.utime(entries[0], (hour_ago, hour_ago))  # written over an hour ago: past its ttl
        _, report = run(tmp_path, wf, "two")
        assert (report["cache"]["models.main"]["hits"], report["cache"]["models.main"]["misses"]) == (1, 1)
        assert len(server.requests) == 3


def test_the_folder_stays_within_max_size_dropping_the_least_recently_used(tmp_path: Path) -> None:
    with OAIServer() as server:
        wf = tmp_path / "wf.yaml"
        wf.write_text(workflow(server.url, fan=1))
        run(tmp_path, wf, "probe")
        (probe,) = (tmp_path / "answers").glob("*.json")
        size = probe.stat().st_size
        probe.unlink()
        # room for two answers and half of a third: answers differ in size by the digits of the item and of
        # their chunks' time offsets (a few bytes each, more on a loaded machine), never by half an answer
        room = int(2.5 * size)
        wf.write_text(workflow(server.url, cache=f"{{dir: answers, max_size: {room}}}", fan=4))
        _, report = run(tmp_path, wf, "one")
        files = list((tmp_path / "answers").glob("*.json"))
        assert len(files) == 2
        assert sum(f.stat().st_size for f in files) <= room
        assert report["cache"]["models.main"]["evictions"] == 2


def test_a_hit_costs_no_rate_limit_budget(tmp_path: Path) -> None:
    with OAIServer() as server:
        wf = tmp_path / "wf.yaml"
        limited = workflow(server.url, fan=4, extra="    rate_limit: {requests_per_minute: 120}")
        wf.write_text(limited)
        _, report = run(tmp_path, wf, "one")
        assert report["models"]["main"]["rate_wait"]["count"] > 0  # a bucket of 2, refilled at 2 a second: some waited
        _, report = run(tmp_path, wf, "two")
        assert report["cache"]["models.main"]["hits"] == 4
        assert report["models"]["main"]["rate_wait"]["count"] == 0


def test_a_bad_cache_setting_is_located_by_validate(tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(workflow("http://127.0.0.1:9/v1", cache="{dir: answers, max_size: 0MB}"))
    proc = run_cli("validate", str(wf))
    assert proc.returncode == 1
    assert proc.stdout.startswith(
        f"{wf}:10:39: error: models.main: cache.responses.max_size: a size must be at least 1 byte, not '0MB' "
        "[invalid-setting]\n"
    )
