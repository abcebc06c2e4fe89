"""The OpenAI-compatible chat provider against a real loopback server: what the user sees (exception type
and exact message, text on the terminal) and what the recorder records, for every failure mode."""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import socket
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import httpx
import pytest
import uvloop
from oai_server import OAIServer, Plan

from runner.calls import ChatResult, ToolCall, Usage
from runner.config.openai import OpenAIModelConfig, parse_openai_model
from runner.errors import (
    ProviderConfigError,
    ProviderConnectError,
    ProviderError,
    ProviderHTTPError,
    ProviderProtocolError,
    ProviderTimeout,
)
from runner.events import Recorder
from runner.providers.base import CallContext
from runner.providers.endpoint import Endpoint
from runner.providers.openai import OpenAIChatProvider
from runner.retry import RetryPolicy, parse_retry_after

pytestmark = [pytest.mark.timeout(20), pytest.mark.usefixtures("secret_scan")]  # secrets: tests/secret_scan.py

KEY = "sk-test-7f3a9c2e0b1d4e5f-SECRET"
KEY_ENV = "RUNNER_TEST_OPENAI_KEY"
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}]
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


USER_TRANSPORT = False
"""Set by the ``transport`` fixture: :func:`make` passes httpx's own transport through ``transport=``."""


@pytest.fixture(params=["aiohttp", "httpx"])
def transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test on runner's transport and on a user's (httpx's own, httpcore, given through
    ``transport=``): what a failure reads as must not depend on which one sends the request."""
    monkeypatch.setattr(sys.modules[__name__], "USER_TRANSPORT", request.param == "httpx")
    return str(request.param)


def stock_transport(config: OpenAIModelConfig) -> httpx.AsyncHTTPTransport:
    """httpx's own transport, as a program would pass it, with the model's pool limits."""
    pool = config.pool
    limits = httpx.Limits(
        max_connections=pool.max_connections,
        max_keepalive_connections=pool.max_keepalive_connections,
        keepalive_expiry=pool.keepalive_expiry,
    )
    return httpx.AsyncHTTPTransport(limits=limits)


def run(coro: Coroutine[Any, Any, T], *, seconds: float = 5.0, loop: str = "uvloop") -> T:
    async def bounded() -> T:
        async with asyncio.timeout(seconds):
            return await coro

    factory = uvloop.new_event_loop if loop == "uvloop" else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(bounded())


def make(url: str, **settings: Any) -> OpenAIChatProvider:
    raw = {"provider": "openai", "base_url": url, "model": "test-model", "api_key_env": KEY_ENV, **settings}
    config = parse_openai_model(raw)
    return OpenAIChatProvider("main", config, transport=stock_transport(config) if USER_TRANSPORT else None)


def label(url: str) -> str:
    return f"model 'main' (test-model at {url})"


class Sink:
    """A terminal stand-in: collects streamed text."""

    def __init__(self) -> None:
        self.tokens: list[str] = []

    def __call__(self, text: str) -> None:
        self.tokens.append(text)

    @property
    def text(self) -> str:
        return "".join(self.tokens)


class ResettableSink(Sink):
    """A terminal that can take back what it printed."""

    def __init__(self) -> None:
        super().__init__()
        self.resets = 0

    def reset(self) -> None:
        self.resets += 1
        self.tokens.clear()


async def chat(
    provider: OpenAIChatProvider,
    *,
    sink: Callable[[str], None] | None = None,
    recorder: Recorder | None = None,
    tools: list[dict[str, Any]] | None = None,
) -> ChatResult:
    try:
        ctx = CallContext(node_id="n1", agent="writer", on_token=sink, recorder=recorder)
        return await provider.chat(MESSAGES, ctx, tools=tools or ())
    finally:
        await provider.aclose()


def failure(provider: OpenAIChatProvider, recorder: Recorder | None = None, **kw: Any) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        run(chat(provider, recorder=recorder, **kw))
    return info.value


def events(recorder: Recorder, kind: str) -> list[dict[str, Any]]:
    return [data or {} for _, k, node, data in recorder.events if k == kind and node == "n1"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- answers that work -------------------------------------------------------------------------------------
@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_json_reply(server: OAIServer, transport: str, loop: str) -> None:
    sink = Sink()
    provider = make(server.url, stream=False, params={"temperature": 0.2, "max_tokens": 50})
    result = run(chat(provider, sink=sink), loop=loop)
    assert result == ChatResult("Hello, world!", Usage(5, 3), (), None, 1, "stop")
    assert sink.tokens == ["Hello, world!"]  # a JSON reply reaches the terminal once, whole
    [request] = server.requests
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.body == {
        "model": "test-model",
        "messages": MESSAGES,
        "temperature": 0.2,
        "max_tokens": 50,
        "stream": False,
    }
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["content-type"] == "application/json"


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_stream_reply(server: OAIServer, transport: str, loop: str) -> None:
    sink = Sink()
    provider = make(server.url)
    before = time.perf_counter()
    result = run(chat(provider, sink=sink), loop=loop)
    after = time.perf_counter()
    assert sink.tokens == ["Hell", "o, w", "orld", "!"]
    assert (result.content, result.usage, result.attempts, result.finish_reason) == (
        "Hello, world!",
        Usage(5, 3),
        1,
        "stop",
    )
    assert result.first_token_at is not None and before < result.first_token_at < after
    [request] = server.requests
    assert request.body["stream"] is True
    assert request.body["stream_options"] == {"include_usage": True}
    assert request.headers["accept"] == "text/event-stream"


def test_first_token_at_is_when_the_first_token_came(server: OAIServer) -> None:
    # the role-only opening chunk is not a token; the first content comes 0.3 s later
    server.plan(Plan(stall_at=1, stall_between=0.3))
    before = time.perf_counter()
    result = run(chat(make(server.url)))
    assert result.first_token_at is not None and result.first_token_at - before >= 0.28


def test_request_body_has_the_openai_wire_shape(server: OAIServer) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "search",
                "description": "Search the web.",
                "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
            },
        }
    ]
    run(chat(make(server.url, params={"temperature": 0, "seed": 7}), tools=tools))
    body = server.requests[0].body
    # https://platform.openai.com/docs/api-reference/chat/create: the fields and their JSON types
    assert list(body) == ["model", "messages", "temperature", "seed", "stream", "stream_options", "tools"]
    assert body["model"] == "test-model"
    assert body["messages"] == MESSAGES
    assert all(set(m) <= {"role", "content", "name", "tool_calls", "tool_call_id"} for m in body["messages"])
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["tools"] == tools
    assert (body["temperature"], body["seed"]) == (0, 7)


def test_request_body_matches_the_official_openai_client(server: OAIServer) -> None:
    openai = pytest.importorskip("openai")
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]

    async def official() -> str:
        client = openai.AsyncOpenAI(base_url=server.url, api_key=KEY, max_retries=0)
        try:
            stream = await client.chat.completions.create(
                model="test-model",
                messages=MESSAGES,
                temperature=0.2,
                tools=tools,
                stream=True,
                stream_options={"include_usage": True},
            )
            return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        finally:
            await client.close()

    assert run(official()) == "Hello, world!"  # the test server's SSE framing satisfies the official client
    run(chat(make(server.url, params={"temperature": 0.2}), tools=tools))
    theirs, ours = server.requests[0].body, server.requests[1].body
    assert ours == theirs


def test_streamed_tool_calls_are_assembled(server: OAIServer) -> None:
    deltas = [
        [{"index": 0, "id": "call_a", "type": "function", "function": {"name": "search", "arguments": ""}}],
        [{"index": 0, "function": {"arguments": '{"q": '}}],
        [{"index": 1, "id": "call_b", "type": "function", "function": {"name": "fetch", "arguments": "{}"}}],
        [{"index": 0, "function": {"arguments": '"uvloop"}'}}],
    ]
    server.plan(Plan(content="", tool_calls=deltas, finish_reason="tool_calls"))
    result = run(chat(make(server.url)))
    assert result.tool_calls == (ToolCall("call_a", "search", '{"q": "uvloop"}'), ToolCall("call_b", "fetch", "{}"))
    assert (result.content, result.finish_reason) == ("", "tool_calls")
    assert result.first_token_at is not None  # a tool-call delta is output too


def test_json_tool_calls(server: OAIServer) -> None:
    calls = [{"id": "call_1", "type": "function", "function": {"name": "search", "arguments": '{"q": "x"}'}}]
    server.plan(Plan(content="", tool_calls=calls, finish_reason="tool_calls"))
    result = run(chat(make(server.url, stream=False)))
    assert result.tool_calls == (ToolCall("call_1", "search", '{"q": "x"}'),)
    assert result.finish_reason == "tool_calls"


def test_server_that_ignores_stream_answers_json(server: OAIServer) -> None:
    server.plan(Plan(force_json=True))
    sink = Sink()
    result = run(chat(make(server.url), sink=sink))
    assert (result.content, sink.tokens) == ("Hello, world!", ["Hello, world!"])


def test_one_connection_is_reused(server: OAIServer, transport: str) -> None:
    async def many() -> None:
        for stream in (False, True):
            provider = make(server.url, stream=stream)
            try:
                for _ in range(5):
                    await provider.chat(MESSAGES, CallContext("n1", "a"))
            finally:
                await provider.aclose()

    run(many())
    assert len(server.requests) == 10
    assert server.connections == 2  # one per provider instance (one client, kept alive)


def test_no_api_key_env_sends_no_authorization(server: OAIServer) -> None:
    provider = OpenAIChatProvider(
        "main",
        parse_openai_model({"provider": "openai", "base_url": server.url, "model": "m", "headers": {"X-Team": "docs"}}),
    )
    run(chat(provider))
    headers = server.requests[0].headers
    assert "authorization" not in headers
    assert headers["x-team"] == "docs"


def test_aclose_closes_the_client(server: OAIServer) -> None:
    provider = make(server.url)

    async def use() -> None:
        await provider.chat(MESSAGES, CallContext("n1", "a"))
        await provider.aclose()
        await provider.aclose()  # twice is harmless

    run(use())
    assert provider._endpoint.client.is_closed
    assert provider._endpoint.transport._session is None  # type: ignore[attr-defined]  # aiohttp's, closed


# -- retries -----------------------------------------------------------------------------------------------
def test_429_retry_after_seconds_is_honoured(server: OAIServer) -> None:
    server.plan(Plan(status=429, headers={"Retry-After": "0.3"}))
    recorder = Recorder()
    start = time.perf_counter()
    result = run(chat(make(server.url), recorder=recorder))
    assert time.perf_counter() - start >= 0.3
    assert result.attempts == 2
    assert events(recorder, "retry") == [
        {
            "cause": "429",
            "attempt": 1,
            "delay": 0.3,
            "discarded_chars": 0,
            "error": f"{label(server.url)}: HTTP 429: scripted error 429",
        }
    ]


def test_retry_after_http_date() -> None:
    assert parse_retry_after(email.utils.formatdate(time.time() + 30, usegmt=True)) == pytest.approx(30, abs=1.5)
    assert parse_retry_after(email.utils.formatdate(time.time() - 30, usegmt=True)) == 0.0
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_retry_after_beyond_total_fails_at_once(server: OAIServer) -> None:
    server.plan(Plan(status=429, headers={"Retry-After": "5"}))
    err = failure(make(server.url, timeout={"total": 1}))
    assert isinstance(err, ProviderHTTPError) and err.status == 429
    assert str(err) == (
        f"{label(server.url)}: HTTP 429: scripted error 429 (not retried: waiting 5 s would pass timeout.total (1 s))"
    )
    assert len(server.requests) == 1


def test_backoff_doubles_up_to_max_delay(server: OAIServer) -> None:
    server.plan(Plan(status=500), Plan(status=502), Plan(status=503))
    recorder = Recorder()
    retry = {"initial_delay": 0.01, "max_delay": 0.03, "jitter": "none", "max_attempts": 4}
    result = run(chat(make(server.url, retry=retry), recorder=recorder))
    assert result.attempts == 4
    assert [(e["cause"], e["attempt"], e["delay"]) for e in events(recorder, "retry")] == [
        ("500", 1, 0.01),
        ("502", 2, 0.02),
        ("503", 3, 0.03),
    ]


def test_full_jitter_stays_within_the_backoff() -> None:
    from runner.config.openai import PoolConfig, RateLimitConfig, TimeoutConfig

    endpoint = Endpoint(
        label="m",
        base_url="http://127.0.0.1:9/v1",
        api_key_env=None,
        headers={},
        timeout=TimeoutConfig(),
        pool=PoolConfig(),
        rate_limit=RateLimitConfig(),
        retry=RetryPolicy(max_attempts=10, initial_delay=1, max_delay=8),
    )
    for attempt in range(1, 8):
        draws = [endpoint._delay(ProviderHTTPError("x", 500), attempt, None, 0.0) for _ in range(200)]
        cap = min(8, 2 ** (attempt - 1))
        assert 0 <= min(draws) and max(draws) <= cap
        assert max(draws) > cap / 2  # drawn over the whole range, not a constant
    run(endpoint.aclose())


def test_retries_exhausted(server: OAIServer) -> None:
    server.plan(Plan(status=500), Plan(status=500), Plan(status=500))
    recorder = Recorder()
    err = failure(make(server.url, retry={"max_attempts": 3, "initial_delay": 0.01}), recorder)
    assert isinstance(err, ProviderHTTPError)
    assert str(err) == f"{label(server.url)}: HTTP 500: scripted error 500 (gave up after 3 attempts)"
    assert (err.status, len(server.requests), len(events(recorder, "retry"))) == (500, 3, 2)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_fail_at_once_with_the_servers_message(server: OAIServer, status: int) -> None:
    body = json.dumps({"error": {"message": "Invalid value for 'role': 'robot'.", "type": "invalid_request_error"}})
    server.plan(Plan(status=status, body=body.encode()))
    recorder = Recorder()
    # even listed in retry_on, these are not retried: the request itself is wrong
    err = failure(make(server.url, retry={"retry_on": [status, 500]}), recorder)
    assert isinstance(err, ProviderHTTPError) and err.status == status
    assert str(err) == f"{label(server.url)}: HTTP {status}: Invalid value for 'role': 'robot'."
    assert len(server.requests) == 1 and events(recorder, "retry") == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"error": "model not loaded"}', "model not loaded"),
        (b'{"object": "error", "message": "vLLM says no"}', "vLLM says no"),
        (b'{"detail": "Not Found"}', "Not Found"),
        (b"upstream connect error", "upstream connect error"),
        (b"", "(empty answer)"),
    ],
)
def test_error_message_shapes_of_compatible_servers(server: OAIServer, body: bytes, message: str) -> None:
    server.plan(Plan(status=404, body=body))
    assert str(failure(make(server.url))) == f"{label(server.url)}: HTTP 404: {message}"


def test_malformed_json_is_not_retried_by_default(server: OAIServer) -> None:
    server.plan(Plan(body=b'{"choices": ['))
    err = failure(make(server.url, stream=False))
    assert isinstance(err, ProviderProtocolError)
    assert str(err) == (
        f"{label(server.url)}: the answer is not a chat completion (JSONDecodeError: "
        "Expecting value: line 1 column 14 (char 13)): '{\"choices\": ['"
    )
    assert len(server.requests) == 1


def test_malformed_json_is_retried_when_asked(server: OAIServer) -> None:
    server.plan(Plan(body=b"<html>502 Bad Gateway</html>"))
    recorder = Recorder()
    retry = {"retry_on": ["protocol"], "initial_delay": 0.01}
    result = run(chat(make(server.url, stream=False, retry=retry), recorder=recorder))
    assert result.attempts == 2
    assert [e["cause"] for e in events(recorder, "retry")] == ["protocol"]


def test_malformed_json_in_a_stream(server: OAIServer) -> None:
    server.plan(Plan(events=[b'data: {"choices": [{"index": 0, "delta": {"content": "Hi"}}]}\n\n', b"data: {oops\n\n"]))
    err = failure(make(server.url))
    assert isinstance(err, ProviderProtocolError)
    assert str(err) == f"{label(server.url)}: malformed JSON in the stream after 1 event of the stream: '{{oops'"


def test_error_event_mid_stream(server: OAIServer) -> None:
    # an error event is the error its code stands for (503 here: retried by default; see
    # tests/test_hardening_providers.py for the retries)
    server.plan(Plan(events=[b'data: {"error": {"message": "model overloaded", "code": 503}}\n\n']))
    err = failure(make(server.url, retry={"max_attempts": 1}))
    assert isinstance(err, ProviderHTTPError) and err.status == 503
    assert str(err) == f"{label(server.url)}: the server reported error 503 mid-stream: model overloaded"


# -- connections and timeouts ------------------------------------------------------------------------------
def test_connection_refused_names_the_base_url(transport: str) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    recorder = Recorder()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(KEY_ENV, KEY)
        err = failure(make(url, retry={"max_attempts": 2, "initial_delay": 0}), recorder)
    assert isinstance(err, ProviderConnectError)
    assert str(err) == f"{label(url)}: cannot connect to {url}: Connection refused (gave up after 2 attempts)"
    assert [e["cause"] for e in events(recorder, "retry")] == ["connect"]


def test_stall_before_the_first_byte_fires_the_read_timeout(server: OAIServer, transport: str) -> None:
    # the server answers only once the call has failed: nothing but the read timeout can end it
    held = threading.Event()
    server.plan(Plan(wait=held))
    try:
        err = failure(make(server.url, stream=False, timeout={"read": 0.3}, retry={"max_attempts": 1}))
    finally:
        held.set()
    assert len(server.requests) == 1
    assert isinstance(err, ProviderTimeout)
    assert str(err) == f"{label(server.url)}: timeout.read (0.3 s) fired: the server sent nothing for 0.3 s"


def test_stream_with_no_token_fires_first_token(server: OAIServer, transport: str) -> None:
    # headers and the role-only chunk arrive at once; the first token would take 2 s
    server.plan(Plan(stall_at=1, stall_between=2))
    sink = Sink()
    err = failure(make(server.url, timeout={"first_token": 0.3}, retry={"max_attempts": 1}), sink=sink)
    assert isinstance(err, ProviderTimeout)
    assert str(err) == f"{label(server.url)}: timeout.first_token (0.3 s) fired: no token arrived"
    assert sink.tokens == []


def test_stalled_stream_fires_idle(server: OAIServer, transport: str) -> None:
    server.plan(Plan(stall_at=3, stall_between=2), Plan(stall_at=3, stall_between=2))
    sink = Sink()
    recorder = Recorder()
    err = failure(
        make(server.url, timeout={"idle": 0.3}, retry={"max_attempts": 2, "initial_delay": 0}), recorder, sink=sink
    )
    assert isinstance(err, ProviderTimeout)
    assert str(err) == (
        f"{label(server.url)}: timeout.idle (0.3 s) fired: the stream stalled after 3 events "
        "of the stream (gave up after 2 attempts)"
    )
    assert events(recorder, "retry")[0]["cause"] == "timeout"
    assert sink.text == "Hello, w"  # what the first attempt showed; the retry's repeat was not shown again


class SlowReader:
    """A bare HTTP server in a thread, for what the OAI server cannot do: take a request body slowly
    (``bytes_per_s``) or not at all (None), then answer with a one-word completion. Its sockets have small
    buffers, so a client's writes wait for it after a few megabytes."""

    def __init__(self, bytes_per_s: float | None) -> None:
        self.bytes_per_s = bytes_per_s
        self.received: list[int] = []
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}/v1"

    def __enter__(self) -> SlowReader:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._sock.close()
        for conn in self._conns:
            conn.close()

    def _serve(self) -> None:
        try:
            conn, _ = self._sock.accept()
        except OSError:
            return
        self._conns.append(conn)
        conn.settimeout(10)
        head = b""
        while b"\r\n\r\n" not in head:
            head += conn.recv(1)
        if self.bytes_per_s is None:
            return  # never reads the body, never answers
        length = int(next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))[15:])
        got, step = 0, 65536
        while got < length:
            chunk = conn.recv(min(step, length - got))
            if not chunk:
                return
            got += len(chunk)
            time.sleep(len(chunk) / self.bytes_per_s)
        self.received.append(got)
        answer = json.dumps(
            {
                "id": "c",
                "object": "chat.completion",
                "created": 0,
                "model": "test-model",
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "taken"}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        ).encode()
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(answer))
        conn.sendall(answer)


