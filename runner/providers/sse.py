"""A pure, incremental parser for server-sent events (the ``text/event-stream`` format).

Bytes go in as they arrive from the network, in chunks cut anywhere (inside a line, inside a
``\\r\\n`` pair, inside a multi-byte UTF-8 character); complete events come out. No I/O, no clock, no
asyncio: the provider feeds it and the tests feed it every possible chunk boundary.

Follows the WHATWG "event stream interpretation" rules (line ends ``\\r\\n``, ``\\n`` or ``\\r``; ``data``
lines joined by ``\\n``; comment lines start with ``:``; one optional space after the colon; a leading
BOM is skipped; an event with no ``data`` is not dispatched) with one deliberate difference, see
:meth:`SSEDecoder.flush`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One dispatched event. ``id`` is the last event id seen on the stream (it persists, as the
    spec says); ``retry`` is the reconnection time in milliseconds when this event set one."""

    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None


class SSEDecoder:
    """Incremental decoder: ``feed(chunk) -> list[ServerSentEvent]`` as bytes arrive, then ``flush()``
    once the stream ends."""

    __slots__ = ("_buffer", "_pending_cr", "_started", "_data", "_event", "_last_id", "_retry")

    def __init__(self) -> None:
        self._buffer = b""
        self._pending_cr = False  # the previous chunk ended in "\r": a "\n" starting the next is its pair
        self._started = False  # a UTF-8 BOM is skipped at the very start of the stream only
        self._data: list[str] = []
        self._event = ""
        self._last_id: str | None = None
        self._retry: int | None = None

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        if not chunk:
            return []
        if self._pending_cr:
            self._pending_cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        buffer = self._buffer + chunk if self._buffer else chunk
        if not self._started:
            if len(buffer) < 3 and b"\xef\xbb\xbf".startswith(buffer):
                self._buffer = buffer  # could still be the start of a BOM
                return []
            self._started = True
            if buffer.startswith(b"\xef\xbb\xbf"):
                buffer = buffer[3:]
        # bytes.splitlines splits on exactly \r\n, \n and \r: the three SSE line ends. Cutting the bytes
        # (not decoded text) is safe because no UTF-8 continuation byte equals \r or \n.
        lines = buffer.splitlines(keepends=True)
        if lines and not lines[-1].endswith((b"\n", b"\r")):
            self._buffer = lines.pop()
        else:
            self._buffer = b""
            self._pending_cr = bool(lines) and lines[-1].endswith(b"\r")
        events: list[ServerSentEvent] = []
        for raw in lines:
            self._line(raw.rstrip(b"\r\n"), events)
        return events

    def flush(self) -> list[ServerSentEvent]:
        """End of stream. Unlike the browser rule (which drops an event not closed by a blank line), a
        final unterminated line and the event it belongs to are dispatched: several OpenAI-compatible
        servers end their stream with ``data: [DONE]\\n`` and no blank line."""
        events: list[ServerSentEvent] = []
        if self._buffer:
            line, self._buffer = self._buffer, b""
            if not self._started and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
            self._line(line, events)
        self._line(b"", events)
        self._pending_cr = False
        return events

    def _line(self, raw: bytes, events: list[ServerSentEvent]) -> None:
        if not raw:
            if self._data:
                events.append(
                    ServerSentEvent("\n".join(self._data), self._event or "message", self._last_id, self._retry)
                )
            self._data = []
            self._event = ""
            self._retry = None
            return
        line = raw.decode("utf-8", errors="replace")
        if line[0] == ":":
            return
        name, sep, value = line.partition(":")
        if sep and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
        elif name == "retry":
            if value.isascii() and value.isdigit():
                self._retry = int(value)
        # any other field name is ignored, as the spec says
