"""Python stages for tests/test_api.py (named by import path in its workflows)."""

from __future__ import annotations

import asyncio

MEETING: dict[str, asyncio.Event] = {}
"""Filled by a test before it runs the two ``meet_*`` workflows: each sets its own event and waits for the
other's, so the two runs finish only if they run at the same time in one loop."""


async def meet_a(input: str) -> str:
    MEETING["a"].set()
    await MEETING["b"].wait()
    return f"a met b after {input!r}"


async def meet_b(input: str) -> str:
    MEETING["b"].set()
    await MEETING["a"].wait()
    return f"b met a after {input!r}"


def count(stages: dict[str, object]) -> dict[str, int]:
    """A python stage's output may be any value: Result.stages keeps it as it is."""
    return {"stages_before": len(stages)}


def fail(input: str) -> str:
    raise LookupError(f"no such thing as {input!r}")
