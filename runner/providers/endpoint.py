"""One OpenAI-compatible base URL as the chat provider and the embedder use it: the key, the shared client
over its transport, the retry loop, the rate limiter and the pool-wait accounting.

What is sent and how answers are read is the callers' (:mod:`runner.providers.openai`,
:mod:`runner.providers.openai_embeddings`); how failures read is :mod:`runner.providers.failures`; the
bytes go through :mod:`runner.providers.transport` unless the caller passes a ``transport``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote, urlsplit

from runner.config.openai import OpenAIEmbeddingConfig, OpenAIModelConfig, PoolConfig, RateLimitConfig, TimeoutConfig
from runner.errors import ProviderConfigError, ProviderError, ProviderHTTPError, ProviderTimeout
from runner.events import TRACE, Recorder, span_id_of, traceparent
from runner.providers.failures import NEVER_RETRIED, Failures, with_reason
from runner.providers.proxy import display_url, proxy_for
from runner.providers.ratelimit import RateLimiter
from runner.providers.transport import (
    NODE,
    POOL_WAIT,
    READ_ALL,
    Answer,
    Body,
    Outgoing,
    Source,
    Transport,
    current_wrapper,
)
from runner.retry import RetryPolicy
from runner.secrets import API_KEY, SECRETS

if TYPE_CHECKING:
    import httpx

T = TypeVar("T")


class Endpoint:
    """One OpenAI-compatible base URL with its settings: the API key (read once, at construction, so a
    missing variable is reported before any request), the shared ``httpx.AsyncClient``, the retry loop and
    the rate limiter; ``errors`` makes the runner error for every failure, each message opening with
    ``label``: ``model 'main' (gpt-4o-mini at https://api.openai.com/v1)``.

    Without a ``transport`` the client sends through :class:`~runner.providers.aiohttp_transport.AiohttpTransport`
    with ``pool``'s limits, through the proxy the environment names for ``base_url``. A ``transport`` given
    (``httpx.MockTransport`` in a program's tests, ``httpx.AsyncHTTPTransport``, any httpx transport) is
    used as it is: its own pool and proxy settings apply, and it reports no pool waits."""

    def __init__(
        self,
        *,
        label: str,
        base_url: str,
        api_key_env: str | None,
        headers: Mapping[str, str],
        timeout: TimeoutConfig,
        pool: PoolConfig,
        retry: RetryPolicy,
        rate_limit: RateLimitConfig,
        transport: httpx.AsyncBaseTransport | None = None,
        source: tuple[str, str] = ("model", ""),
    ) -> None:
        # HTTPS_PROXY / HTTP_PROXY / ALL_PROXY / NO_PROXY, as curl reads them; a given transport routes itself
        self.proxy = proxy_for(base_url) if transport is None else None
        self._sent_to = base_url  # requests go to the URL as configured; messages show it without credentials
        self.base_url = base_url = display_url(base_url)
        self.timeout = timeout
        self.pool = pool
        self.retry = retry
        # every secret this endpoint holds is registered before any request can echo it back
        SECRETS.add_proxy_environment()
        SECRETS.add_url_credentials(self.proxy)
        SECRETS.add_headers(headers)
        # A run that records or replays (runner.cassette) wraps the transport; the inner one is made only when
        # the network is needed, so a replay opens no connection and needs no key.
        wrapper = current_wrapper()
        self._wrapped = wrapper is not None
        self._key: str | None = None
        missing: ProviderConfigError | None = None
        if api_key_env is not None:
            key = SECRETS.add_env(api_key_env, API_KEY)
            if key is None:
                missing = ProviderConfigError(
                    f"{label}: the environment variable {api_key_env} (api_key_env) is not set; "
                    f"export it with the API key for {base_url}"
                )
                if wrapper is None or wrapper.needs_key:
                    raise missing
            self._key = key
        sent = {"User-Agent": "runner", **headers}
        if self._key is not None:
            sent["Authorization"] = f"Bearer {self._key}"
        self.limiter = RateLimiter(rate_limit)
        # Told of each answer's status and headers (OpenAIChatProvider.observe): a batch's adaptive concurrency.
        self.on_response: Callable[[int, Mapping[str, str]], None] | None = None
        if self.proxy is not None:
            label = f"{label} via proxy {display_url(self.proxy)}"
        self.label = label
        self.errors = Failures(label, base_url, timeout, pool)
        given, proxy = transport, self.proxy

        def make_inner() -> Transport:
            if missing is not None:  # a replayed request that is not in the cassette needs the network
                raise missing
            if given is not None:
                return given
            # aiohttp is imported here, when a network transport is made: never by a replay that never sends
            from runner.providers.aiohttp_transport import make_transport  # noqa: PLC0415

            return make_transport(pool, proxy)

        if wrapper is None:
            self.transport = make_inner()
        else:
            make = make_inner
            if wrapper.needs_key:  # requests will go to the network (a recording, a response cache's misses): the
                # transport is made now, so its import is paid at start-up rather than in the first request's time
                inner = make_inner()
                make = lambda: inner  # noqa: E731
            base_path = unquote(urlsplit(base_url).path).rstrip("/")  # as httpx.URL(base_url).path reads it
            self.transport = wrapper.wrap(make, Source(source[0], source[1], "openai", base_path))
        # a wrapper's transport that answers requests itself (a replay, a response cache's hit: see Answering)
        wrapped = self.transport if wrapper is not None else None
        self._answers: Callable[[Outgoing], bool] | None = getattr(wrapped, "answers", None)
        self._answer: Callable[[Outgoing, str], Awaitable[Answer | None]] | None = getattr(wrapped, "answer", None)
        # The client and the requests' headers: made now when requests will be sent, else (a replay) with the
        # first request that is (_open), so that a replay answered wholly from its cassette makes none and
        # imports no HTTP library (80 ms of its start-up).
        self._sent = sent
        self._http: _Http | None = None
        self._closed = False
        self.network_errors: tuple[type[BaseException], ...] = ()
        """The exceptions the transport raises (httpx's) once the client is made; none before."""
        if wrapper is None or wrapper.needs_key:
            self._open()

    @property
    def client(self) -> httpx.AsyncClient:
        """The shared ``httpx.AsyncClient`` over :attr:`transport` (made when first needed)."""
        return self._open().client

    def _open(self) -> _Http:
        if self._http is None:
            self._http = _Http(self._sent, self.timeout, self.transport, self._sent_to)
            self.network_errors = self._http.errors
        return self._http

    @classmethod
    def of(
        cls,
        what: str,
        config: OpenAIModelConfig | OpenAIEmbeddingConfig,
        transport: httpx.AsyncBaseTransport | None,
        *,
        source: tuple[str, str] = ("model", ""),
    ) -> Endpoint:
        """The endpoint of a model or embedder (``what``: ``model 'main'``), labelled for messages; ``source``
        (``("model", "main")``) names it to a :class:`~runner.providers.transport.TransportWrapper`."""
        return cls(
            source=source,
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

    def __repr__(self) -> str:
        return f"Endpoint({self.label})"

    def request(self, path: str, body: dict[str, Any], payload: bytes) -> Outgoing:
        """The request of one call to ``path`` (relative to the base URL): every attempt sends it."""
        return Outgoing(path, body, payload)

    def answered(self, request: Outgoing) -> bool:
        """Whether a wrapping transport will answer this request itself (a response cache's hit, a replay): such
        a request costs no rate-limit budget (see :class:`~runner.providers.transport.Answering`)."""
        return self._answers is not None and self._answers(request)

    async def answer(self, request: Outgoing, node_id: str) -> Answer | None:
        """The answer a wrapping transport gives ``request`` itself (a replay's recording), without building
        an HTTP request or response; None when the request is to be sent (:meth:`send`)."""
        if self._answer is None:
            return None
        answer = await self._answer(request, node_id)
        if answer is not None and self.on_response is not None:
            self.on_response(answer.status, answer.headers)
        return answer

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.client.aclose()
        elif not self._closed:  # no client was made: the transport is closed as the client would close it
            await self.transport.aclose()
        self._closed = True

    # -- sending ----------------------------------------------------------------------------------------
    async def send(self, request: Outgoing, *, stream: bool = False, node_id: str = "") -> httpx.Response:
        """POST ``request`` over the transport; the caller reads the response and closes it. httpx errors
        are translated. ``node_id``: who sends it, for a wrapper's messages."""
        http = self._open()
        extensions = http.extensions if stream else http.read_all_extensions
        if self._wrapped:
            extensions = {**extensions, NODE: node_id}
        headers = http.sse_headers if stream else http.json_headers
        trace = TRACE.get()
        if trace is not None:  # the run's spans are exported: the request names its node's span (W3C Trace Context)
            headers = headers.copy()
            headers["traceparent"] = traceparent(trace, span_id_of(trace, node_id))
        sent = http.request(request, extensions, headers)
        try:
            response = await self.transport.handle_async_request(sent)
        except http.errors as exc:
            raise self.errors.translate(exc) from exc  # type: ignore[arg-type]
        if self.on_response is not None:
            self.on_response(response.status_code, response.headers)
        return response

    async def post_json(self, request: Outgoing, recorder: Recorder | None, node_id: str) -> Body:
        """POST and read the whole answer (or take a wrapper's own: :meth:`answer`); an error status raises
        :class:`ProviderHTTPError`."""
        answer = await self.answer(request, node_id)
        if answer is not None:
            body = await answer.read()
            self.errors.check_encoding(answer.headers)
            if answer.status >= 400:
                raise self.errors.http_error(answer.status, body.content, answer.headers)
            return body
        response = await self.send(request, node_id=node_id)
        try:
            self.note_pool_wait(response, recorder, node_id)
            content = await response.aread()
        except self.network_errors as exc:
            raise self.errors.translate(exc) from exc  # type: ignore[arg-type]
        finally:
            await response.aclose()
        self.errors.check_encoding(response.headers)
        if response.status_code >= 400:
            raise self.errors.http_error(response.status_code, content, response.headers)
        return Body(content)

    def note_pool_wait(self, response: httpx.Response, recorder: Recorder | None, node_id: str) -> None:
        waited = response.extensions.get(POOL_WAIT)
        if recorder is not None and waited:
            recorder.emit("pool_wait", node_id, {"wait": waited})

    # -- the retry loop ---------------------------------------------------------------------------------
    async def run(
        self,
        once: Callable[[int], Awaitable[T]],
        *,
        node_id: str,
        recorder: Recorder | None,
        tokens: float = 0.0,
        on_retry: Callable[[ProviderError], dict[str, Any] | None] | None = None,
        free: bool = False,
    ) -> tuple[T, int]:
        """Call ``once(attempt)`` until it succeeds, retrying per ``retry`` with back-off; return its
        result and the number of attempts. Every attempt first passes the rate limiter, unless ``free`` (the
        answer comes from a cache or a cassette: see :meth:`answered`). ``on_retry`` runs before each back-off;
        what it returns is added to the ``retry`` event."""
        total = self.timeout.total
        loop = asyncio.get_running_loop()
        deadline = None if total is None else loop.time() + total
        attempt = 0
        scope = asyncio.timeout_at(deadline)
        try:
            async with scope:
                while True:
                    attempt += 1
                    if not free or attempt > 1:  # a retry of a free answer went to the network after all
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
            raise with_reason(err, f"gave up after {attempt} attempts")
        delay = retry.backoff(attempt, err.retry_after if isinstance(err, ProviderHTTPError) else None)
        if deadline is not None and now + delay >= deadline:
            raise with_reason(
                err, f"not retried: waiting {delay:g} s would pass timeout.total ({self.timeout.total:g} s)"
            )
        return delay


class _Http:
    """An endpoint's HTTP side, made with its first request sent: the client over its transport, and the
    headers and extensions every request is built from.

    Requests are built once per call from these and handed straight to the client's transport:
    AsyncClient.send's per-request machinery (auth flow, redirects, cookies, event hooks) is unused by this
    API and costs ~100 us a request against ~20 us for this path (bench/http_fanout.py, issue 4), which is
    most of the gap to raw aiohttp at 1,000 concurrent requests."""

    def __init__(self, sent: Mapping[str, str], timeout: TimeoutConfig, transport: Transport, base_url: str) -> None:
        import httpx  # noqa: PLC0415 - only once a request goes through the transport

        self._httpx = httpx
        self.errors: tuple[type[BaseException], ...] = (httpx.HTTPError,)
        self.client = httpx.AsyncClient(
            headers=sent,
            timeout=httpx.Timeout(connect=timeout.connect, read=timeout.read, write=timeout.write, pool=timeout.pool),
            transport=transport,  # type: ignore[arg-type] # httpx's interface (a cassette's without its base class)
            follow_redirects=False,
            trust_env=False,
        )
        self._base_url = base_url
        self._urls: dict[str, httpx.URL] = {}
        self.extensions = {"timeout": self.client.timeout.as_dict()}
        self.read_all_extensions = {**self.extensions, READ_ALL: True}
        self.json_headers = httpx.Headers(
            {**self.client.headers, "Content-Type": "application/json", "Accept": "application/json"}
        )
        self.sse_headers = httpx.Headers(
            {
                **self.client.headers,
                "Content-Type": "application/json",
                "Accept": "text/event-stream",
                "Accept-Encoding": "identity",
            }
        )

    def request(self, request: Outgoing, extensions: dict[str, Any], headers: httpx.Headers) -> httpx.Request:
        url = self._urls.get(request.path)
        if url is None:  # requests go to the URL as configured (credentials and all; messages show it without)
            url = self._urls[request.path] = self._httpx.URL(f"{self._base_url}{request.path}")
        return self._httpx.Request("POST", url, content=request.payload, extensions=extensions, headers=headers)
