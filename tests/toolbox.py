"""Tools and python-stage functions the tests name by import path (``tests.toolbox:...``)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Literal

CALLS: dict[str, int] = {}
THREADS: list[str] = []
SLEEPING = threading.Event()  # set when slow_sync begins its sleep: a test acts while a tool is mid-call


def slow_sync(seconds: float) -> str:
    """Sleep in a worker thread."""
    THREADS.append(threading.current_thread().name)
    SLEEPING.set()
    time.sleep(seconds)
    return f"slept {seconds}"


RELEASE = threading.Event()  # opened by release(): a tool waits on it in its thread (see wait_for_release)


def wait_for_release(seconds: float) -> str:
    """Block this worker thread until another stage calls ``release`` (at most ``seconds``)."""
    THREADS.append(threading.current_thread().name)
    return "released" if RELEASE.wait(seconds) else f"not released within {seconds} s"


def release(input: str) -> str:
    RELEASE.set()
    return input


async def slow_async(seconds: float, label: str = "x") -> str:
    """Sleep on the loop.

    Args:
        seconds: How long.
        label: What to say.
    """
    await asyncio.sleep(seconds)
    return f"{label} after {seconds}"


def boom(reason: str) -> str:
    raise ValueError(reason)


def typed(
    name: str,
    count: int,
    ratio: float = 0.5,
    flag: bool = False,
    tags: list[str] | None = None,
    mode: Literal["a", "b"] = "a",
) -> dict[str, object]:
    """Echo typed arguments.

    :param name: a name
    :param count: how many
    """
    return {"name": name, "count": count}


def flaky(input: str) -> str:
    """Fails on the first two calls for each input, then succeeds."""
    CALLS[input] = CALLS.get(input, 0) + 1
    if CALLS[input] < 3:
        raise ConnectionError(f"flaky failure {CALLS[input]}")
    return f"ok after {CALLS[input]}"


def items(inputs: dict[str, object]) -> list[int]:
    return list(range(int(inputs["n"])))  # type: ignore[call-overload]


async def shout(input: str, vars: dict[str, object]) -> str:
    await asyncio.sleep(0)
    return f"{input.upper()}{vars.get('suffix', '')}"
