"""The transport every OpenAI-compatible model and embedder sends through unless a program gives its own:
httpx's types over aiohttp's connection pool and HTTP/1.1 parser (why aiohttp, and why httpx's types above it:
:mod:`runner.providers.transport`).

A module of its own so that aiohttp (about 120 ms to import, aiohttp.connector alone half of it) is imported
only when a network transport is made (:func:`make_transport`, which the endpoint imports when it needs one): a
replay whose every request is in its cassette, or an offline run, never imports it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import httpx
import yarl

from runner.config.openai import PoolConfig
from runner.providers.transport import POOL_WAIT, READ_ALL


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An httpx transport that sends requests with one aiohttp session.

    At most ``pool.max_connections`` requests are in flight; more wait (FIFO) for a slot, up to the
    request's ``pool`` timeout, and the time waited is put in the response's extensions under
    :data:`POOL_WAIT`. Timeouts map as: ``connect`` -> aiohttp ``sock_connect``, ``read`` -> ``sock_read``
    (the longest wait for any bytes, headers included), ``write`` -> :class:`_BodyWatch` (aiohttp has no
    write timeout of its own). aiohttp errors become the httpx exceptions httpx's own transport raises, so
    the code above it reads any transport's failures the same way. aiohttp keeps every idle connection up to
    ``max_connections`` (``pool.max_keepalive_connections`` has no effect here) and closes it after
    ``keepalive_expiry`` seconds.

    The session is opened on first use (it must be created inside the running loop) and closed by
    :meth:`aclose`.
    """

    def __init__(self, pool: PoolConfig | None = None, proxy: str | None = None) -> None:
        self._pool = pool = pool or PoolConfig()
        # aiohttp does not send the credentials in a proxy URL's user-info: the Proxy-Authorization header is
        # built here, for the proxy only (on plain http requests, or on the CONNECT that opens a tunnel)
        self._proxy: yarl.URL | None = None
        self._proxy_headers: dict[str, str] | None = None
        if proxy is not None:
            url = yarl.URL(proxy)
            if url.user is not None:
                pair = f"{url.user}:{url.password or ''}".encode("latin-1")
                self._proxy_headers = {"Proxy-Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}
            self._proxy = url.with_user(None)
        self._session: aiohttp.ClientSession | None = None
        self._slots = asyncio.Semaphore(pool.max_connections)
        self._timeouts: dict[tuple[Any, Any], aiohttp.ClientTimeout] = {}
        self._urls: dict[str, yarl.URL] = {}

    def _open(self) -> aiohttp.ClientSession:
        connector = _WatchingConnector(
            limit=self._pool.max_connections,
            limit_per_host=0,
            keepalive_timeout=self._pool.keepalive_expiry,
            ttl_dns_cache=300,
        )
        # no cookie jar, no auto headers: httpx already built the exact request
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            timeout=aiohttp.ClientTimeout(total=None),
        )
        return self._session

    def _timeout(self, spec: Mapping[str, Any]) -> aiohttp.ClientTimeout:
        key = (spec.get("connect"), spec.get("read"))
        timeout = self._timeouts.get(key)
        if timeout is None:
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=key[0], sock_read=key[1])
            self._timeouts[key] = timeout
        return timeout

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        spec = request.extensions.get("timeout", {})
        session = self._session or self._open()
        waited = 0.0
        if self._slots.locked():
            started = time.perf_counter()
            try:
                async with asyncio.timeout(spec.get("pool")):
                    await self._slots.acquire()
            except TimeoutError as exc:
                raise httpx.PoolTimeout("timed out waiting for a free connection", request=request) from exc
            waited = time.perf_counter() - started
        else:
            await self._slots.acquire()  # free slot: returns at once, no suspension
        url = str(request.url)
        target = self._urls.get(url)
        if target is None:
            if len(self._urls) >= 64:  # one or two URLs per endpoint in practice; never grow without bound
                self._urls.clear()
            target = self._urls[url] = yarl.URL(url, encoded=True)
        # raw bytes decoded once here: Headers.multi_items() re-detects the encoding per request
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        proxy_headers = self._proxy_headers
        if proxy_headers is not None and target.scheme == "http":  # sent to the proxy, the first hop
            headers += proxy_headers.items()
            proxy_headers = None  # (on https, only the CONNECT carries them: never the tunnelled request)
        content = request.content
        write = spec.get("write")
        watch = _BodyWatch(content, write) if write is not None and len(content) > _BodyWatch.CHUNK else None
        token = _WATCH.set(watch) if watch is not None else None
        try:
            async with watch if watch is not None else contextlib.nullcontext():
                response = await session.request(
                    request.method,
                    target,
                    headers=headers,
                    data=watch.chunks() if watch is not None else content or None,
                    allow_redirects=False,
                    timeout=self._timeout(spec),
                    proxy=self._proxy,
                    proxy_headers=proxy_headers,
                )
        except BaseException as exc:
            self._slots.release()
            if watch is not None:
                watch.abandon()
                if watch.expired():
                    message = f"the server took no part of the body for {write:g} s"
                    raise httpx.WriteTimeout(message, request=request) from exc
            if isinstance(exc, aiohttp.ClientError | TimeoutError):
                raise _httpx_error(exc, request) from exc
            if isinstance(exc, ValueError):  # aiohttp refuses the request itself (e.g. credentials in the URL)
                raise httpx.UnsupportedProtocol(str(exc), request=request) from exc
            raise
        finally:
            if token is not None:
                _WATCH.reset(token)
        extensions: dict[str, Any] = {"http_version": b"HTTP/1.1", POOL_WAIT: waited}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode()
        if request.extensions.get(READ_ALL):
            try:
                body = await response.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise _httpx_error(exc, request) from exc
            finally:
                response.release()
                self._slots.release()
            return httpx.Response(
                status_code=response.status,
                headers=response.raw_headers,
                content=body,
                request=request,
                extensions=extensions,
            )
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_AiohttpStream(response, self._slots, request),
            request=request,
            extensions=extensions,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


