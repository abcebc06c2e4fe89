"""What a one-call ``runner run`` imports: the schema-verdict cache spares jsonschema for bytes that passed
before (runner/workflow/verdicts.py), and a workflow whose templates are all text never imports jinja2
(issue 14: a whole process for a one-call workflow cost 0.48 s over the run), nor shutil (which argparse
imports for the terminal's width, and which imports zlib, bz2 and lzma). The imports are read from
``sys.modules`` of a fresh interpreter, so nothing here depends on the machine's speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runner.workflow import verdicts
from tests.conftest import ROOT, run_cli

ONE = """\
version: 1
name: one
models:
  m: {provider: scripted, reply: "hi"}
agents:
  a: {model: m}
stages:
  - {id: s, agent: a, input: "hello"}
"""

_PROBE = textwrap.dedent(
    """
    import json, sys
    from runner.cli import main
    code = main(sys.argv[1:])
    print(json.dumps({"code": code, "jsonschema": "jsonschema" in sys.modules, "jinja2": "jinja2" in sys.modules,
                      "shutil": "shutil" in sys.modules,
                      "unused": sorted(m for m in ("numpy", "httpx", "aiohttp", "uuid", "platform", "statistics",
                                                   "difflib", "runner.validate.rules.dataflow") if m in sys.modules)}))
    """
)


def _run(path: Path, cache: Path | None, *extra: str, env: dict[str, str] | None = None) -> dict[str, object]:
    """Run the CLI in a fresh interpreter; what it returned and which heavy modules it imported."""
    full = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    if cache is not None:
        full["RUNNER_CACHE_DIR"] = str(cache)
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, "run", str(path), "-q", "--report-dir", str(path.parent / "r"), *extra],
        capture_output=True,
        text=True,
        timeout=60,
        env=full,
        cwd=path.parent,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_a_pass_is_remembered_and_the_next_run_skips_jsonschema(tmp_path: Path) -> None:
    wf = tmp_path / "one.yaml"
    wf.write_text(ONE, encoding="utf-8")
    cache = tmp_path / "cache"
    first = _run(wf, cache)
    assert first["code"] == 0 and first["jsonschema"] is True and first["jinja2"] is False  # jsonschema needs shutil
    assert len(list((cache / verdicts.FOLDER).iterdir())) == 1
    second = _run(wf, cache)
    assert second == {"code": 0, "jsonschema": False, "jinja2": False, "shutil": False, "unused": []}


def test_an_edited_file_is_checked_again(tmp_path: Path) -> None:
    wf = tmp_path / "one.yaml"
    wf.write_text(ONE, encoding="utf-8")
    cache = tmp_path / "cache"
    assert _run(wf, cache)["code"] == 0
    wf.write_text(ONE.replace("agent: a,", "agnt: a,"), encoding="utf-8")  # one key misspelled
    proc = run_cli("run", str(wf), "-q", env_extra={"RUNNER_CACHE_DIR": str(cache)}, cwd=tmp_path)
    assert proc.returncode == 1
    assert f"{wf}:8:" in proc.stderr and "unknown key 'agnt'" in proc.stderr
    assert len(list((cache / verdicts.FOLDER).iterdir())) == 1  # a failure is never remembered


def test_no_cache_and_an_unusable_cache_only_cost_the_import(tmp_path: Path) -> None:
    wf = tmp_path / "one.yaml"
    wf.write_text(ONE, encoding="utf-8")
    off = tmp_path / "off"
    for _ in range(2):
        cold = _run(wf, off, env={"RUNNER_NO_CACHE": "1"})
        assert (cold["code"], cold["jsonschema"], cold["jinja2"]) == (0, True, False)
    assert not off.exists()
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the folder should be", encoding="utf-8")
    for _ in range(2):
        cold = _run(wf, blocked)
        assert (cold["code"], cold["jsonschema"], cold["jinja2"]) == (0, True, False)


def test_only_a_template_beyond_name_lookups_imports_jinja(tmp_path: Path) -> None:
    wf = tmp_path / "one.yaml"
    wf.write_text(ONE.replace('input: "hello"', 'input: "hello {{ run.name }}"'), encoding="utf-8")
    assert _run(wf, tmp_path / "cache")["jinja2"] is False  # `{{ name.key }}` outputs: read without Jinja
    wf.write_text(ONE.replace('input: "hello"', 'input: "hello {{ run.name | upper }}"'), encoding="utf-8")
    assert _run(wf, tmp_path / "cache")["jinja2"] is True  # a filter: Jinja's
    for report in (tmp_path / "r").glob("*.json"):
        assert json.loads(report.read_text(encoding="utf-8"))["run"]["status"] == "ok"


def test_the_key_covers_every_input_of_the_check() -> None:
    base = verdicts.verdict_key(b"text", b"schema", "1.0")
    assert len({base, verdicts.verdict_key(b"text2", b"schema", "1.0")}) == 2
    assert len({base, verdicts.verdict_key(b"text", b"schema2", "1.0")}) == 2
    assert len({base, verdicts.verdict_key(b"text", b"schema", "1.1")}) == 2
    # length-prefixed: moving bytes from one part to the next is a different key
    assert verdicts.verdict_key(b"ab", b"c", "1") != verdicts.verdict_key(b"a", b"bc", "1")


def test_the_folder_stays_bounded_least_recently_used_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNNER_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(verdicts, "MAX_VERDICTS", 8)
    keys = [verdicts.verdict_key(str(i).encode(), b"s", "v") for i in range(8)]
    for i, key in enumerate(keys):
        verdicts.remember_pass(key)
        os.utime(tmp_path / verdicts.FOLDER / key, ns=(i * 10**9, i * 10**9))  # oldest first, exactly
    assert verdicts.passed_before(keys[0])  # a hit refreshes the oldest: it is now the newest
    verdicts.remember_pass(verdicts.verdict_key(b"new", b"s", "v"))  # the ninth: prune down to half
    left = {p.name for p in (tmp_path / verdicts.FOLDER).iterdir()}
    assert len(left) == 4
    assert keys[0] in left and verdicts.verdict_key(b"new", b"s", "v") in left
    assert keys[1] not in left and keys[2] not in left
