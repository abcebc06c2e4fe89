"""HTTP plumbing shared by the OpenAI-compatible chat provider and embedder.

* :class:`AiohttpTransport`: an ``httpx`` transport over aiohttp. httpx stays the client interface
  (``httpx.Request``/``Response``, its exceptions, ``transport=`` as the seam tests use), but the
  connection pool and the HTTP/1.1 parser are aiohttp's. Why (issue 4; ``bench/http_fanout.py``): in
  httpcore 1.0.9, ``AsyncConnectionPool._assign_requests_to_connections()`` runs each time a request is
  queued and each time a response closes, and each run walks every connection, building for each idle one
  a list of all connections (whose length, not the idle count, it then compares with
  ``max_keepalive_connections``), rescans every connection twice for each queued request, and calls
  ``has_expired()`` (a ``poll()`` syscall) on each idle connection. Profiled with 100 concurrent requests
  on 100 connections: 588 runs, 5.4 million ``is_idle()`` calls and 53,000 ``poll()`` calls, 1.4 s of CPU
  for 100 requests of 50 ms; with 1,000 requests queued each run also grows with the queue. We write our
  own transport rather than depend on ``httpx-aiohttp`` because that package maps errors imprecisely (a
  connection dropped mid-stream becomes ``httpx.ConnectTimeout``, a read timeout a bare
  ``TimeoutException``), which would make our messages name the wrong timeout, and it reports no pool
  waits.
* :class:`Endpoint`: one base URL with its key, client, retry loop, rate limiter and the translation of
  every foreign exception into :mod:`runner.errors`, with messages that name the model and base URL,
  which timeout fired with its value, and never the API key.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import email.utils
import importlib.util
import json
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

import httpx

from runner.config.openai import PoolConfig, RateLimitConfig, RetryConfig, TimeoutConfig
from runner.errors import (
    ProviderConfigError,
    ProviderConnectError,
    ProviderError,
    ProviderHTTPError,
    ProviderProtocolError,
    ProviderTimeout,
)
from runner.events import Recorder
from runner.providers.proxy import display_url, proxy_for
from runner.secrets import API_KEY, SECRETS

try:  # aiohttp is the fast path; without it the stock httpx transport still works, only slower
    import aiohttp
    import yarl
except ImportError:  # pragma: no cover - exercised only where aiohttp is missing
    aiohttp = None  # type: ignore[assignment]

T = TypeVar("T")

POOL_WAIT = "runner.pool_wait"
"""Response extension set by :class:`AiohttpTransport`: seconds the request waited for a connection."""

READ_ALL = "runner.read_all"
"""Request extension: the caller reads the whole body anyway, so :class:`AiohttpTransport` reads it in one
aiohttp call and frees the connection before returning, rather than passing it through httpx's layers of
async byte-stream generators."""

NEVER_RETRIED = frozenset({400, 401, 403, 404, 422})
"""Statuses that mean the request itself is wrong: retrying cannot help, whatever ``retry_on`` says."""

DECODABLE = frozenset(
    {"identity", "gzip", "x-gzip", "deflate"}
    | ({"br"} if importlib.util.find_spec("brotli") or importlib.util.find_spec("brotlicffi") else set())
    | ({"zstd"} if importlib.util.find_spec("zstandard") else set())
)
"""Content-Encodings httpx decodes here. httpx passes any other through undecoded, which would then read as
garbage: such an answer is refused by name (:meth:`Endpoint.check_encoding`)."""

TRANSPORT_ENV = "RUNNER_HTTP_TRANSPORT"
"""``aiohttp`` (default when installed) or ``httpcore`` (the stock httpx transport), for comparison."""


# -- the transport ---------------------------------------------------------------------------------------
class AiohttpTransport(httpx.AsyncBaseTransport):
    """An httpx transport that sends requests with one aiohttp session.

    At most ``pool.max_connections`` requests are in flight; more wait (FIFO) for a slot, up to the
    request's ``pool`` timeout, and the time waited is put in the response's extensions under
    :data:`POOL_WAIT`. Timeouts map as: ``connect`` -> aiohttp ``sock_connect``, ``read`` -> ``sock_read``
    (the longest wait for any bytes, headers included), ``write`` -> :class:`_BodyWatch` (aiohttp has no
    write timeout of its own). aiohttp errors become the httpx exceptions the stock
    transport raises, so the code above it cannot tell the two transports apart. aiohttp keeps every idle
    connection up to ``max_connections`` (``pool.max_keepalive_connections`` applies to the stock
    transport only) and closes it after ``keepalive_expiry`` seconds.

    The session is opened on first use (it must be created inside the running loop) and closed by
    :meth:`aclose`.
    """

    def __init__(self, pool: PoolConfig | None = None, proxy: str | None = None) -> None:
        if aiohttp is None:  # pragma: no cover
            raise RuntimeError("AiohttpTransport needs aiohttp installed")
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

if aiohttp is not None:

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
    """The httpx exception the stock transport would raise for this aiohttp failure."""
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


def make_transport(pool: PoolConfig, proxy: str | None = None) -> httpx.AsyncBaseTransport:
    """The fastest transport available: aiohttp's when installed, else httpx's own with ``pool``'s limits
    (``RUNNER_HTTP_TRANSPORT=httpcore`` forces the latter, for comparison); through ``proxy`` if given."""
    if aiohttp is not None and os.environ.get(TRANSPORT_ENV, "aiohttp") != "httpcore":
        return AiohttpTransport(pool, proxy)
    limits = httpx.Limits(
        max_connections=pool.max_connections,
        max_keepalive_connections=pool.max_keepalive_connections,
        keepalive_expiry=pool.keepalive_expiry,
    )
    return httpx.AsyncHTTPTransport(limits=limits, proxy=proxy)


# -- rate limits -----------------------------------------------------------------------------------------
class _Bucket:
    """A token bucket holding one second's worth of the per-minute rate: OpenAI enforces its per-minute
    limits over shorter periods ("60,000 requests/minute may be enforced as 1,000 requests/second"), so a
    client that bursts a whole minute's budget at once gets 429s."""

    __slots__ = ("rate", "capacity", "level", "stamp")

    def __init__(self, per_minute: float) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate)
        self.level = self.capacity
        self.stamp = time.monotonic()

    def wait(self, now: float, amount: float) -> float:
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now
        need = min(amount, self.capacity)  # a request bigger than the bucket goes once the bucket is full
        return 0.0 if self.level >= need else (need - self.level) / self.rate


