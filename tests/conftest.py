from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.secret_scan import API_KEY, API_KEY_ENV, PROXY_ENV, SecretScan, proxy_url

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True, scope="session")
def _session_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """runner's user cache (schema verdicts, runner/workflow/verdicts.py) for this session's runs, in-process and
    the CLI's: a folder of the session's, never the user's ~/.cache."""
    old = os.environ.get("RUNNER_CACHE_DIR")
    os.environ["RUNNER_CACHE_DIR"] = str(tmp_path_factory.mktemp("runner-cache"))
    yield
    if old is None:
        os.environ.pop("RUNNER_CACHE_DIR", None)
    else:
        os.environ["RUNNER_CACHE_DIR"] = old


@pytest.fixture(autouse=True, scope="session")
def _venv_on_path() -> Iterator[None]:
    """The programs this interpreter's environment installed (mcp-server-time, mcp-server-git, runner itself) on
    PATH, as in an activated virtual environment: so `.venv/bin/pytest` run without activating it finds them."""
    old = os.environ.get("PATH", "")
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in old.split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + old
    yield
    os.environ["PATH"] = old


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
    if "stdout" not in kw and "stderr" not in kw:
        kw["capture_output"] = True
    proc = subprocess.run(
        [sys.executable, "-m", "runner", *args],
        cwd=cwd or ROOT,
        text=True,
        timeout=timeout,
        env=env,
        **kw,
    )
    if _SCAN is not None:  # the secret scan sees what the process printed and the secrets it was given
        _SCAN.add_secret(*(v for k, v in (env_extra or {}).items() if _SECRET_NAME.search(k)))
        _SCAN.add_text(f"runner {' '.join(args)}: stdout", proc.stdout)
        _SCAN.add_text(f"runner {' '.join(args)}: stderr", proc.stderr)
    return proc


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


def wait_for_log(path: Path, done: Callable[[str], bool], proc: subprocess.Popen[str], *, within: float = 30) -> str:
    """Wait until the text of the log file ``path`` (a run's ``--log-file``) satisfies ``done``, and return
    it: a test signals a run at a point the run itself reported (``--log-level debug`` logs each node's
    ``started``), not after a sleep. Fails if the process ends first; ``within`` only bounds a hang."""
    deadline = time.monotonic() + within
    text = ""
    while time.monotonic() < deadline:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        if done(text):
            return text
        assert proc.poll() is None, f"the run ended (exit {proc.returncode}) before its log said so:\n{text}"
        time.sleep(0.02)
    raise AssertionError(f"the log did not say so within {within} s:\n{text[-2000:]}")


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

    from runner.workflow.build import build_workflow
    from runner.workflow.document import load_document
    from runner.workflow.schema import schema_diagnostics

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
_SECRET_NAME = re.compile(r"(?i)key|token|secret|passw")
_SCAN: SecretScan | None = None


@pytest.fixture(autouse=True)
def _no_ambient_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see no proxy settings of the machine they run on; proxy tests set their own."""
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def secret_scan(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[SecretScan]:
    """Marker secrets in the environment, and after the test a scan of every file it wrote (``tmp_path``, and
    the project's ``reports/`` folder) and everything printed (captured output, ``run_cli``'s output) for
    each marker, and each secret the test set in the environment, in every form (tests/secret_scan.py).

    The markers: an API key in ``RUNNER_MARKER_API_KEY``; proxy credentials in ``ALL_PROXY`` (a closed
    loopback port: runner reaches loopback servers directly, and ``NO_PROXY`` says so to other clients, so
    only the credentials are in play) and, as a URL for tests to route through a proxy of theirs,
    ``scan.proxy_url(port)``."""
    global _SCAN
    from runner.secrets import SECRETS

    saved = SECRETS.snapshot()
    capture = request.getfixturevalue("capsys" if "capsys" in request.fixturenames else "capfd")
    monkeypatch.setenv(API_KEY_ENV, API_KEY)
    monkeypatch.setenv(PROXY_ENV, proxy_url(9))
    monkeypatch.setenv("ALL_PROXY", proxy_url(9))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")  # for clients (the OpenAI SDK) that proxy loopback
    scan = SecretScan()
    scan.add_secret(API_KEY)
    scan.add_folder(tmp_path)
    reports = ROOT / "reports"
    before = {p: p.stat().st_mtime for p in reports.rglob("*")} if reports.is_dir() else {}
    _SCAN = scan
    try:
        yield scan
    finally:
        _SCAN = None
        SECRETS.restore(saved)
    out, err = capture.readouterr()
    scan.add_text("stdout", out)
    scan.add_text("stderr", err)
    for name, value in os.environ.items():
        if _SECRET_NAME.search(name) and value.strip():
            scan.add_secret(value.strip())
        if name.lower() in ("http_proxy", "https_proxy", "all_proxy") and "@" in value:
            from urllib.parse import unquote, urlsplit

            parts = urlsplit(value)
            scan.add_secret(unquote(f"{parts.username}:{parts.password or ''}"))
    if reports.is_dir():
        for path in reports.rglob("*"):
            if path.is_file() and before.get(path) != path.stat().st_mtime:
                scan.add_text(str(path), path.read_bytes())
    leaks = scan.leaks()
    assert not leaks, "secrets leaked:\n" + "\n".join(map(str, leaks))
