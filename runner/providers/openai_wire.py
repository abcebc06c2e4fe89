"""The OpenAI chat wire format as runner reads and writes it: request bodies, a JSON completion, a stream of
completion chunks, streamed tool calls assembled, and what an answer that is neither is (an HTML page, an
empty body). Pure functions and small records: no I/O, so each shape is tested on its own bytes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from runner.calls import ChatResult, ToolCall, Usage
from runner.providers.base import Message
from runner.providers.failures import Failures, snippet
from runner.providers.transport import Body


def read_usage(usage: Any) -> Usage:
    """An answer's ``usage``: its prompt and completion tokens, and of the prompt those read from the provider's
    prompt cache (``prompt_tokens_details.cached_tokens``, which ``pricing.cached_input`` prices)."""
    if not isinstance(usage, dict):
        return Usage()
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0), int(cached or 0))


def dumps(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def estimate_tokens(messages: Sequence[Message], params: Mapping[str, Any]) -> float:
    """A request's tokens for the rate limiter before the server counts them: about 4 characters per
    prompt token, plus the most the reply may use."""
    chars = 0
    for message in messages:
        content = message.get("content")
        chars += len(content) if isinstance(content, str) else len(json.dumps(content or ""))
    reply = params.get("max_completion_tokens") or params.get("max_tokens") or 0
    return chars / 4 + (reply if isinstance(reply, int | float) else 0)


class ToolCallBuilder:
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


def tool_calls(raw: Any) -> tuple[ToolCall, ...]:
    builder = ToolCallBuilder()
    builder.add([{**call, "index": i} for i, call in enumerate(raw or ())])
    return builder.result()


def read_completion(content: bytes | Body, errors: Failures, headers: Mapping[str, str] | None = None) -> ChatResult:
    """The reply in a JSON chat completion (``headers``: the answer's, for the error a 200 answer reports). A
    :class:`~runner.providers.transport.Body` already parsed (a replayed answer) is read as it is."""
    body = content if isinstance(content, Body) else Body(content)
    if not body.parsed and looks_like_html(body.content, headers):
        raise errors.protocol_error(
            f"the server answered with an HTML page, not a chat completion: {snippet(body.content)}"
        )
    try:
        data = body.json()
        if not isinstance(data, dict):
            raise TypeError("the answer is not a JSON object")
        error = error_object(data)
        if error is not None:  # some servers answer errors with status 200
            raise errors.reported_error(error, "in a 200 answer", headers)
        choices = data.get("choices")
        if not choices and isinstance(choices, list | None):
            # the same rule as a stream's (see StreamState.result): an answer must carry a choice
            what = "is empty" if isinstance(choices, list) else "is missing"
            raise errors.protocol_error(f'the answer has no choice: its "choices" {what}: {snippet(body.content)}')
        choice = data["choices"][0]
        message = choice["message"]
        text = message.get("content") or ""
        if not isinstance(text, str):
            raise TypeError("message.content is not text")
        usage = data.get("usage") or {}
        return ChatResult(
            content=text,
            usage=read_usage(usage),
            tool_calls=tool_calls(message.get("tool_calls")),
            finish_reason=str(choice.get("finish_reason") or "stop"),
            model=model if isinstance(model := data.get("model"), str) else None,
        )
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise errors.protocol_error(
            f"the answer is not a chat completion ({type(exc).__name__}: {exc}): {snippet(body.content)}"
        ) from exc


_SSE_FIELDS = (b"data:", b"event:", b"id:", b"retry:", b":", b"data\n", b"data\r")


def answer_shape(content_type: str, first: bytes) -> str:
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


def looks_like_html(content: bytes, headers: Mapping[str, str] | None) -> bool:
    head = content[:256].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<?xml", b"<!--")):
        return True
    media = (headers.get("content-type", "") if headers is not None else "").partition(";")[0].strip().lower()
    return media in ("text/html", "application/xhtml+xml") and head[:1] == b"<"


def not_a_stream(shape: str, content_type: str | None, first: bytes) -> str:
    declared = f"Content-Type: {content_type}" if content_type else "no Content-Type"
    if shape == "empty":
        return f"the server answered 200 with an empty body ({declared}), not a stream of events"
    what = "an HTML page" if shape == "html" else "something else"
    return f"the server answered with {what} ({declared}), not a stream of events: {snippet(first)}"


def error_object(data: Any) -> Any:
    """The error a JSON body reports, or None: OpenAI's ``{"error": {...}}`` (or a bare string), or vLLM's
    older top-level ``{"object": "error", "message": ..., "code": ...}``."""
    if not isinstance(data, dict):
        return None
    if data.get("error"):
        return data["error"]
    if data.get("object") == "error":
        return data
    return None


class StreamState:
    """What one streamed attempt has received so far: ``event()`` takes each server-sent event's data (and
    type), passes reply text on to ``push`` as it comes, and raises the error an event reports; ``result()``
    is the reply once the stream has ended, or the error saying why it is incomplete."""

    def __init__(self, errors: Failures, push: Callable[[str], None]) -> None:
        self.errors = errors
        self.push = push
        self.headers: Mapping[str, str] | None = None
        self.parts: list[str] = []
        self.tools = ToolCallBuilder()
        self.first_token_at: float | None = None
        self.alive = False  # any token, reasoning included: the stall timers switch from first_token to idle
        self.finish: str | None = None
        self.usage = Usage()
        self.done = False
        self.chunks = 0
        self.choices = 0  # events that carried a choice
        self.model: str | None = None  # the model that answers, as its first event names it

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
                raise self.errors.reported_error(data, f"mid-stream{self.progress()}", self.headers) from exc
            what = f"malformed JSON in the stream{self.progress()}: {snippet(data)}"
            raise self.errors.protocol_error(what) from exc
        error = error_object(obj)
        if error is None and kind == "error":
            error = obj
        if error is not None:
            raise self.errors.reported_error(error, f"mid-stream{self.progress()}", self.headers)
        if not isinstance(obj, dict):
            raise self.errors.protocol_error(f"unexpected stream event{self.progress()}: {snippet(data)}")
        self.chunks += 1
        if self.model is None and isinstance(model := obj.get("model"), str):
            self.model = model
        usage = obj.get("usage")
        if usage:
            self.usage = read_usage(usage)
        for choice in obj.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            self.choices += 1
            delta = choice.get("delta") or {}
            text = delta.get("content")
            got = False
            if text:
                self.parts.append(text)
                self.push(text)
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
            broken = self.errors.protocol_error(f"the stream ended before it was complete{self.progress()}")
            broken.kind = "read"
            raise broken
        if not self.choices:
            # the JSON path's rule too: a stream of events none of which carries a choice (a usage-only
            # last event with "choices": [], as OpenAI sends with include_usage, is fine after others)
            n = self.chunks
            raise self.errors.protocol_error(
                f"the answer has no choice: none of the {n} event{'' if n == 1 else 's'} of the stream had one "
                'in its "choices"'
            )
        return ChatResult(
            content="".join(self.parts),
            usage=self.usage,
            tool_calls=self.tools.result(),
            first_token_at=self.first_token_at,
            finish_reason=self.finish or "stop",
            model=self.model,
        )
