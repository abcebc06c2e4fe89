"""What an instant replay costs (issue 19, "Replay overhead"): the HTTP stack is not imported when every request
is in the cassette, and replayed answers reach the provider's parsing without HTTP objects."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.oai_server import OAIServer, Plan
from tests.secret_scan import API_KEY, API_KEY_ENV

pytestmark = [pytest.mark.timeout(60)]


def workflow(url: str) -> str:
    return f"""\
version: 1
name: taped
models:
  streamed:
    provider: openai
    base_url: "{url}"
    model: test-model
    api_key_env: {API_KEY_ENV}
    stream: true
  whole:
    provider: openai
    base_url: "{url}"
    model: test-model
    api_key_env: {API_KEY_ENV}
    stream: false
agents:
  a: {{model: streamed, sys_prompt: "Be brief."}}
  b: {{model: whole, sys_prompt: "Be brief."}}
stages:
  - {{id: first, agent: a, input: "one"}}
  - {{id: second, agent: b, input: "two"}}
"""


_PROBE = textwrap.dedent(
    """
    import json, sys
    from runner.cli import main
    code = main(sys.argv[1:])
    print(json.dumps({"code": code, "loaded": sorted(m for m in ("aiohttp", "yarl", "httpx") if m in sys.modules)}))
    """
)


def probe(cwd: Path, *args: str) -> dict[str, object]:
    """``runner ARGS`` in a fresh interpreter: its exit code and which HTTP modules it imported."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1", API_KEY_ENV: API_KEY}
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, *args, "-q"], capture_output=True, text=True, timeout=60, env=env, cwd=cwd
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_a_strict_replay_imports_no_network_transport(tmp_path: Path) -> None:
    with OAIServer(api_key=API_KEY) as server:
        server.plan(Plan(content="first answer"), Plan(content="second answer"))
        wf = tmp_path / "wf.yaml"
        wf.write_text(workflow(server.url))
        recorded = probe(tmp_path, "run", str(wf), "--record", "tape", "--report-dir", "rec")
    assert recorded["code"] == 0
    assert "aiohttp" in recorded["loaded"]  # type: ignore[operator] # the control: recording sends
    replayed = probe(tmp_path, "run", str(wf), "--replay", "tape", "--strict", "--report-dir", "rep")
    assert replayed["code"] == 0
    assert "aiohttp" not in replayed["loaded"] and "yarl" not in replayed["loaded"]  # type: ignore[operator]
