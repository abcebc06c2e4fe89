"""The built-in ``scripted`` provider: no network, a reply template, simulated latency and streaming.

It is how examples, tests and CI run without a key, and how the engine's own overhead is measured:
its only cost besides the simulated wait is one template render per call.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

from runner.calls import ChatResult, ToolCall, Usage
from runner.config.output import OutputSpec
from runner.config.scripted import ScriptedConfig
from runner.config.source import Loc, TemplateSrc
from runner.errors import RunError
from runner.providers.base import CallContext, Message
from runner.structured import NoExample, example_value
from runner.templates import Template, template_for

_TOKEN = re.compile(r"\s*\S+|\s+")
_new = object.__new__


def approx_tokens(text: str) -> int:
    """About four characters a token, as OpenAI's rule of thumb; at least 1 for non-empty text."""
    return (len(text) + 3) // 4


def _prompt_tokens(messages: Sequence[Message]) -> int:
    """About four characters a token over the messages' text (text parts of list-shaped content too)."""
    total = 0
    for m in messages:
        content = m.get("content")
        if type(content) is str:
            total += len(content)
        elif isinstance(content, list):
            total += sum(len(str(p.get("text", ""))) for p in content if isinstance(p, dict))
    return (total + 3) // 4


class Ticker:
    """Shared wake-ups at 1 ms resolution for one event loop.

    Thousands of simulated calls waiting the same latency would each arm a timer; here waiters whose
    due times fall in the same millisecond share one timer, and each waits on a future of its own (so
    cancelling one waiter never disturbs another). Wake-ups are never early, and late by under 1 ms.

    Due times are ``time.monotonic()`` readings, the clock both loops run on, rather than ``loop.time()``:
    uvloop's counts whole milliseconds (rounded down), so waits computed from it would end up to 1 ms early.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._buckets: dict[int, list[asyncio.Future[None]]] = {}

    def wait_until(self, when: float) -> asyncio.Future[None]:
        """A future done at ``when``, a ``time.monotonic()`` reading (rounded up to the next millisecond)."""
        tick = math.ceil(when * 1000.0)
        waiter: asyncio.Future[None] = self.loop.create_future()
        bucket = self._buckets.get(tick)
        if bucket is None:
            bucket = self._buckets[tick] = []
            self.loop.call_at(tick / 1000.0, self._fire, tick)
        bucket.append(waiter)
        return waiter

    def _fire(self, tick: int) -> None:
        for waiter in self._buckets.pop(tick, ()):
            if not waiter.done():
                waiter.set_result(None)


class ScriptedProvider:
    """Replies with its rendered ``reply`` template after ``first_token_ms``, then streams it word by word
    at ``tokens_per_second`` (all at once when 0).

    The common case (a latency, no ``turns``, the reply at once) is what thousands of fan-out branches
    use, so it costs no coroutine: :meth:`chat` returns a future, and the replies due in the same
    millisecond are rendered, streamed and answered by one timer callback at their first token.
    """

    def __init__(self, name: str, config: ScriptedConfig, *, transport: object = None) -> None:
        # transport: the provider factory's seam for HTTP providers (runner.providers.base.ProviderFactory);
        # a scripted model sends nothing, so it is not used
        self.name = name
        self.config = config
        self._reply = template_for(config.reply)
        self._first_token_s = config.first_token_ms / 1000.0
        self._token_interval = 1.0 / config.tokens_per_second if config.tokens_per_second > 0 else 0.0
        self._ticker: Ticker | None = None
        self._turn_replies = [template_for(t.reply) if t.reply is not None else None for t in config.turns]
        self._turn_fails = [template_for(t.fail) if t.fail is not None else None for t in config.turns]
        self._whole_reply_later = bool(self._first_token_s and not config.turns and not self._token_interval)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._due: dict[int, list[tuple[asyncio.Future[ChatResult], Sequence[Message], CallContext]]] = {}
        self._examples: dict[int, tuple[OutputSpec, str]] = {}  # id(output) -> (output, its built value as JSON)

    def _sleep(self, seconds: float) -> asyncio.Future[None]:
        ticker = self._ticker
        if ticker is None:
            ticker = self._ticker = Ticker(asyncio.get_running_loop())
        return ticker.wait_until(time.monotonic() + seconds)

    def chat(
        self,
        messages: Sequence[Message],
        ctx: CallContext,
        *,
        tools: Sequence[Mapping[str, Any]] = (),
    ) -> Awaitable[ChatResult]:
        if not self._whole_reply_later or ctx.output is not None:
            return self._chat(messages, ctx)
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        # Ticker's bucketing, written out here rather than shared: this runs once per fan-out branch, and a
        # call into a shared helper measured 2-3% of a 10,000-branch fan-out. Due at the next millisecond at or
        # after the first token, like Ticker.wait_until.
        tick = math.ceil((time.monotonic() + self._first_token_s) * 1000.0)
        reply: asyncio.Future[ChatResult] = loop.create_future()
        due = self._due.get(tick)
        if due is None:
            due = self._due[tick] = []
            loop.call_at(tick / 1000.0, self._answer, tick)
        due.append((reply, messages, ctx))
        return reply

    def _answer(self, tick: int) -> None:
        """The first token of every reply due at ``tick``: each is rendered, streamed whole and answered."""
        first = time.perf_counter()
        render = self._reply.render
        stream = self.config.stream
        for reply, messages, ctx in self._due.pop(tick, ()):
            if reply.done():  # the call was cancelled
                continue
            try:
                text = render(ctx.template_vars)
                if stream and text and ctx.on_token is not None:
                    ctx.on_token(text)
            except Exception as exc:  # noqa: BLE001 - the caller's failure: raised where it awaits the reply
                reply.set_exception(exc)
                continue
            # Usage(...) and ChatResult(text, usage, (), first): built field by field, without __init__ calls
            # (the engine's call_agent does the same; a test compares them with the usual build).
            usage = _new(Usage)
            usage.prompt_tokens = _prompt_tokens(messages)
            usage.completion_tokens = approx_tokens(text)
            usage.cached_tokens = 0
            result = _new(ChatResult)
            result.content = text
            result.usage = usage
            result.tool_calls = ()
            result.first_token_at = first if stream else None
            result.attempts = 1
            result.finish_reason = "stop"
            reply.set_result(result)

    async def _chat(self, messages: Sequence[Message], ctx: CallContext) -> ChatResult:
        config = self.config
        if config.turns:
            return await self._scripted_turn(messages, ctx)
        if self._first_token_s:
            await self._sleep(self._first_token_s)
        text = self._render(self._reply, ctx.template_vars, ctx)
        usage = Usage(_prompt_tokens(messages), approx_tokens(text))
        first = time.perf_counter()
        on_token = ctx.on_token if config.stream else None
        if not self._token_interval or not text:  # the whole reply at once
            if on_token is not None and text:
                on_token(text)
            return ChatResult(text, usage, (), first if config.stream else None)
        if on_token is None:  # nobody watches the stream: the reply is there once it is all generated
            await self._sleep(self._token_interval * (len(_TOKEN.findall(text)) - 1))
            return ChatResult(text, usage, (), first if config.stream else None)
        tokens = _TOKEN.findall(text)
        on_token(tokens[0])
        # Sleep to each token's due time, sending every token already due at once: one timer per wake-up
        # rather than per token keeps thousands of concurrent streams cheap.
        start, sent = first, 1
        while sent < len(tokens):
            due = start + sent * self._token_interval
            delay = due - time.perf_counter()
            if delay > 0:
                await self._sleep(delay)
            now = time.perf_counter()
            upto = min(len(tokens), int((now - start) / self._token_interval) + 1)
            upto = max(upto, sent + 1)
            on_token("".join(tokens[sent:upto]))
            sent = upto
        return ChatResult(text, usage, (), first)

    async def _scripted_turn(self, messages: Sequence[Message], ctx: CallContext) -> ChatResult:
        """The i-th model call of an agent's turn (``ctx.iteration``) plays ``turns[i]`` (past the list:
        ``reply``). The reply and argument templates also see ``tool_results``: the tool results in the
        context since the last user message, in order (working memory may have summarised older ones)."""
        last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
        since = messages[last_user + 1 :]
        iteration = ctx.iteration
        variables = {**ctx.template_vars, "tool_results": [m.get("content") for m in since if m.get("role") == "tool"]}
        turn = self.config.turns[iteration] if iteration < len(self.config.turns) else None
        fail = self._turn_fails[iteration] if turn is not None else None
        if fail is not None:
            message = fail.render(variables)
            if message:
                if self._first_token_s:
                    await self._sleep(self._first_token_s)
                raise RunError(f"model '{self.name}' (scripted) failed: {message}")
        if turn is not None and turn.tool_calls:
            calls = tuple(
                ToolCall(
                    f"call_{iteration}_{j}",
                    call.name,
                    json.dumps(_render_args(call.arguments, variables, call.templates, ())),
                )
                for j, call in enumerate(turn.tool_calls)
            )
            if self._first_token_s:
                await self._sleep(self._first_token_s)
            usage = Usage(_prompt_tokens(messages), sum(approx_tokens(c.arguments) for c in calls))
            return ChatResult(content="", usage=usage, tool_calls=calls, finish_reason="tool_calls")
        reply = (self._turn_replies[iteration] if turn is not None else None) or self._reply
        text = self._render(reply, variables, ctx)
        if self._first_token_s:
            await self._sleep(self._first_token_s)
        first = time.perf_counter()
        if self.config.stream and ctx.on_token is not None and text:
            ctx.on_token(text)
        usage = Usage(_prompt_tokens(messages), approx_tokens(text))
        return ChatResult(content=text, usage=usage, first_token_at=first if self.config.stream else None)

    def _render(self, reply: Template, variables: Mapping[str, Any], ctx: CallContext) -> str:
        """The reply's text: its template rendered; for a structured output and no ``reply`` written, a value
        built from the schema (the engine checks a written reply against the schema like any model's)."""
        output = ctx.output
        if output is None or self.config.reply_given or reply is not self._reply:
            return reply.render(variables)
        found = self._examples.get(id(output))
        if found is None or found[0] is not output:
            try:
                text = json.dumps(example_value(output.schema), ensure_ascii=False)
            except NoExample as exc:
                raise RunError(f"model '{self.name}' (scripted) cannot answer agent '{ctx.agent}': {exc}") from None
            found = self._examples[id(output)] = (output, text)
        return found[1]

    async def aclose(self) -> None:
        return None


def _render_args(
    value: Any,
    variables: Mapping[str, Any],
    templates: Mapping[tuple[str | int, ...], TemplateSrc],
    path: tuple[str | int, ...],
) -> Any:
    if isinstance(value, str):
        src = templates.get(path) or TemplateSrc(value, Loc("<scripted tool arguments>", 1, 1))
        return template_for(src).render(variables)
    if isinstance(value, Mapping):
        return {k: _render_args(v, variables, templates, (*path, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_args(v, variables, templates, (*path, i)) for i, v in enumerate(value)]
    return value
