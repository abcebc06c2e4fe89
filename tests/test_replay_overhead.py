"""What an instant replay costs (issue 19, "Replay overhead"): the HTTP stack is not imported when every request
is in the cassette, and replayed answers reach the provider's parsing without HTTP objects."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from runner.cassette import Cassette, Tape, request_key
from runner.cassette.tape import Replayed
from runner.config.openai import parse_openai_embedding, parse_openai_model
from runner.events import Recorder
from runner.providers.base import CallContext
from runner.providers.openai import OpenAIChatProvider
from runner.providers.openai_embeddings import OpenAIEmbedder
from runner.providers.openai_wire import dumps
from runner.providers.transport import wrapping
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
    assert replayed["loaded"] == []  # neither aiohttp (nor yarl) nor httpx


# -- in process: replayed answers reach the provider's parsing as they were kept --------------------------------
def chat_model(url: str, *, stream: bool) -> OpenAIChatProvider:
    raw = {"provider": "openai", "base_url": url, "model": "m-1", "api_key_env": API_KEY_ENV, "stream": stream}
    return OpenAIChatProvider("main", parse_openai_model(raw))


def embedder(url: str) -> OpenAIEmbedder:
    raw = {"provider": "openai", "base_url": url, "model": "e-1", "api_key_env": API_KEY_ENV, "dimensions": 8}
    return OpenAIEmbedder("vectors", parse_openai_embedding(raw))


async def session(tape: Tape, url: str, seen: list[tuple[int, dict[str, str]]]) -> list[Any]:
    """A JSON reply, a streamed one, a streamed request answered with one JSON completion, and an embedding."""
    with wrapping(tape):
        whole, streamed, vectors = chat_model(url, stream=False), chat_model(url, stream=True), embedder(url)
    whole.observe(lambda status, headers: seen.append((status, dict(headers))))
    try:
        ctx = CallContext("node-a", "agent")
        out: list[Any] = []
        for model, text in ((whole, "a"), (streamed, "b"), (streamed, "c")):
            result = await model.chat([{"role": "user", "content": text}], ctx)
            out.append((result.content, result.usage, result.finish_reason))
        out.append((await vectors.embed(["alpha", "beta"])).tolist())
        return out
    finally:
        for each in (whole, streamed, vectors):
            await each.aclose()


def test_a_replay_answers_without_http_objects_and_gives_what_was_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(API_KEY_ENV, API_KEY)
    with OAIServer(api_key=API_KEY) as server:
        server.plan(Plan(content="whole"), Plan(content="streamed"), Plan(content="json to a stream", force_json=True))
        recorded = asyncio.run(session(Tape(Cassette(tmp_path, create=True), "record"), server.url, []))
        url = server.url
    assert recorded[:3] == [
        ("whole", recorded[0][1], "stop"),
        ("streamed", recorded[1][1], "stop"),
        ("json to a stream", recorded[2][1], "stop"),
    ]
    made: list[str] = []
    for cls in (httpx.Request, httpx.Response):
        real = cls.__init__

        def counted(self: Any, *args: Any, __real: Any = real, __name: str = cls.__name__, **kwargs: Any) -> None:
            made.append(__name)
            __real(self, *args, **kwargs)

        monkeypatch.setattr(cls, "__init__", counted)
    tape = Tape(Cassette(tmp_path), "replay", strict=True)
    seen: list[tuple[int, dict[str, str]]] = []
    assert asyncio.run(session(tape, url, seen)) == recorded
    assert made == []  # no request or response object was built for any of the four answers
    assert tape.counts.replayed == 4
    assert seen == [(200, {"content-type": "application/json"})]  # a dataset batch's observer still hears it


def replayed(response: dict[str, Any], *, timed: bool = False) -> Replayed:
    return Replayed(response, time.perf_counter() if timed else None)


async def pieces(answer: Replayed) -> list[bytes]:
    return [piece async for piece in answer.stream()]


def test_a_recording_is_read_as_it_was_kept() -> None:
    kept = {"status": 200, "headers": {"Content-Type": "application/json"}, "json": {"a": "é"}, "end": 0.0}
    answer = replayed(kept)
    assert answer.headers == {"content-type": "application/json"}  # names in lower case, as httpx reads them
    body = asyncio.run(answer.read())
    assert body.parsed and body.json() is kept["json"]  # the value itself: not serialised and parsed again
    assert body.content == '{"a": "é"}'.encode()  # made only when asked (an error's snippet)
    assert asyncio.run(pieces(replayed(kept))) == [body.content]  # a stream asked for, answered whole
    chunks = {"status": 200, "headers": {}, "chunks": [[0.0, "data: 1\n\n"], [0.0, "data: \udcff\n\n"]]}
    assert asyncio.run(pieces(replayed(chunks))) == [b"data: 1\n\n", b"data: \xff\n\n"]  # bytes as they came
    joined = asyncio.run(replayed(chunks).read())
    assert not joined.parsed and joined.content == b"data: 1\n\ndata: \xff\n\n"
    text = asyncio.run(replayed({"status": 200, "text": "not json"}).read())
    assert text.content == b"not json"
    with pytest.raises(ValueError):
        text.json()


def test_recorded_timing_hands_each_chunk_on_at_its_offset() -> None:
    async def main() -> list[float]:
        answer = replayed({"status": 200, "chunks": [[0.05, "a"], [0.1, "b"]]}, timed=True)
        started = time.perf_counter()
        return [time.perf_counter() - started async for _ in answer.stream()]

    first, second = asyncio.run(main())
    assert 0.05 <= first < second and second >= 0.1  # never early (late only by the loop's scheduling)


def test_replayed_answers_cost_no_rate_limit_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three requests replayed at a limit of one request every ten seconds: none waits for the limiter (a
    recording is not the model's time), and the n-th same request still takes the n-th recording."""
    monkeypatch.setenv(API_KEY_ENV, API_KEY)

    async def ask(tape: Tape, url: str, **settings: Any) -> tuple[list[str], Recorder]:
        raw = {"provider": "openai", "base_url": url, "model": "m-1", "api_key_env": API_KEY_ENV, **settings}
        with wrapping(tape):
            model = OpenAIChatProvider("main", parse_openai_model(raw))
        recorder = Recorder()
        try:
            ctx = CallContext("node-a", "agent", recorder=recorder)
            replies = [await model.chat([{"role": "user", "content": text}], ctx) for text in ("a", "a", "b")]
            return [reply.content for reply in replies], recorder
        finally:
            await model.aclose()

    with OAIServer(api_key=API_KEY) as server:
        server.plan(Plan(content="first a"), Plan(content="second a"), Plan(content="b"))
        recorded, _ = asyncio.run(ask(Tape(Cassette(tmp_path, create=True), "record"), server.url))
        url = server.url
    limited = {"rate_limit": {"requests_per_minute": 6}}
    replayed, recorder = asyncio.run(ask(Tape(Cassette(tmp_path), "replay", strict=True), url, **limited))
    assert replayed == recorded == ["first a", "second a", "b"]
    assert [kind for _, kind, _, _ in recorder.events if kind == "rate_wait"] == []


def test_the_committed_cassette_still_replays_strictly(tmp_path: Path) -> None:
    """The keys of the recordings committed in examples/replay (the README's CI recipe) are what the provider's
    requests give today: a change to how a request is keyed would fail every committed cassette."""
    for path in sorted((ROOT / "examples/replay/cassette").glob("*.json")):
        entry = Cassette.load_file(path)
        request = entry.request
        assert request_key(request["provider"], request["path"], dumps(request["body"])).digest == entry.key
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "runner", "run", "examples/replay/digest.yaml", "--replay", "examples/replay/cassette"]
        + ["--strict", "-q", "--report-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Digest: all three notes agree")
