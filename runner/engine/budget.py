"""A run's budget (``limits:``, issue 23): every model call of the run passes through :class:`Budget`.

Before a call, its worst case is added to what the run has used and what the calls in flight may still use:

- ``max_model_calls``: the calls started so far, plus this one (a call its provider retries counts once);
- ``max_tokens``: the tokens counted so far (the finished calls' usage, the calls in flight at their worst),
  plus this call's prompt, estimated at a token per four characters of its messages and tools, plus its
  output bound, the model's ``params.max_completion_tokens`` or ``params.max_tokens`` when set (without one
  the output is not bounded, and the run may end up to one reply over the limit);
- ``max_cost``: the same tokens priced with the model's ``pricing`` (a model without pricing costs nothing);
- ``max_duration``: the seconds since the run started; no call starts after it.

``enforce`` refuses the call that would cross a limit: it waits for the calls in flight to finish (their
replies are kept and counted) and then fails the run with :class:`LimitReached`, as does every later call.
``audit`` lets it through and records one warning per limit. The ``limits``/``limit_reached``/``limit_warning``
events carry what the report's ``run.limits`` says.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runner.calls import ChatResult
from runner.config.limits import LIMITS, RunLimits
from runner.config.pricing import Pricing
from runner.errors import RunError
from runner.events import Recorder
from runner.memory.tokens import MESSAGE_OVERHEAD, message_text
from runner.providers.base import CallContext, ChatProvider, Message

LIMITS_NODE = "limits"
"""The node id of the budget's events (no stage: the report's spans skip them)."""


class LimitReached(RunError):
    """A model call refused because its worst case would cross one of the run's ``limits``."""

    def __init__(self, message: str, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


@dataclass(slots=True)
class _Ticket:
    """What an admitted call may use at worst, held until it ends."""

    tokens: int
    cost: float
    pricing: Pricing | None


def _estimate(messages: Sequence[Message], tools: Sequence[Mapping[str, Any]]) -> int:
    """The prompt's tokens at a token per four characters (the working memory's ``approx`` counter's rule)."""
    chars = 0
    for message in messages:
        texts, images = message_text(message)
        chars += sum(len(t) for t in texts) + images * 4 * 765
    if tools:
        chars += len(json.dumps(list(tools), default=str))
    return -(-chars // 4) + MESSAGE_OVERHEAD * len(messages)


def output_bound(settings: Any) -> int | None:
    """The request's bound on output tokens: ``params.max_completion_tokens`` or ``params.max_tokens``."""
    params = getattr(settings, "params", None) or {}
    for key in ("max_completion_tokens", "max_tokens"):
        value = params.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _money(value: float) -> str:
    return f"${value:.6f}".rstrip("0").rstrip(".") if value else "$0"


class Budget:
    """The figures of one run against its ``limits``; shared by every model's :class:`Budgeted` provider."""

    def __init__(
        self,
        limits: RunLimits,
        recorder: Recorder,
        file: str,
        clock: Any = time.perf_counter,
        resume: str | None = None,
    ) -> None:
        self.limits = limits
        self.resume = resume  # the run folder of a run that keeps a checkpoint: the stop says how to resume it
        self.recorder = recorder
        self.file = file
        self.clock = clock
        self.start = clock()
        self.calls = 0  # started
        self.tokens = 0  # of finished calls
        self.cost = 0.0  # of finished calls on priced models
        self.reserved_tokens = 0  # worst case of the calls in flight
        self.reserved_cost = 0.0
        self.in_flight = 0
        self.warned: set[str] = set()
        self.stopped: str | None = None  # the message of the limit that stopped the run
        self.stopped_by: str | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        settings = {k: v for k in LIMITS if (v := limits.value(k)) is not None}
        recorder.emit("limits", LIMITS_NODE, {"mode": limits.mode, "settings": settings})

    async def admit(
        self,
        model: str,
        pricing: Pricing | None,
        bound: int | None,
        messages: Sequence[Message],
        tools: Sequence[Mapping[str, Any]],
        node: str,
    ) -> _Ticket:
        """Count the call in, or (enforce) wait for the calls in flight and raise :class:`LimitReached`."""
        if self.stopped is None:
            prompt = _estimate(messages, tools)
            worst_tokens = prompt + (bound or 0)
            worst_cost = pricing.cost(prompt, bound or 0) if pricing is not None else 0.0
            crossed = self._crossed(worst_tokens, worst_cost, model, node)
            if crossed is not None:
                limit, message, figures = crossed
                if self.limits.mode == "audit":
                    if limit not in self.warned:
                        self.warned.add(limit)
                        warning = {"limit": limit, **figures, "message": message}
                        self.recorder.emit("limit_warning", LIMITS_NODE, warning)
                else:
                    self.stopped, self.stopped_by = message, limit
                    self.recorder.emit("limit_reached", LIMITS_NODE, {"limit": limit, **figures, "message": message})
            if self.stopped is None:
                self.calls += 1
                self.in_flight += 1
                self.reserved_tokens += worst_tokens
                self.reserved_cost += worst_cost
                self._idle.clear()
                return _Ticket(worst_tokens, worst_cost, pricing)
        await self._idle.wait()  # the calls in flight finish, and their replies count, before the run ends
        raise LimitReached(self.stopped, self.stopped_by or "")

    def settle(self, ticket: _Ticket, result: ChatResult | None) -> None:
        """The call ended: its worst case is released and its usage (none for a failed call) counted."""
        self.in_flight -= 1
        self.reserved_tokens -= ticket.tokens
        self.reserved_cost -= ticket.cost
        if result is not None:
            used_in, used_out = result.usage.prompt_tokens, result.usage.completion_tokens
            self.tokens += used_in + used_out
            if ticket.pricing is not None:
                self.cost += ticket.pricing.cost(used_in, used_out, result.usage.cached_tokens)
        if self.in_flight == 0:
            self._idle.set()

    def totals(self) -> dict[str, Any]:
        """What the run has spent so far (calls started; tokens and cost of finished calls), for its checkpoint."""
        return {"calls": self.calls, "tokens": self.tokens, "cost": round(self.cost, 9)}

    def count_totals(self, totals: Mapping[str, Any]) -> None:
        """Count what a resumed run's earlier parts spent, as its checkpoint kept it (:meth:`totals`)."""
        self.calls += int(totals.get("calls", 0))
        self.tokens += int(totals.get("tokens", 0))
        self.cost += float(totals.get("cost", 0.0))

    def count_spent(self, models: Mapping[str, Any], spent: Sequence[tuple[str, int, int]]) -> None:
        """Count what a resumed run's earlier part used (a (model, prompt tokens, completion tokens) per finished
        agent call): a resumed run's limits hold for the whole run, not this part of it."""
        for model, prompt, completion in spent:
            config = getattr(models.get(model), "config", None)
            pricing = getattr(config, "pricing", None)
            self.calls += 1
            self.tokens += prompt + completion
            self.cost += pricing.cost(prompt, completion) if pricing is not None else 0.0

    def _crossed(
        self, worst_tokens: int, worst_cost: float, model: str, node: str
    ) -> tuple[str, str, dict[str, Any]] | None:
        """The first limit this call would cross: (limit, message, figures), or None."""
        lim = self.limits
        call = f"the next model call (node '{node}', model '{model}')"
        found: tuple[str, float | int, float | int, str] | None = None
        if lim.max_model_calls is not None and self.calls + 1 > lim.max_model_calls:
            said = f"{self.calls:,} model call{'' if self.calls == 1 else 's'} made"
            found = ("max_model_calls", lim.max_model_calls, self.calls, said)
        elif lim.max_tokens is not None and self.tokens + self.reserved_tokens + worst_tokens > lim.max_tokens:
            used = self.tokens + self.reserved_tokens
            said = f"{used:,} tokens used, and {call} could use up to {worst_tokens:,}"
            found = ("max_tokens", lim.max_tokens, used, said)
        elif lim.max_cost is not None and self.cost + self.reserved_cost + worst_cost > lim.max_cost:
            spent = round(self.cost + self.reserved_cost, 6)
            said = f"{_money(spent)} spent, and {call} could cost up to {_money(worst_cost)}"
            found = ("max_cost", lim.max_cost, spent, said)
        elif lim.max_duration is not None and (elapsed := self.clock() - self.start) >= lim.max_duration:
            found = ("max_duration", lim.max_duration, round(elapsed, 3), f"{elapsed:.1f} s elapsed")
        if found is None:
            return None
        limit, setting, reached, said = found
        shown = f"{setting:.10g}" if isinstance(setting, float) else f"{setting:,}"  # 1000000.0: 1000000, not 1e+06
        if self.limits.mode == "audit":
            message = f"limits.{limit} = {shown} crossed (audit: the run goes on): {said}"
        else:
            again = "run it again" if self.resume is None else f"resume it: runner run --resume {self.resume}"
            message = (
                f"run stopped by limits.{limit} = {shown}: {said}; to finish the run, raise limits.{limit} "
                f"in {self.file} and {again}"
            )
        return limit, message, {"setting": setting, "reached": reached}


class Budgeted:
    """A model's provider whose calls the run's :class:`Budget` admits and counts."""

    def __init__(self, name: str, inner: ChatProvider, budget: Budget, pricing: Pricing | None, bound: int | None):
        self.name = name
        self.inner = inner
        self.budget = budget
        self.pricing = pricing
        self.bound = bound

    async def chat(
        self, messages: Sequence[Message], ctx: CallContext, *, tools: Sequence[Mapping[str, Any]] = ()
    ) -> ChatResult:
        ticket = await self.budget.admit(self.name, self.pricing, self.bound, messages, tools, ctx.node_id)
        result: ChatResult | None = None
        try:
            reply: Awaitable[ChatResult] = self.inner.chat(messages, ctx, tools=tools)
            result = await reply
        finally:
            self.budget.settle(ticket, result)
        return result

    async def aclose(self) -> None:
        await self.inner.aclose()

    def __getattr__(self, name: str) -> Any:  # what else the engine reads of a provider (its settings)
        return getattr(self.inner, name)


def budgeted(
    providers: Mapping[str, ChatProvider],
    limits: RunLimits,
    recorder: Recorder,
    file: str,
    models: Mapping[str, Any],
    resume: str | None = None,
    spent: Sequence[tuple[str, int, int]] = (),
    *,
    budget: Budget | None = None,
) -> dict[str, ChatProvider]:
    """``providers`` with each one's calls going through one :class:`Budget` of ``limits``. ``models``: the
    workflow's model specs (their pricing and output bound). ``resume``: the run folder of a checkpointed run;
    ``spent``: what its earlier part used, a (model, prompt tokens, completion tokens) per finished agent call.
    ``budget``: an existing one to count against instead (a child workflow's calls count in its parent's run:
    issue 22), which its maker gave its own ``resume`` and ``spent``."""
    if budget is None:
        budget = Budget(limits, recorder, file, resume=resume)
        budget.count_spent(models, spent)
    out: dict[str, ChatProvider] = {}
    for name, provider in providers.items():
        spec = models.get(name)
        config = spec.config if spec is not None else None
        out[name] = Budgeted(name, provider, budget, getattr(config, "pricing", None), output_bound(config))
    return out
