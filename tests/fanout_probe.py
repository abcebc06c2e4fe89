"""A fan-out branch for tests that counts the branches running at once in this process (a python stage:
``python: "tests.fanout_probe:work"``); reset :data:`STATE` before a run, read its ``peak`` after."""

from __future__ import annotations

import asyncio

STATE = {"running": 0, "peak": 0}


async def work(input: str) -> str:  # noqa: A002 - the name a python stage is given its input by
    STATE["running"] += 1
    STATE["peak"] = max(STATE["peak"], STATE["running"])
    try:
        for _ in range(5):  # a few loop turns: every branch that may run now gets to start meanwhile
            await asyncio.sleep(0)
        return input.upper()
    finally:
        STATE["running"] -= 1
