"""``runner validate --connect`` (issue 22): start every MCP server a file defines, and check that each tool its
agents name (``include``, ``exclude``, ``mcp.SERVER.TOOL``) exists there; an unknown tool is located at its entry
with the closest name the server has. A server that cannot start is located at its definition. The servers' stderr
goes to ``.runner/connect/mcp/NAME.stderr.log``, as a run's goes to its folder under ``.runner/runs``."""

from __future__ import annotations

import asyncio
from pathlib import Path

from runner.diagnostics import Diagnostic
from runner.mcp import require_sdk
from runner.validate.rules.common import diag
from runner.validate.rules.source import Source
from runner.workflow.document import load_document
from runner.workflow.records import Workflow


def check_connected(wf: Workflow) -> list[Diagnostic]:
    """The problems only a started server shows; none for a file without MCP servers."""
    if not wf.mcp_servers:
        return []
    require_sdk(wf.file)
    source = Source(load_document(Path(wf.file).read_text(encoding="utf-8"), wf.file))
    # the servers' stderr logs where a run's go, under .runner/ (a folder for each run there; one for validate)
    return asyncio.run(_check(wf, source, Path(".runner") / "connect"))


async def _check(wf: Workflow, source: Source, logs: Path) -> list[Diagnostic]:
    from runner.mcp.sources import McpTools, start_servers, unknown_tools  # noqa: PLC0415 - the SDK

    opened = McpTools()
    out: list[Diagnostic] = []
    try:
        errors = await start_servers(wf.mcp_servers, wf, logs, None, into=opened)
        for name, exc in errors.items():
            spec = wf.mcp_servers[name]
            if not isinstance(exc, Exception):
                raise exc
            out.append(
                diag(
                    wf.file,
                    source.key(("mcp_servers", name), spec.loc, len(name)),
                    "mcp-command",
                    str(exc),
                    "run the server's command by hand to see why, or raise its start_timeout",
                )
            )
        for agent in wf.agents.values():
            for use in agent.mcp_tools:
                server = opened.servers.get(use.server)
                if server is None or use.server in errors:
                    continue
                for tool, hint in unknown_tools(use, server.tools):
                    path: tuple[str | int, ...] = ("agents", agent.name, "tools", use.index)
                    if use.tool is None:
                        kind = "include" if tool in (use.include or ()) else "exclude"
                        listed = use.include if kind == "include" else use.exclude
                        path = (*path, kind, list(listed or ()).index(tool))
                    out.append(
                        diag(
                            wf.file,
                            source.value(path, agent.loc, len(agent.name)),
                            "unknown-tool",
                            f"agent '{agent.name}' lists tool '{tool}' of mcp server '{use.server}', which the "
                            "server does not have",
                            hint,
                        )
                    )
    finally:
        await opened.aclose()
    return out
