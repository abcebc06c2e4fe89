"""MCP servers as tool sources (issue 22), over the official ``mcp`` SDK from the optional extra ``runner[mcp]``.

This module imports nothing of the SDK: a run imports :mod:`runner.mcp.sources` (and with it the SDK) only when its
agents use an MCP server, after :func:`require_sdk` has said how to install the extra when it is missing.
"""

from __future__ import annotations

import importlib.util

from runner.errors import RunnerError

INSTALL_HINT = "pip install 'runner[mcp]'"


class McpUnavailable(RunnerError):
    """The workflow uses MCP servers and the ``mcp`` SDK is not installed."""


def require_sdk(file: str) -> None:
    """Raise :class:`McpUnavailable` (an exit 1, before anything starts) when the SDK is missing."""
    if importlib.util.find_spec("mcp") is None:
        raise McpUnavailable(
            f"{file}: this workflow uses mcp_servers, and the MCP SDK is not installed: {INSTALL_HINT}"
        )
