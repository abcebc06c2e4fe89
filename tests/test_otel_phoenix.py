"""OpenTelemetry export into a real receiver nobody here wrote: Arize Phoenix (``phoenix serve``, on
127.0.0.1, its SQLite store in a temporary folder), started once for this module and queried afterwards over
its REST API for the run's spans, their parent links and their ``gen_ai.*`` attributes (issue 22's bar: a
100-way fan-out arrives with one root, the right parents, and token counts equal to the report's)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import run_cli
from tests.oai_server import OAIServer, Plan
from tests.test_otel import OPENAI, PROMPT, SECRET

# one worker runs this module (pytest-xdist), so Phoenix starts once
pytestmark = [pytest.mark.timeout(180), pytest.mark.xdist_group("phoenix")]

PROJECT = "runner-otel-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Phoenix server's base URL; its working folder (SQLite store) is temporary."""
    exe = shutil.which("phoenix", path=str(Path(sys.executable).parent)) or shutil.which("phoenix")
    if exe is None:
        pytest.skip("arize-phoenix is not installed (pip install -e '.[test]')")
    work = tmp_path_factory.mktemp("phoenix")
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PHOENIX_"))},
        "PHOENIX_WORKING_DIR": str(work),
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(_free_port()),
        "PHOENIX_TELEMETRY_ENABLED": "false",
    }
    log = (work / "server.log").open("w")
    proc = subprocess.Popen([exe, "serve"], env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # only bounds a hang: it is ready when /healthz answers
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"phoenix serve exited ({proc.returncode}):\n{(work / 'server.log').read_text()}")
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "phoenix serve did not answer within 120 s"
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def _spans(url: str, trace_id: str, expected: int) -> list[dict[str, Any]]:
    """The trace's spans as Phoenix stores them, once all ``expected`` have been ingested (it writes them to its
    store in the background: the test waits for the count, bounded only against a hang)."""
    deadline = time.monotonic() + 60
    while True:
        found: list[dict[str, Any]] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 1000}
            if cursor:
                params["cursor"] = cursor
            answer = httpx.get(f"{url}/v1/projects/{PROJECT}/spans", params=params, timeout=10)
            if answer.status_code == 404:  # the project appears with its first span
                break
            answer.raise_for_status()
            body = answer.json()
            found += [s for s in body["data"] if s["context"]["trace_id"] == trace_id]
            cursor = body.get("next_cursor")
            if not cursor:
                break
        if len(found) >= expected:
            return found
        assert time.monotonic() < deadline, f"{len(found)} of {expected} spans reached Phoenix"
        time.sleep(0.2)


def test_a_100_way_fanout_arrives_in_phoenix_with_one_root_its_parents_and_the_reports_tokens(
    phoenix: str, tmp_path: Path
) -> None:
    with OAIServer(api_key=SECRET) as server:
        server.default = Plan(content="done", usage={"prompt_tokens": 13, "completion_tokens": 4})
        server.plan(Plan(content="longer", usage={"prompt_tokens": 21, "completion_tokens": 9}))  # one differs
        path = tmp_path / "wf.yaml"
        path.write_text(OPENAI.format(url=server.url, prompt=PROMPT), encoding="utf-8")
        proc = run_cli(
            "run", str(path), "-q", "--set", "n=100", "--report-dir", str(tmp_path / "r"), "--otel", phoenix,
            env_extra={"RUNNER_TEST_KEY": SECRET, "OTEL_RESOURCE_ATTRIBUTES": f"openinference.project.name={PROJECT}"},
            timeout=60,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    (report_file,) = (tmp_path / "r").glob("*.json")
    report = json.loads(report_file.read_text())
    nodes = {n["id"]: n for n in report["nodes"]}
    assert len(nodes) == 101  # fan and its 100 calls

    from runner.report.otel import trace_id_of

    trace_id = f"{trace_id_of(report['run']['id'], report['run']['started_at']):032x}"
    spans = _spans(phoenix, trace_id, expected=1 + len(nodes))
    by_id = {s["context"]["span_id"]: s for s in spans}
    roots = [s for s in spans if not s["parent_id"]]
    assert [r["name"] for r in roots] == ["invoke_workflow otel-fan"]
    assert all(s["parent_id"] is None or s["parent_id"] in by_id for s in spans)  # no parent missing
    of_node = {s["attributes"]["runner.node.id"]: s for s in spans if "runner.node.id" in s["attributes"]}
    assert set(of_node) == set(nodes)
    assert of_node["fan"]["parent_id"] == roots[0]["context"]["span_id"]
    for i in range(100):
        call = of_node[f"fan[{i}]"]
        assert call["parent_id"] == of_node["fan"]["context"]["span_id"]
        attrs = call["attributes"]
        assert attrs["gen_ai.operation.name"] == "chat"
        assert attrs["gen_ai.provider.name"] == "openai"
        assert attrs["gen_ai.request.model"] == "test-model"
        assert attrs["gen_ai.usage.input_tokens"] == nodes[f"fan[{i}]"]["tokens_in"]
        assert attrs["gen_ai.usage.output_tokens"] == nodes[f"fan[{i}]"]["tokens_out"]
    calls = [of_node[f"fan[{i}]"]["attributes"] for i in range(100)]
    assert sum(a["gen_ai.usage.input_tokens"] for a in calls) == report["totals"]["tokens_in"] == 99 * 13 + 21
    assert sum(a["gen_ai.usage.output_tokens"] for a in calls) == report["totals"]["tokens_out"] == 99 * 4 + 9
    stored = json.dumps(spans)
    assert SECRET not in stored and PROMPT not in stored
