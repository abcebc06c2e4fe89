"""Recording and replaying a run's model traffic: transports that wrap (record) or replace (replay) each
endpoint's own, at the one HTTP seam every model and embedder sends through (``runner/providers/transport.py``).

Only complete answers with a status below 400 are recorded: a replay reproduces what the model said, not the
network's weather on the day (a 429 or a dropped stream, already retried by the endpoint, would otherwise make
an instant replay wait out the same back-off). Requests' headers are never read, so the key and the proxy's
credentials cannot reach a cassette; of the answer's headers only those in
:data:`~runner.cassette.folder.KEPT_HEADERS` are kept.

A replayed request is answered above the HTTP objects (:meth:`TapeTransport.answer`, which the endpoint asks
first): its key is worked out once from the bytes the provider made, and the recording reaches the provider's
parsing as it was read from its file (a JSON answer as its parsed value, a stream as its chunks, fed to the same
SSE parser), with no ``httpx.Request`` or ``httpx.Response`` built and no JSON serialised again to be parsed
again: a third to two fifths less than through them (``bench/replay_overhead.py``). What goes to the
network (recording, a miss without ``--strict``) passes through :meth:`TapeTransport.handle_async_request`,
in httpx's types (:mod:`runner.cassette.recording`, imported then: a replay answered wholly from its cassette
imports no HTTP library).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from runner.cassette.folder import Cassette, Entry
from runner.cassette.keys import RequestKey, describe, diff_lines, request_key, similarity
from runner.errors import RunError
from runner.fsutil import sync_files
from runner.providers.transport import NODE, Body, Outgoing, Source, Transport

if TYPE_CHECKING:
    import httpx

Mode = Literal["record", "replay"]
Timing = Literal["instant", "recorded"]
MAX_DIFFED_MISSES = 10
"""Misses whose closest recorded request is searched for (each search reads the whole cassette); later misses
in the same run are named without it."""


class CassetteMiss(RunError):
    """A request that a strict replay found no recording for: names the node, the model, the closest recorded
    request and what differs from it."""


@dataclass
class Counts:
    replayed: int = 0
    recorded: int = 0
    used: set[Path] = field(default_factory=set)


class Tape:
    """A run's recorder or player (a :class:`runner.providers.transport.TransportWrapper`).

    ``mode`` ``record``: every request goes to the network and its answer is written to the cassette as the
    ``n``-th recording of its key, ``n`` counting the same request within this run (a recording made again
    replaces the one it repeats, so re-recording a workflow updates its entries instead of piling up copies;
    entries of other requests stay). ``replay``: the ``n``-th same request is answered by the ``n``-th
    recording, without the network; a request with no recording fails when ``strict`` (:class:`CassetteMiss`),
    else goes to the network and is recorded (as vcrpy's ``new_episodes``). ``timing`` ``recorded`` replays
    each answer's latency and the offsets of its streamed chunks; ``instant`` answers at once.
    """

    def __init__(self, cassette: Cassette, mode: Mode, *, strict: bool = False, timing: Timing = "instant") -> None:
        self.cassette = cassette
        self.mode = mode
        self.strict = strict
        self.timing = timing
        self.counts = Counts()
        self.needs_key = mode == "record"  # a replay needs the key only for a request it has no answer to
        self.misses: list[CassetteMiss] = []
        self._seen: dict[str, int] = {}
        self._failed: dict[tuple[str, str], int] = {}
        self._written: list[Path] = []

    def wrap(self, make_inner: Callable[[], Transport], source: Source) -> Transport:
        return TapeTransport(self, make_inner, source)

    def take(self, key: str, node: str) -> int:
        """The number of this request among the same ones sent in this run (1 for the first). A node's retry
        of a request whose answer was not recorded keeps the number of the attempt it repeats."""
        n = self._failed.pop((key, node), None)
        if n is not None:
            return n
        n = self._seen.get(key, 0) + 1
        self._seen[key] = n
        return n

    def peek(self, key: str) -> int:
        """The number the next request with ``key`` will take (see :meth:`take`; a retry's may differ)."""
        return self._seen.get(key, 0) + 1

    def failed(self, key: str, node: str, n: int) -> None:
        """The attempt numbered ``n`` got no answer to record: the node's retry takes its number."""
        self._failed[(key, node)] = n

    def save(self, key: RequestKey, n: int, recorded: dict[str, Any], response: dict[str, Any]) -> None:
        path = self.cassette.write(key.digest, n, key.request, recorded, response)
        self._written.append(path)
        self.counts.recorded += 1
        self.counts.used.add(path)

    async def flush(self) -> None:
        """Flush what was written to the disk (entries are written without waiting for the device, then synced
        together here, off the loop)."""
        written, self._written = self._written, []
        if written:
            await asyncio.to_thread(sync_files, written)

    def miss(self, key: RequestKey, n: int, source: Source, node: str) -> CassetteMiss:
        """The error for a strict replay's request that has no recording."""
        model = f"{source.kind} {source.name!r}" if source.name else source.kind
        body = key.request.get("body")
        wire = body.get("model") if isinstance(body, dict) else None
        who = f"stage {node!r}: " if node else ""
        head = f"{who}{model}" + (f" ({wire})" if wire else "")
        earlier = sum(1 for p in self.cassette.index.get(key.digest[:16], ()) if p < n)
        if earlier:
            miss = CassetteMiss(
                f"{head}: the same request was made {n} times, but cassette {self.cassette.path} holds "
                f"{earlier} recording(s) of it (--strict); record the workflow again with "
                f"`runner run WF --record {self.cassette.path}`"
            )
        elif len(self.misses) >= MAX_DIFFED_MISSES:
            miss = CassetteMiss(f"{head}: the request is not in cassette {self.cassette.path} (--strict)")
        else:
            miss = CassetteMiss(self._explain(head, key))
        self.misses.append(miss)
        return miss

    def _explain(self, head: str, key: RequestKey) -> str:
        sent = describe(key.request)
        best: tuple[float, Entry, list[str]] | None = None
        for entry in self.cassette.entries():
            if entry.request.get("path") != key.request.get("path"):
                continue
            lines = describe(entry.request)
            score = similarity(lines, sent)
            if best is None or score > best[0]:
                best = (score, entry, lines)
        where = f"cassette {self.cassette.path}"
        fix = (
            f"hint: if the change is intended, record again with `runner run WF --record {self.cassette.path}` "
            "(or replay without --strict to record only the new requests)"
        )
        if best is None:
            path = key.request.get("path")
            return f"{head}: the request is not in {where}, which holds no request to {path} (--strict)\n{fix}"
        _, entry, lines = best
        by = entry.recorded.get("node")
        origin = f"{entry.path.name}" + (f", recorded by stage {by!r}" if by else "")
        diff = "\n".join("    " + line for line in diff_lines(lines, sent))
        return (
            f"{head}: the request is not in {where} (--strict); the closest recorded request ({origin}) "
            f"differs:\n{diff}\n{fix}"
        )


class TapeTransport:
    """The transport of one endpoint during a recorded or replayed run (see :class:`Tape`): httpx's transport
    interface (:class:`~runner.providers.transport.Transport`), without httpx's base class, so that making one
    imports no HTTP library."""

    def __init__(self, tape: Tape, make_inner: Callable[[], Transport], source: Source) -> None:
        self._tape = tape
        self._make_inner = make_inner
        self._inner: Transport | None = None
        self._source = source
        self._prefix = len(source.base_path)

    def _path(self, request: httpx.Request) -> str:
        path = request.url.path
        return path[self._prefix :] if path.startswith(self._source.base_path) else path

    def _key(self, request: Outgoing) -> RequestKey:
        """``request``'s key, worked out once for all its attempts. From the bytes sent, as a recording's is:
        the body the provider built could give another canonical text (a ``logit_bias`` read from YAML has
        integer keys, which JSON makes strings and sorts differently), and parsing the bytes costs ~4 us."""
        key = request.memo
        if not isinstance(key, RequestKey):
            key = request.memo = request_key(self._source.provider, request.path, request.payload)
        return key

    def answers(self, request: Outgoing) -> bool:
        """Whether a replay answers this request from the cassette (the endpoint then spends no rate-limit
        budget on it)."""
        tape = self._tape
        if tape.mode != "replay":
            return False
        key = self._key(request)
        return tape.cassette.has(key.digest, tape.peek(key.digest))

    async def answer(self, request: Outgoing, node: str) -> Replayed | None:
        """A replay's answer to ``request``, its recording as it was kept (no HTTP request or response is
        made); None when it goes to the network after all (not strict, not recorded: then
        :meth:`handle_async_request` sends and records it, under the same number)."""
        tape = self._tape
        if tape.mode != "replay":
            return None
        key = self._key(request)
        n = tape.take(key.digest, node)
        entry = tape.cassette.read(key.digest, n)
        if entry is None:
            if tape.strict:
                raise tape.miss(key, n, self._source, node)
            tape.failed(key.digest, node, n)  # not answered here: the request that is sent keeps its number
            return None
        tape.counts.replayed += 1
        tape.counts.used.add(entry.path)
        replayed = Replayed(entry.response, time.perf_counter() if tape.timing == "recorded" else None)
        await replayed.until(float(entry.response.get("elapsed", 0.0)))  # the headers come when they came
        return replayed

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """A request that goes to the network: every request of a recording; of a replay, one that
        :meth:`answer` did not answer (the endpoint asks it first), which a strict replay refuses."""
        tape = self._tape
        key = request_key(self._source.provider, self._path(request), request.content)
        node = str(request.extensions.get(NODE, ""))
        n = tape.take(key.digest, node)
        if tape.mode == "replay" and tape.strict:
            raise tape.miss(key, n, self._source, node)
        try:
            return await self._record(request, key, n, node)
        except BaseException:
            tape.failed(key.digest, node, n)
            raise

    async def _record(self, request: httpx.Request, key: RequestKey, n: int, node: str) -> httpx.Response:
        if self._inner is None:
            self._inner = self._make_inner()
        recorded = {"model": self._source.name, "node": node}
        tape = self._tape

        def save(response: dict[str, Any]) -> None:
            tape.save(key, n, recorded, response)

        from runner.cassette.recording import record_answer  # noqa: PLC0415 - httpx, for what goes to the network

        return await record_answer(self._inner, request, save, lambda: tape.failed(key.digest, node, n))

    async def aclose(self) -> None:
        try:
            if self._inner is not None:
                await self._inner.aclose()
        finally:
            await self._tape.flush()


class Replayed:
    """A recorded answer as the provider reads it (a :class:`~runner.providers.transport.Answer`): a whole
    JSON body as the value the cassette kept, a stream as its recorded chunks. ``started`` (a
    ``time.perf_counter()``): the answer keeps its recorded pace from then (``recorded`` timing); None: at once."""

    __slots__ = ("headers", "status", "_response", "_started")

    def __init__(self, response: dict[str, Any], started: float | None) -> None:
        self.status = int(response["status"])
        self.headers = {str(k).lower(): str(v) for k, v in response.get("headers", {}).items()}
        self._response = response
        self._started = started

    async def until(self, offset: float) -> None:
        """Wait until ``offset`` seconds after ``started`` (at once for an instant replay)."""
        if self._started is not None:
            delay = self._started + offset - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)

    async def read(self) -> Body:
        response = self._response
        if "chunks" in response:  # a request for a whole answer that was streamed anyway: its chunks joined
            pieces = self._pieces()
            await self.until(pieces[-1][0] if pieces else 0.0)
            return Body(b"".join(piece for _, piece in pieces))
        await self.until(float(response.get("end", 0.0)))
        return Body.of(response["json"]) if "json" in response else Body(self._text())

    def stream(self) -> _Pieces:
        response = self._response
        if "chunks" in response:
            return _Pieces(self, self._pieces())
        # a streamed request answered whole (a server that ignores "stream": true): the body, at its end
        whole = Body.of(response["json"]).content if "json" in response else self._text()
        return _Pieces(self, [(float(response.get("end", 0.0)), whole)])

    def _text(self) -> bytes:
        return str(self._response.get("text", "")).encode("utf-8", "surrogateescape")

    def _pieces(self) -> list[tuple[float, bytes]]:
        return [
            (float(offset), str(text).encode("utf-8", "surrogateescape"))
            for offset, text in self._response.get("chunks", ())
        ]


class _Pieces:
    """A recorded stream's chunks, each handed on at its recorded offset (see :meth:`Replayed.until`). An
    iterator with nothing to close, so a reader that stops early leaves nothing behind."""

    __slots__ = ("_answer", "_pieces", "_next")

    def __init__(self, answer: Replayed, pieces: list[tuple[float, bytes]]) -> None:
        self._answer = answer
        self._pieces = pieces
        self._next = 0

    def __aiter__(self) -> _Pieces:
        return self

    async def __anext__(self) -> bytes:
        if self._next >= len(self._pieces):
            raise StopAsyncIteration
        offset, piece = self._pieces[self._next]
        self._next += 1
        await self._answer.until(offset)
        return piece
