"""One tool call of an agent's ReAct loop, as its own node (``<node>.tool[<iteration>.<j>]``).

The workflow's tools run through :class:`runner.tools.ToolRunner`; two are built in, for agents with memory:
``read_stored_result`` (working memory: a long tool result stored to a file, read back) and ``recall``
(long-term memory, ``retrieval: tool``). A tool's failure is its result text, for the model to read.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
from collections.abc import Callable
from typing import Any

from runner.errors import RunnerError
from runner.events import Recorder
from runner.stages.base import brief
from runner.tools import ToolRunner


async def tool_call(
    recorder: Recorder,
    tools: ToolRunner,
    node: str,
    index: str,
    name: str,
    arguments: str,
    limit: asyncio.Semaphore,
    working: Any,
    store: Any,
    top_k: int,
) -> str:
    """The result text of one call, once a slot of ``limit`` (the agent's ``max_parallel_tools``) is free."""
    tool_node = f"{node}.tool[{index}]"
    async with limit:
        # the arguments for tool-call assertions (issue 24); reports copy only kind, tool and parent
        detail = {"kind": "tool", "tool": name, "parent": node, "arguments": arguments}
        if name.startswith("mcp."):  # an MCP server's tool, mcp.SERVER.TOOL: the report names the server (issue 22)
            detail["server"] = name.split(".", 2)[1]
        recorder.emit("started", tool_node, detail)
        try:
            if name == "read_stored_result" and working is not None:
                text, ok = await _builtin(tools, working.read_stored_result, arguments)
            elif name == "recall" and store is not None:
                text, ok = await _recall(store, top_k, arguments)
            else:
                text, ok = await tools.run(name, arguments, tool_node)
        except BaseException as exc:
            recorder.emit("cancelled", tool_node, {"error": brief(exc)})
            raise
        recorder.emit("finished" if ok else "failed", tool_node, None if ok else {"error": text})
        return text


async def _builtin(tools: ToolRunner, fn: Callable[..., str], arguments: str) -> tuple[str, bool]:
    try:
        args = json.loads(arguments or "{}")
        context = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(tools.executor(), context.run, functools.partial(fn, **args)), True
    except (json.JSONDecodeError, TypeError, RunnerError) as exc:
        return f"error: {exc}", False


async def _recall(store: Any, top_k: int, arguments: str) -> tuple[str, bool]:
    from runner.embeddings.store import format_hits  # noqa: PLC0415

    try:
        query = json.loads(arguments or "{}")["query"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return 'error: recall takes {"query": "..."}', False
    return format_hits(await store.search(str(query), top_k)), True
