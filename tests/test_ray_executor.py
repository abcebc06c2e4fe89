"""``runner run WF --dataset FILE --executor ray`` (issue 18) against one real local Ray instance for the whole
module (started once: it costs seconds) and the loopback OpenAI server; the CLI runs as users run it, joining
that instance with ``--ray-address``. Ray's servers listen on 127.0.0.1 only, its files under a folder of the
test's own, which the secret scan reads with the run folders."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from runner.cli import main
from tests.conftest import ROOT, run_cli
from tests.oai_server import OAIServer, Plan

# one worker runs this module (pytest-xdist), so the Ray instance starts once
pytestmark = [pytest.mark.timeout(120), pytest.mark.xdist_group("ray")]

# Ray reads whether it may bind the machine's address when it is first imported: said before any test of this
# worker imports it (as runner's driver does before it imports Ray, runner.dataset.onray.connect.import_ray).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

SECRET = "sk-ray-test-0123456789abcdef"


@dataclass
class Cluster:
    ray: Any
    address: str
    temp: Path


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """One local Ray instance: 2 CPUs, no dashboard, its servers on the loopback interface (Ray binds the
    machine's address unless told this is a one-machine cluster), its files in a short folder of its own (Unix
    socket paths are limited to 107 bytes)."""
    saved = {k: os.environ.get(k) for k in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_TMPDIR")}
    temp = Path(tempfile.mkdtemp(prefix="rayt", dir="/tmp"))
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    os.environ["RAY_TMPDIR"] = str(temp)
    ray = pytest.importorskip("ray")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
        namespace="runner",
        _temp_dir=str(temp),
    )
    try:
        yield Cluster(ray, ray.get_runtime_context().gcs_address, temp)
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def workflow(url: str, rate: str = "") -> str:
    return f"""\
version: 1
name: remote
inputs:
  text: {{type: string}}
models:
  main:
    provider: openai
    base_url: "{url}"
    model: test-model
    api_key_env: RAY_TEST_API_KEY
    stream: false
    retry: {{max_attempts: 1}}
{rate}
agents:
  a: {{model: main, sys_prompt: "Label it."}}
stages:
  - {{id: label, agent: a, input: "{{{{ inputs.text }}}}"}}
"""


class Echo:
    """The server's answers: each row's own text back (so rows compare row for row), and when each came."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> Plan:
        with self._lock:
            self.times.append(time.monotonic())
        return Plan(content="label:" + str(body["messages"][-1]["content"]))


def setup(tmp_path: Path, server: OAIServer, n: int, rate: str = "") -> tuple[Path, Path]:
    folder = tmp_path / "flow"
    folder.mkdir()
    wf = folder / "wf.yaml"
    wf.write_text(workflow(server.url, rate))
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"text": f"t{i}"}) + "\n" for i in range(n)))
    return wf, data


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return subprocess.CompletedProcess(["runner", *args], code, out.getvalue(), err.getvalue())


def env(cluster: Cluster) -> dict[str, str]:
    return {"RAY_TEST_API_KEY": SECRET, "RAY_TMPDIR": str(cluster.temp)}


def start(cluster: Cluster, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "runner", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1", **env(cluster)},
        cwd=ROOT,
    )


def results(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (folder / "results.jsonl").read_text(encoding="utf-8").splitlines()]


