"""A stage's policies around one run of it: ``when`` (skip it), ``timeout`` (stop it) and ``retry`` (run
it again after a back-off). A stage that declares none never comes here (``Engine.run_stage``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from runner.dispatch import first_error
from runner.errors import GateStop, ProviderConfigError, ProviderError, StageTimeout, TemplateError, ToolError
from runner.events import Recorder
from runner.stages.base import SKIPPED, StagePlan, StagePolicy, brief
from runner.stages.base import truthy as truthy  # the one reading of a condition, shared with loops


def retryable(exc: BaseException) -> bool:
    """Whether a stage retry may help: not for the user's own mistakes (templates, config, imports, a 4xx)."""
    if isinstance(exc, TemplateError | ProviderConfigError | ToolError | GateStop):  # a gate's decision stands
        return False
    if isinstance(exc, ProviderError):
        return exc.retryable
    return isinstance(exc, Exception)


async def run_with_policy(
    sp: StagePlan,
    policy: StagePolicy,
    node: str,
    recorder: Recorder,
    context: Callable[[], dict[str, Any]],
    run_once: Callable[[dict[str, Any]], Awaitable[Any]],
) -> Any:
    """``run_once(context())`` under the stage's policies; :data:`SKIPPED` when its ``when`` is false. Each
    attempt gets a fresh template context (a failed attempt may have changed its own)."""
    if policy.when is not None and sp.when is not None:
        condition = sp.when.template.evaluate(context())
        if not truthy(condition):
            recorder.emit("skipped", node, {"kind": sp.kind.name, "reason": f"when was {condition!r}"})
            return SKIPPED
    retry = policy.retry
    attempt = 1
    while True:
        ctx = context()
        try:
            if policy.timeout is None:
                return await run_once(ctx)
            scope = asyncio.timeout(policy.timeout)
            try:
                async with scope:
                    return await run_once(ctx)
            except TimeoutError:
                if scope.expired():
                    # The node saw its cancellation ("cancelled"); the report must say the timeout stopped it.
                    timed_out = StageTimeout(f"stage '{node}' timed out after {policy.timeout:g} s")
                    recorder.emit("failed", node, {"error": str(timed_out), "timeout": policy.timeout})
                    raise timed_out from None
                raise
        except Exception as exc:
            error = first_error(exc)
            if attempt >= retry.max_attempts or not retryable(error):
                raise error from None
            delay = retry.backoff(attempt)  # the one back-off formula (runner/retry.py), as model retries use
            cause = error.kind if isinstance(error, ProviderError) else type(error).__name__
            recorder.emit(
                "retry",
                node,
                {"cause": cause, "error": brief(error), "scope": "stage", "attempt": attempt, "delay": delay},
            )
            await asyncio.sleep(delay)
            attempt += 1
