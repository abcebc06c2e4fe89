"""The OpenAI-compatible chat provider (``POST {base_url}/chat/completions``) and embedder
(``POST {base_url}/embeddings``): OpenAI, DashScope's compatible mode, vLLM, Ollama, llama.cpp's
server and most gateways.

The HTTP plumbing (shared client, fast transport, retries, rate limits, error translation) is in
:mod:`runner.providers.http`; this module builds request bodies and reads answers, JSON or streamed.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt

from runner.calls import ChatResult, ToolCall, Usage
from runner.config.openai import OpenAIEmbeddingConfig, OpenAIModelConfig
from runner.dispatch import run_all
from runner.errors import ProviderError, ProviderTimeout
from runner.events import Recorder
from runner.providers.base import CallContext, Message
from runner.providers.http import Endpoint, snippet
from runner.providers.proxy import display_url
from runner.providers.sse import SSEDecoder

_DONE_GRACE = 0.5
"""Seconds to wait, after ``data: [DONE]``, for the end of the response body before closing the stream."""


def _dumps(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _estimate_tokens(messages: Sequence[Message], params: Mapping[str, Any]) -> float:
    """A request's tokens for the rate limiter before the server counts them: about 4 characters per
    prompt token, plus the most the reply may use."""
    chars = 0
    for message in messages:
        content = message.get("content")
        chars += len(content) if isinstance(content, str) else len(json.dumps(content or ""))
    reply = params.get("max_completion_tokens") or params.get("max_tokens") or 0
    return chars / 4 + (reply if isinstance(reply, int | float) else 0)


class _TokenGate:
    """Passes streamed text to ``ctx.on_token`` so that a retried stream never duplicates text.

    * The first attempt streams live.
    * When an attempt fails after showing text and the sink has a ``reset()`` method (a renderer that can
      take back what it printed), ``reset()`` is called before the retry, and the retry streams live from
      scratch.
    * Otherwise what was shown cannot be taken back: the retry's text is compared with it and withheld while
      it repeats it; text past that point streams live. If the retry's answer departs from what was shown
      (a sampled reply rarely comes out the same twice), or ends before it, the shown text is void: a
      ``stream_diverged`` event is recorded, and a sink with a ``restart()`` method (the terminal) is told so
      (it says it on the screen), then given the new answer from its start. A plain callable gets nothing
      more of that attempt. (The returned ``ChatResult`` always holds the complete text of the attempt
      that succeeded.)
    """

    __slots__ = ("_sink", "_reset", "_restart", "_shown", "_parts", "_text", "_pos", "_diverged", "_ctx")

    def __init__(self, sink: Callable[[str], None] | None, ctx: CallContext | None = None) -> None:
        self._sink = sink
        reset = getattr(sink, "reset", None)
        self._reset: Callable[[], None] | None = reset if callable(reset) else None
        restart = getattr(sink, "restart", None)
        self._restart: Callable[[], None] | None = restart if callable(restart) else None
        self._ctx = ctx
        self._shown = ""  # text of earlier attempts still on the sink's screen
        self._parts: list[str] = []  # text shown during the current attempt
        self._text: list[str] = []  # the current attempt's whole text, while it is compared with _shown
        self._pos = 0  # length of the current attempt's text so far
        self._diverged = False

    def push(self, text: str) -> None:
        """Forward ``text`` as far as it is new."""
        sink = self._sink
        if sink is None or self._diverged:
            return
        shown = self._shown
        if shown:
            self._text.append(text)
        start, self._pos = self._pos, self._pos + len(text)
        if start >= len(shown):
            sink(text)
            self._parts.append(text)
            return
        overlap = min(len(shown), self._pos) - start
        if shown[start : start + overlap] != text[:overlap]:
            self._depart()
            return
        if len(text) > overlap:
            sink(text[overlap:])
            self._parts.append(text[overlap:])

    def finish(self) -> None:
        """The current attempt succeeded: an answer shorter than what was shown departs from it too."""
        if self._sink is not None and not self._diverged and self._pos < len(self._shown):
            self._depart()

    def _depart(self) -> None:
        ctx = self._ctx
        if ctx is not None and ctx.recorder is not None:
            ctx.recorder.emit("stream_diverged", ctx.node_id, {"shown_chars": len(self._shown)})
        if self._restart is None or self._sink is None:
            self._diverged = True
            return
        self._restart()
        whole = "".join(self._text)
        self._shown = ""  # void now: from here the screen holds this attempt's text
        self._text = []
        self._parts = [whole] if whole else []
        if whole:
            self._sink(whole)

    @property
    def shown_chars(self) -> int:
        return len(self._shown)

    def retry(self) -> int:
        """The attempt failed and another follows; returns the length of its discarded text."""
        discarded = self._pos
        self._shown += "".join(self._parts)
        self._parts = []
        self._text = []
        self._pos = 0
        self._diverged = False
        if self._shown and self._reset is not None:
            self._reset()
            self._shown = ""
        return discarded


class _ToolCallBuilder:
    """Assembles streamed ``tool_calls`` deltas: the id and name come once, the JSON arguments in pieces,
    all keyed by ``index``."""

    __slots__ = ("calls",)

    def __init__(self) -> None:
        self.calls: dict[int, list[str]] = {}

    def add(self, deltas: Sequence[Mapping[str, Any]]) -> None:
        for position, delta in enumerate(deltas):
            index = delta.get("index", position)
            call = self.calls.setdefault(index if isinstance(index, int) else position, ["", "", ""])
            if delta.get("id") and not call[0]:
                call[0] = str(delta["id"])
            function = delta.get("function") or {}
            name = function.get("name")
            if name and name != call[1]:  # some servers repeat the whole name in every delta
                call[1] += name
            arguments = function.get("arguments")
            if arguments:
                call[2] += arguments

    def result(self) -> tuple[ToolCall, ...]:
        return tuple(
            ToolCall(id=c[0] or f"call_{i}", name=c[1], arguments=c[2] or "{}") for i, c in sorted(self.calls.items())
        )


def _tool_calls(raw: Any) -> tuple[ToolCall, ...]:
    builder = _ToolCallBuilder()
    builder.add([{**call, "index": i} for i, call in enumerate(raw or ())])
    return builder.result()


def _endpoint(
    what: str, config: OpenAIModelConfig | OpenAIEmbeddingConfig, transport: httpx.AsyncBaseTransport | None
) -> Endpoint:
    """The endpoint (client, pool, retries, rate limit) of a model or embedder, labelled for messages."""
    return Endpoint(
        label=f"{what} ({config.model} at {display_url(config.base_url)})",
        base_url=config.base_url,
        api_key_env=config.api_key_env,
        headers=config.headers,
        timeout=config.timeout,
        pool=config.pool,
        retry=config.retry,
        rate_limit=config.rate_limit,
        transport=transport,
    )


class OpenAIChatProvider:
    """A chat model behind an OpenAI-compatible ``/chat/completions`` endpoint (implements
    :class:`~runner.providers.base.ChatProvider`).

    One instance per model for the whole run, shared by every agent using it: one ``httpx.AsyncClient``
    whose pool is ``config.pool`` (over :class:`~runner.providers.http.AiohttpTransport` unless a
    ``transport`` is given), one rate limiter; ``aclose()`` closes them. The API key is read from
    ``config.api_key_env`` when the instance is made: a missing variable raises
    :class:`~runner.errors.ProviderConfigError` before any request.

    Streaming (``config.stream``) asks for ``stream_options.include_usage``, records ``first_token_at``
    (``time.perf_counter()`` when the first content or tool-call delta arrived), assembles streamed tool
    calls, and enforces ``timeout.first_token`` and ``timeout.idle`` (reasoning deltas, which are not reply
    text, count as tokens for these two). A failed attempt is retried from
    scratch per ``config.retry``; how streamed text reaches ``ctx.on_token`` across retries (never
    duplicated) is described in :class:`_TokenGate`: give ``on_token`` a ``reset()`` method to have
    partial output taken back. A JSON (non-streamed) reply reaches ``on_token`` once, whole.

    Events recorded on ``ctx.recorder``: ``retry`` (cause, attempt, delay, error, discarded_chars),
    ``rate_wait`` (wait, limit), ``pool_wait`` (wait), ``stream_diverged`` (shown_chars).
    """

    def __init__(
        self, name: str, config: OpenAIModelConfig, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.name = name
        self.config = config
        self._endpoint = _endpoint(f"model {name!r}", config, transport)
        self._url = httpx.URL(f"{config.base_url}/chat/completions")

    def __repr__(self) -> str:
        c = self.config
        return f"OpenAIChatProvider({self.name!r}, model={c.model!r}, base_url={display_url(c.base_url)!r})"

    async def aclose(self) -> None:
        await self._endpoint.aclose()

    def request_body(self, messages: Sequence[Message], tools: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
        """The JSON body of one request, as the OpenAI wire format has it."""
        body: dict[str, Any] = {"model": self.config.model, "messages": list(messages), **self.config.params}
        body["stream"] = self.config.stream
        if self.config.stream:
            body["stream_options"] = {"include_usage": True}
        if tools:
            body["tools"] = list(tools)
        return body

    async def chat(
        self, messages: Sequence[Message], ctx: CallContext, *, tools: Sequence[Mapping[str, Any]] = ()
    ) -> ChatResult:
        payload = _dumps(self.request_body(messages, tools))
        estimate = _estimate_tokens(messages, self.config.params)
        gate = _TokenGate(ctx.on_token, ctx)
        recorder = ctx.recorder

        def on_retry(err: ProviderError) -> dict[str, Any]:
            return {"discarded_chars": gate.retry()}

        async def once(attempt: int) -> ChatResult:
            if self.config.stream:
                return await self._stream(payload, ctx, gate)
            return await self._json(payload, ctx, gate)

        result, attempts = await self._endpoint.run(
            once, node_id=ctx.node_id, recorder=recorder, tokens=estimate, on_retry=on_retry
        )
        gate.finish()
        used = result.usage.prompt_tokens + result.usage.completion_tokens
        self._endpoint.limiter.settle(estimate, used or estimate)  # no usage reported: keep the estimate
        if attempts == 1:
            return result
        return ChatResult(
            result.content, result.usage, result.tool_calls, result.first_token_at, attempts, result.finish_reason
        )

    async def _json(self, payload: bytes, ctx: CallContext, gate: _TokenGate) -> ChatResult:
        content = await self._endpoint.post_json(self._url, payload, ctx.recorder, ctx.node_id)
        return self._parse_json(content, gate)

    def _parse_json(self, content: bytes, gate: _TokenGate, headers: httpx.Headers | None = None) -> ChatResult:
        ep = self._endpoint
        if _looks_like_html(content, headers):
            raise ep.protocol_error(f"the server answered with an HTML page, not a chat completion: {snippet(content)}")
        try:
            data = json.loads(content)
            if not isinstance(data, dict):
                raise TypeError("the answer is not a JSON object")
            error = _error_object(data)
            if error is not None:  # some servers answer errors with status 200
                raise ep.reported_error(error, "in a 200 answer", headers)
            choices = data.get("choices")
            if not choices and isinstance(choices, list | None):
                # the same rule as a stream's (see _StreamState.result): an answer must carry a choice
                what = "is empty" if isinstance(choices, list) else "is missing"
                raise ep.protocol_error(f'the answer has no choice: its "choices" {what}: {snippet(content)}')
            choice = data["choices"][0]
            message = choice["message"]
            text = message.get("content") or ""
            if not isinstance(text, str):
                raise TypeError("message.content is not text")
            tool_calls = _tool_calls(message.get("tool_calls"))
            usage = data.get("usage") or {}
            result = ChatResult(
                content=text,
                usage=Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)),
                tool_calls=tool_calls,
                finish_reason=str(choice.get("finish_reason") or "stop"),
            )
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise ep.protocol_error(
                f"the answer is not a chat completion ({type(exc).__name__}: {exc}): {snippet(content)}"
            ) from exc
        if text:
            gate.push(text)
        return result

    async def _stream(self, payload: bytes, ctx: CallContext, gate: _TokenGate) -> ChatResult:
        ep = self._endpoint
        timeouts = self.config.timeout
        loop = asyncio.get_running_loop()
        state = _StreamState(ep, ctx, gate)
        scope = asyncio.timeout(timeouts.first_token)
        resp: httpx.Response | None = None
        try:
            async with scope:
                resp = await ep.send(self._url, payload, stream=True)
                ep.note_pool_wait(resp, ctx.recorder, ctx.node_id)
                if resp.status_code >= 400:
                    raise ep.http_error(resp.status_code, await resp.aread(), resp.headers)
                ep.check_encoding(resp.headers)
                state.headers = resp.headers
                chunks = resp.aiter_bytes()
                # What the answer is, before reading it as a stream: its content type, and its first bytes
                # (a server may mislabel it). A server that ignores "stream": true answers with one JSON
                # completion; an HTML page (a portal, a proxy's login, a base_url that is a web UI), an
                # empty body or anything else is refused at once by name rather than read as a stream that
                # "ended before it was complete", which would be retried in vain.
                first = b""
                async for chunk in chunks:
                    first += chunk
                    if first.lstrip(b"\xef\xbb\xbf \t\r\n"):
                        break
                shape = _answer_shape(resp.headers.get("content-type", ""), first)
                if shape == "json":
                    rest = [first] + [chunk async for chunk in chunks]
                    return self._parse_json(b"".join(rest), gate, resp.headers)
                if shape != "sse":
                    raise ep.protocol_error(_not_a_stream(shape, resp.headers.get("content-type"), first))
                decoder = SSEDecoder()
                chunk = first
                while True:
                    was_alive = state.alive
                    for event in decoder.feed(chunk):
                        state.event(event.data, event.event)
                    if state.done:
                        # complete; the end of the body normally follows at once, and reading it lets the
                        # connection be reused, but a server that holds the stream open must not stall us
                        scope.reschedule(loop.time() + _DONE_GRACE)
                    elif was_alive or state.alive:
                        # the first token switches the deadline from first_token to idle; any chunk renews it
                        scope.reschedule(None if timeouts.idle is None else loop.time() + timeouts.idle)
                    try:
                        chunk = await anext(chunks)
                    except StopAsyncIteration:
                        break
                for event in decoder.flush():
                    state.event(event.data, event.event)
        except TimeoutError as exc:
            if not scope.expired():
                raise
            if state.done:
                return state.result()
            if not state.alive:
                raise ProviderTimeout(
                    f"{ep.label}: timeout.first_token ({timeouts.first_token:g} s) fired: no token arrived"
                ) from exc
            raise ProviderTimeout(
                f"{ep.label}: timeout.idle ({timeouts.idle:g} s) fired: the stream stalled{state.progress()}"
            ) from exc
        except httpx.HTTPError as exc:
            raise ep.translate(exc, during=state.progress()) from exc
        finally:
            if resp is not None:
                await resp.aclose()
        return state.result()


_SSE_FIELDS = (b"data:", b"event:", b"id:", b"retry:", b":", b"data\n", b"data\r")


def _answer_shape(content_type: str, first: bytes) -> str:
    """``sse``, ``json``, ``html``, ``empty`` or ``other``: what a 200 answer to a streamed request is, by
    its first bytes where they tell, else by its declared content type."""
    head = first.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head:
        return "empty"
    if head.startswith(_SSE_FIELDS):
        return "sse"
    if head[:1] in (b"{", b"["):
        return "json"
    if head[:1] == b"<":
        return "html"
    media = content_type.partition(";")[0].strip().lower()
    if media == "text/event-stream":
        return "sse"  # an event-stream may open with a field this parser ignores
    return "html" if media in ("text/html", "application/xhtml+xml") else "other"


def _looks_like_html(content: bytes, headers: httpx.Headers | None) -> bool:
    head = content[:256].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<?xml", b"<!--")):
        return True
    media = (headers.get("content-type", "") if headers is not None else "").partition(";")[0].strip().lower()
    return media in ("text/html", "application/xhtml+xml") and head[:1] == b"<"


def _not_a_stream(shape: str, content_type: str | None, first: bytes) -> str:
    declared = f"Content-Type: {content_type}" if content_type else "no Content-Type"
    if shape == "empty":
        return f"the server answered 200 with an empty body ({declared}), not a stream of events"
    what = "an HTML page" if shape == "html" else "something else"
    return f"the server answered with {what} ({declared}), not a stream of events: {snippet(first)}"


def _error_object(data: Any) -> Any:
    """The error a JSON body reports, or None: OpenAI's ``{"error": {...}}`` (or a bare string), or vLLM's
    older top-level ``{"object": "error", "message": ..., "code": ...}``."""
    if not isinstance(data, dict):
        return None
    if data.get("error"):
        return data["error"]
    if data.get("object") == "error":
        return data
    return None


class _StreamState:
    """What one streamed attempt has received so far."""

    def __init__(self, ep: Endpoint, ctx: CallContext, gate: _TokenGate) -> None:
        self.ep = ep
        self.ctx = ctx
        self.gate = gate
        self.headers: httpx.Headers | None = None
        self.parts: list[str] = []
        self.tools = _ToolCallBuilder()
        self.first_token_at: float | None = None
        self.alive = False  # any token, reasoning included: the stall timers switch from first_token to idle
        self.finish: str | None = None
        self.usage = Usage()
        self.done = False
        self.chunks = 0
        self.choices = 0  # events that carried a choice

    def progress(self) -> str:
        n = self.chunks
        return f" after {n} event{'' if n == 1 else 's'} of the stream" if n else ""

    def event(self, data: str, kind: str = "message") -> None:
        if self.done:
            return
        if data == "[DONE]":
            self.done = True
            return
        try:
            obj = json.loads(data)
        except ValueError as exc:
            if kind == "error":  # "event: error" with a plain-text message
                raise self.ep.reported_error(data, f"mid-stream{self.progress()}", self.headers) from exc
            what = f"malformed JSON in the stream{self.progress()}: {snippet(data)}"
            raise self.ep.protocol_error(what) from exc
        error = _error_object(obj)
        if error is None and kind == "error":
            error = obj
        if error is not None:
            raise self.ep.reported_error(error, f"mid-stream{self.progress()}", self.headers)
        if not isinstance(obj, dict):
            raise self.ep.protocol_error(f"unexpected stream event{self.progress()}: {snippet(data)}")
        self.chunks += 1
        usage = obj.get("usage")
        if usage:
            self.usage = Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
        for choice in obj.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            self.choices += 1
            delta = choice.get("delta") or {}
            text = delta.get("content")
            got = False
            if text:
                self.parts.append(text)
                self.gate.push(text)
                got = True
            if delta.get("tool_calls"):
                self.tools.add(delta["tool_calls"])
                got = True
            if got and self.first_token_at is None:
                self.first_token_at = time.perf_counter()
            # reasoning models (DeepSeek, Qwen, vLLM's reasoning parsers) stream their thinking as
            # reasoning_content / reasoning: not reply text, but proof the model is working
            if got or delta.get("reasoning_content") or delta.get("reasoning"):
                self.alive = True
            if choice.get("finish_reason"):
                self.finish = str(choice["finish_reason"])

    def result(self) -> ChatResult:
        if not self.done and self.finish is None:
            broken = self.ep.protocol_error(f"the stream ended before it was complete{self.progress()}")
            broken.kind = "read"
            raise broken
        if not self.choices:
            # the JSON path's rule too: a stream of events none of which carries a choice (a usage-only
            # last event with "choices": [], as OpenAI sends with include_usage, is fine after others)
            n = self.chunks
            raise self.ep.protocol_error(
                f"the answer has no choice: none of the {n} event{'' if n == 1 else 's'} of the stream had one "
                'in its "choices"'
            )
        return ChatResult(
            content="".join(self.parts),
            usage=self.usage,
            tool_calls=self.tools.result(),
            first_token_at=self.first_token_at,
            finish_reason=self.finish or "stop",
        )


Vectors = npt.NDArray[np.float32]


class OpenAIEmbedder:
    """An embedding model behind an OpenAI-compatible ``/embeddings`` endpoint (implements the
    embedder protocol: ``embed``, ``dimensions``, ``cache_key``, ``aclose``).

    ``embed(texts)`` sends ``config.batch_size`` texts per request, at most ``config.max_concurrency``
    requests at once, with the same pool, timeouts, retries and rate limits as a chat model, and returns a
    C-contiguous float32 array of shape ``(len(texts), config.dimensions)``, rows in input order. Events
    (``retry``, ``rate_wait``, ``pool_wait``) go to ``recorder`` under the node id ``embeddings.<name>``.
    """

    def __init__(
        self,
        name: str,
        config: OpenAIEmbeddingConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        recorder: Recorder | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.recorder = recorder
        self._node_id = f"embeddings.{name}"
        self._endpoint = _endpoint(f"embeddings {name!r}", config, transport)
        self._url = httpx.URL(f"{config.base_url}/embeddings")

    def __repr__(self) -> str:
        c = self.config
        return f"OpenAIEmbedder({self.name!r}, model={c.model!r}, base_url={display_url(c.base_url)!r})"

    @property
    def dimensions(self) -> int:
        return self.config.dimensions

    @property
    def cache_key(self) -> str:
        # the same text as runner.embeddings.base.make_cache_key("openai", model, dimensions)
        return f"openai/{self.config.model}/{self.config.dimensions}"

    async def aclose(self) -> None:
        await self._endpoint.aclose()

    async def embed(self, texts: Sequence[str]) -> Vectors:
        dim = self.config.dimensions
        out = np.empty((len(texts), dim), dtype=np.float32)
        if not texts:
            return out
        size = self.config.batch_size

        async def one(k: int) -> None:
            batch = list(texts[k * size : (k + 1) * size])
            out[k * size : k * size + len(batch)] = await self._batch(batch)

        # At most max_concurrency batches at once; after a failure (a 400 on one batch) no further batch is
        # sent, and the first error is raised as itself (callers expect one ProviderError, not a group).
        await run_all(-(-len(texts) // size), one, limit=self.config.max_concurrency)
        return out

    async def _batch(self, batch: list[str]) -> Vectors:
        body: dict[str, Any] = {"model": self.config.model, "input": batch, "encoding_format": "float"}
        if self.config.send_dimensions:
            body["dimensions"] = self.config.dimensions
        payload = _dumps(body)
        ep = self._endpoint

        async def once(attempt: int) -> Vectors:
            content = await ep.post_json(self._url, payload, self.recorder, self._node_id)
            return self._parse(content, len(batch))

        estimate = sum(len(t) for t in batch) / 4
        # counted at the estimate: an embedding request's tokens are its input, which the estimate covers
        vectors, _ = await ep.run(once, node_id=self._node_id, recorder=self.recorder, tokens=estimate)
        return vectors

    def _parse(self, content: bytes, count: int) -> Vectors:
        dim = self.config.dimensions
        try:
            data = json.loads(content)["data"]
            rows = sorted(data, key=lambda item: item["index"])
            matrix = np.asarray([row["embedding"] for row in rows], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as exc:
            snippet = content[:200].decode("utf-8", errors="replace")
            raise self._endpoint.protocol_error(
                f"the answer is not an embedding list ({type(exc).__name__}: {exc}): {snippet!r}"
            ) from exc
        if matrix.shape != (count, dim):
            got = matrix.shape[1] if matrix.ndim == 2 else "?"
            if matrix.ndim == 2 and matrix.shape[0] == count:
                raise self._endpoint.protocol_error(
                    f"the server returned vectors of {got} dimensions, but dimensions is {dim}: set "
                    f"dimensions to {got}"
                    + (
                        ""
                        if self.config.send_dimensions
                        else " (or send_dimensions: true if the model can shorten them)"
                    )
                )
            found = matrix.shape[0] if matrix.ndim else 0
            raise self._endpoint.protocol_error(f"the server returned {found} vectors for {count} texts")
        return matrix
