"""A model's ``rate_limit`` as one budget for the whole cluster (issue 18, item 3).

One small Ray actor, :class:`RateBudget`, holds each model's token buckets (the same buckets as a single process,
runner/providers/ratelimit.py: a second's worth of the per-minute rate). Workers do not ask it once per request:
each worker's :class:`LeasedLimiter` takes a *lease* of requests (and tokens) covering about
``LEASE_SECONDS`` of the model's rate divided among the workers, and hands them out locally; it asks again only
when its lease is spent. A lease is a reservation: granted at once, to be spent after the wait the budget names,
so one round trip covers it even when the limit holds. Whatever a worker spends the buckets had given by then,
so all workers together never send more than one process would (``rate x seconds + one second's burst``),
whatever the number of workers; a lease a worker did not spend when the batch ends (or when it dies) is lost.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from runner.providers.ratelimit import _Bucket

LEASE_SECONDS = 0.25  # a lease covers this much of the model's rate (shared by the workers): bench/ray_throughput.py


class RateBudget:
    """The cluster's buckets, by model name (made as a Ray actor by :func:`runner.dataset.onray.driver`).
    ``limits``: ``{model: (requests_per_minute or None, tokens_per_minute or None)}``."""

    def __init__(self, limits: dict[str, tuple[float | None, float | None]]) -> None:
        self._buckets = {
            name: (_Bucket(rpm) if rpm else None, _Bucket(tpm) if tpm else None) for name, (rpm, tpm) in limits.items()
        }
        self.leases = 0
        self.granted: dict[str, float] = dict.fromkeys(limits, 0.0)

    def take(self, model: str, requests: float, tokens: float) -> tuple[float, float, float, str]:
        """Reserve ``requests`` requests and ``tokens`` tokens of ``model``: ``(requests, tokens, seconds to wait
        before spending them, the limit that held)``. A reservation is taken from the buckets at once (they go
        below zero) and may be spent only when the buckets would have held it: so a lease is one round trip
        even when the limit holds, callers are served in the order they asked, and what all workers spend by
        any moment is never more than the buckets gave by then."""
        req_bucket, tok_bucket = self._buckets[model]
        now = time.monotonic()
        self.leases += 1
        wait_r = wait_t = 0.0
        if req_bucket is not None and requests > 0:
            req_bucket.wait(now, 0.0)  # brings the level up to now
            req_bucket.level -= requests
            wait_r = max(-req_bucket.level, 0.0) / req_bucket.rate
            self.granted[model] += requests
        if tok_bucket is not None and tokens > 0:
            tok_bucket.wait(now, 0.0)
            tok_bucket.level -= tokens
            wait_t = max(-tok_bucket.level, 0.0) / tok_bucket.rate
        held = "" if max(wait_r, wait_t) <= 0 else "requests_per_minute" if wait_r >= wait_t else "tokens_per_minute"
        return requests, tokens, max(wait_r, wait_t), held

    def figures(self) -> dict[str, Any]:
        """For the batch report: the leases made and the requests granted by model."""
        return {"leases": self.leases, "granted_requests": dict(self.granted)}


class LeasedLimiter:
    """A worker's stand-in for a model's :class:`~runner.providers.ratelimit.RateLimiter` (same ``acquire`` /
    ``settle``): requests and tokens come from leases of the cluster's :class:`RateBudget` (``budget``: its Ray
    actor handle). Callers queue in order behind one lock, as with the local limiter."""

    enabled = True

    def __init__(self, model: str, budget: Any, rpm: float | None, tpm: float | None, workers: int) -> None:
        self.model = model
        self.budget = budget
        self.rpm, self.tpm = rpm, tpm
        share = LEASE_SECONDS / 60.0 / max(workers, 1)
        self.lease_requests = max(1.0, math.floor(rpm * share)) if rpm else 0.0
        self.lease_tokens = tpm * share if tpm else 0.0
        self.requests = 0.0  # held by this worker, not yet spent
        self.tokens = 0.0
        self._lock = asyncio.Lock()
        self.asked = 0  # round trips to the budget

    async def acquire(self, tokens: float) -> tuple[float, str]:
        """Wait until one request of ``tokens`` is covered (one lease at most: a lease covers what was missing);
        the seconds waited and which limit held it."""
        start = time.monotonic()
        reason = ""
        async with self._lock:
            if (self.rpm and self.requests < 1.0) or (self.tpm and self.tokens < tokens):
                want_r = self.lease_requests if self.rpm and self.requests < 1.0 else 0.0
                want_t = max(tokens - self.tokens, self.lease_tokens) if self.tpm and self.tokens < tokens else 0.0
                self.asked += 1
                got_r, got_t, wait, held = await self.budget.take.remote(self.model, want_r, want_t)
                self.requests += got_r
                self.tokens += got_t
                if wait > 0:  # the reservation is ours once the buckets have made it
                    reason = held
                    await asyncio.sleep(wait)
            if self.rpm:
                self.requests -= 1.0
            if self.tpm:
                self.tokens -= tokens
        waited = time.monotonic() - start
        if not reason and waited < 0.001:
            return 0.0, ""
        return waited, reason or "requests_per_minute"

    def settle(self, estimated: float, actual: float) -> None:
        """The request used ``actual`` tokens where ``estimated`` were taken: the difference is this worker's."""
        if self.tpm:
            self.tokens += estimated - actual