def run_folder(reports: Path, proc: subprocess.Popen[str], lines: int, within: float = 60) -> Path:
    """The run folder once its results.jsonl has ``lines`` lines (``within`` only bounds a hang)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = list((reports / "runs").glob("*/results.jsonl")) if (reports / "runs").is_dir() else []
        if found and found[0].read_bytes().count(b"\n") >= lines:
            return found[0].parent
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"results.jsonl did not reach {lines} lines")


def scan_for_secret(*roots: Path) -> None:
    """No file written under ``roots`` (the run folder, Ray's session files) holds the API key."""
    needle = SECRET.encode()
    seen = 0
    for root in roots:
        for dirpath, _, files in os.walk(root):
            for name in files:
                path = Path(dirpath, name)
                if path.is_symlink() or not path.is_file():
                    continue
                seen += 1
                with contextlib.suppress(OSError):
                    assert needle not in path.read_bytes(), f"{path} holds the API key"
    assert seen > 10  # the scan read the run's files and Ray's logs, not an empty folder


def without(line: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in line.items() if k not in keys}


# -- without Ray ----------------------------------------------------------------------------------------------


def test_without_the_extra_executor_ray_fails_at_once_with_the_install_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as without the extra
    with OAIServer() as server:
        wf, data = setup(tmp_path, server, 3)
        got = cli("run", str(wf), "--dataset", str(data), "--executor", "ray", "--report-dir", str(tmp_path / "r"))
    assert got.returncode == 1
    assert got.stderr == (
        "runner: error: --executor ray needs Ray, which is not installed: pip install 'runner[ray]'\n"
    )
    assert not (tmp_path / "r").exists()
    assert not server.requests


def test_ray_flags_outside_a_ray_batch_are_usage_errors(tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(workflow("http://127.0.0.1:9/v1"))
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "a"}\n')
    got = cli("run", str(wf), "--dataset", str(data), "--workers", "2")
    assert (got.returncode, got.stderr) == (2, "runner: error: --workers is for --executor ray\n")
    got = cli("run", str(wf), "--executor", "ray")
    assert got.returncode == 2
    assert got.stderr == (
        "runner: error: --executor, --ray-address and --workers are for a batch: runner run WF --dataset FILE ...\n"
    )


def test_what_the_ray_workers_do_not_do_yet_is_refused_not_ignored(tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(workflow("http://127.0.0.1:9/v1"))
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "a"}\n')
    got = cli("run", str(wf), "--dataset", str(data), "--executor", "ray", "--replay", str(tmp_path))
    assert (got.returncode, got.stderr) == (
        2,
        "runner: error: --record and --replay run on the local executor: drop --executor ray\n",
    )
    assert not (tmp_path / "reports").exists()


def test_the_workers_get_every_key_the_workflow_names_and_no_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runner.dataset.onray.connect import secrets_of  # noqa: PLC0415
    from runner.plan.compile import compile_workflow  # noqa: PLC0415
    from runner.validate.check import load_workflow  # noqa: PLC0415

    wf = tmp_path / "wf.yaml"
    wf.write_text(
        workflow("http://127.0.0.1:9/v1")
        + "embeddings:\n  e: {provider: openai, base_url: 'http://127.0.0.1:9/v1', model: x, dimensions: 8,"
        " api_key_env: RAY_TEST_EMBED_KEY}\n"
    )
    monkeypatch.setenv("RAY_TEST_API_KEY", "a")
    monkeypatch.setenv("RAY_TEST_EMBED_KEY", "b")
    monkeypatch.setenv("RAY_TEST_OTHER_KEY", "c")
    assert secrets_of(compile_workflow(load_workflow(str(wf)))) == {"RAY_TEST_API_KEY": "a", "RAY_TEST_EMBED_KEY": "b"}
    monkeypatch.delenv("RAY_TEST_EMBED_KEY")  # unset: left for the worker's own error, not passed empty
    assert secrets_of(compile_workflow(load_workflow(str(wf)))) == {"RAY_TEST_API_KEY": "a"}


def test_a_local_batch_does_not_import_ray(tmp_path: Path) -> None:
    with OAIServer() as server:
        server.responder = Echo()
        wf, data = setup(tmp_path, server, 3)
        probe = (
            "import sys; from runner.cli import main; code = main(sys.argv[1:]); "
            "print(code, 'ray' in sys.modules, any(m.startswith('runner.dataset.onray') for m in sys.modules))"
        )
        proc = subprocess.run(
            [sys.executable, "-c", probe, "run", str(wf), "--dataset", str(data), "-q", "--report-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": str(ROOT), "RAY_TEST_API_KEY": SECRET},
        )
    assert proc.stdout.split() == ["0", "False", "False"], proc.stderr


def test_an_unreachable_cluster_is_a_clear_error_naming_the_address(tmp_path: Path) -> None:
    import socket  # noqa: PLC0415

    with socket.socket() as s:  # a port nothing listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        wf = tmp_path / "wf.yaml"
        wf.write_text(workflow("http://127.0.0.1:9/v1"))
        data = tmp_path / "d.jsonl"
        data.write_text('{"text": "a"}\n')
        got = run_cli(
            "run", str(wf), "--dataset", str(data), "--executor", "ray", "--ray-address", f"127.0.0.1:{port}",
            "--report-dir", str(tmp_path / "r"), timeout=60,
        )  # fmt: skip
    assert got.returncode == 1, got.stderr
    assert got.stderr == (
        f"runner: error: --ray-address 127.0.0.1:{port}: cannot reach a Ray cluster there (Connection refused); "
        "start one with `ray start --head` on that machine, or leave out --ray-address to run on a Ray instance "
        "started on this one\n"
    )
    assert not (tmp_path / "r").exists()


# -- on Ray ---------------------------------------------------------------------------------------------------


def _descendants(root: int) -> set[int]:
    """The processes started under ``root`` (Ray's GCS, raylet, workers), read from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        for child, parent in parents.items():
            if parent == pid and child not in found:
                found.add(child)
                todo.append(child)
    return found


def test_a_cluster_runner_starts_on_this_machine_binds_the_loopback_address_whatever_imported_ray_first() -> None:
    # The CLI imports Ray to check it is installed before it connects; a local cluster must still bind 127.0.0.1.
    code = (
        "import os; os.environ.pop('RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER', None); os.environ.pop('RAY_ADDRESS', None)\n"
        "from runner.dataset.onray.connect import import_ray\n"
        "ray = import_ray(None)\n"
        "from ray._private.services import get_node_ip_address\n"
        "print(get_node_ip_address())\n"
    )
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert got.stdout == "127.0.0.1\n", got.stderr


def test_the_cluster_listens_on_loopback_only(cluster: Cluster) -> None:
    (node,) = cluster.ray.nodes()
    assert node["NodeManagerAddress"] == "127.0.0.1"
    assert cluster.address.startswith("127.0.0.1:")
    # Every socket a process of the instance listens on is bound to 127.0.0.1 (or ::1): read from /proc.
    inodes: set[str] = set()
    for pid in _descendants(os.getpid()) | {os.getpid()}:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
    loopback = {"0100007F", "00000000000000000000000001000000", "0000000000000000FFFF00000100007F"}  # ::ffff:127.0.0.1
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            if fields[3] == "0A" and fields[9] in inodes:  # LISTEN, one of ours
                listening.append(fields[1])
    assert len(listening) >= 3  # the GCS, the raylet, the object manager at least: the scan sees them
    assert [a for a in listening if a.partition(":")[0] not in loopback] == []


def test_2000_rows_on_ray_equal_the_local_executor_row_for_row(
    tmp_path: Path, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    with OAIServer(api_key=SECRET) as server:
        server.responder = Echo()
        wf, data = setup(tmp_path, server, 2000)
        (wf.parent / "notes.txt").write_text("travels with the workflow's folder\n")
        local = run_cli(
            "run", str(wf), "--dataset", str(data), "--concurrency", "16", "-q", "--report-dir",
            str(tmp_path / "local"), env_extra=env(cluster), timeout=120,
        )  # fmt: skip
        assert local.returncode == 0, local.stderr
        on_ray = run_cli(
            "run", str(wf), "--dataset", str(data), "--concurrency", "16", "--executor", "ray", "--workers", "2",
            "--ray-address", cluster.address, "-q", "--report-dir", str(wf.parent / "reports"),
            env_extra=env(cluster), timeout=120,
        )  # fmt: skip
        assert on_ray.returncode == 0, on_ray.stderr
        assert {r.headers["authorization"] for r in server.requests} == {f"Bearer {SECRET}"}
    (local_folder,) = (tmp_path / "local" / "runs").iterdir()
    (ray_folder,) = (wf.parent / "reports" / "runs").iterdir()
    mine = sorted(results(local_folder), key=lambda line: line["index"])
    theirs = sorted(results(ray_folder), key=lambda line: line["index"])
    assert [line["index"] for line in theirs] == list(range(2000))
    assert [without(x, "latency_s") for x in mine] == [without(x, "latency_s", "worker") for x in theirs]
    assert mine[7]["output"] == "label:t7"
    assert {line["worker"] for line in theirs} == {"worker-1", "worker-2"}
    report = json.loads((ray_folder / "report.json").read_text())
    jsonschema.validate(report, json.loads((ROOT / "schemas" / "batch-report.schema.json").read_text()))
    workers = report["workers"]["workers"]
    assert sorted(workers) == ["worker-1", "worker-2"]
    assert sum(w["rows"] for w in workers.values()) == 2000
    assert all(w["rows_per_s"] > 0 and w["shards"] >= 1 for w in workers.values())
    trace = json.loads((ray_folder / "trace.json").read_text())["traceEvents"]
    tracks = {e["args"]["name"]: e["tid"] for e in trace if e["ph"] == "M"}
    assert sorted(tracks) == ["worker-1", "worker-2"]
    assert sum(1 for e in trace if e["ph"] == "X") == 2000
    assert "### Ray workers: 2" in (ray_folder / "report.md").read_text()
    # The batch ledger is the executor's too: a resume of the finished batch finds nothing to run.
    monkeypatch.setenv("RAY_TEST_API_KEY", SECRET)
    again = cli("run", "--resume", str(ray_folder), "-q")
    assert again.returncode == 0, again.stderr
    assert len(results(ray_folder)) == 2000
    scan_for_secret(ray_folder, cluster.temp)


def test_an_eval_with_repeats_on_ray_gives_the_local_executors_verdicts(tmp_path: Path, cluster: Cluster) -> None:
    """``repeat: N`` on the Ray workers (each row's runs in its slot on one worker): the same verdicts, repeats
    and pass@k as the local executor, every row once."""
    checks = "repeat: 3\nassert:\n  - {type: contains, value: ':t1', metric: ones}\nthreshold: 0.1\n"
    with OAIServer(api_key=SECRET) as server:
        server.responder = Echo()
        wf, data = setup(tmp_path, server, 30)
        wf.write_text(wf.read_text() + checks)
        runs = {}
        on_ray = ("--executor", "ray", "--workers", "2", "--ray-address", cluster.address)
        for name, extra in (("local", ()), ("ray", on_ray)):
            args = ("eval", str(wf), "--dataset", str(data), "-q", "--report-dir", str(tmp_path / name), *extra)
            proc = run_cli(*args, env_extra=env(cluster), timeout=120)
            assert proc.returncode == 0, proc.stderr
            (folder,) = (tmp_path / name / "runs").iterdir()
            runs[name] = sorted(results(folder), key=lambda line: line["index"])
        assert len(server.requests) == 2 * 30 * 3  # every row 3 times, on each executor
    keep = ("index", "assertions", "verdict", "repeats")
    assert [{k: x[k] for k in keep} for x in runs["ray"]] == [{k: x[k] for k in keep} for x in runs["local"]]
    assert [x["repeats"]["n"] for x in runs["ray"]] == [3] * 30
    passed = [x["index"] for x in runs["ray"] if x["verdict"] == "pass"]
    assert passed == [i for i in range(30) if f"t{i}".startswith("t1")]


def test_otel_on_ray_exports_one_trace_per_row_as_the_local_executor_does(tmp_path: Path, cluster: Cluster) -> None:
    """--otel with the Ray executor: each worker makes its rows' spans and sends them back with the results; the
    driver exports them, one trace per row, each with its model call under the row's root, and no key."""
    pytest.importorskip("opentelemetry")
    from tests.otlp_receiver import Receiver

    with OAIServer(api_key=SECRET) as server, Receiver() as receiver:
        server.responder = Echo()
        wf, data = setup(tmp_path, server, 12)
        proc = run_cli(
            "run", str(wf), "--dataset", str(data), "-q", "--executor", "ray", "--workers", "2", "--ray-address",
            cluster.address, "--report-dir", str(tmp_path / "r"), "--otel", receiver.url, env_extra=env(cluster),
            timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        traceparents = {r.headers.get("traceparent", "")[3:35] for r in server.requests}
        spans = receiver.spans()
    roots = sorted((s for s in spans if s["parent_id"] is None), key=lambda s: s["attributes"]["runner.row.index"])
    assert [(r["name"], r["attributes"]["runner.row.index"]) for r in roots] == [
        ("invoke_workflow remote", i) for i in range(12)
    ]
    assert len({r["attributes"]["runner.batch.id"] for r in roots}) == 1
    for root in roots:
        (call,) = [s for s in spans if s["trace_id"] == root["trace_id"] and s["parent_id"] is not None]
        assert call["name"].startswith("chat") and call["attributes"]["gen_ai.usage.output_tokens"] > 0
    # the workers' requests named their rows' traces (W3C traceparent), as a local run's do
    assert traceparents == {r["trace_id"] for r in roots}
    assert SECRET.encode() not in b"".join(receiver.bodies)


def test_a_worker_killed_mid_run_every_row_once_and_the_rate_limit_held(tmp_path: Path, cluster: Cluster) -> None:
    rpm, rows = 1800, 240  # 30 requests a second for the whole cluster: about 8 s of rows
    with OAIServer(api_key=SECRET) as server:
        echo = Echo()
        server.responder = echo
        wf, data = setup(tmp_path, server, rows, rate=f"    rate_limit: {{requests_per_minute: {rpm}}}")
        reports = tmp_path / "reports"
        proc = start(
            cluster, "run", str(wf), "--dataset", str(data), "--concurrency", "8", "--executor", "ray",
            "--workers", "2", "--ray-address", cluster.address, "-q", "--report-dir", str(reports),
        )  # fmt: skip
        try:
            folder = run_folder(reports, proc, 40)
            victim = cluster.ray.get_actor(f"{folder.name}-worker-1", namespace="runner")
            cluster.ray.kill(victim)
            _, err = proc.communicate(timeout=90)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, err
    got = results(folder)
    assert sorted(line["index"] for line in got) == list(range(rows))  # every row once: none lost, none twice
    whole = json.loads((folder / "report.json").read_text())
    jsonschema.validate(whole, json.loads((ROOT / "schemas" / "batch-report.schema.json").read_text()))
    report = whole["workers"]
    assert report["replaced"] == 1
    assert "worker-1.1" in report["workers"]
    assert report["workers"]["worker-1"]["shards_lost"] >= 1
    assert report["workers"]["worker-1"]["cpu_s"] is None  # lost before the end
    assert report["workers"]["worker-1.1"]["cpu_s"] > 0
    # The rate, cluster-wide: past the bucket's first second (its burst), no more than 5% over 30 a second.
    times = sorted(echo.times)
    burst = rpm / 60
    span = times[-1] - times[0]
    assert len(times) >= rows
    assert (len(times) - burst) / span <= 1.05 * rpm / 60, (len(times), span)
    assert report["rate_budget"]["round_trips"] < len(times)  # leases: not a round trip per request


def test_ctrl_c_kills_the_workers_and_leaves_a_batch_that_resumes_locally(
    tmp_path: Path, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = 300
    with OAIServer(api_key=SECRET, latency=0.02) as server:
        server.responder = Echo()
        wf, data = setup(tmp_path, server, rows)
        reports = tmp_path / "reports"
        proc = start(
            cluster, "run", str(wf), "--dataset", str(data), "--concurrency", "4", "--executor", "ray",
            "--workers", "2", "--ray-address", cluster.address, "-q", "--report-dir", str(reports),
        )  # fmt: skip
        try:
            folder = run_folder(reports, proc, 20)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 130, err
        assert f"continue with: runner run --resume {folder}" in err
        for name in ("worker-1", "worker-2"):  # the workers are gone with the driver's Ctrl-C
            with pytest.raises(ValueError):
                cluster.ray.get_actor(f"{folder.name}-{name}", namespace="runner")
        done = len(results(folder))
        assert done < rows
        monkeypatch.setenv("RAY_TEST_API_KEY", SECRET)
        resumed = cli("run", "--resume", str(folder), "-q")  # the rest on the local executor
        assert resumed.returncode == 0, resumed.stderr
    assert sorted(line["index"] for line in results(folder)) == list(range(rows))
