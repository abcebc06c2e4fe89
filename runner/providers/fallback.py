"""Fallback models (``models.<name>.fallback``, issue 23): when a model fails for a cause its ``on`` names, the
call's next attempt goes to the next model of its list.

How it meets the model's own ``retry``: each model keeps its own pool, rate limit and retries, and a call moves
to the next model only once its model gave up, so a server error, a timeout or a refused connection is first
retried as the model's ``retry`` says (a blip on one server does not move traffic). Two causes move at once: a
429, because the server said it is over its limit and waiting out its Retry-After is what a fallback avoids
(the model's provider is opened without 429 in its ``retry_on`` when its fallback names 429: see
:func:`without_429_retries`), and a context-length error, which no retry can mend. After a 429 the model is
skipped for ``cooldown`` seconds (its calls start at the next model), then tried first again. Only the listed
models are tried, each as itself: a fallback's own ``fallback`` is not followed. Each move is a ``fallback``
event (``model``, ``to``, ``cause``; ``cooldown`` for a call that skipped the model), which the report counts.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from runner.calls import ChatResult
from runner.config.fallback import FallbackConfig
from runner.errors import ProviderConnectError, ProviderError, ProviderHTTPError, ProviderTimeout
from runner.providers.base import CallContext, ChatProvider, Message

CONTEXT_LENGTH_CODES = frozenset({"context_length_exceeded", "string_above_max_length"})


def cause_of(err: ProviderError) -> str | None:
    """The fallback cause of a failed call (one of :data:`runner.config.fallback.CAUSES`), or None."""
    if isinstance(err, ProviderHTTPError):
        if err.status == 429:
            return "429"
        if 500 <= err.status <= 599:
            return "5xx"
        if err.status == 400 and err.code in CONTEXT_LENGTH_CODES:
            return "context_length"
        return None
    if isinstance(err, ProviderTimeout):
        return "timeout"
    if isinstance(err, ProviderConnectError):
        return "connect"
    return None


def without_429_retries(settings: Any, fallback: FallbackConfig | None) -> Any:
    """``settings`` whose ``retry`` does not retry a 429 when ``fallback`` moves on one (else as they are)."""
    retry = getattr(settings, "retry", None)
    if fallback is None or "429" not in fallback.on or retry is None or not dataclasses.is_dataclass(settings):
        return settings
    kept = tuple(entry for entry in retry.retry_on if str(entry) != "429")
    return dataclasses.replace(settings, retry=dataclasses.replace(retry, retry_on=kept))  # type: ignore[type-var]


class FallbackProvider:
    """Model ``name``'s calls, moved along ``chain`` (the model first, then its fallbacks, each its own
    provider) as :mod:`this module <runner.providers.fallback>` says."""

    def __init__(
        self,
        name: str,
        chain: Sequence[tuple[str, ChatProvider]],
        config: FallbackConfig,
        cooldowns: dict[str, float] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.chain = tuple(chain)
        self.config = config
        self.clock = clock
        # model -> when its cooldown ends: shared by the providers of one run (or one dataset batch's rows)
        self.cooldowns = {} if cooldowns is None else cooldowns

    async def chat(
        self, messages: Sequence[Message], ctx: CallContext, *, tools: Sequence[Mapping[str, Any]] = ()
    ) -> ChatResult:
        chain = self.chain
        if self.clock() < self.cooldowns.get(self.name, float("-inf")):
            chain = chain[1:]
            self._moved(ctx, self.name, chain[0][0], "cooldown", None)
        last = len(chain) - 1
        for i, (name, provider) in enumerate(chain):
            try:
                return await provider.chat(messages, ctx, tools=tools)
            except ProviderError as err:
                cause = cause_of(err)
                if i == last or cause is None or cause not in self.config.on:
                    raise
                if cause == "429" and name == self.name:
                    self.cooldowns[self.name] = self.clock() + self.config.cooldown
                self._moved(ctx, name, chain[i + 1][0], cause, err)
                restart = getattr(ctx.on_token, "restart", None)
                if callable(restart):
                    restart()  # text the failed model streamed is void: the terminal says so before the next reply
        raise AssertionError("the chain has a model")  # the loop returns or raises

    @staticmethod
    def _moved(ctx: CallContext, model: str, to: str, cause: str, err: ProviderError | None) -> None:
        if ctx.recorder is not None:
            data = {"model": model, "to": to, "cause": cause}
            ctx.recorder.emit("fallback", ctx.node_id, data if err is None else {**data, "error": str(err)})

    async def aclose(self) -> None:
        return None  # the chain's providers are the run's, closed with the others

    def __getattr__(self, name: str) -> Any:
        return getattr(self.chain[0][1], name)


def with_fallbacks(
    providers: Mapping[str, ChatProvider], models: Mapping[str, Any], cooldowns: dict[str, float] | None = None
) -> dict[str, ChatProvider]:
    """``providers`` where each model with a ``fallback`` moves its failed calls along its list. ``models``:
    the workflow's model specs; ``cooldowns``: the models' cooldowns, shared with other calls of this (a
    dataset batch's rows share theirs)."""
    cooldowns = {} if cooldowns is None else cooldowns
    out = dict(providers)
    for name, provider in providers.items():
        spec = models.get(name)
        fallback = getattr(spec, "fallback", None)
        if fallback is None:
            continue
        chain = [(name, provider)] + [(m, providers[m]) for m in fallback.models if m in providers]
        if len(chain) > 1:
            out[name] = FallbackProvider(name, chain, fallback, cooldowns)
    return out
