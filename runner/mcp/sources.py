"""A run's MCP servers (issue 22): the servers its agents use, started together before the first stage (a dataset
batch: once for all its rows), their tools given to the agents that list them, all stopped when the run ends.

An agent's model sees an MCP tool under the tool's own name (made safe for the OpenAI ``tools`` format) with its
description and its input JSON Schema as the server gives them; the run's :class:`~runner.tools.ToolRunner` holds it
as ``mcp.SERVER.TOOL``, the name the report shows.
"""

from __future__ import annotations

import asyncio
import difflib
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from runner.config.mcp import McpToolUse
from runner.errors import RunnerError
from runner.events import Recorder
from runner.mcp.server import McpServer
from runner.plan.compile import Plan
from runner.tools import Tool, ToolRunner
from runner.workflow.records import Workflow

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


class McpToolsError(RunnerError):
    """An agent names an MCP tool its server does not have, or two of its tools share a name."""


@dataclass
class McpTools:
    """The started servers of a run, by name."""

    servers: dict[str, McpServer] = field(default_factory=dict)

    async def aclose(self) -> None:
        await asyncio.gather(*(s.aclose() for s in self.servers.values()), return_exceptions=True)


def uses_by_agent(plan: Plan) -> dict[str, tuple[McpToolUse, ...]]:
    return {name: agent.spec.mcp_tools for name, agent in plan.agents.items() if agent.spec.mcp_tools}


async def start_servers(
    names: Iterable[str], wf: Workflow, run_dir: Path, recorder: Recorder | None, *, into: McpTools
) -> dict[str, BaseException]:
    """Start the named servers at once; what failed, by name (the others started)."""
    base_dir = _folder(wf.file)
    for name in sorted(set(names)):
        log = run_dir / "mcp" / f"{name}.stderr.log"
        into.servers[name] = McpServer(wf.mcp_servers[name], base_dir, log, recorder)
    results = await asyncio.gather(*(s.start() for s in into.servers.values()), return_exceptions=True)
    return {name: r for name, r in zip(into.servers, results, strict=True) if isinstance(r, BaseException)}


def _folder(file: str) -> Path:
    return Path(file).resolve().parent


def closest(name: str, options: Iterable[str]) -> str:
    names = sorted(options)
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
    if close:
        return f"did you mean '{close[0]}'?"
    return f"it has: {', '.join(names)}" if names else "it has no tools"


def unknown_tools(use: McpToolUse, available: Iterable[str]) -> list[tuple[str, str]]:
    """(tool, hint) for each tool ``use`` names that the server does not have."""
    have = set(available)
    return [(tool, closest(tool, have)) for tool in use.named() if tool not in have]


def model_name(tool: str) -> str:
    return _UNSAFE.sub("_", tool)[:64]


async def open_mcp(plan: Plan, tools: ToolRunner, run_dir: Path, recorder: Recorder | None = None) -> McpTools:
    """Start the servers the plan's agents use and give each agent its tools (in ``tools``); the caller closes the
    result on every exit path, a failure here having closed what it started."""
    opened = McpTools()
    uses = uses_by_agent(plan)
    names = (u.server for lst in uses.values() for u in lst)
    try:
        errors = await start_servers(names, plan.workflow, run_dir, recorder, into=opened)
    except BaseException:  # cancelled while starting (Ctrl-C): those that had started are stopped too
        await opened.aclose()
        raise
    if errors:  # every server stopped, the first failure raised
        await opened.aclose()
        raise next((e for e in errors.values() if not isinstance(e, RunnerError)), next(iter(errors.values())))
    try:
        for agent, entries in uses.items():
            seen: dict[str, str] = {name: f"tool '{name}'" for name in plan.agents[agent].spec.tools}
            mapping: dict[str, str] = {}
            for use in entries:
                server = opened.servers[use.server]
                for tool, hint in unknown_tools(use, server.tools):
                    raise McpToolsError(
                        f"agent '{agent}' lists tool '{tool}' of mcp server '{use.server}', which the server does "
                        f"not have: {hint}"
                    )
                for tool in sorted(t for t in server.tools if use.selects(t)):
                    shown = model_name(tool)
                    key = f"mcp.{use.server}.{tool}"
                    if shown in seen and seen[shown] != key:
                        raise McpToolsError(
                            f"agent '{agent}' has two tools named '{shown}': {seen[shown]} and {key}; leave one out "
                            "with exclude"
                        )
                    seen[shown] = key
                    mapping[shown] = key
                    if key not in tools.tools:
                        spec = server.tools[tool]
                        tools.tools[key] = Tool(
                            shown,
                            _no_function,
                            True,
                            spec.description or tool,
                            dict(spec.input_schema),
                            server.spec.timeout,
                            functools.partial(server.call, tool),
                        )
            tools.by_agent[agent] = mapping
    except BaseException:
        await opened.aclose()
        raise
    return opened


async def _no_function(**_: object) -> None:  # an MCP tool runs through Tool.runs, never its fn
    raise AssertionError("an MCP tool is called through its server")


def server_figures(opened: McpTools) -> Mapping[str, float | None]:
    return {name: s.startup_s for name, s in opened.servers.items()}
