"""One MCP server of a run (issue 22): started once, ``initialize`` and ``tools/list`` once, shared by every agent and
branch; calls concurrent up to ``max_concurrency``; a crash fails the call in flight with the server's stderr tail and
the server is restarted at most once; stopped on every exit path of the run.

The SDK's session and transports run on anyio, whose cancel scopes must be entered and left by one task: each
server's session lives in an owner task of its own, which holds it open until :meth:`McpServer.aclose` (or a start
that fails) ends it; calls from any task go through the session's request API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import mcp_types as types
from mcp import ClientSession
from mcp.shared.exceptions import MCPError

from runner.config.mcp import McpServerSpec
from runner.errors import RunError, RunnerError
from runner.events import TRACE, Recorder, span_id_of, traceparent
from runner.fsutil import open_for_appends
from runner.mcp.transport import StdioProcess, stdio_transport

STDERR_TAIL_LINES = 10
STDERR_TAIL_BYTES = 4000


class McpStartError(RunnerError):
    """An MCP server that could not be started: a missing command, an early exit, no answer in time."""


class McpServerError(RunError):
    """An MCP server that crashed again after its one restart: the run cannot go on without it."""


class McpServer:
    """A running MCP server, its tools (name -> the SDK's ``Tool``), and how long it took to start."""

    def __init__(self, spec: McpServerSpec, base_dir: Path, log_path: Path, recorder: Recorder | None = None) -> None:
        self.spec = spec
        self.base_dir = base_dir
        self.log_path = log_path
        self.recorder = recorder
        self.tools: dict[str, types.Tool] = {}
        self.pids: list[int] = []
        self.startup_s: float | None = None
        self.restarts = 0
        self._slots = asyncio.Semaphore(spec.max_concurrency)
        self._session: ClientSession | None = None
        self._process: StdioProcess | None = None
        self._owner: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._generation = 0
        self._lock = asyncio.Lock()
        self._serving = False  # the owner holds a session that answered tools/list, until it is told to stop
        self._log: int | None = None  # the stderr file's descriptor

    @property
    def name(self) -> str:
        return self.spec.name

    # -- start and stop

    async def start(self) -> None:
        """Start the server and list its tools within ``start_timeout``, or raise :class:`McpStartError`."""
        started = time.perf_counter()
        self._stop = asyncio.Event()
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._owner = asyncio.create_task(self._own(ready), name=f"mcp-server-{self.name}")
        try:
            async with asyncio.timeout(self.spec.start_timeout):
                await asyncio.shield(ready)
        except TimeoutError:
            ready.cancel()  # what the owner says after this is not awaited by anyone
            await self._end_owner()
            raise McpStartError(
                f"mcp server '{self.name}' did not answer initialize and tools/list within its start_timeout "
                f"({self.spec.start_timeout:g} s){self._tail_note()}"
            ) from None
        except BaseException:
            await self._end_owner()
            raise
        self._generation += 1
        self.startup_s = time.perf_counter() - started
        if self.recorder is not None:
            self.recorder.emit(
                "mcp_server",
                self.name,
                {
                    "server": self.name,
                    "transport": self.spec.transport,
                    "startup_s": round(self.startup_s, 6),
                    "tools": len(self.tools),
                    "restart": self.restarts,
                    **({"pid": self._process.pid} if self._process is not None else {}),
                },
            )

    async def _own(self, ready: asyncio.Future[None]) -> None:
        try:
            async with contextlib.AsyncExitStack() as stack:
                if self.spec.command is not None:
                    argv, cwd, env = self._stdio_launch()
                    if self._log is None:
                        self._log = self._open_log()
                    read, write, process = await stack.enter_async_context(stdio_transport(argv, cwd, env, self._log))
                    self._process = process
                    self.pids.append(process.pid)
                else:
                    read, write = await stack.enter_async_context(self._http_transport())
                session = await stack.enter_async_context(ClientSession(read, write))
                await session.initialize()
                tools: dict[str, types.Tool] = {}
                cursor: str | None = None
                while True:
                    listing = await session.list_tools(
                        params=types.PaginatedRequestParams(cursor=cursor) if cursor else None
                    )
                    tools.update((t.name, t) for t in listing.tools)
                    cursor = listing.next_cursor
                    if not cursor:
                        break
                self.tools = tools
                self._session = session
                self._serving = True
                ready.set_result(None)
                await self._stop.wait()
        except BaseException as exc:
            if not ready.done():
                if isinstance(exc, asyncio.CancelledError):
                    ready.cancel()
                else:
                    ready.set_exception(self._start_error(exc))
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self._session = None
            self._serving = False

    def _open_log(self) -> int:
        """The server's stderr file, appended to (a restart adds to it), held until :meth:`aclose`."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        fd, _ = open_for_appends(self.log_path)
        return fd

    def _start_error(self, exc: BaseException) -> BaseException:
        if isinstance(exc, asyncio.CancelledError | McpStartError):
            return exc
        while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
            exc = exc.exceptions[0]
        if isinstance(exc, MCPError):
            what = f"closed the connection before it answered initialize and tools/list ({exc.message})"
            if self._process is not None and self._process.returncode is not None:
                what = f"exited with code {self._process.returncode} before it answered initialize and tools/list"
        else:
            what = f"could not be started: {type(exc).__name__}: {exc}"
        return McpStartError(f"mcp server '{self.name}' {what}{self._tail_note()}")

    def _stdio_launch(self) -> tuple[list[str], Path, dict[str, str]]:
        assert self.spec.command is not None
        cwd = resolve_cwd(self.spec, self.base_dir)
        program = find_command(self.spec.command, cwd)
        if program is None:
            raise McpStartError(
                f"mcp server '{self.name}': command {self.spec.command!r} was not found (on PATH or in {cwd})"
            )
        env = {name: os.environ[name] for name in self.spec.env if name in os.environ}
        return [program, *self.spec.args], cwd, env

    def _http_transport(self) -> contextlib.AbstractAsyncContextManager[Any]:
        import httpx2  # noqa: PLC0415 - the SDK's HTTP client, only for an HTTP server
        from mcp.client.streamable_http import streamable_http_client  # noqa: PLC0415

        headers: dict[str, str] = {}
        for header, source in (self.spec.headers or {}).items():
            value = os.environ.get(source.env)
            if value is None:
                raise McpStartError(
                    f"mcp server '{self.name}': header {header!r} takes its value from the environment variable "
                    f"{source.env}, which is not set"
                )
            headers[header] = source.prefix + value
        assert self.spec.url is not None
        url = self.spec.url

        @contextlib.asynccontextmanager
        async def opened() -> Any:
            timeout = httpx2.Timeout(30.0, read=300.0)
            async with (
                httpx2.AsyncClient(headers=headers, timeout=timeout) as client,
                streamable_http_client(url, http_client=client) as streams,
            ):
                yield streams[0], streams[1]

        return opened()

    async def _end_owner(self) -> None:
        self._stop.set()
        owner, self._owner = self._owner, None
        if owner is None:
            return
        if not self._serving:  # still starting (initialize unanswered): nothing to wait for
            owner.cancel()
        _, pending = await asyncio.wait({owner}, timeout=10)  # the stop's graces are 6 s at most
        if pending:
            owner.cancel()
            await asyncio.wait({owner})
        if not owner.cancelled():
            owner.exception()  # retrieved: a start failure was raised by start() already

    async def aclose(self) -> None:
        """Stop the server (its process group, for a stdio one) and close its log."""
        await self._end_owner()
        if self._log is not None:
            os.close(self._log)
            self._log = None

    # -- calls

    async def call(self, tool: str, arguments: dict[str, Any], node: str = "") -> tuple[str, bool]:
        """(result text, ok) of one ``tools/call``; raises :class:`McpServerError` once the server is lost. In a
        run whose spans are exported, the request's ``_meta`` carries the W3C ``traceparent`` of the call's span
        (``node``: the call's node id), where MCP servers look for it, so their spans join the run's trace."""
        trace = TRACE.get()
        meta: Any = None if trace is None or not node else {"traceparent": traceparent(trace, span_id_of(trace, node))}
        async with self._slots:
            session, generation = await self._live()
            try:
                result = await session.call_tool(tool, arguments, meta=meta)
            except MCPError as exc:
                if exc.code != types.CONNECTION_CLOSED:
                    return f"error: tool {tool!r} of mcp server '{self.name}': {exc.message}", False
                return await self._lost(tool, generation)
            except (OSError, EOFError) as exc:
                return await self._lost(tool, generation, exc)
            if result.is_error:
                return f"error: tool {tool!r} of mcp server '{self.name}' failed: {result_text(result)}", False
            return result_text(result), True

    async def _live(self) -> tuple[ClientSession, int]:
        session = self._session
        if session is not None:
            return session, self._generation
        async with self._lock:  # one restart for every call that finds the server gone
            if self._session is None:
                if self.restarts >= 1:
                    raise McpServerError(
                        f"mcp server '{self.name}' stopped again after its restart; the run cannot go on"
                        f"{self._tail_note()}"
                    )
                self.restarts += 1
                await self._end_owner()
                try:
                    await self.start()
                except McpStartError as exc:
                    raise McpServerError(f"{exc} (restarting it after a crash)") from None
            assert self._session is not None
            return self._session, self._generation

    async def _lost(self, tool: str, generation: int, exc: BaseException | None = None) -> tuple[str, bool]:
        """The call's answer when the connection closed under it: the crash, with the stderr tail."""
        process = self._process
        if process is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1):  # the exit code, when the process is ending
                    await process.process.wait()
        if generation == self._generation:
            self._session = None  # the next call restarts it (once)
        code = process.returncode if process is not None else None
        how = f"exited with code {code}" if code is not None else "closed the connection"
        if exc is not None:
            how += f" ({type(exc).__name__}: {exc})"
        message = f"mcp server '{self.name}' {how} during a call of {tool!r}{self._tail_note()}"
        if self.restarts >= 1 and generation == self._generation:  # not a call lost in the crash before the restart
            raise McpServerError(message + "; it was restarted once already, so the run stops")
        return f"error: {message}; it is restarted for the next call", False

    def _tail_note(self) -> str:
        tail = stderr_tail(self.log_path) if self.spec.command is not None else ""
        return f"; its stderr ends:\n{tail}" if tail else ""


def resolve_cwd(spec: McpServerSpec, base_dir: Path) -> Path:
    return (base_dir / spec.cwd).resolve() if spec.cwd else base_dir


def find_command(command: str, cwd: Path) -> str | None:
    """The program a stdio server runs: a path (relative to its cwd) or a name on PATH."""
    if os.sep in command or (os.altsep and os.altsep in command):
        path = cwd / command  # not resolved: a venv's python is a symlink that must keep its own path
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None
    return shutil.which(command)


def stderr_tail(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - STDERR_TAIL_BYTES))
            data = f.read()
    except OSError:
        return ""
    lines = data.decode("utf-8", "replace").strip().splitlines()[-STDERR_TAIL_LINES:]
    return "\n".join("  " + line for line in lines)


def result_text(result: types.CallToolResult) -> str:
    """The text a model reads of a tool result: its text blocks, a line for each other block, or its
    structured content."""
    parts: list[str] = []
    for block in result.content:
        if isinstance(block, types.TextContent):
            parts.append(block.text)
        elif isinstance(block, types.ImageContent | types.AudioContent):
            parts.append(f"[{block.type}: {block.mime_type}, {len(block.data)} base64 characters]")
        elif isinstance(block, types.EmbeddedResource):
            resource = block.resource
            text = getattr(resource, "text", None)
            parts.append(text if isinstance(text, str) else f"[resource: {resource.uri}]")
        else:
            parts.append(json.dumps(block.model_dump(mode="json", by_alias=True, exclude_none=True)))
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return "\n".join(parts)
