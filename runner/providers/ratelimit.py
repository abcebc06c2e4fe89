"""Client-side rate limits: requests and tokens per minute, shared by every caller of one model or embedder
(``rate_limit:``), fan-outs included."""

from __future__ import annotations

import asyncio
import time

from runner.config.openai import RateLimitConfig


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
