"""User code that leans on the current task being a real asyncio Task (tests/test_fanout_contracts.py names
these by import path): anyio's cancel scopes, httpx on its own transport, the OpenAI SDK, context variables;
and the openai provider on a transport a program passes in."""

from __future__ import annotations

import asyncio
import contextvars
import gc
from typing import Any

import anyio
import httpx
import openai

from runner.providers.openai import OpenAIChatProvider

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("runner_contract_var", default="unset")
CLEANED: list[str] = []
WAITING: list[int] = []


async def anyio_deadlines(input: str) -> str:
    """``move_on_after`` and ``fail_after`` inside a fan-out branch: both must fire."""
    with anyio.move_on_after(0.02) as scope:
        await anyio.sleep_forever()
    try:
        with anyio.fail_after(0.02):
            await anyio.sleep_forever()
        failed = False
    except TimeoutError:
        failed = True
    return f"{input}: move_on_after fired={scope.cancelled_caught}, fail_after fired={failed}"


async def httpx_with_timeout(input: str) -> str:
    """httpx's own (httpcore, anyio-based) transport with a read timeout, against a server that never answers."""
    async with httpx.AsyncClient(timeout=httpx.Timeout(5, read=0.05)) as client:
        try:
            response = await client.get(input)
        except httpx.ReadTimeout:
            return "httpx read timeout"
    return f"status {response.status_code}"


TRANSPORTS: list[httpx.AsyncHTTPTransport] = []


def openai_on_httpx_transport(name: str, settings: Any, *, transport: Any = None) -> OpenAIChatProvider:
    """A provider factory (runner.providers.base.ProviderFactory) that gives the openai provider httpx's own
    transport (httpcore, anyio underneath), as a program passes one in with ``transport=``."""
    given = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=settings.pool.max_connections))
    TRANSPORTS.append(given)
    return OpenAIChatProvider(name, settings, transport=given)


async def ask_sdk(url: str, question: str, timeout: float = 5.0) -> str:  # noqa: ASYNC109 - the SDK's own
    """A question to an OpenAI-compatible server through the official SDK (httpx and anyio underneath).

    Args:
        url: The server's base URL.
        question: What to ask.
        timeout: The SDK's timeout in seconds.
    """
    async with openai.AsyncOpenAI(base_url=url, api_key="sk-contract", timeout=timeout, max_retries=0) as client:
        try:
            reply = await client.chat.completions.create(
                model="contract-model", messages=[{"role": "user", "content": question}]
            )
        except openai.APITimeoutError:
            return f"{question}: the SDK timed out"
    return f"{question}: {reply.choices[0].message.content}"


async def set_outer() -> str:
    VAR.set("outer")
    return "set"


async def read_and_set(vars: dict[str, object]) -> str:
    """What the branch sees, then its own value, read back after its siblings have set theirs."""
    seen = VAR.get()
    VAR.set(f"item {vars['item']}")
    for _ in range(3):
        await asyncio.sleep(0)
    return f"{seen} -> {VAR.get()}"


def read_in_thread() -> str:
    """A sync stage runs in a worker thread; it sees the context of the branch that called it."""
    return VAR.get()


async def fail_when(vars: dict[str, object]) -> str:
    """Item 0 fails once every sibling is waiting; the others wait forever and note their cancellation."""
    if vars["item"] == 0:
        while len(WAITING) < 3:  # noqa: ASYNC110 - until the three siblings wait (one more per loop turn)
            await asyncio.sleep(0)
        raise RuntimeError("item 0 broke")
    try:
        WAITING.append(int(str(vars["item"])))
        await asyncio.Event().wait()
    finally:
        CLEANED.append(f"cleaned {vars['item']}")
    return "never"


async def group_failure(vars: dict[str, object]) -> str:
    """User code whose own TaskGroup fails: the run's error is the first real error, not the group."""

    async def child(i: int) -> None:
        await asyncio.sleep(0)
        raise LookupError(f"child {i} of item {vars['item']} found nothing")

    async with asyncio.TaskGroup() as group:
        group.create_task(child(1))
    return "never"


async def group_tool(item: int) -> str:
    """A tool whose own TaskGroup fails: the model gets the first real error."""
    await group_failure({"item": item})
    return "never"


GC_SEEN: list[tuple[tuple[int, int, int], int]] = []


def observe_gc() -> str:
    """A python stage: the collector's thresholds and freeze count while the run is in flight."""
    GC_SEEN.append((gc.get_threshold(), gc.get_freeze_count()))
    return "seen"
