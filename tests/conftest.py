from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture
def write_wf(tmp_path: Path) -> Callable[..., Path]:
    """Write a workflow (dedented) to tmp_path/<name> and return its path."""

    def write(text: str, name: str = "wf.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 30, env_extra: dict[str, str] | None = None, **kw: Any
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m runner ARGS`` as a user would, bounded in time."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1", **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "runner", *args],
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        **kw,
    )


def start_cli(*args: str) -> subprocess.Popen[str]:
    """Start ``python -m runner ARGS`` in the background (to signal it), its output piped."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "runner", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


def report_schema() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ROOT / "schemas" / "report.schema.json").read_text())
    return data


def assert_valid_report(report: dict[str, Any]) -> None:
    from jsonschema import Draft202012Validator

    errors = sorted(Draft202012Validator(report_schema()).iter_errors(report), key=str)
    assert not errors, [e.message for e in errors]


def load_unchecked(path: Path) -> Any:
    """The workflow's records without the semantic checks: to test what the engine does at run time with
    mistakes that `runner validate` would have caught first."""
    import hashlib

    from runner.spec.build import build_workflow
    from runner.spec.schema import schema_diagnostics
    from runner.spec.yamlpos import load_document

    raw = path.read_bytes()
    doc = load_document(raw.decode(), str(path))
    assert schema_diagnostics(doc) == []
    return build_workflow(doc, hashlib.sha256(raw).hexdigest())


def schema_def(name: str) -> dict[str, Any]:
    """One definition of the workflow schema (``$defs/<name>``) as a schema of its own: the definition's
    keys, with the whole ``$defs`` beside them so its references resolve."""
    full: dict[str, Any] = json.loads((ROOT / "schemas" / "workflow.schema.json").read_text())
    return {"$schema": full["$schema"], **full["$defs"][name], "$defs": full["$defs"]}


LOOPS = ["asyncio", "uvloop"] if __import__("importlib.util").util.find_spec("uvloop") else ["asyncio"]


def run_on(loop: str, coro: Any) -> Any:
    """Run ``coro`` on a fresh loop of the named kind (the engine runs on uvloop where it can)."""
    import asyncio

    factory = None
    if loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUEST_METHOD")


@pytest.fixture(autouse=True)
def _no_ambient_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see no proxy settings of the machine they run on; proxy tests set their own."""
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
