"""MCP servers (issue 22), checked offline: every server an agent names is defined, and a stdio server's command
exists (on PATH, or as a path from its cwd), so that ``runner run`` fails on neither after a clean validate. Which
tools a server has is known only by starting it: ``runner validate --connect`` (:mod:`runner.mcp.connect`)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from runner.diagnostics import Diagnostic
from runner.validate.rules.common import diag, suggest
from runner.validate.rules.source import Source
from runner.workflow.records import Workflow


def check_mcp(wf: Workflow, source: Source) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for agent in wf.agents.values():
        for use in agent.mcp_tools:
            if use.server not in wf.mcp_servers:
                path: tuple[str | int, ...] = ("agents", agent.name, "tools", use.index)
                if use.tool is None:
                    path = (*path, "mcp")
                out.append(
                    diag(
                        wf.file,
                        source.value(path, agent.loc, len(agent.name)),
                        "unknown-mcp-server",
                        f"agent '{agent.name}' lists mcp server '{use.server}', which is not defined",
                        suggest(use.server, wf.mcp_servers, "mcp_servers"),
                    )
                )
    base = Path(wf.file).resolve().parent
    for server in wf.mcp_servers.values():
        if server.command is None:
            continue
        cwd = (base / server.cwd).resolve() if server.cwd else base
        if server.cwd and not cwd.is_dir():
            out.append(
                diag(
                    wf.file,
                    source.value(("mcp_servers", server.name, "cwd"), server.loc, len(server.name)),
                    "mcp-command",
                    f"mcp server '{server.name}': its cwd {server.cwd!r} is not a folder ({cwd})",
                    "give a folder relative to the workflow's folder",
                )
            )
            continue
        if _found(server.command, cwd):
            continue
        out.append(
            diag(
                wf.file,
                source.value(("mcp_servers", server.name, "command"), server.loc, len(server.name)),
                "mcp-command",
                f"mcp server '{server.name}': command {server.command!r} was not found "
                + ("(on PATH)" if os.sep not in server.command else f"(from {cwd})"),
                "install the server, or give the program's path (relative to the server's cwd)",
            )
        )
    return out


def _found(command: str, cwd: Path) -> bool:
    if os.sep in command:
        path = cwd / command
        return path.is_file() and os.access(path, os.X_OK)
    return shutil.which(command) is not None
