"""``runner serve WF... --mcp``: workflows served as MCP tools (issue 22 item 4), over stdio or streamable HTTP.

Everything that can be wrong is found before serving, exit 1 with the message: the ``mcp`` SDK missing (the
install hint), a workflow that does not validate (every file's problems, located as ``runner validate`` shows
them), two workflows with one name (two tools cannot share it). Then the server runs until its client closes
stdin (stdio) or a signal stops it (exit 130 on SIGINT, 143 on SIGTERM); calls in flight are cancelled and
their partial reports written, and every provider is closed. Over HTTP it listens on 127.0.0.1 unless
``--host`` says otherwise (the SDK then checks ``Host`` and ``Origin`` against loopback names, against DNS
rebinding), and says where on stderr: ``runner: serving 2 workflows over MCP at http://127.0.0.1:8000/mcp``.

The MCP side is in :mod:`runner.commands.mcp_tools`; this module imports it only once the SDK is known to be
there, so nothing else in runner imports ``mcp``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import socket
import sys
from collections.abc import Coroutine, Sequence
from contextlib import suppress
from typing import TYPE_CHECKING, Any, TextIO

from runner import interrupts
from runner.diagnostics import Diagnostic
from runner.errors import RunnerError, SpecError
from runner.workflow.records import Workflow

if TYPE_CHECKING:
    from runner.commands.mcp_tools import WorkflowTool

INSTALL_HINT = "pip install 'runner[mcp]'"
GRACEFUL_SHUTDOWN_S = 2
"""How long an HTTP server stopping waits for open connections (a client's event stream stays open) before
it cancels the calls in flight."""


def require_mcp() -> None:
    """The MCP SDK is installed, or a RunnerError (exit 1) saying how to install it."""
    if importlib.util.find_spec("mcp") is None:
        raise RunnerError(f"runner serve --mcp needs the MCP SDK, which is not installed: {INSTALL_HINT}")


def load_served(paths: Sequence[str], *, offline: bool = False) -> list[Workflow]:
    """Every workflow, validated; one SpecError with every file's problems, and an error when two share a
    name (a tool's name is its workflow's ``name``)."""
    from runner.validate.check import check_file  # noqa: PLC0415

    workflows: list[Workflow] = []
    problems: list[Diagnostic] = []
    for path in paths:
        wf, found = check_file(path)
        if wf is None:
            problems.extend(found)
        else:
            workflows.append(wf)
    if problems:
        raise SpecError(problems)
    by_name: dict[str, Workflow] = {}
    for wf in workflows:
        first = by_name.setdefault(wf.name, wf)
        if first is not wf:
            raise RunnerError(
                f"{_name_loc(wf)}: name: {wf.name!r} is also the name of {first.file}; each served workflow is a "
                "tool named by its `name:`, so give one of them another name"
            )
    if offline:
        from runner.workflow.offline import offline_workflow  # noqa: PLC0415

        workflows = [offline_workflow(wf) for wf in workflows]
    return workflows


def _name_loc(wf: Workflow) -> str:
    """``file:line:col`` of the workflow's ``name:`` (read again: only for a message)."""
    from pathlib import Path  # noqa: PLC0415

    from runner.workflow.document import load_document  # noqa: PLC0415

    try:
        doc = load_document(Path(wf.file).read_text(encoding="utf-8"), wf.file)
        span = doc.span(("name",))
    except Exception:  # noqa: BLE001 - it loaded a moment ago; without a position the file name still says where
        return wf.file
    return f"{wf.file}:{span.line}:{span.column}"


def serve_command(
    paths: Sequence[str],
    *,
    mcp: bool,
    transport: str = "stdio",
    host: str = "127.0.0.1",
    port: int = 8000,
    report_dir: str | None = None,
    offline: bool = False,
    use_uvloop: bool = True,
    log: TextIO = sys.stderr,
) -> int:
    from runner.errors import UsageError  # noqa: PLC0415

    if not mcp:
        raise UsageError("runner serve needs a protocol: runner serve WF... --mcp")
    require_mcp()
    workflows = load_served(paths, offline=offline)
    from runner.commands.mcp_tools import WorkflowTool, build_server  # noqa: PLC0415 - the SDK, now known there
    from runner.commands.run import _check_report_dir  # noqa: PLC0415

    for wf in workflows:  # before serving: a report folder that cannot be written is said now
        _check_report_dir(report_dir or wf.report.dir, wf.file if report_dir is None else None)
    tools = {wf.name: WorkflowTool(wf, report_dir=report_dir, log=log) for wf in workflows}
    listener = _listen(host, port) if transport == "http" else None
    server = build_server(tools)

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        detach = interrupts.attach(asyncio.get_running_loop(), task)
        try:
            for tool in tools.values():
                tool.open()
            if listener is None:
                await _serve_stdio(server)
            else:
                await _serve_http(server, list(tools.values()), listener, host, log)
        finally:
            if detach is not None:
                detach()
            await _shielded(asyncio.gather(*(tool.aclose() for tool in tools.values())))

    from runner.engine import loop as loops  # noqa: PLC0415

    interrupts.begin_run()  # from here a signal cancels the server's task: calls in flight wind down
    try:
        loops.run(main, use_uvloop=use_uvloop, quiet=True)
    except (KeyboardInterrupt, asyncio.CancelledError) as exc:
        interrupts.end_run()
        print(f"runner: {interrupts.describe()}", file=log)
        return interrupts.exit_code(exc)
    finally:
        if listener is not None:
            listener.close()
    interrupts.end_run()
    if interrupts.received() is not None:
        print(f"runner: {interrupts.describe()}", file=log)
        return interrupts.exit_code()
    return 0


def _listen(host: str, port: int) -> socket.socket:
    """The HTTP server's socket, bound before serving: a port in use is said at once (exit 1), and port 0 (the
    system's choice) is known to say where the server is."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise RunnerError(f"--host {host}: cannot use this address: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise RunnerError(f"--host {host} --port {port}: cannot listen there: {exc.strerror}") from None
    sock.setblocking(False)
    return sock


async def _serve_stdio(server: Any) -> None:
    from mcp.server.stdio import stdio_server  # noqa: PLC0415

    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


async def _serve_http(
    server: Any, tools: Sequence[WorkflowTool], listener: socket.socket, host: str, log: TextIO
) -> None:
    import uvicorn  # noqa: PLC0415 - a dependency of the mcp SDK

    class Server(uvicorn.Server):
        # runner's own handlers stop the server (runner/interrupts.py): it cancels this task, which sets
        # should_exit below, rather than uvicorn's handlers replacing them for the server's life.
        def capture_signals(self) -> Any:
            from contextlib import nullcontext  # noqa: PLC0415

            return nullcontext()

    app = server.streamable_http_app(host=host)
    config = uvicorn.Config(
        app, log_level="warning", lifespan="on", timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S, access_log=False
    )
    web = Server(config)
    bound_host, bound_port = listener.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    count = len(tools)
    plural = "workflow" if count == 1 else "workflows"
    print(f"runner: serving {count} {plural} over MCP at http://{shown}:{bound_port}/mcp", file=log, flush=True)
    serving = asyncio.get_running_loop().create_task(web.serve(sockets=[listener]))
    try:
        await asyncio.wait({serving})
    except asyncio.CancelledError:
        # The calls in flight first: each run stops, writes its partial report and its call answers so. Then
        # uvicorn's own shutdown: it stops listening and waits for the connections to end; a client's open
        # event stream is ended after GRACEFUL_SHUTDOWN_S, which is the stop asked for, not an error to log.
        await _shielded(asyncio.gather(*(tool.stop() for tool in tools)))
        logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
        web.should_exit = True
        await _shielded(serving)
        raise
    serving.result()


async def _shielded(awaitable: Coroutine[Any, Any, Any] | asyncio.Future[Any]) -> None:
    """Await to the end even when this task is cancelled again meanwhile (a second signal)."""
    task = asyncio.ensure_future(awaitable)
    while not task.done():
        with suppress(asyncio.CancelledError):
            await asyncio.wait({task})
    with suppress(asyncio.CancelledError, Exception):
        task.result()
