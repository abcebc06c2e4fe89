"""A small OpenAI-compatible HTTP/1.1 server on 127.0.0.1 for tests and benchmarks.

It speaks just enough HTTP (keep-alive, Content-Length requests, Content-Length or chunked answers) to
be scripted exactly: each request takes the next :class:`Plan` queued with :meth:`OAIServer.plan` (or
the default plan), which can answer JSON or server-sent events, stall before the first byte or between
chunks, answer any status with any headers, send malformed JSON, or drop the connection mid-stream.
Every request is recorded (path, headers, parsed JSON body).

In tests it runs on its own event loop in a background thread (:class:`OAIServer` as a context
manager), so each test drives the client with ``asyncio.run``. For benchmarks it runs as a process:
``python tests/oai_server.py --latency 0.05`` prints ``PORT <n>`` and serves until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import json
import sys
import threading
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

DEFAULT_USAGE = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}


def fake_embedding(text: str, dimensions: int) -> list[float]:
    """The vector the server returns for ``text``: deterministic, so tests can check each row."""
    base = sum(text.encode()) % 1000
    return [((base + 7 * j) % 101) / 101.0 for j in range(dimensions)]


@dataclass
class Plan:
    """How to answer one request.

    ``content`` is the reply text; streamed as ``tokens`` (default: the content cut into 4-character
    pieces). ``tool_calls`` is, for JSON answers, the message's tool_calls list; for streams, a list of
    delta ``tool_calls`` lists, one chunk each, sent after the content. ``body`` replaces the whole answer
    body (errors, malformed JSON). ``stall_before`` sleeps before the status line; ``stall_between`` sleeps
    before each stream chunk after the first (or only before chunk ``stall_at`` when given).
    ``drop_after`` closes the connection after that many stream chunks, with no end marker;
    ``drop_before_response`` closes it without answering. ``done`` sends ``data: [DONE]``. ``events``
    replaces the generated stream with these raw SSE chunks; ``force_json`` answers a streamed request
    with one JSON completion (as servers that ignore ``stream`` do); ``hold_open`` waits that long after
    the last event before ending the response body, ``hold_until`` until the test sets that event (at most
    10 s).

    Gateway behaviour (LiteLLM's proxy, vLLM, OpenAI), for the faults a gateway adds: ``stream_error`` is an
    error object sent as ``data: {"error": ...}`` after ``error_after`` content chunks (the stream then ends
    without ``[DONE]``, as LiteLLM's proxy ends it when its upstream breaks); ``error_event`` sends it as an
    SSE ``event: error`` instead. ``echo`` makes error messages (of an error status or of ``stream_error``)
    quote the request's headers, as some servers and proxies do: ``"lines"`` (one header a line),
    ``"folded"`` (each value folded onto a continuation line, HTTP's obs-fold), ``"json"`` (a JSON object),
    ``"escaped"`` (that object JSON-encoded once more, as gateways quote an upstream's body) or ``"query"``
    (percent-encoded). ``content_type`` replaces the answer's Content-Type. ``wait`` holds the answer until
    the test sets that event (at most 10 s): a test bounds a fault by what it saw, not by a sleep. It may be
    a ``threading.Barrier`` shared by several plans: each answer then waits until that many requests are
    held at once (concurrency seen by the server, not inferred from timings).

    Structured outputs (issue 16): ``json_reply`` replaces ``content`` with a reply made from the schema the
    request's ``response_format`` carries (``json_schema``; for ``json_object`` or none, the schema the
    system message quotes after "JSON Schema"): ``"valid"`` a value that matches it, ``"invalid"`` one whose
    first property has the wrong type, ``"truncated"`` a valid one cut off in the middle (as a reply that hit
    ``max_tokens``, with ``finish_reason: length``).
    """

    status: int = 200
    content: str = "Hello, world!"
    tokens: list[str] | None = None
    tool_calls: list[Any] | None = None
    finish_reason: str = "stop"
    usage: dict[str, int] | None = field(default_factory=lambda: dict(DEFAULT_USAGE))
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    stall_before: float = 0.0
    stall_between: float = 0.0
    stall_at: int | None = None
    drop_after: int | None = None
    drop_before_response: bool = False
    done: bool = True
    dimensions: int = 8
    events: list[bytes] | None = None
    force_json: bool = False
    hold_open: float = 0.0
    stream_error: dict[str, Any] | None = None
    error_after: int = 0
    error_event: bool = False
    echo: str | None = None
    content_type: str | None = None
    wait: threading.Event | threading.Barrier | None = None
    hold_until: threading.Event | None = None
    json_reply: str | None = None


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class OAIServer:
    """The scripted server; use as a context manager (starts a thread) or :meth:`serve` (in-process)."""

    def __init__(self, *, api_key: str | None = None, latency: float = 0.0) -> None:
        self.api_key = api_key
        self.latency = latency
        self.default = Plan()
        self.responder: Any = None  # body -> Plan | None, consulted when no plan is queued
        self.plans: collections.deque[Plan] = collections.deque()
        # per model name (the request body's "model"): plans queued for it, and its default plan; both win
        # over the shared queue and default, so one server can stand for a failing model and its fallback
        self.model_plans: dict[str, collections.deque[Plan]] = {}
        self.model_default: dict[str, Plan] = {}
        self.requests: list[Recorded] = []
        self.port = 0
        self.connections = 0
        self.in_flight = 0  # requests received and not yet answered
        self.max_in_flight = 0
        self._received = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def plan(self, *plans: Plan) -> None:
        self.plans.extend(plans)

    def plan_for(self, model: str, *plans: Plan) -> None:
        """Queue ``plans`` for the requests naming ``model``."""
        self.model_plans.setdefault(model, collections.deque()).extend(plans)

    def reset(self) -> None:
        self.plans.clear()
        self.model_plans.clear()
        self.model_default.clear()
        self.requests.clear()
        self.default = Plan()
        self.responder = None
        self.api_key = None
        self.connections = 0
        self.in_flight = self.max_in_flight = 0

    # -- running ---------------------------------------------------------------------------------------
    async def start(self, port: int = 0) -> None:
        self._loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", port, backlog=4096)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def __enter__(self) -> OAIServer:
        started = threading.Event()

        def main() -> None:
            loop = asyncio.new_event_loop()
            loop.run_until_complete(self.start())
            started.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())
            loop.close()

        self._thread = threading.Thread(target=main, name="oai-server", daemon=True)
        self._thread.start()
        started.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._thread is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def wait_for_requests(self, n: int, timeout: float = 10) -> bool:
        """Block (in a thread other than the server's) until ``n`` requests have been received since the last
        reset: a test acts once the server holds the requests, not after a sleep. False after ``timeout``."""
        with self._received:
            return self._received.wait_for(lambda: len(self.requests) >= n, timeout)

    def end_connections(self) -> None:
        """End every connection the server holds now, from any thread: a test done with answers held back by
        ``latency`` or a stall need not wait for them to close their sockets."""
        assert self._loop is not None

        def cancel() -> None:
            for task in list(self._tasks):
                task.cancel()

        self._loop.call_soon_threadsafe(cancel)

    # -- HTTP --------------------------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                raw = await reader.readexactly(int(headers.get("content-length", "0")))
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw
                self.requests.append(Recorded(method, path, headers, body))
                with self._received:
                    self._received.notify_all()
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                try:
                    keep_open = await self._answer(writer, path, headers, body)
                finally:
                    self.in_flight -= 1
                if not keep_open:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        except asyncio.CancelledError:  # the server is stopping: end quietly
            return
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _answer(self, writer: asyncio.StreamWriter, path: str, headers: dict[str, str], body: Any) -> bool:
        model = body.get("model") if isinstance(body, dict) else None
        queued = self.model_plans.get(model) if isinstance(model, str) else None
        if queued:
            plan = queued.popleft()
        elif self.plans:
            plan = self.plans.popleft()
        elif self.responder is not None and (answered := self.responder(body)) is not None:
            plan = answered  # a test's model of a server that answers by what it is asked
        else:
            plan = self.model_default.get(model, self.default) if isinstance(model, str) else self.default
        if self.latency:
            await asyncio.sleep(self.latency)
        if plan.stall_before:
            await asyncio.sleep(plan.stall_before)
        if plan.wait is not None:
            await asyncio.to_thread(plan.wait.wait, 10)
        if plan.drop_before_response:
            return False
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            given = headers.get("authorization", "").removeprefix("Bearer ")
            error = {
                "error": {
                    "message": f"Incorrect API key provided: {given}.",
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                }
            }
            self._send(writer, 401, json.dumps(error).encode(), {})
            return True
        if plan.body is not None or plan.status != 200:
            message = f"scripted error {plan.status}" + echo_headers(plan.echo, headers)
            payload = (
                plan.body
                if plan.body is not None
                else json.dumps({"error": {"message": message, "type": "server_error"}}).encode()
            )
            self._send(writer, plan.status, payload, plan.headers, plan.content_type)
            return True
        if path.endswith("/embeddings"):
            texts = body["input"]
            data = [
                {"object": "embedding", "index": i, "embedding": fake_embedding(t, plan.dimensions)}
                for i, t in enumerate(texts)
            ]
            answer = {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": len(texts), "total_tokens": len(texts)},
            }
            self._send(writer, 200, json.dumps(answer).encode(), plan.headers)
            return True
        model = body.get("model", "") if isinstance(body, dict) else ""
        if plan.json_reply is not None and isinstance(body, dict):
            plan = structured_plan(plan, body)
        if isinstance(body, dict) and body.get("stream") and not plan.force_json:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return await self._stream(writer, plan, model, include_usage, headers)
        message: dict[str, Any] = {"role": "assistant", "content": plan.content}
        if plan.tool_calls:
            message["tool_calls"] = plan.tool_calls
        answer = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": plan.finish_reason}],
            "usage": plan.usage,
        }
        self._send(writer, 200, json.dumps(answer).encode(), plan.headers, plan.content_type)
        return True

    @staticmethod
    def _send(
        writer: asyncio.StreamWriter,
        status: int,
        payload: bytes,
        headers: dict[str, str],
        content_type: str | None = None,
    ) -> None:
        head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(payload)}"]
        if content_type != "":
            head.insert(1, f"Content-Type: {content_type or 'application/json'}")
        head += [f"{k}: {v}" for k, v in headers.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)

    async def _stream(
        self, writer: asyncio.StreamWriter, plan: Plan, model: str, include_usage: bool, request: dict[str, str]
    ) -> bool:
        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            event = {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return b"data: " + json.dumps(event).encode() + b"\n\n"

        tokens = (
            plan.tokens
            if plan.tokens is not None
            else [plan.content[i : i + 4] for i in range(0, len(plan.content), 4)]
        )
        events = [chunk({"role": "assistant", "content": ""})]
        events += [chunk({"content": t}) for t in tokens]
        if plan.stream_error is not None:
            error = dict(plan.stream_error)
            error["message"] = str(error.get("message", "")) + echo_headers(plan.echo, request)
            data = json.dumps({"error": error}).encode()
            line = (b"event: error\n" if plan.error_event else b"") + b"data: " + data + b"\n\n"
            events = events[: 1 + plan.error_after] + [line]
        events += [chunk({"tool_calls": calls}) for calls in plan.tool_calls or ()]
        events.append(chunk({}, plan.finish_reason))
        if include_usage and plan.usage is not None:
            usage = {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": [],
                "usage": plan.usage,
            }
            events.append(b"data: " + json.dumps(usage).encode() + b"\n\n")
        if plan.stream_error is None and plan.done:
            events.append(b"data: [DONE]\n\n")
        if plan.events is not None:
            events = list(plan.events)
        content_type = plan.content_type if plan.content_type is not None else "text/event-stream"
        head = [f"HTTP/1.1 {plan.status} OK", "Transfer-Encoding: chunked"]
        if content_type:
            head.insert(1, f"Content-Type: {content_type}")
        head += [f"{k}: {v}" for k, v in plan.headers.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        for index, event in enumerate(events):
            if plan.drop_after is not None and index >= plan.drop_after:
                await writer.drain()
                writer.close()  # FIN mid-body: the client reads what came, then an incomplete chunked body
                return False
            if index and plan.stall_between and (plan.stall_at is None or plan.stall_at == index):
                await writer.drain()
                await asyncio.sleep(plan.stall_between)
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
        if plan.hold_open:
            await writer.drain()
            await asyncio.sleep(plan.hold_open)
        if plan.hold_until is not None:
            await writer.drain()
            await asyncio.to_thread(plan.hold_until.wait, 10)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True


def requested_schema(body: dict[str, Any]) -> Any:
    """The schema a chat request asks its reply to match: ``response_format``'s json_schema, else the one the
    system message quotes (JSON mode, or a prompt-only request), else None."""
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        return response_format["json_schema"]["schema"]
    for message in body.get("messages", ()):
        content = message.get("content")
        if message.get("role") == "system" and isinstance(content, str) and "JSON Schema" in content:
            return json.loads(content[content.index("{", content.index("JSON Schema")) :].splitlines()[0])
    return None


def instance(schema: Any) -> Any:
    """A value matching ``schema``, for the subset of JSON Schema tests use (made here, independently of
    runner.structured, so a test of the provider does not check runner against itself)."""
    if not isinstance(schema, dict):
        return {}
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][-1]
    kind = schema.get("type", "object")
    kind = kind[0] if isinstance(kind, list) else kind
    if kind == "object":
        return {name: instance(sub) for name, sub in schema.get("properties", {}).items()}
    if kind == "array":
        return [instance(schema.get("items", {})) for _ in range(max(1, schema.get("minItems", 0)))]
    if kind == "string":
        return "s" * max(3, schema.get("minLength", 0))
    if kind in ("integer", "number"):
        return max(7, schema.get("minimum", 0))
    if kind == "boolean":
        return True
    return None


def structured_plan(plan: Plan, body: dict[str, Any]) -> Plan:
    """``plan`` with its content made from the request's schema (see ``Plan.json_reply``)."""
    value = instance(requested_schema(body))
    if plan.json_reply == "invalid":
        if isinstance(value, dict) and value:
            first = next(iter(value))
            value[first] = [] if not isinstance(value[first], list) else "not a list"
        else:
            value = "not what the schema wants"
    text = json.dumps(value)
    finish = plan.finish_reason
    if plan.json_reply == "truncated":
        text, finish = text[: len(text) // 2], "length"
    tokens = [text[i : i + 4] for i in range(0, len(text), 4)] if plan.tokens is None else plan.tokens
    return dataclasses.replace(plan, content=text, tokens=tokens, finish_reason=finish, json_reply=None)


def echo_headers(form: str | None, headers: dict[str, str]) -> str:
    """The request's headers quoted in an error message, in the given form (see :class:`Plan`)."""
    if form is None:
        return ""
    shown = {k: v for k, v in headers.items() if k not in ("content-length",)}
    if form == "lines":
        return "; request headers:\r\n" + "\r\n".join(f"{k}: {v}" for k, v in shown.items())
    if form == "folded":
        return "; request headers:\r\n" + "\r\n".join(
            f"{k}: {v[: len(v) // 2]}\r\n {v[len(v) // 2 :]}" for k, v in shown.items()
        )
    if form == "json":
        return "; request headers: " + json.dumps(shown)
    if form == "escaped":
        return "; upstream said: " + json.dumps(json.dumps({"headers": shown}))
    if form == "query":
        return "; request: /v1/chat/completions?" + urllib.parse.urlencode(shown)
    raise ValueError(f"unknown echo form {form!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="OpenAI-compatible loopback server with fixed latency")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--tokens", type=int, default=8, help="stream chunks per answer")
    # bench/evals.py: a structured output's request answered with a value of its schema (issue 24)
    parser.add_argument("--json", action="store_true", help="answer a request for a schema with a value of it")
    args = parser.parse_args(argv)

    async def serve() -> None:
        server = OAIServer(latency=args.latency)
        server.default = Plan(content="tok " * args.tokens, tokens=["tok "] * args.tokens)
        if args.json:
            server.default = Plan(json_reply="valid")
        server.requests = _Discard()
        await server.start(args.port)
        print(f"PORT {server.port}", flush=True)
        await asyncio.Event().wait()

    try:
        import uvloop

        uvloop.run(serve())
    except ImportError:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
    return 0


class _Discard(list[Recorded]):
    """A benchmark server keeps no requests."""

    def append(self, item: Recorded) -> None:
        pass


if __name__ == "__main__":
    sys.exit(main())
