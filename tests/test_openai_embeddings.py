"""The OpenAI-compatible embedder against the loopback server: batching, bounded concurrency, retries,
errors, and the exact array it returns."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import numpy as np
import pytest
import uvloop
from oai_server import OAIServer, Plan, fake_embedding

from runner.config.openai import parse_openai_embedding
from runner.errors import ProviderConfigError, ProviderError, ProviderHTTPError, ProviderProtocolError
from runner.events import Recorder
from runner.providers.openai_embeddings import OpenAIEmbedder

pytestmark = [pytest.mark.timeout(20), pytest.mark.usefixtures("secret_scan")]  # secrets: tests/secret_scan.py

KEY = "sk-embed-test-91c0ffee-SECRET"
KEY_ENV = "RUNNER_TEST_EMBED_KEY"
T = TypeVar("T")


@pytest.fixture(scope="module")
def shared_server() -> Iterator[OAIServer]:
    with OAIServer() as server:
        yield server


@pytest.fixture
def server(shared_server: OAIServer, monkeypatch: pytest.MonkeyPatch) -> OAIServer:
    shared_server.reset()
    monkeypatch.setenv(KEY_ENV, KEY)
    return shared_server


def run(coro: Coroutine[Any, Any, T], *, seconds: float = 5.0) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(seconds):
            return await coro

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(bounded())


def make(url: str, recorder: Recorder | None = None, **settings: Any) -> OpenAIEmbedder:
    raw = {
        "provider": "openai",
        "base_url": url,
        "model": "embed-model",
        "api_key_env": KEY_ENV,
        "dimensions": 8,
        **settings,
    }
    return OpenAIEmbedder("default", parse_openai_embedding(raw), recorder=recorder)


async def embed(embedder: OpenAIEmbedder, texts: list[str]) -> np.ndarray:
    try:
        return await embedder.embed(texts)
    finally:
        await embedder.aclose()


def label(url: str) -> str:
    return f"embeddings 'default' (embed-model at {url})"


def test_rows_in_order_in_batches(server: OAIServer) -> None:
    texts = [f"text number {i}" for i in range(10)]
    vectors = run(embed(make(server.url, batch_size=3, max_concurrency=2), texts))
    assert vectors.dtype == np.float32 and vectors.shape == (10, 8) and vectors.flags.c_contiguous
    expected = np.asarray([fake_embedding(t, 8) for t in texts], dtype=np.float32)
    np.testing.assert_array_equal(vectors, expected)
    batches = sorted((r.body["input"] for r in server.requests), key=lambda b: texts.index(b[0]))
    assert batches == [texts[0:3], texts[3:6], texts[6:9], texts[9:10]]
    request = server.requests[0]
    assert request.path == "/v1/embeddings"
    assert set(request.body) == {"model", "input", "encoding_format"}  # no dimensions unless asked
    assert (request.body["model"], request.body["encoding_format"]) == ("embed-model", "float")
    assert request.headers["authorization"] == f"Bearer {KEY}"


def test_send_dimensions(server: OAIServer) -> None:
    run(embed(make(server.url, send_dimensions=True), ["a"]))
    assert server.requests[0].body["dimensions"] == 8


def test_empty_input_makes_no_request(server: OAIServer) -> None:
    vectors = run(embed(make(server.url), []))
    assert vectors.shape == (0, 8) and vectors.dtype == np.float32
    assert server.requests == []


def test_protocol_properties(server: OAIServer) -> None:
    embedder = make(server.url)
    assert (embedder.dimensions, embedder.cache_key) == (8, "openai/embed-model/8")
    assert KEY not in repr(embedder)
    run(embedder.aclose())


def test_concurrent_batches_are_bounded(server: OAIServer) -> None:
    # 6 batches, at most 2 at once. Each answer waits at a barrier until a second request is held with it,
    # so the batches are answered two at a time; one at a time, the first would wait in vain (run() fails).
    pair = threading.Barrier(2)
    server.plan(*[Plan(wait=pair) for _ in range(6)])
    texts = [str(i) for i in range(6)]
    vectors = run(embed(make(server.url, batch_size=1, max_concurrency=2), texts))
    np.testing.assert_array_equal(vectors, np.asarray([fake_embedding(t, 8) for t in texts], dtype=np.float32))
    assert (len(server.requests), server.max_in_flight) == (6, 2)


def test_a_failed_batch_is_retried(server: OAIServer) -> None:
    server.plan(Plan(status=503, headers={"Retry-After": "0"}))
    recorder = Recorder()
    vectors = run(embed(make(server.url, recorder, batch_size=2), ["a", "b", "c"]))
    assert vectors.shape == (3, 8)
    retries = [data for _, kind, node, data in recorder.events if kind == "retry"]
    assert [(r["cause"], r["attempt"], r["delay"]) for r in retries] == [("503", 1, 0.0)]
    assert {node for _, kind, node, _ in recorder.events} == {"embeddings.default"}


@pytest.mark.parametrize("max_concurrency", [1, 2])
def test_one_failing_batch_fails_the_call_and_no_later_batch_is_sent(
    server: OAIServer, monkeypatch: pytest.MonkeyPatch, max_concurrency: int
) -> None:
    """After a 400 on one batch nothing more is sent (issue 14: the next batch went out anyway, late, and
    took the next test's answer from the shared server)."""
    sent: list[list[str]] = []
    batch = OpenAIEmbedder._batch

    async def spy(self: OpenAIEmbedder, texts: list[str]) -> Any:
        sent.append(texts)
        return await batch(self, texts)

    monkeypatch.setattr(OpenAIEmbedder, "_batch", spy)
    if max_concurrency == 1:
        server.plan(Plan(), Plan(status=400, body=b'{"error": {"message": "input too long"}}'))
    else:  # b fails while a is still in flight (a waits for the server): a is cancelled, c never sent
        server.plan(Plan(stall_before=30), Plan(status=400, body=b'{"error": {"message": "input too long"}}'))
    with pytest.raises(ProviderHTTPError) as info:
        run(embed(make(server.url, batch_size=1, max_concurrency=max_concurrency), ["a", "b", "c", "d"]))
    assert str(info.value) == f"{label(server.url)}: HTTP 400: input too long"
    assert sent == [["a"], ["b"]]


def test_wrong_dimensions_say_what_to_set(server: OAIServer) -> None:
    server.plan(Plan(dimensions=4))
    with pytest.raises(ProviderProtocolError) as info:
        run(embed(make(server.url), ["a"]))
    assert str(info.value) == (
        f"{label(server.url)}: the server returned vectors of 4 dimensions, but dimensions "
        "is 8: set dimensions to 4 (or send_dimensions: true if the model can shorten them)"
    )


def test_malformed_answer(server: OAIServer) -> None:
    server.plan(Plan(body=b'{"data": [{"index": 0}]}'))
    with pytest.raises(ProviderProtocolError) as info:
        run(embed(make(server.url), ["a"]))
    assert str(info.value) == (
        f"{label(server.url)}: the answer is not an embedding list (KeyError: "
        "'embedding'): '{\"data\": [{\"index\": 0}]}'"
    )


def test_timeouts_and_pool_apply(server: OAIServer) -> None:
    server.plan(Plan(stall_before=2))
    with pytest.raises(ProviderError) as info:
        run(embed(make(server.url, timeout={"read": 0.2}, retry={"max_attempts": 1}), ["a"]))
    assert str(info.value) == f"{label(server.url)}: timeout.read (0.2 s) fired: the server sent nothing for 0.2 s"


def test_missing_key_and_key_never_leaks(server: OAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    server.api_key = "another-key"
    with pytest.raises(ProviderHTTPError) as info:
        run(embed(make(server.url), ["a"]))
    assert str(info.value) == f"{label(server.url)}: HTTP 401: Incorrect API key provided: [api key]."
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ProviderConfigError) as config:
        make(server.url)
    assert str(config.value) == (
        f"{label(server.url)}: the environment variable {KEY_ENV} (api_key_env) is not "
        f"set; export it with the API key for {server.url}"
    )