class RateLimiter:
    """Requests and tokens per minute, shared by every caller of one provider instance. Callers queue in
    order (an ``asyncio.Lock`` is FIFO); tokens are taken at an estimate and corrected by :meth:`settle`."""

    def __init__(self, config: RateLimitConfig) -> None:
        rpm, tpm = config.requests_per_minute, config.tokens_per_minute
        self._requests = _Bucket(rpm) if rpm else None
        self._tokens = _Bucket(tpm) if tpm else None
        self._lock = asyncio.Lock()
        self._reason = ""  # the limit that held the latest caller who had to sleep
        self.enabled = self._requests is not None or self._tokens is not None

    async def acquire(self, tokens: float) -> tuple[float, str]:
        """Wait until one request of ``tokens`` fits; return the seconds waited and which limit held it."""
        if not self.enabled:
            return 0.0, ""
        # The wait counts from before the lock: a caller queued behind others held by the limit waits for
        # the limit too, and the report must say so.
        start = time.monotonic()
        slept = False
        async with self._lock:
            while True:
                now = time.monotonic()
                wait_requests = self._requests.wait(now, 1.0) if self._requests else 0.0
                wait_tokens = self._tokens.wait(now, tokens) if self._tokens else 0.0
                wait = max(wait_requests, wait_tokens)
                if wait <= 0:
                    break
                self._reason = "requests_per_minute" if wait_requests >= wait_tokens else "tokens_per_minute"
                slept = True
                await asyncio.sleep(wait)
            if self._requests:
                self._requests.level -= 1.0
            if self._tokens:
                self._tokens.level -= tokens
        waited = time.monotonic() - start
        if not slept and waited < 0.001:  # neither held by the limit nor queued behind a caller who was
            return 0.0, ""
        return waited, self._reason

    def settle(self, estimated: float, actual: float) -> None:
        if self._tokens is not None:
            self._tokens.level += estimated - actual