class _BodyWatch:
    """The write timeout for :class:`AiohttpTransport`: a request body sent in chunks, each taken by the server
    within ``seconds``. (httpx's timeout bounds each write too; its stock transport writes a body at once, so
    there the whole body must go within it. Per chunk, a slow but steady upload of a large body is not cut.)

    aiohttp hands a bytes body to the kernel in one write and then waits, without a limit, until the kernel has
    taken it: a server that stops reading would hold the request until ``first_token`` or ``total``. Given as
    an async iterable, the body is asked for its next chunk only once the previous one has been taken (aiohttp
    waits for the kernel above 64 KiB buffered), so each chunk re-arms an ``asyncio.timeout`` around the request
    and the end of the body disarms it. Bodies of one chunk or less are not watched: the kernel takes them at
    once. The request's Content-Length (set by httpx) keeps aiohttp from switching to chunked encoding.
    """

    CHUNK = 1 << 16

    def __init__(self, content: bytes, seconds: float) -> None:
        self._content = content
        self._seconds = seconds
        self._scope: asyncio.Timeout | None = None
        self._timeout = asyncio.timeout(None)
        self._sent = False
        self.transport: asyncio.Transport | None = None  # the connection's, set by _WatchingConnector

    def abandon(self) -> None:
        """The request failed (this timeout, another, a cancel): if the body was not all sent, abort the
        connection. aiohttp closes it, and a close waits until the server has taken the rest, which a
        server that stopped reading never does: the socket would stay open."""
        if not self._sent and self.transport is not None:
            self.transport.abort()

    async def __aenter__(self) -> _BodyWatch:
        self._scope = await self._timeout.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self._scope = None  # the response has come (or the request failed): the rest of the body goes unwatched
        await self._timeout.__aexit__(*exc_info)  # raises TimeoutError if it fired

    def expired(self) -> bool:
        return self._timeout.expired()

    async def chunks(self) -> AsyncIterator[memoryview]:
        loop = asyncio.get_running_loop()
        content, size = memoryview(self._content), self.CHUNK
        for start in range(0, len(content), size):
            if self._scope is not None:
                self._scope.reschedule(loop.time() + self._seconds)
            yield content[start : start + size]
        self._sent = True
        if self._scope is not None:
            self._scope.reschedule(None)


_WATCH: contextvars.ContextVar[_BodyWatch | None] = contextvars.ContextVar("runner_body_watch", default=None)
"""The watched request (see _BodyWatch) being sent in this context, for _WatchingConnector."""


class _WatchingConnector(aiohttp.TCPConnector):
    """A TCPConnector that gives a watched request its connection's transport, so that a body write that
    failed half-way can abort the connection (see :meth:`_BodyWatch.abandon`)."""

    async def connect(
        self,
        req: aiohttp.ClientRequest,
        traces: list[Any],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 - aiohttp's own signature, overridden
    ) -> aiohttp.connector.Connection:
        conn = await super().connect(req, traces, timeout)
        watch = _WATCH.get()
        if watch is not None:
            watch.transport = conn.transport  # uvloop's transports are not asyncio.Transport subclasses
        return conn


class _AiohttpStream(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse, slots: asyncio.Semaphore, request: httpx.Request) -> None:
        self._response = response
        self._slots: asyncio.Semaphore | None = slots
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _httpx_error(exc, self._request) from exc

    async def aclose(self) -> None:
        # release() keeps the connection for reuse when the body was read to its end, else closes it
        self._response.release()
        if self._slots is not None:
            slots, self._slots = self._slots, None
            slots.release()


def _httpx_error(exc: BaseException, request: httpx.Request) -> httpx.TransportError:
    """The httpx exception httpx's own transport would raise for this aiohttp failure."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ClientProxyConnectionError | aiohttp.ClientHttpProxyError):
        return httpx.ProxyError(message, request=request)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message, request=request)
    if isinstance(exc, TimeoutError):  # SocketTimeoutError and any other read timeout
        return httpx.ReadTimeout(message, request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(message, request=request)
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        return httpx.UnsupportedProtocol(message, request=request)
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError | aiohttp.ClientResponseError):
        return httpx.RemoteProtocolError(message, request=request)
    return httpx.ReadError(message, request=request)


def make_transport(pool: PoolConfig, proxy: str | None = None) -> AiohttpTransport:
    """The transport of a model's or embedder's one shared client: ``pool``'s limits, through ``proxy`` if
    given (see :func:`runner.providers.proxy.proxy_for`)."""
    return AiohttpTransport(pool, proxy)
