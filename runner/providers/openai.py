"""The OpenAI-compatible chat provider (``POST {base_url}/chat/completions``): OpenAI, DashScope's compatible
mode, vLLM, Ollama, llama.cpp's server and most gateways.

This module is the call: one attempt as JSON or as a stream, with the stream's ``first_token`` and ``idle``
timers, inside the endpoint's retry loop. The wire shapes are :mod:`runner.providers.openai_wire`, streamed
text across retries :mod:`runner.providers.token_gate`, the endpoint (client, retries, rate limit)
:mod:`runner.providers.endpoint`, the embedder :mod:`runner.providers.openai_embeddings`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from runner.calls import ChatResult
from runner.config.openai import OpenAIModelConfig
from runner.config.output import OutputSpec
from runner.errors import ProviderError, ProviderTimeout
from runner.providers.base import CallContext, Message
from runner.providers.endpoint import Endpoint
from runner.providers.openai_wire import (
    StreamState,
    answer_shape,
    dumps,
    estimate_tokens,
    not_a_stream,
    read_completion,
)
from runner.providers.proxy import display_url
from runner.providers.sse import SSEDecoder
from runner.providers.token_gate import TokenGate
from runner.providers.transport import Body, Outgoing
from runner.structured import schema_instructions

if TYPE_CHECKING:
    import httpx


def with_instructions(messages: list[Message], text: str) -> list[Message]:
    """``messages`` with ``text`` at the end of the system message (one added first when there is none)."""
    if messages and messages[0].get("role") == "system" and isinstance(messages[0].get("content"), str):
        return [{**messages[0], "content": f"{messages[0]['content']}\n\n{text}"}, *messages[1:]]
    return [{"role": "system", "content": text}, *messages]


_DONE_GRACE = 0.5
"""Seconds to wait, after ``data: [DONE]``, for the end of the response body before closing the stream."""


class OpenAIChatProvider:
    """A chat model behind an OpenAI-compatible ``/chat/completions`` endpoint (implements
    :class:`~runner.providers.base.ChatProvider`).

    One instance per model for the whole run, shared by every agent using it: one ``httpx.AsyncClient``
    whose pool is ``config.pool`` (over :class:`~runner.providers.aiohttp_transport.AiohttpTransport` unless a
    ``transport`` is given: any httpx transport, ``httpx.MockTransport`` for a fake endpoint in tests), one
    rate limiter; ``aclose()`` closes them (a given transport too, as ``httpx.AsyncClient`` does). The API
    key is read from ``config.api_key_env`` when the instance is made: a missing variable raises
    :class:`~runner.errors.ProviderConfigError` before any request.

    Streaming (``config.stream``) asks for ``stream_options.include_usage``, records ``first_token_at``
    (``time.perf_counter()`` when the first content or tool-call delta arrived), assembles streamed tool
    calls, and enforces ``timeout.first_token`` and ``timeout.idle`` (reasoning deltas, which are not reply
    text, count as tokens for these two). A failed attempt is retried from scratch per ``config.retry``;
    how streamed text reaches ``ctx.on_token`` across retries (never duplicated) is described in
    :class:`~runner.providers.token_gate.TokenGate`: give ``on_token`` a ``reset()`` method to have partial
    output taken back. A JSON (non-streamed) reply reaches ``on_token`` once, whole.

    Events recorded on ``ctx.recorder``: ``retry`` (cause, attempt, delay, error, discarded_chars),
    ``rate_wait`` (wait, limit), ``pool_wait`` (wait), ``stream_diverged`` (shown_chars).
    """

    def __init__(
        self, name: str, config: OpenAIModelConfig, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.name = name
        self.config = config
        self._endpoint = Endpoint.of(f"model {name!r}", config, transport, source=("model", name))

    def __repr__(self) -> str:
        c = self.config
        return f"OpenAIChatProvider({self.name!r}, model={c.model!r}, base_url={display_url(c.base_url)!r})"

    async def aclose(self) -> None:
        await self._endpoint.aclose()

    def observe(self, on_response: Callable[[int, Mapping[str, str]], None] | None) -> None:
        """Call ``on_response(status, headers)`` as each answer of this model arrives, retries included (a
        dataset batch adapts its rows in flight to 429s, ``Retry-After`` and ``x-ratelimit-remaining-*``)."""
        self._endpoint.on_response = on_response

    def request_body(
        self,
        messages: Sequence[Message],
        tools: Sequence[Mapping[str, Any]] = (),
        output: OutputSpec | None = None,
    ) -> dict[str, Any]:
        """The JSON body of one request, as the OpenAI wire format has it: ``params`` as given, ``extra_body``
        merged in last (server-specific fields), and a structured ``output`` asked for as the model's
        ``structured_output`` says (issue 16)."""
        params = self.config.params
        extra = params.get("extra_body")
        body: dict[str, Any] = {"model": self.config.model, "messages": list(messages)}
        body.update(params if extra is None else {k: v for k, v in params.items() if k != "extra_body"})
        body["stream"] = self.config.stream
        if self.config.stream:
            body["stream_options"] = {"include_usage": True}
        if tools:
            body["tools"] = list(tools)
        if output is not None:
            mode = self.config.structured_output
            schema = output.schema if isinstance(output.schema, Mapping) else {}
            if mode == "json_schema":
                format_ = {"name": output.name, "schema": schema, "strict": output.strict}
                body["response_format"] = {"type": "json_schema", "json_schema": format_}
            else:
                if mode == "json_object":
                    body["response_format"] = {"type": "json_object"}
                else:
                    body.pop("response_format", None)  # the model's own (for replies without output) would clash
                body["messages"] = with_instructions(body["messages"], schema_instructions(output.schema))
        if extra:
            body.update(extra)
        return body

    async def chat(
        self, messages: Sequence[Message], ctx: CallContext, *, tools: Sequence[Mapping[str, Any]] = ()
    ) -> ChatResult:
        body = self.request_body(messages, tools, ctx.output)
        request = self._endpoint.request("/chat/completions", body, dumps(body))
        estimate = estimate_tokens(messages, self.config.params)
        gate = TokenGate(ctx.on_token, ctx)
        recorder = ctx.recorder

        def on_retry(err: ProviderError) -> dict[str, Any]:
            return {"discarded_chars": gate.retry()}

        async def once(attempt: int) -> ChatResult:
            if self.config.stream:
                return await self._stream(request, ctx, gate)
            return await self._json(request, ctx, gate)

        free = self._endpoint.answered(request)  # a cached or replayed answer: no rate-limit budget
        result, attempts = await self._endpoint.run(
            once, node_id=ctx.node_id, recorder=recorder, tokens=estimate, on_retry=on_retry, free=free
        )
        gate.finish()
        used = result.usage.prompt_tokens + result.usage.completion_tokens
        if not free or attempts > 1:
            self._endpoint.limiter.settle(estimate, used or estimate)  # no usage reported: keep the estimate
        if attempts == 1:
            return result
        return ChatResult(
            result.content, result.usage, result.tool_calls, result.first_token_at, attempts, result.finish_reason
        )

    async def _json(self, request: Outgoing, ctx: CallContext, gate: TokenGate) -> ChatResult:
        content = await self._endpoint.post_json(request, ctx.recorder, ctx.node_id)
        return self._completion(content, gate)

    def _completion(
        self, content: bytes | Body, gate: TokenGate, headers: Mapping[str, str] | None = None
    ) -> ChatResult:
        result = read_completion(content, self._endpoint.errors, headers)
        if result.content:
            gate.push(result.content)
        return result

    async def _stream(self, request: Outgoing, ctx: CallContext, gate: TokenGate) -> ChatResult:
        ep = self._endpoint
        timeouts = self.config.timeout
        loop = asyncio.get_running_loop()
        state = StreamState(ep.errors, gate.push)
        scope = asyncio.timeout(timeouts.first_token)
        resp: httpx.Response | None = None
        try:
            async with scope:
                chunks: AsyncIterator[bytes]
                headers: Mapping[str, str]
                answer = await ep.answer(request, ctx.node_id)  # a replay's recording: no HTTP objects
                if answer is not None:
                    if answer.status >= 400:
                        raise ep.errors.http_error(answer.status, (await answer.read()).content, answer.headers)
                    headers, chunks = answer.headers, answer.stream()
                else:
                    resp = await ep.send(request, stream=True, node_id=ctx.node_id)
                    ep.note_pool_wait(resp, ctx.recorder, ctx.node_id)
                    if resp.status_code >= 400:
                        raise ep.errors.http_error(resp.status_code, await resp.aread(), resp.headers)
                    headers, chunks = resp.headers, resp.aiter_bytes()
                ep.errors.check_encoding(headers)
                state.headers = headers
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
                shape = answer_shape(headers.get("content-type", ""), first)
                if shape == "json":
                    rest = [first] + [chunk async for chunk in chunks]
                    return self._completion(b"".join(rest), gate, headers)
                if shape != "sse":
                    raise ep.errors.protocol_error(not_a_stream(shape, headers.get("content-type"), first))
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
        except ep.network_errors as exc:  # httpx's, once a request went through the transport; a replay's: none
            raise ep.errors.translate(exc, during=state.progress()) from exc  # type: ignore[arg-type]
        finally:
            if resp is not None:
                await resp.aclose()
        return state.result()