# -- the endpoint ----------------------------------------------------------------------------------------
def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _server_message(body: bytes) -> str:
    """The error message in an error answer: OpenAI's ``{"error": {"message"}}`` and the shapes other
    compatible servers use, else the body (its start: see :func:`clip`, applied after redaction so that a
    credential is never cut in two and half of it shown)."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        for candidate in (error, data.get("message"), data.get("detail")):
            if isinstance(candidate, str) and candidate:
                return candidate
    text = body[:_CLIP_BYTES].decode("utf-8", errors="replace").strip()
    return text or "(empty answer)"


_CLIP_BYTES = 16384


def clip(text: str, limit: int = 500) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def snippet(data: bytes | str, limit: int = 200) -> str:
    """The start of an answer for a message, quoted: redacted before it is cut (a credential cut in two
    would no longer be recognised)."""
    text = data[:_CLIP_BYTES].decode("utf-8", errors="replace") if isinstance(data, bytes) else data[:_CLIP_BYTES]
    return repr(SECRETS.redact(text)[:limit])


# The error types that servers and gateways put in an error object instead of (or beside) a numeric code,
# normalised (lower case, no "_"), and the HTTP status each stands for: OpenAI's types, the exception names
# vLLM and LiteLLM report, Anthropic's types (some gateways pass them through).
_ERROR_TYPE_STATUS = {
    "invalidrequesterror": 400,
    "badrequesterror": 400,
    "contextwindowexceedederror": 400,
    "authenticationerror": 401,
    "permissionerror": 403,
    "permissiondeniederror": 403,
    "notfounderror": 404,
    "requesttimeout": 408,
    "timeout": 408,
    "timeouterror": 408,
    "apitimeouterror": 408,
    "unprocessableentityerror": 422,
    "ratelimiterror": 429,
    "ratelimitexceeded": 429,
    "servererror": 500,
    "internalservererror": 500,
    "apierror": 500,
    "apiconnectionerror": 502,
    "badgatewayerror": 502,
    "serviceunavailableerror": 503,
    "serviceunavailable": 503,
    "overloadederror": 503,
}


def _status_of(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    return value if isinstance(value, int) and 100 <= value <= 599 else None


def reported_status(error: Any) -> int | None:
    """The HTTP status an error object reported in a body stands for: a numeric ``code`` or ``status`` (as a
    number or as text: LiteLLM sends ``"code": "500"``), else a known error ``type`` or ``code`` name; None
    when it names none."""
    if not isinstance(error, Mapping):
        return None
    for key in ("code", "status", "status_code", "http_status"):
        status = _status_of(error.get(key))
        if status is not None:
            return status
    for key in ("type", "code"):
        name = error.get(key)
        if isinstance(name, str):
            status = _ERROR_TYPE_STATUS.get(name.lower().replace("_", "").replace(" ", ""))
            if status is not None:
                return status
    return None


def reported_message(error: Any) -> str:
    if isinstance(error, Mapping) and error.get("message"):
        return str(error["message"])
    return str(error)


def _os_reason(exc: BaseException) -> str:
    """'Connection refused' rather than a transport's wording: the first errno in the cause chain."""
    seen: BaseException | None = exc
    while seen is not None:
        errno = getattr(seen, "errno", None)
        if isinstance(errno, int) and errno > 0:
            return os.strerror(errno)
        seen = seen.__cause__ or seen.__context__
    return str(exc) or type(exc).__name__


