"""Tools: Python callables named by import path, described to the model by a JSON Schema, run safely.

Sync tools run in a bounded thread pool, never on the event loop; async tools run on the loop. A tool's
failure (an exception, a timeout, bad arguments) goes back to the model as the tool's result text, so the
agent can recover; it never crashes the run.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import inspect
import json
import re
import sys
import types
import typing
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import ToolError

_JSON_TYPES: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object"}


def import_callable(path: str, *, base_dir: Path | None = None, what: str = "function") -> Callable[..., Any]:
    """``module:attr`` -> the callable. The workflow's folder is importable, like a script's own folder."""
    module_name, _, attr = path.partition(":")
    if base_dir is not None and str(base_dir) not in sys.path:
        sys.path.insert(0, str(base_dir))
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - an import failure of user code is the user's to fix
        raise ToolError(f"cannot import {what} {path!r}: {type(exc).__name__}: {exc}") from exc
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ToolError(f"cannot import {what} {path!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ToolError(f"{what} {path!r} is not callable")
    fn: Callable[..., Any] = obj
    return fn


def _schema_of(annotation: Any) -> dict[str, Any]:
    if annotation is inspect.Parameter.empty or annotation is Any:
        return {}
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return _schema_of(options[0])
        return {"anyOf": [_schema_of(a) for a in options]}
    if origin in (list, tuple, set, frozenset) or annotation in (list, tuple):
        schema: dict[str, Any] = {"type": "array"}
        if args and args[0] is not Ellipsis:
            schema["items"] = _schema_of(args[0])
        return schema
    if origin is dict:
        return {"type": "object"}
    if annotation in _JSON_TYPES:
        return {"type": _JSON_TYPES[annotation]}
    return {}


def _docstring_parts(doc: str) -> tuple[str, dict[str, str]]:
    """The description (first paragraph) and per-parameter text from Google (``Args:``) or Sphinx
    (``:param x:``) docstrings."""
    doc = inspect.cleandoc(doc or "")
    description = doc.split("\n\n", 1)[0].replace("\n", " ").strip()
    params: dict[str, str] = {}
    for match in re.finditer(r"^\s*:param\s+(?:\w+\s+)?(\w+):\s*(.+)$", doc, re.M):
        params[match.group(1)] = match.group(2).strip()
    section = re.search(r"^(?:Args|Arguments|Parameters):\s*\n((?:[ \t]+.*\n?)+)", doc, re.M)
    if section:
        for match in re.finditer(r"^\s+(\w+)(?:\s*\([^)]*\))?:\s*(.+)$", section.group(1), re.M):
            params.setdefault(match.group(1), match.group(2).strip())
    return description, params


def describe_function(fn: Callable[..., Any]) -> tuple[str, dict[str, Any]]:
    """(description, JSON Schema of the parameters) from the signature, type hints and docstring."""
    description, param_docs = _docstring_parts(fn.__doc__ or "")
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - unresolvable annotations: describe without types
        hints = {}
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, param in inspect.signature(fn).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        schema = _schema_of(hints.get(name, param.annotation))
        if name in param_docs:
            schema["description"] = param_docs[name]
        if param.default is inspect.Parameter.empty:
            required.append(name)
        elif param.default is None or isinstance(param.default, str | int | float | bool):
            schema["default"] = param.default
        properties[name] = schema
    parameters: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        parameters["required"] = required
    return description, parameters


@dataclass(frozen=True)
class Tool:
    """A Python callable an agent may call, with the description and JSON Schema a model sees."""

    name: str
    fn: Callable[..., Any]
    is_async: bool
    description: str
    parameters: Mapping[str, Any]
    timeout: float | None
    # A tool another program answers (an MCP server's, issue 22): (arguments, the call's node id) -> (result text, ok),
    # under ``timeout``.
    runs: Callable[[dict[str, Any], str], Awaitable[tuple[str, bool]]] | None = None

    def spec(self) -> dict[str, Any]:
        """The OpenAI ``tools`` entry for this tool."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": dict(self.parameters)},
        }


def load_tool(
    name: str,
    function: str,
    *,
    timeout: float | None = None,
    description: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    base_dir: Path | None = None,
) -> Tool:
    fn = import_callable(function, base_dir=base_dir, what="tool")
    auto_description, auto_parameters = describe_function(fn)
    is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)
    return Tool(name, fn, is_async, description or auto_description or name, parameters or auto_parameters, timeout)


class ToolRunner:
    """Runs tool calls: async ones on the loop, sync ones in a bounded pool of threads, each under its timeout.

    ``run`` never raises for the tool's own failures: the result text says what went wrong, for the model.
    """

    def __init__(self, tools: Mapping[str, Tool], *, max_threads: int = 16) -> None:
        self.tools: dict[str, Tool] = dict(tools)
        # An agent's tools from MCP servers: agent -> the name its model sees -> the key in ``tools`` (issue 22)
        self.by_agent: dict[str, dict[str, str]] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._max_threads = max_threads

    def executor(self) -> ThreadPoolExecutor:
        """The pool for sync user code (tools and python stages), created on first use."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self._max_threads, thread_name_prefix="runner-tool")
        return self._pool

    async def run(self, name: str, arguments: str, node: str = "") -> tuple[str, bool]:
        """(result text, ok) of one call with JSON ``arguments``; ``node``: the call's own node id (an MCP server
        is told the span it belongs to when the run is traced)."""
        tool = self.tools.get(name)
        if tool is None:
            return f"error: there is no tool named {name!r}; available: {', '.join(sorted(self.tools))}", False
        try:
            args = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as exc:
            return f"error: the arguments are not valid JSON ({exc.msg} at position {exc.pos})", False
        if not isinstance(args, dict):
            return "error: the arguments must be a JSON object", False
        if tool.runs is not None:
            try:
                async with asyncio.timeout(tool.timeout):
                    return await tool.runs(args, node)
            except TimeoutError:
                return f"error: tool {name!r} timed out after {tool.timeout:g} s", False
        try:
            async with asyncio.timeout(tool.timeout):
                if tool.is_async:
                    value = await tool.fn(**args)
                else:
                    loop = asyncio.get_running_loop()
                    context = contextvars.copy_context()  # the caller's context vars, as asyncio.to_thread
                    value = await loop.run_in_executor(self.executor(), context.run, _call, tool.fn, args)
        except TimeoutError:
            return f"error: tool {name!r} timed out after {tool.timeout:g} s", False
        except TypeError as exc:
            return f"error: bad arguments for tool {name!r}: {exc}", False
        except Exception as exc:  # noqa: BLE001 - the model gets the error and may recover
            while isinstance(exc, ExceptionGroup) and exc.exceptions:  # the tool's own TaskGroup: its first error
                exc = exc.exceptions[0]
            return f"error: tool {name!r} raised {type(exc).__name__}: {exc}", False
        return _as_text(value), True

    def close(self) -> None:
        """Stop taking work; running sync calls finish in their threads (Python cannot kill a thread)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def cut_result(text: str, max_chars: int, tool: str) -> str:
    """``text`` within ``max_chars``, with a note of what was cut when it is longer (issue 22: a tool result over
    the agent's tool-message budget)."""
    if len(text) <= max_chars:
        return text
    return (
        f"{text[:max_chars]}\n[cut: the result of {tool} was {len(text):,} characters; only the first "
        f"{max_chars:,} are shown (the agent's tool-message budget)]"
    )


def _call(fn: Callable[..., Any], args: dict[str, Any]) -> Any:
    return fn(**args)


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)
