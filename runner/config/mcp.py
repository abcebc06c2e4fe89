"""MCP servers as tool sources (issue 22): the top-level ``mcp_servers:`` and an agent's MCP tool entries, as frozen
records with defaults applied.

Pure and free of the ``mcp`` SDK: ``runner validate`` and a workflow without MCP read this module, and a workflow
with ``mcp_servers:`` is checked offline whether the extra is installed or not. The raw mappings come from YAML that
passed the schema (``mcp_servers`` and ``$defs/mcpTools`` of ``schemas/workflow.schema.json``).

A stdio server receives exactly the environment variables named by its ``env`` list (issue 22: "nothing else is
passed"), so no secret of the runner's environment reaches a server that did not ask for it by name; an HTTP
server's headers take their values from named variables, read when the server is opened, never stored here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runner.config.source import Loc

DEFAULT_START_TIMEOUT = 30.0  # seconds for the process to start and answer initialize and tools/list
DEFAULT_CALL_TIMEOUT = 60.0  # seconds one tools/call may take
DEFAULT_MAX_CONCURRENCY = 16  # calls in flight on one server at once
TOOL_PREFIX = "mcp."  # an agent's single tool: mcp.SERVER.TOOL


@dataclass(frozen=True, slots=True)
class HeaderFromEnv:
    """One HTTP header of a streamable HTTP server: its value is ``prefix`` + the variable ``env``."""

    env: str
    prefix: str = ""


@dataclass(frozen=True, slots=True)
class McpServerSpec:
    """``mcp_servers.<name>``: a stdio server (``command``) or a streamable HTTP one (``url``)."""

    name: str
    loc: Loc
    command: str | None = None
    args: tuple[str, ...] = ()
    cwd: str | None = None  # relative to the workflow's folder
    env: tuple[str, ...] = ()  # the names of the variables the process receives, and nothing else
    url: str | None = None
    headers: Mapping[str, HeaderFromEnv] | None = None
    start_timeout: float = DEFAULT_START_TIMEOUT
    timeout: float = DEFAULT_CALL_TIMEOUT
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY

    @property
    def transport(self) -> str:
        return "stdio" if self.command is not None else "http"


@dataclass(frozen=True, slots=True)
class McpToolUse:
    """An agent's tools from one MCP server: all of them (less ``exclude``), those in ``include``, or the one
    ``tool`` of a ``mcp.SERVER.TOOL`` entry. ``index`` is the entry's position in the agent's ``tools`` list."""

    server: str
    index: int
    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    tool: str | None = None

    def selects(self, name: str) -> bool:
        if self.tool is not None:
            return name == self.tool
        if self.include is not None and name not in self.include:
            return False
        return name not in self.exclude

    def named(self) -> tuple[str, ...]:
        """The tool names this entry names explicitly (which must exist on the server)."""
        if self.tool is not None:
            return (self.tool,)
        return (*(self.include or ()), *self.exclude)


def parse_server(name: str, raw: Mapping[str, Any], loc: Loc) -> McpServerSpec:
    headers = None
    if raw.get("headers"):
        headers = {
            header: HeaderFromEnv(v) if isinstance(v, str) else HeaderFromEnv(v["env"], v.get("prefix", ""))
            for header, v in raw["headers"].items()
        }
    return McpServerSpec(
        name=name,
        loc=loc,
        command=raw.get("command"),
        args=tuple(str(a) for a in raw.get("args") or ()),
        cwd=raw.get("cwd"),
        env=tuple(raw.get("env") or ()),
        url=raw.get("url"),
        headers=headers,
        start_timeout=float(raw.get("start_timeout", DEFAULT_START_TIMEOUT)),
        timeout=float(raw.get("timeout", DEFAULT_CALL_TIMEOUT)),
        max_concurrency=int(raw.get("max_concurrency", DEFAULT_MAX_CONCURRENCY)),
    )


def split_tools(entries: Any) -> tuple[tuple[str, ...], tuple[int, ...], tuple[McpToolUse, ...]]:
    """An agent's ``tools`` list -> (its Python tools' names, their positions in the list, its MCP entries)."""
    names: list[str] = []
    positions: list[int] = []
    uses: list[McpToolUse] = []
    for i, entry in enumerate(entries):
        if isinstance(entry, Mapping):
            include = entry.get("include")
            uses.append(
                McpToolUse(
                    server=entry["mcp"],
                    index=i,
                    include=tuple(include) if include is not None else None,
                    exclude=tuple(entry.get("exclude") or ()),
                )
            )
        elif isinstance(entry, str) and entry.startswith(TOOL_PREFIX):
            server, _, tool = entry[len(TOOL_PREFIX) :].partition(".")
            uses.append(McpToolUse(server=server, index=i, tool=tool))
        else:
            names.append(entry)
            positions.append(i)
    return tuple(names), tuple(positions), tuple(uses)
