"""The cassette's keys, files and transports, in process against the loopback server (issue 19)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest

from runner.calls import ChatResult
from runner.cassette import Cassette, CassetteError, CassetteMiss, Tape, describe, request_key
from runner.cassette.folder import render
from runner.config.openai import parse_openai_embedding, parse_openai_model
from runner.errors import ProviderConfigError
from runner.providers.base import CallContext
from runner.providers.openai import OpenAIChatProvider
from runner.providers.openai_embeddings import OpenAIEmbedder
from runner.providers.transport import wrapping
from tests.oai_server import OAIServer, Plan, fake_embedding
from tests.secret_scan import API_KEY, API_KEY_ENV, SecretScan

pytestmark = [pytest.mark.timeout(30)]
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(10):
            return await coro

    return asyncio.run(bounded())


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OAIServer]:
    monkeypatch.setenv(API_KEY_ENV, API_KEY)
    with OAIServer(api_key=API_KEY) as server:
        yield server


def chat_model(url: str, **settings: Any) -> OpenAIChatProvider:
    raw = {"provider": "openai", "base_url": url, "model": "m-1", "api_key_env": API_KEY_ENV, **settings}
    return OpenAIChatProvider("main", parse_openai_model(raw))


def embedder(url: str) -> OpenAIEmbedder:
    raw = {"provider": "openai", "base_url": url, "model": "e-1", "api_key_env": API_KEY_ENV, "dimensions": 8}
    return OpenAIEmbedder("vectors", parse_openai_embedding(raw))


async def ask(tape: Tape, url: str, texts: list[str], **settings: Any) -> list[ChatResult]:
    with wrapping(tape):
        model = chat_model(url, **settings)
    try:
        ctx = CallContext("node-a", "agent")
        return [await model.chat([{"role": "user", "content": text}], ctx) for text in texts]
    finally:
        await model.aclose()


def no_sockets(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """Every socket made in this process from here on fails the test (a replay must make none)."""
    made: list[tuple[Any, ...]] = []
    real = socket.socket.__init__

    def refuse(self: socket.socket, *args: Any, **kwargs: Any) -> None:
        made.append(args)
        real(self, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "__init__", refuse)
    return made


# -- keys ------------------------------------------------------------------------------------------------------
def test_the_key_is_the_whole_body_in_any_key_order_minus_volatile_fields() -> None:
    a = request_key("openai", "/chat/completions", b'{"model": "m", "temperature": 0.2, "messages": []}')
    b = request_key(
        "openai", "/chat/completions", b'{"messages": [], "user": "u-17", "model": "m", "temperature": 0.2}'
    )
    assert a.digest == b.digest
    assert a.request == {
        "provider": "openai",
        "path": "/chat/completions",
        "body": {"model": "m", "temperature": 0.2, "messages": []},
    }
    # any other field changes the key, also one this version of runner does not send (structured outputs)
    c = request_key(
        "openai",
        "/chat/completions",
        b'{"model": "m", "temperature": 0.2, "messages": [], "response_format": {"type": "json_object"}}',
    )
    assert c.digest != a.digest
    assert (
        request_key("openai", "/embeddings", b'{"model": "m", "temperature": 0.2, "messages": []}').digest != a.digest
    )


def test_a_request_is_described_line_by_line() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "one\ntwo"},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "c1"}]},
        ],
        "tools": [{"type": "function", "function": {"name": "search"}}],
        "temperature": 0.2,
    }
    assert describe({"provider": "openai", "path": "/chat/completions", "body": body}) == [
        "provider: openai",
        "path: /chat/completions",
        "messages[0] (system):",
        "  one",
        "  two",
        "messages[1] (assistant):",
        '  tool_calls: [{"id": "c1"}]',
        'model: "m"',
        "temperature: 0.2",
        'tools[0] (search): {"function": {"name": "search"}, "type": "function"}',
    ]


# -- files -----------------------------------------------------------------------------------------------------
def test_an_entry_file_puts_each_chunk_on_a_line_and_reads_back_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    cassette = Cassette(tmp_path)
    key = request_key("openai", "/chat/completions", b'{"model": "m"}')
    chunks = [[0.01, "data: caf\u00e9\n\n"], [0.02, b"\xff\xfe".decode("utf-8", "surrogateescape")]]
    path = cassette.write(
        key.digest, 1, key.request, {"model": "main", "node": "s"}, {"status": 200, "headers": {}, "chunks": chunks}
    )
    text = path.read_text(encoding="utf-8")
    assert '      [0.01, "data: café\\n\\n"],\n      [0.02, "\\udcff\\udcfe"]\n' in text
    entry = Cassette(tmp_path).read(key.digest, 1)
    assert entry is not None
    assert entry.body == "data: café\n\n".encode() + b"\xff\xfe"
    assert json.loads(text)["response"]["chunks"] == chunks
    whole = render({"runner_cassette": 1}, {"status": 200, "json": {"a": "é"}})
    assert (
        whole == '{\n  "runner_cassette": 1,\n  "response": {\n    "status": 200,\n'
        '    "json": {\n      "a": "é"\n    }\n  }\n}\n'
    )


def test_a_split_multibyte_character_is_recorded_whole(server: OAIServer, tmp_path: Path) -> None:
    server.default = Plan(
        content="",
        tokens=[],
        events=[
            b'data: {"choices": [{"index": 0, "delta": {"content": "\xc3',
            b'\xa9"}, "finish_reason": "stop"}]}\n\n',
            b"data: [DONE]\n\n",
        ],
    )
    tape = Tape(Cassette(tmp_path, create=True), "record")
    (result,) = run(ask(tape, server.url, ["hi"], stream=True))
    assert result.content == "é"
    (path,) = tmp_path.glob("*.json")
    texts = [text for _, text in json.loads(path.read_text())["response"]["chunks"]]
    assert "".join(texts).count("é") == 1 and all("\udcc3" not in t for t in texts)
    (again,) = run(ask(Tape(Cassette(tmp_path), "replay", strict=True), server.url, ["hi"], stream=True))
    assert again.content == "é"


def test_a_missing_folder_is_named() -> None:
    with pytest.raises(CassetteError) as caught:
        Cassette("/nonexistent/tape")
    assert str(caught.value) == (
        "cassette /nonexistent/tape: no such folder; record one first with `runner run WF --record /nonexistent/tape`"
    )


# -- transports ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("stream", [False, True])
def test_json_and_streamed_answers_replay_without_a_socket_or_a_key(
    server: OAIServer, tmp_path: Path, stream: bool, monkeypatch: pytest.MonkeyPatch, secret_scan: SecretScan
) -> None:
    server.plan(Plan(content="first"), Plan(content="second"))
    recorded = run(ask(Tape(Cassette(tmp_path, create=True), "record"), server.url, ["a", "b"], stream=stream))
    assert [r.content for r in recorded] == ["first", "second"]
    entries = [json.loads(p.read_text()) for p in tmp_path.glob("*.json")]
    assert len(entries) == 2
    assert all(("json" in e["response"]) is not stream for e in entries)
    assert all(
        e["response"]["headers"] == {"content-type": "text/event-stream" if stream else "application/json"}
        for e in entries
    )
    made = no_sockets(monkeypatch)
    monkeypatch.delenv(API_KEY_ENV)  # a replay needs no key
    tape = Tape(Cassette(tmp_path), "replay", strict=True)
    replayed = run(ask(tape, server.url, ["a", "b"], stream=stream))
    assert [(r.content, r.usage) for r in replayed] == [(r.content, r.usage) for r in recorded]
    assert [m for m in made if m and m[0] in (socket.AF_INET, socket.AF_INET6)] == []
    assert tape.counts.replayed == 2
    secret_scan.add_folder(tmp_path)


def test_a_strict_miss_raises_before_any_socket(
    server: OAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(ask(Tape(Cassette(tmp_path, create=True), "record"), server.url, ["a"]))
    made = no_sockets(monkeypatch)
    tape = Tape(Cassette(tmp_path), "replay", strict=True)
    with pytest.raises(CassetteMiss) as caught:
        run(ask(tape, server.url, ["b"]))
    assert str(caught.value).startswith(
        f"stage 'node-a': model 'main' (m-1): the request is not in cassette {tmp_path} (--strict); the closest "
        "recorded request ("
    )
    assert "    @@ messages[0] (user) @@\n      messages[0] (user):\n    -   a\n    +   b\n" in str(caught.value)
    assert [m for m in made if m and m[0] in (socket.AF_INET, socket.AF_INET6)] == []


def test_a_non_strict_miss_without_a_key_says_the_key_is_needed(
    server: OAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Cassette(tmp_path, create=True)
    monkeypatch.delenv(API_KEY_ENV)
    with pytest.raises(
        ProviderConfigError, match=f"the environment variable {API_KEY_ENV} \\(api_key_env\\) is not set"
    ):
        run(ask(Tape(Cassette(tmp_path), "replay"), server.url, ["a"]))
    with pytest.raises(ProviderConfigError):  # recording needs it at once, before any request
        run(ask(Tape(Cassette(tmp_path), "record"), server.url, ["a"]))


def test_errors_are_not_recorded(server: OAIServer, tmp_path: Path) -> None:
    server.plan(Plan(status=503), Plan(content="after the retry"))
    (result,) = run(
        ask(
            Tape(Cassette(tmp_path, create=True), "record"),
            server.url,
            ["a"],
            stream=False,
            retry={"initial_delay": 0.01},
        )
    )
    assert result.content == "after the retry"
    (path,) = tmp_path.glob("*.json")
    assert path.name.endswith("-1.json")
    assert json.loads(path.read_text())["response"]["json"]["choices"][0]["message"]["content"] == "after the retry"


def test_recording_again_replaces_the_entry_it_repeats(server: OAIServer, tmp_path: Path) -> None:
    server.plan(Plan(content="old"))
    run(ask(Tape(Cassette(tmp_path, create=True), "record"), server.url, ["a"]))
    server.plan(Plan(content="new"), Plan(content="other"))
    run(ask(Tape(Cassette(tmp_path), "record"), server.url, ["a", "b"]))
    assert len(list(tmp_path.glob("*.json"))) == 2
    (again, other) = run(ask(Tape(Cassette(tmp_path), "replay", strict=True), server.url, ["a", "b"]))
    assert (again.content, other.content) == ("new", "other")


def test_embedding_requests_record_and_replay(
    server: OAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def embed(tape: Tape) -> Any:
        with wrapping(tape):
            model = embedder(server.url)
        try:
            return await model.embed(["alpha", "beta"])
        finally:
            await model.aclose()

    recorded = run(embed(Tape(Cassette(tmp_path, create=True), "record")))
    (path,) = tmp_path.glob("*.json")
    entry = json.loads(path.read_text())
    assert entry["request"]["path"] == "/embeddings"
    assert entry["recorded"]["model"] == "vectors"
    made = no_sockets(monkeypatch)
    replayed = run(embed(Tape(Cassette(tmp_path), "replay", strict=True)))
    assert np.array_equal(recorded, replayed)
    assert np.allclose(replayed[0], fake_embedding("alpha", 8))
    assert [m for m in made if m and m[0] in (socket.AF_INET, socket.AF_INET6)] == []


def test_a_stream_cut_short_is_not_recorded_and_its_retry_takes_its_number(server: OAIServer, tmp_path: Path) -> None:
    server.plan(Plan(content="broken answer", drop_after=2), Plan(content="whole answer"))
    (result,) = run(
        ask(
            Tape(Cassette(tmp_path, create=True), "record"),
            server.url,
            ["a"],
            stream=True,
            retry={"initial_delay": 0.01},
        )
    )
    assert result.content == "whole answer"
    (path,) = tmp_path.glob("*.json")
    assert path.name.endswith("-1.json")
    (again,) = run(ask(Tape(Cassette(tmp_path), "replay", strict=True), server.url, ["a"], stream=True))
    assert again.content == "whole answer"
