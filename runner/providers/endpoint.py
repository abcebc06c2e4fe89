"""One OpenAI-compatible base URL as the chat provider and the embedder use it: the key, the shared client
over its transport, the retry loop, the rate limiter and the pool-wait accounting.

What is sent and how answers are read is the callers' (:mod:`runner.providers.openai`,
:mod:`runner.providers.openai_embeddings`); how failures read is :mod:`runner.providers.failures`; the
bytes go through :mod:`runner.providers.transport` unless the caller passes a ``transport``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import httpx

from runner.config.openai import OpenAIEmbeddingConfig, OpenAIModelConfig, PoolConfig, RateLimitConfig, TimeoutConfig
from runner.errors import ProviderConfigError, ProviderError, ProviderHTTPError, ProviderTimeout
from runner.events import Recorder
from runner.providers.failures import NEVER_RETRIED, Failures, with_reason
from runner.providers.proxy import display_url, proxy_for
from runner.providers.ratelimit import RateLimiter
from runner.providers.transport import POOL_WAIT, READ_ALL, make_transport
from runner.retry import RetryPolicy
from runner.secrets import API_KEY, SECRETS

T = TypeVar("T")


class Endpoint:
    """One OpenAI-compatible base URL with its settings: the API key (read once, at construction, so a
    missing variable is reported before any request), the shared ``httpx.AsyncClient``, the retry loop and
    the rate limiter; ``errors`` makes the runner error for every failure, each message opening with
    ``label``: ``model 'main' (gpt-4o-mini at https://api.openai.com/v1)``.

    Without a ``transport`` the client sends through :class:`~runner.providers.transport.AiohttpTransport`
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
    ) -> None:
        # HTTPS_PROXY / HTTP_PROXY / ALL_PROXY / NO_PROXY, as curl reads them; a given transport routes itself
        self.proxy = proxy_for(base_url) if transport is None else None
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
        # Told of each answer's status and headers (OpenAIChatProvider.observe): a batch's adaptive concurrency.
        self.on_response: Callable[[int, httpx.Headers], None] | None = None
        if self.proxy is not None:
            label = f"{label} via proxy {display_url(self.proxy)}"
        self.label = label
        self.errors = Failures(label, base_url, timeout, pool)
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

    @classmethod
    def of(
        cls, what: str, config: OpenAIModelConfig | OpenAIEmbeddingConfig, transport: httpx.AsyncBaseTransport | None
    ) -> Endpoint:
        """The endpoint of a model or embedder (``what``: ``model 'main'``), labelled for messages."""
        return cls(
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

    async def aclose(self) -> None:
        await self.client.aclose()

    # -- sending ----------------------------------------------------------------------------------------
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
            response = await self.transport.handle_async_request(request)
        except httpx.HTTPError as exc:
            raise self.errors.translate(exc) from exc
        if self.on_response is not None:
            self.on_response(response.status_code, response.headers)
        return response

    async def post_json(self, url: httpx.URL, payload: bytes, recorder: Recorder | None, node_id: str) -> bytes:
        """POST and read the whole answer; an error status raises :class:`ProviderHTTPError`."""
        response = await self.send(url, payload)
        try:
            self.note_pool_wait(response, recorder, node_id)
            content = await response.aread()
        except httpx.HTTPError as exc:
            raise self.errors.translate(exc) from exc
        finally:
            await response.aclose()
        self.errors.check_encoding(response.headers)
        if response.status_code >= 400:
            raise self.errors.http_error(response.status_code, content, response.headers)
        return content

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
            raise with_reason(err, f"gave up after {attempt} attempts")
        delay = retry.backoff(attempt, err.retry_after if isinstance(err, ProviderHTTPError) else None)
        if deadline is not None and now + delay >= deadline:
            raise with_reason(
                err, f"not retried: waiting {delay:g} s would pass timeout.total ({self.timeout.total:g} s)"
            )
        return delay