class Endpoint:
    """One OpenAI-compatible base URL with its settings: the API key (read once, at construction, so a
    missing variable is reported before any request), the shared ``httpx.AsyncClient``, the retry loop,
    the rate limiter and the translation of foreign exceptions. ``label`` opens every error message:
    ``model 'main' (gpt-4o-mini at https://api.openai.com/v1)``."""

    def __init__(
        self,
        *,
        label: str,
        base_url: str,
        api_key_env: str | None,
        headers: Mapping[str, str],
        timeout: TimeoutConfig,
        pool: PoolConfig,
        retry: RetryConfig,
        rate_limit: RateLimitConfig,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.label = label
        self.proxy = proxy_for(base_url)  # HTTPS_PROXY / HTTP_PROXY / ALL_PROXY / NO_PROXY, as curl reads them
        self.base_url = base_url = display_url(base_url)
        self.timeout = timeout
        self.pool = pool
        self.retry = retry
        # every secret this endpoint holds is registered before any request can echo it back
        SECRETS.add_proxy_environment()
        SECRETS.add_url_credentials(self.proxy)
        SECRETS.add_headers(headers)
        self._key: str | None = None
        if api_key_env is not None:
            key = SECRETS.add_env(api_key_env, API_KEY)
            if key is None:
                raise ProviderConfigError(
                    f"{label}: the environment variable {api_key_env} (api_key_env) is not set; "
                    f"export it with the API key for {base_url}"
                )
            self._key = key
        sent = {"User-Agent": "runner", **headers}
        if self._key is not None:
            sent["Authorization"] = f"Bearer {self._key}"
        self.limiter = RateLimiter(rate_limit)
        if self.proxy is not None:
            self.label = label = f"{label} via proxy {display_url(self.proxy)}"
        self.transport = transport if transport is not None else make_transport(pool, self.proxy)
        self.client = httpx.AsyncClient(
            headers=sent,
            timeout=httpx.Timeout(connect=timeout.connect, read=timeout.read, write=timeout.write, pool=timeout.pool),
            transport=self.transport,
            follow_redirects=False,
            trust_env=False,
        )
        # Requests are built once per call from these and handed straight to the client's transport:
        # AsyncClient.send's per-request machinery (auth flow, redirects, cookies, event hooks) is unused
        # by this API and costs ~100 us a request against ~20 us for this path (bench/http_fanout.py,
        # issue 4), which is most of the gap to raw aiohttp at 1,000 concurrent requests.
        self._extensions = {"timeout": self.client.timeout.as_dict()}
        self._read_all_extensions = {**self._extensions, READ_ALL: True}
        self._json_headers = httpx.Headers(
            {**self.client.headers, "Content-Type": "application/json", "Accept": "application/json"}
        )
        self._sse_headers = httpx.Headers(
            {
                **self.client.headers,
                "Content-Type": "application/json",
                "Accept": "text/event-stream",
                "Accept-Encoding": "identity",
            }
        )

    async def send(self, url: httpx.URL, payload: bytes, *, stream: bool = False) -> httpx.Response:
        """POST ``payload`` (JSON) to ``url``; the caller reads the response and closes it. httpx errors
        are translated."""
        request = httpx.Request(
            "POST",
            url,
            content=payload,
            extensions=self._extensions if stream else self._read_all_extensions,
            headers=self._sse_headers if stream else self._json_headers,
        )
        try:
            return await self.transport.handle_async_request(request)
        except httpx.HTTPError as exc:
            raise self.translate(exc) from exc

    async def post_json(self, url: httpx.URL, payload: bytes, recorder: Recorder | None, node_id: str) -> bytes:
        """POST and read the whole answer; an error status raises :class:`ProviderHTTPError`."""
        response = await self.send(url, payload)
        try:
            self.note_pool_wait(response, recorder, node_id)
            content = await response.aread()
        except httpx.HTTPError as exc:
            raise self.translate(exc) from exc
        finally:
            await response.aclose()
        self.check_encoding(response.headers)
        if response.status_code >= 400:
            raise self.http_error(response.status_code, content, response.headers)
        return content

    def check_encoding(self, headers: httpx.Headers) -> None:
        """Refuse an answer compressed in a way httpx cannot decode here (see :data:`DECODABLE`)."""
        for encoding in headers.get("content-encoding", "").split(","):
            name = encoding.strip().lower()
            if name and name not in DECODABLE:
                raise ProviderProtocolError(
                    f"{self.label}: the server encoded its answer with Content-Encoding {name!r}, which runner "
                    f"cannot decode (it accepts {', '.join(sorted(DECODABLE))})"
                )

    def __repr__(self) -> str:
        return f"Endpoint({self.label})"

    async def aclose(self) -> None:
        await self.client.aclose()

    # -- errors ----------------------------------------------------------------------------------------
    @staticmethod
    def redact(text: str) -> str:
        """``text`` without any secret (:mod:`runner.secrets`): servers and proxies echo keys and headers."""
        return SECRETS.redact(text)

    def http_error(self, status: int, body: bytes, headers: httpx.Headers) -> ProviderHTTPError:
        message = clip(self.redact(_server_message(body)))
        return ProviderHTTPError(
            f"{self.label}: HTTP {status}: {message}", status, _retry_after(headers.get("retry-after"))
        )

    def translate(self, exc: httpx.HTTPError, *, during: str = "") -> ProviderError:
        """The runner error for an httpx exception; ``during`` says what was going on (a stream's
        progress) for a connection that broke while reading."""
        t = self.timeout
        if isinstance(exc, httpx.ConnectTimeout):
            return ProviderTimeout(
                f"{self.label}: timeout.connect ({t.connect:g} s) fired: could not connect to {self.base_url}"
            )
        if isinstance(exc, httpx.ReadTimeout):
            return ProviderTimeout(
                f"{self.label}: timeout.read ({t.read:g} s) fired: the server sent nothing for {t.read:g} s{during}"
            )
        if isinstance(exc, httpx.WriteTimeout):
            return ProviderTimeout(f"{self.label}: timeout.write ({t.write:g} s) fired: could not send the request")
        if isinstance(exc, httpx.PoolTimeout):
            return ProviderTimeout(
                f"{self.label}: timeout.pool ({t.pool:g} s) fired: no free connection, "
                f"all pool.max_connections ({self.pool.max_connections}) were busy"
            )
        if isinstance(exc, httpx.ProxyError):
            return ProviderConnectError(
                f"{self.label}: the proxy did not connect us to {self.base_url}: {self.redact(_os_reason(exc))}; "
                "check HTTPS_PROXY / HTTP_PROXY, or list the host in NO_PROXY"
            )
        if isinstance(exc, httpx.ConnectError):
            return ProviderConnectError(
                f"{self.label}: cannot connect to {self.base_url}: {self.redact(_os_reason(exc))}"
            )
        if isinstance(exc, httpx.DecodingError):
            return ProviderProtocolError(
                f"{self.label}: the answer could not be decoded: its body does not match its Content-Encoding "
                f"({self.redact(str(exc))})"
            )
        if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
            return ProviderConfigError(
                f"{self.label}: base_url {self.base_url!r} is not a usable URL: {self.redact(str(exc))}"
            )
        broken = ProviderProtocolError(f"{self.label}: the connection broke while reading the answer{during}")
        broken.kind = "read"
        return broken

    def reported_error(self, error: Any, where: str, headers: httpx.Headers | None = None) -> ProviderError:
        """The error for an error object a server put in a body it answered with status 200 (``where`` says
        where: mid-stream, or in the JSON answer). Gateways and servers (LiteLLM, vLLM, OpenAI) report an
        upstream failure this way once the stream has begun: its code makes it the error its HTTP status would
        be, retried (or not) as that status would be, honouring a ``retry_after`` it gives (in seconds) or the
        response's Retry-After header. Without a code it is a protocol error."""
        message = clip(self.redact(reported_message(error)))
        status = reported_status(error)
        if status is None:
            return ProviderProtocolError(f"{self.label}: the server reported an error {where}: {message}")
        retry_after = _retry_after(headers.get("retry-after")) if headers is not None else None
        if retry_after is None and isinstance(error, Mapping):
            given = error.get("retry_after")
            if isinstance(given, int | float) and not isinstance(given, bool) and given >= 0:
                retry_after = float(given)
        return ProviderHTTPError(
            f"{self.label}: the server reported error {status} {where}: {message}", status, retry_after
        )

    def protocol_error(self, what: str) -> ProviderProtocolError:
        return ProviderProtocolError(f"{self.label}: {self.redact(what)}")

    # -- the retry loop ---------------------------------------------------------------------------------
    def note_pool_wait(self, response: httpx.Response, recorder: Recorder | None, node_id: str) -> None:
        waited = response.extensions.get(POOL_WAIT)
        if recorder is not None and waited:
            recorder.emit("pool_wait", node_id, {"wait": waited})

    async def run(
        self,
        once: Callable[[int], Awaitable[T]],
        *,
        node_id: str,
        recorder: Recorder | None,
        tokens: float = 0.0,
        on_retry: Callable[[ProviderError], dict[str, Any] | None] | None = None,
    ) -> tuple[T, int]:
        """Call ``once(attempt)`` until it succeeds, retrying per ``retry`` with back-off; return its
        result and the number of attempts. Every attempt first passes the rate limiter. ``on_retry`` runs
        before each back-off; what it returns is added to the ``retry`` event."""
        total = self.timeout.total
        loop = asyncio.get_running_loop()
        deadline = None if total is None else loop.time() + total
        attempt = 0
        scope = asyncio.timeout_at(deadline)
        try:
            async with scope:
                while True:
                    attempt += 1
                    waited, reason = await self.limiter.acquire(tokens)
                    if waited and recorder is not None:
                        recorder.emit("rate_wait", node_id, {"wait": waited, "limit": reason})
                    try:
                        return await once(attempt), attempt
                    except ProviderError as err:
                        delay = self._delay(err, attempt, deadline, loop.time())
                        extra = on_retry(err) if on_retry is not None else None
                        if recorder is not None:
                            data = {"cause": err.kind, "attempt": attempt, "delay": delay, "error": str(err)}
                            recorder.emit("retry", node_id, {**data, **(extra or {})})
                    await asyncio.sleep(delay)
        except TimeoutError as exc:
            if not scope.expired():
                raise
            raise ProviderTimeout(
                f"{self.label}: timeout.total ({total:g} s) fired during attempt {attempt} of {self.retry.max_attempts}"
            ) from exc

    def _delay(self, err: ProviderError, attempt: int, deadline: float | None, now: float) -> float:
        """Seconds to wait before the next attempt; raises ``err`` (with why) when there is none."""
        retry = self.retry
        status = err.status if isinstance(err, ProviderHTTPError) else None
        if status in NEVER_RETRIED or not retry.retries(err.kind):
            raise err
        if attempt >= retry.max_attempts:
            if attempt == 1:
                raise err
            raise _reworded(err, f"{err} (gave up after {attempt} attempts)")
        retry_after = err.retry_after if isinstance(err, ProviderHTTPError) else None
        if retry_after is not None:
            delay = retry_after
        else:
            delay = min(retry.max_delay, retry.initial_delay * 2 ** (attempt - 1))
            if retry.jitter == "full":
                delay = random.uniform(0.0, delay)
        if deadline is not None and now + delay >= deadline:
            raise _reworded(
                err, f"{err} (not retried: waiting {delay:g} s would pass timeout.total ({self.timeout.total:g} s))"
            )
        return delay


def _reworded(err: ProviderError, message: str) -> ProviderError:
    new: ProviderError
    if isinstance(err, ProviderHTTPError):
        new = ProviderHTTPError(message, err.status, err.retry_after)
    else:
        new = type(err)(message)
        new.kind = err.kind
    new.__cause__ = err.__cause__
    return new