BIG = [{"role": "user", "content": "x" * (8 << 20)}]  # 8 MB: more than the kernel takes without the server


def test_a_server_that_stops_reading_fires_the_write_timeout(transport: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    with SlowReader(bytes_per_s=None) as server:
        url = server.url
        provider = make(url, stream=False, timeout={"write": 0.3, "read": 10}, retry={"max_attempts": 1})
        # The server never reads nor answers: only the write timeout can end the call (run() bounds a hang).
        # Recorded rather than raised: a ResourceWarning raised inside uvloop's loop.close() hangs it.
        with warnings.catch_warnings(record=True) as caught, pytest.raises(ProviderTimeout) as info:
            warnings.simplefilter("always")
            run(big_chat(provider))
    assert str(info.value) == f"{label(url)}: timeout.write (0.3 s) fired: could not send the request"
    # the connection was aborted, not closed: a close would wait for the server to take the rest, forever
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_aiohttp_bounds_each_64_kib_of_the_body_not_the_whole_body(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server takes the body steadily but slowly: about 1.2 s for all of it, far over the 0.3 s write
    timeout, yet no 64 KiB of it waits that long. (The stock httpx transport sends a body in one write, so
    there the whole body must go within timeout.write.)"""
    monkeypatch.setenv(KEY_ENV, KEY)
    with SlowReader(bytes_per_s=8e6) as server:
        provider = make(server.url, stream=False, timeout={"write": 0.3, "read": 10}, retry={"max_attempts": 1})
        start = time.perf_counter()
        result = run(big_chat(provider))
        took = time.perf_counter() - start
    assert result.content == "taken"
    assert len(server.received) == 1 and server.received[0] > 8 << 20  # all of its Content-Length
    assert took > 0.6  # the server really did hold the body back


def test_a_large_body_arrives_whole_with_its_content_length(server: OAIServer, transport: str) -> None:
    server.plan(Plan(content="ok"))
    provider = make(server.url, stream=False, timeout={"write": 5})
    result = run(big_chat(provider))
    assert result.content == "ok"
    request = server.requests[-1]
    assert request.headers.get("content-length") is not None and "transfer-encoding" not in request.headers
    assert request.body["messages"] == BIG


async def big_chat(provider: OpenAIChatProvider) -> ChatResult:
    try:
        return await provider.chat(BIG, CallContext(node_id="n1", agent="writer"))
    finally:
        await provider.aclose()


def test_total_timeout(server: OAIServer) -> None:
    server.plan(Plan(stall_before=3))
    err = failure(make(server.url, timeout={"total": 0.4, "first_token": None}))
    assert isinstance(err, ProviderTimeout)
    assert str(err) == f"{label(server.url)}: timeout.total (0.4 s) fired during attempt 1 of 4"


def test_pool_wait_is_recorded(server: OAIServer) -> None:
    server.plan(*[Plan(stall_before=0.2) for _ in range(4)])
    recorder = Recorder()
    provider = make(server.url, stream=False, pool={"max_connections": 2})

    async def four() -> None:
        try:
            ctx = CallContext("n1", "a", recorder=recorder)
            await asyncio.gather(*(provider.chat(MESSAGES, ctx) for _ in range(4)))
        finally:
            await provider.aclose()

    run(four())
    waits = [e["wait"] for e in events(recorder, "pool_wait")]
    assert len(waits) == 2 and min(waits) >= 0.15


def test_pool_timeout(server: OAIServer, transport: str) -> None:
    server.plan(Plan(stall_before=0.8))
    provider = make(
        server.url, stream=False, pool={"max_connections": 1}, timeout={"pool": 0.2}, retry={"max_attempts": 1}
    )

    async def two() -> list[Any]:
        try:
            ctx = CallContext("n1", "a")
            return await asyncio.gather(*(provider.chat(MESSAGES, ctx) for _ in range(2)), return_exceptions=True)
        finally:
            await provider.aclose()

    first, second = run(two())
    assert isinstance(first, ChatResult)
    assert isinstance(second, ProviderTimeout)
    assert str(second) == (
        f"{label(server.url)}: timeout.pool (0.2 s) fired: no free connection, all pool.max_connections (1) were busy"
    )


# -- broken streams: retried from scratch, never duplicated ------------------------------------------------
def test_stream_dropped_mid_way_is_retried_without_duplicating(server: OAIServer, transport: str) -> None:
    server.plan(Plan(drop_after=3))  # role chunk, "Hell", "o, w", then the connection closes
    sink = Sink()
    recorder = Recorder()
    result = run(chat(make(server.url, retry={"initial_delay": 0}), sink=sink, recorder=recorder))
    assert result.content == "Hello, world!" and result.attempts == 2
    assert sink.tokens == ["Hell", "o, w", "orld", "!"]  # the retry's repeat of "Hello, w" was held back
    [retry] = events(recorder, "retry")
    assert retry["cause"] == "read" and retry["discarded_chars"] == 8
    assert retry["error"] == (
        f"{label(server.url)}: the connection broke while reading the answer after 3 events of the stream"
    )


def test_a_resettable_sink_is_reset_and_the_retry_streams_live(server: OAIServer) -> None:
    server.plan(Plan(drop_after=3))
    sink = ResettableSink()
    run(chat(make(server.url, retry={"initial_delay": 0}), sink=sink))
    assert sink.resets == 1
    assert sink.tokens == ["Hell", "o, w", "orld", "!"]


def test_a_retry_that_differs_is_not_mixed_into_what_was_shown(server: OAIServer) -> None:
    server.plan(Plan(content="Hello there", drop_after=3), Plan(content="Goodbye!"))
    sink = Sink()
    recorder = Recorder()
    result = run(chat(make(server.url, retry={"initial_delay": 0}), sink=sink, recorder=recorder))
    assert result.content == "Goodbye!"  # the reply kept (and put in memory) is the complete one
    assert sink.text == "Hello th"  # nothing of "Goodbye!" was glued onto the stale partial text
    assert events(recorder, "stream_diverged") == [{"shown_chars": 8}]


def test_dropped_stream_gives_up_after_max_attempts(server: OAIServer, transport: str) -> None:
    server.plan(Plan(drop_after=2), Plan(drop_after=2))
    err = failure(make(server.url, retry={"max_attempts": 2, "initial_delay": 0}))
    assert isinstance(err, ProviderProtocolError) and err.kind == "read"
    assert str(err) == (
        f"{label(server.url)}: the connection broke while reading the answer after 2 events "
        "of the stream (gave up after 2 attempts)"
    )


def test_stream_that_ends_early_is_broken(server: OAIServer) -> None:
    server.plan(Plan(events=[b'data: {"choices": [{"index": 0, "delta": {"content": "Hi"}}]}\n\n']))
    err = failure(make(server.url, retry={"max_attempts": 1}))
    assert isinstance(err, ProviderProtocolError) and err.kind == "read"
    assert str(err) == f"{label(server.url)}: the stream ended before it was complete after 1 event of the stream"


def test_connection_dropped_before_the_answer(server: OAIServer, transport: str) -> None:
    server.plan(Plan(drop_before_response=True))
    recorder = Recorder()
    result = run(chat(make(server.url, stream=False, retry={"initial_delay": 0}), recorder=recorder))
    assert result.attempts == 2
    assert [e["cause"] for e in events(recorder, "retry")] == ["read"]


# -- rate limits -------------------------------------------------------------------------------------------
class LimiterClock:
    """The rate limiter's clock: ``time.monotonic`` and ``asyncio.sleep`` as runner.providers.ratelimit sees them,
    replaced by a clock that a sleep moves by its delay once the callers ready to run have run (as they would
    during a real wait; at least a microsecond, as a real clock would: a float refill can leave a wait of
    1e-17 s, which would not move a clock at 1000 s). The waits a test reads are then the limiter's own
    arithmetic, whatever the machine's load; the requests are real."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import types

        import runner.providers.ratelimit as http

        self.now = 1000.0
        clock = types.SimpleNamespace(monotonic=lambda: self.now, perf_counter=time.perf_counter, time=time.time)
        monkeypatch.setattr(http, "time", clock)
        loop_api = types.SimpleNamespace(**{n: getattr(asyncio, n) for n in dir(asyncio) if not n.startswith("_")})
        loop_api.sleep = self.sleep
        monkeypatch.setattr(http, "asyncio", loop_api)

    async def sleep(self, delay: float) -> None:
        await asyncio.sleep(0)
        self.now += max(delay, 1e-6)


def test_requests_per_minute_are_shared_by_concurrent_callers(
    server: OAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 600 a minute is 10 a second: 10 start at once, the next three start 0.1, 0.2 and 0.3 s later (each
    # waits for the limit, queued behind the ones before it: that whole wait is what it reports)
    clock = LimiterClock(monkeypatch)
    provider = make(server.url, stream=False, rate_limit={"requests_per_minute": 600})
    recorder = Recorder()

    async def thirteen() -> None:
        try:
            ctx = CallContext("n1", "a", recorder=recorder)
            await asyncio.gather(*(provider.chat(MESSAGES, ctx) for _ in range(13)))
        finally:
            await provider.aclose()

    run(thirteen())
    assert len(server.requests) == 13
    assert clock.now == pytest.approx(1000.3, abs=1e-5)  # three waits of 0.1 s, one after another
    waits = events(recorder, "rate_wait")
    assert len(waits) == 3 and {w["limit"] for w in waits} == {"requests_per_minute"}
    assert sorted(w["wait"] for w in waits) == pytest.approx([0.1, 0.2, 0.3], abs=1e-5)


def test_tokens_per_minute_count_the_reported_usage(server: OAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # 6000 a minute is 100 a second. A call is counted at its estimate (19 characters of prompt / 4, plus 40
    # of max_tokens: 44.75), then corrected to the 70 the server reports, so the second call must wait for
    # the difference to refill.
    LimiterClock(monkeypatch)
    server.default = Plan(usage={"prompt_tokens": 30, "completion_tokens": 40, "total_tokens": 70})
    provider = make(server.url, stream=False, params={"max_tokens": 40}, rate_limit={"tokens_per_minute": 6000})
    recorder = Recorder()

    async def two() -> None:
        try:
            ctx = CallContext("n1", "a", recorder=recorder)
            await provider.chat(MESSAGES, ctx)
            await provider.chat(MESSAGES, ctx)
        finally:
            await provider.aclose()

    run(two())
    [wait] = events(recorder, "rate_wait")
    assert wait["limit"] == "tokens_per_minute"
    # 100 in the bucket, 70 taken on the server's count: 30 left, 44.75 wanted, 14.75 refill in 0.1475 s
    assert wait["wait"] == pytest.approx(0.1475, abs=1e-5)


# -- configuration and secrets -----------------------------------------------------------------------------
def test_missing_key_variable_is_reported_before_any_request(
    server: OAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ProviderConfigError) as info:
        make(server.url)
    assert str(info.value) == (
        f"{label(server.url)}: the environment variable {KEY_ENV} (api_key_env) is not "
        f"set; export it with the API key for {server.url}"
    )
    assert server.requests == []


def test_bad_base_url_is_a_config_error(server: OAIServer) -> None:
    err = failure(make("ftp://127.0.0.1/v1", retry={"max_attempts": 1}))
    assert isinstance(err, ProviderConfigError)
    assert str(err).startswith(
        "model 'main' (test-model at ftp://127.0.0.1/v1): base_url 'ftp://127.0.0.1/v1' is not a usable URL"
    )


def test_the_api_key_never_appears_anywhere(
    server: OAIServer, transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    recorder = Recorder()
    seen: list[str] = []
    fast = {"max_attempts": 2, "initial_delay": 0}

    def scenario(provider: OpenAIChatProvider, *plans: Plan) -> None:
        server.plan(*plans)
        seen.extend([repr(provider), repr(provider._endpoint), repr(provider.config)])
        try:
            run(chat(provider, recorder=recorder, sink=Sink()))
        except ProviderError as err:
            seen.extend([str(err), repr(err), "".join(traceback.format_exception(err))])

    server.api_key = "a-different-key"  # the server rejects ours and echoes it back, as OpenAI does (masked)
    scenario(make(server.url, retry=fast))
    server.api_key = None
    scenario(
        make(server.url, retry=fast),
        Plan(status=500, body=f'{{"error": "bad key {KEY}"}}'.encode()),
        Plan(status=500, body=f"{KEY}".encode()),
    )
    scenario(make(server.url, retry=fast), Plan(drop_after=2), Plan(drop_after=2))
    scenario(make(server.url, retry=fast, stream=False), Plan(body=f"<{KEY}>".encode()))
    scenario(make(server.url, retry=fast, timeout={"read": 0.2}), Plan(stall_before=1), Plan(stall_before=1))
    scenario(make(f"http://127.0.0.1:{free_port()}/v1", retry=fast))
    seen.append(repr(recorder.events))
    seen.append(caplog.text)
    assert any("[api key]" in text for text in seen)  # the echoed key was there to leak, and was masked
    leaks = [text for text in seen if KEY in text]
    assert leaks == []


@pytest.mark.parametrize("stream", [False, True])
def test_a_cancelled_call_frees_its_connection(server: OAIServer, transport: str, stream: bool) -> None:
    # Ctrl-C or fail_fast cancels calls in flight: the pool slot must come back, or the run would hang
    server.plan(Plan(stall_before=3) if not stream else Plan(stall_at=2, stall_between=3))
    provider = make(
        server.url, stream=stream, pool={"max_connections": 1}, timeout={"pool": 0.5}, retry={"max_attempts": 1}
    )

    async def scenario() -> ChatResult:
        try:
            first_token = asyncio.Event()
            ctx = CallContext("n1", "a", on_token=lambda _: first_token.set())
            task = asyncio.create_task(provider.chat(MESSAGES, ctx))
            # cancelled while it holds the connection: the server stalls before answering, or mid-stream
            if stream:
                await first_token.wait()
            assert await asyncio.to_thread(server.wait_for_requests, 1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return await provider.chat(MESSAGES, ctx)
        finally:
            await provider.aclose()

    assert run(scenario()).content == "Hello, world!"


def test_a_stream_held_open_after_done_returns(server: OAIServer, transport: str) -> None:
    # some proxies keep the response open after [DONE]: the answer is complete, so the call returns
    # The server ends the response only once the call has returned. The call returns within the grace after
    # [DONE] (0.5 s): before a timer the first token sets 1.5 s out fires, on the loop's own clock, so the
    # order holds however loaded the machine is.
    held = threading.Event()
    server.plan(Plan(hold_until=held))
    late: list[str] = []

    def first_token(token: str) -> None:
        if not late:
            late.append("armed")
            asyncio.get_running_loop().call_later(1.5, late.append, "fired")

    try:
        result = run(chat(make(server.url, timeout={"idle": 2}), sink=first_token))
    finally:
        held.set()
    assert result.content == "Hello, world!" and result.attempts == 1
    assert late == ["armed"]


@pytest.mark.parametrize("stream", [False, True])
def test_the_transport_seam_takes_a_fake(monkeypatch: pytest.MonkeyPatch, stream: bool) -> None:

    monkeypatch.setenv(KEY_ENV, KEY)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if stream:
            sse = (
                b'data: {"choices": [{"index": 0, "delta": {"content": "fa"}}]}\n\n'
                b'data: {"choices": [{"index": 0, "delta": {"content": "ke"}, "finish_reason": "stop"}]}\n\n'
                b"data: [DONE]\n\n"
            )
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=sse)
        return httpx.Response(200, json={"choices": [{"message": {"content": "fake"}, "finish_reason": "stop"}]})

    raw = {
        "provider": "openai",
        "base_url": "http://fake.invalid/v1",
        "model": "m",
        "api_key_env": KEY_ENV,
        "stream": stream,
    }
    provider = OpenAIChatProvider("main", parse_openai_model(raw), transport=httpx.MockTransport(handler))
    sink = Sink()
    result = run(chat(provider, sink=sink))
    assert (result.content, sink.text) == ("fake", "fake")
    assert str(seen[0].url) == "http://fake.invalid/v1/chat/completions"
    assert seen[0].headers["authorization"] == f"Bearer {KEY}"


def test_requests_go_through_aiohttp_unless_a_transport_is_given(server: OAIServer) -> None:
    from runner.providers.aiohttp_transport import AiohttpTransport

    provider = make(server.url)
    assert type(provider._endpoint.transport) is AiohttpTransport  # the one built-in path (issue 15)
    run(provider.aclose())
    given = httpx.AsyncHTTPTransport()
    raw = {"provider": "openai", "base_url": server.url, "model": "test-model", "api_key_env": KEY_ENV}
    provider = OpenAIChatProvider("main", parse_openai_model(raw), transport=given)
    assert provider._endpoint.transport is given
    assert run(chat(provider)).content == "Hello, world!"
    assert len(server.requests) == 1


def test_connect_timeout_names_the_timeout_and_the_url(transport: str) -> None:
    # a listener that never accepts, its backlog full: the next connection hangs in the handshake
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        filler.connect(listener.getsockname())
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv(KEY_ENV, KEY)
            # nothing accepts the connection: only the connect timeout can end the call (run() bounds a hang)
            err = failure(make(url, timeout={"connect": 0.3}, retry={"max_attempts": 1}))
    assert isinstance(err, ProviderTimeout)
    assert str(err) == f"{label(url)}: timeout.connect (0.3 s) fired: could not connect to {url}"


def test_credentials_in_the_base_url_are_masked_in_messages() -> None:
    from runner.providers.proxy import display_url

    assert display_url("https://user:s3cret@gw.example.invalid/v1") == "https://[credentials]@gw.example.invalid/v1"
    assert display_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"
    url = f"http://bob:s3cret@127.0.0.1:{free_port()}/v1"
    err = failure(
        OpenAIChatProvider("main", parse_openai_model({"base_url": url, "model": "m", "retry": {"max_attempts": 1}}))
    )
    assert "s3cret" not in str(err) and "[credentials]@127.0.0.1" in str(err)


def test_credentials_in_the_base_url_and_a_key_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    url = f"http://bob:s3cret@127.0.0.1:{free_port()}/v1"
    err = failure(make(url, retry={"max_attempts": 1}))
    assert isinstance(err, ProviderConfigError)
    assert "s3cret" not in str(err) and KEY not in str(err)
    assert str(err).startswith(f"model 'main' (test-model at http://[credentials]@127.0.0.1:{url.split(':')[3]}")


def test_reasoning_deltas_keep_a_stream_alive_but_are_not_reply_text(server: OAIServer) -> None:
    def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
        chunk = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return b"data: " + json.dumps(chunk).encode() + b"\n\n"

    thinking = [event({"reasoning_content": "hmm "}) for _ in range(4)]
    stream = [event({"role": "assistant"}), *thinking, event({"content": "42"}, "stop"), b"data: [DONE]\n\n"]
    server.plan(Plan(events=stream, stall_between=0.15))
    sink = Sink()
    start = time.perf_counter()
    result = run(chat(make(server.url, timeout={"first_token": 0.4, "idle": 0.4}), sink=sink))
    assert (result.content, sink.text) == ("42", "42")
    assert result.first_token_at is not None and result.first_token_at - start > 0.6  # the reply's first token


def test_an_error_answered_with_status_200(server: OAIServer) -> None:
    server.plan(Plan(body=b'{"error": {"message": "context length exceeded", "code": 400}}'))
    err = failure(make(server.url, stream=False))
    assert isinstance(err, ProviderHTTPError) and err.status == 400  # as if answered with its status
    assert str(err) == f"{label(server.url)}: the server reported error 400 in a 200 answer: context length exceeded"
