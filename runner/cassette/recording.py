"""What a recording sends and keeps, in httpx's types: the answer passed on to the provider as it comes and kept
as an entry's ``response`` once complete (:func:`record_answer`, for a cassette and for the response cache).

A module of its own, imported when a request goes to the network, so that a replay answered wholly from its
cassette (:meth:`runner.cassette.tape.TapeTransport.answer`, the one way a recording is replayed) never imports
httpx.
"""

from __future__ import annotations

import codecs
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from runner.cassette.folder import KEPT_HEADERS
from runner.providers.transport import READ_ALL, Transport


async def record_answer(
    inner: Transport,
    request: httpx.Request,
    save: Callable[[dict[str, Any]], None],
    failed: Callable[[], None],
) -> httpx.Response:
    """Send ``request`` through ``inner`` and hand on its answer; ``save`` gets the answer as an entry's
    ``response`` once it is complete (the whole body read), ``failed`` is called when there is none to keep:
    an error status, or a body cut short."""
    started = time.perf_counter()
    answer = await inner.handle_async_request(request)
    if answer.status_code >= 400:
        failed()
        return answer  # errors are not recorded (see the module's docstring)
    elapsed = time.perf_counter() - started
    headers = {k: v for k in KEPT_HEADERS if (v := answer.headers.get(k)) is not None}
    head = {"status": answer.status_code, "headers": headers, "elapsed": round(elapsed, 6)}
    # the body is handed on decoded (httpx undoes any Content-Encoding), so those headers do not follow it
    passed = [(k, v) for k, v in answer.headers.multi_items() if k not in _BODY_HEADERS]
    if request.extensions.get(READ_ALL):
        try:
            body = await answer.aread()
        finally:
            await answer.aclose()
        end = round(time.perf_counter() - started, 6)
        save({**head, **_body(body), "end": end})
        return httpx.Response(
            answer.status_code, headers=passed, content=body, request=request, extensions=answer.extensions
        )
    stream = _Recording(answer, started, lambda chunks: save({**head, "chunks": chunks}), failed)
    return httpx.Response(
        answer.status_code, headers=passed, stream=stream, request=request, extensions=answer.extensions
    )


_BODY_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})


def _body(body: bytes) -> dict[str, Any]:
    """A whole answer as it is kept: its JSON (readable, diffable) or, when it is not JSON, its text."""
    try:
        return {"json": json.loads(body)}
    except ValueError:
        return {"text": body.decode("utf-8", "surrogateescape")}


class _Recording(httpx.AsyncByteStream):
    """The body of an answer being recorded: each chunk is passed on as it comes and kept with its offset; the
    entry is saved when the body was read to its end (a stream cut short is not a recording)."""

    def __init__(
        self,
        inner: httpx.Response,
        started: float,
        save: Callable[[list[list[Any]]], None],
        failed: Callable[[], None],
    ) -> None:
        self._inner = inner
        self._started = started
        self._save = save
        self._failed = failed
        self._saved = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunks: list[list[Any]] = []
        # a multi-byte character cut between two chunks stays whole in the recording: the decoder holds its
        # first bytes back for the next chunk
        decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        async for chunk in self._inner.aiter_bytes():
            text = decoder.decode(chunk)
            if text:
                chunks.append([round(time.perf_counter() - self._started, 6), text])
            yield chunk
        tail = decoder.decode(b"", final=True)
        if tail:
            chunks.append([round(time.perf_counter() - self._started, 6), tail])
        self._save(chunks)
        self._saved = True

    async def aclose(self) -> None:
        if not self._saved:
            self._failed()
        await self._inner.aclose()
