"""Retries: one record and one back-off for every retry runner makes.

A stage's ``retry:`` (the engine tries the whole stage again) and a model's or embedder's ``retry:`` (the
provider sends the request again) are the same :class:`RetryPolicy`; only their defaults differ (a stage
runs once unless told otherwise, a model call is tried four times). The wait before the next attempt is
:meth:`RetryPolicy.backoff`: exponential from ``initial_delay``, capped at ``max_delay``, with full jitter
(a uniform draw below that cap, so that many callers failing together do not retry together: "Exponential
Backoff And Jitter", AWS Architecture Blog, 2015), unless the server said when to come back
(``Retry-After``, read by :func:`parse_retry_after`).

Pure: no asyncio, no I/O, nothing above :mod:`runner.errors` in the house; the callers sleep.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass

JITTER_MODES = ("full", "none")
RETRY_KINDS = ("timeout", "connect", "read", "protocol")
"""Error kinds ``retry.retry_on`` may name besides HTTP status codes: a timeout fired, the connection could
not be made, the connection broke while reading the answer (a stream cut mid-way included), the answer
could not be understood (malformed JSON)."""

DEFAULT_RETRY_ON: tuple[int | str, ...] = (408, 409, 429, 500, 502, 503, 504, "timeout", "connect", "read")
"""Retried by default: what a later attempt of the same request can fix. 408 (the server or a gateway timed
the request out: LiteLLM's proxy answers its own timeouts so) and 409 (a conflict, OpenAI's "lock timeout":
chat and embedding requests create nothing, so the retry cannot conflict), as the OpenAI SDK retries them;
429 and the transient 5xx (500, 502, 503, 504); a timeout, a refused connection, a connection broken while
reading. Not 501/505 (the server cannot do it, however often asked), nor ``protocol`` (an answer that cannot be
understood comes out the same again). The same statuses reported in a body (an error event mid-stream) count
the same."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently to try again.

    ``max_attempts`` counts the first attempt (1: no retry). The wait after failed attempt ``n`` is
    :meth:`backoff`: ``min(max_delay, initial_delay * 2 ** (n - 1))``, drawn uniformly from ``[0, that]``
    with ``full`` jitter, exactly that with ``none``; a ``Retry-After`` the server sent replaces it.
    ``retry_on`` holds the HTTP statuses and error kinds (:data:`RETRY_KINDS`) a provider retries; a stage's
    retry decides by the error itself (a template or configuration mistake is never retried) and does not
    read it. The defaults are a stage's; a model's are :data:`MODEL_RETRY`.
    """

    max_attempts: int = 1
    initial_delay: float = 0.5
    max_delay: float = 8.0
    jitter: str = "full"
    retry_on: tuple[int | str, ...] = DEFAULT_RETRY_ON

    def retries(self, kind: str) -> bool:
        """Whether an error of ``kind`` (an error kind, or a status code as text) is retried."""
        return any(str(entry) == kind for entry in self.retry_on)

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1 for the first) before the next one."""
        if retry_after is not None:
            return retry_after
        cap = min(self.max_delay, self.initial_delay * 2 ** (attempt - 1))
        return random.uniform(0.0, cap) if self.jitter == "full" else cap


MODEL_RETRY = RetryPolicy(max_attempts=4)
"""A model's or embedder's retries when its ``retry:`` says nothing: four attempts, 0.5 s doubling to 8 s."""


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date (RFC 9110 10.2.3); None when
    absent or unreadable. A date in the past is 0."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:  # "inf" and "nan" parse as floats but are no delay: a server sending them said nothing usable
        return max(0.0, seconds) if math.isfinite(seconds) else None
    import email.utils  # noqa: PLC0415 - 13 ms of imports that `runner validate`, which reads this module, never needs

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
