"""Workflows as MCP tools (``runner serve --mcp``, issue 22 item 4): the MCP server's ``tools/list`` and
``tools/call`` over the public API's :func:`runner.arun`.

Each workflow is one tool: its name, its description, the JSON Schema of its ``inputs:`` as the tool's input
schema (:mod:`runner.workflow.toolschema`) and, when its last stage's output is typed, its output schema. A
call checks its arguments as ``runner run --input`` checks a file's (an invalid one is an MCP error naming the
field, before anything runs), runs the workflow with the server's providers, sends a progress notification as
each top-level stage starts and ends (from the run's live events), writes the run's report to the usual
report folder and answers with the final output (its value as structured content when typed). A client that
cancels the call cancels the run: the run winds down, its partial report is written, and no answer is sent
(MCP's rule for a cancelled request).

The providers of a workflow's models are opened once, when the server starts, and shared by every call until
it stops, as a dataset batch shares them between rows: concurrent calls use one HTTP client, one pool of
connections and one rate limit per model.

Imported only by ``runner serve --mcp``: it imports the ``mcp`` SDK (``runner[mcp]``).
"""

from __future__ import annotations

import asyncio
import math
import sys
from collections.abc import Mapping
from contextlib import suppress
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError

import runner
from runner.engine.opening import open_providers, response_caches, wrapped
from runner.errors import RunnerError
from runner.fsutil import WriteError, ensure_writable_dir
from runner.live.events import Event, NodeCancelled, NodeFailed, NodeFinished, NodeSkipped, NodeStarted, RunFinished
from runner.plan.compile import compile_workflow
from runner.providers.base import ChatProvider
from runner.report.document import now_utc
from runner.report.files import ReportWriteError, write_outputs
from runner.result import Result
from runner.secrets import redact
from runner.stages.base import as_text, brief
from runner.version import __version__
from runner.workflow.inputs import resolve_inputs
from runner.workflow.records import Workflow
from runner.workflow.toolschema import input_schema, output_schema, structured_value

Progress = tuple[float, float | None, str]
"""A progress notification: how far (steps), of how many (None when unknown), and what happened."""


class StageProgress:
    """The progress of one call, from its run's events: one step when a top-level stage starts and one when
    it ends (two for a stage its ``when`` skipped), of two steps per stage. Nested nodes (fan-out branches,
    tool calls, a switch's cases) are not counted: a client sees the workflow's stages, as ``runner graph``
    shows them. The steps only grow, as MCP asks, also when a stage runs more than once."""

    def __init__(self, stage_ids: tuple[str, ...]) -> None:
        self.stages = frozenset(stage_ids)
        self.total = 2 * len(stage_ids)
        self.step = 0

    def of(self, event: Event) -> Progress | None:
        if event.node not in self.stages:
            return None
        if isinstance(event, NodeStarted):
            what = "started"
        elif isinstance(event, NodeFinished):
            what = "finished"
        elif isinstance(event, NodeFailed):
            what = f"failed: {event.error}"
        elif isinstance(event, NodeCancelled):
            what = f"cancelled: {event.reason}"
        elif isinstance(event, NodeSkipped):
            self.step += 1  # its start and its end at once
            what = f"skipped: {event.reason}"
        else:
            return None
        self.step += 1
        return float(self.step), (float(self.total) if self.step <= self.total else None), f"stage {event.node} {what}"


class WorkflowTool:
    """One served workflow: its MCP tool, its models' providers (opened by :meth:`open`, shared by every call,
    closed by :meth:`aclose`), and the calls that run it (:meth:`call`)."""

    def __init__(self, wf: Workflow, *, report_dir: str | None, log: TextIO = sys.stderr) -> None:
        self.wf = wf
        self.name = wf.name
        self.report_dir = Path(report_dir or wf.report.dir)
        self.log = log
        self.output_schema = output_schema(wf)
        self.tool = types.Tool(
            name=wf.name,
            description=wf.description or f"Runs the workflow {wf.file}.",
            input_schema=input_schema(wf),
            output_schema=None if self.output_schema is None else dict(self.output_schema),
        )
        self.stage_ids = tuple(str(stage.id) for stage in wf.stages)
        self.providers: dict[str, ChatProvider] = {}
        self.runs: set[asyncio.Task[Result]] = set()  # the calls' runs in flight: stop() interrupts them
        self._written: set[Path] = set()

    def open(self) -> None:
        """Open the providers of the models the workflow uses (no connection is made yet), their endpoints sending
        through the models' response caches (``cache: {responses: ...}``) as a dataset batch's do."""
        plan = compile_workflow(self.wf)
        caches = response_caches(plan, None)
        with wrapped(None if caches is None else caches(None)):
            open_providers(plan, into=self.providers)

    async def stop(self) -> None:
        """Interrupt the runs in flight (the server is stopping): each call writes its partial report and answers
        that its run was interrupted, before the server closes its connections."""
        for run in self.runs:
            run.cancel()
        if self.runs:
            await asyncio.wait(set(self.runs))

    async def aclose(self) -> None:
        await asyncio.gather(*(p.aclose() for p in self.providers.values()), return_exceptions=True)
        self.providers.clear()

    def inputs(self, arguments: Mapping[str, Any] | None) -> dict[str, Any]:
        """The call's inputs, defaults filled in; an MCP error (invalid params) naming each wrong field."""
        if arguments is not None and not isinstance(arguments, Mapping):
            raise MCPError(types.INVALID_PARAMS, f"{self.name}: the arguments must be an object")
        try:
            return resolve_inputs(self.wf, [], arguments or {}, how='"{name}" in the arguments')
        except RunnerError as exc:
            problems = "; ".join(str(exc).splitlines())
            raise MCPError(types.INVALID_PARAMS, f"{self.name}: invalid arguments: {problems}") from None

    async def call(self, ctx: ServerRequestContext[Any], arguments: Mapping[str, Any] | None) -> types.CallToolResult:
        inputs = self.inputs(arguments)
        progress = StageProgress(self.stage_ids)
        send, receive = anyio.create_memory_object_stream[Progress](math.inf)
        ended: list[Result] = []

        def on_event(event: Event) -> None:
            # Not async: a cancelled call's last events (its RunFinished) still arrive, with nothing to await.
            if isinstance(event, RunFinished):
                ended.append(event.result)
                return
            step = progress.of(event)
            if step is not None:
                with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):  # the call is being cancelled
                    send.send_nowait(step)

        async def notify() -> None:
            async with receive:
                async for step, total, message in receive:
                    # a no-op when the client gave no progress token; a failed stage's error may quote a server
                    await ctx.session.report_progress(step, total, redact(message))

        stamp = now_utc().strftime("%Y%m%dT%H%M%S.%fZ")
        run_dir = self.report_dir / "runs" / f"{self.name}-{stamp}"
        # The run is a task of its own, outside the SDK's cancel scopes: a client's cancellation cancels it once,
        # and the run then winds down (connections closed, its partial result made) before the handler ends.
        run = asyncio.get_running_loop().create_task(
            runner.arun(self.wf, inputs, providers=self.providers, run_dir=run_dir, on_event=on_event)
        )
        self.runs.add(run)
        run.add_done_callback(self.runs.discard)
        async with anyio.create_task_group() as group:
            group.start_soon(notify)
            try:
                await asyncio.wait({run})
            except BaseException:
                run.cancel()
                with anyio.CancelScope(shield=True):
                    await asyncio.wait({run})
                    self._finish(ended, run)
                raise
            finally:
                send.close()  # the notifications sent so far go out before the answer
        return self._answer(self._finish(ended, run))

    def _finish(self, ended: list[Result], run: asyncio.Task[Result]) -> tuple[Result, Path | None]:
        """The run's result, its report written (a line on the log says how the call ended and where it is)."""
        if not ended:  # it failed before it started: arun raised (the inputs were checked, so a bug)
            run.result()
        result = ended[0]
        target: Path | None = None
        try:
            ensure_writable_dir(self.report_dir)
            target = self._target(self._report_path(result))
            write_outputs(result.report, target, self.wf.report.formats)
        except (WriteError, ReportWriteError) as exc:
            for line in str(exc).splitlines():  # one line for each file that could not be written
                print(f"runner: error: {self.name}: {line}", file=self.log)
            if not isinstance(exc, ReportWriteError) or target not in exc.written:
                target = None
        where = f"report: {target}" if target is not None else "no report written"
        print(f"runner: {self.name} {result.status} in {result.wall_s:.3f} s; {where}", file=self.log, flush=True)
        with suppress(asyncio.CancelledError, Exception):
            run.exception()  # retrieved: the run's cancellation is the handler's, not a crash
        return result, target

    def _report_path(self, result: Result) -> Path:
        """Where ``runner run`` would write the run's report: ``<dir>/<workflow>-<UTC start, to the ms>Z.json``."""
        started = datetime.fromisoformat(str(result.report["run"]["started_at"]).removesuffix("Z"))
        stamp = started.strftime("%Y%m%dT%H%M%S") + f".{started.microsecond // 1000:03d}Z"
        return self.report_dir / f"{self.name}-{stamp}.json"

    def _target(self, path: Path) -> Path:
        """``path``, or beside it with a number when a concurrent call of the same workflow started in the same
        millisecond: one report per call, never one over another."""
        candidate, n = path, 1
        while candidate in self._written or candidate.exists():
            n += 1
            candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
        self._written.add(candidate)
        return candidate

    def _answer(self, finished: tuple[Result, Path | None]) -> types.CallToolResult:
        result, target = finished
        meta = {"runner/status": result.status, **({"runner/report": str(target)} if target else {})}
        if result.status != "ok":
            if result.status == "interrupted":  # the client's cancellation raises instead: this is stop()
                text = f"the run of {self.name} was interrupted: the server is stopping"
            else:
                error = brief(result.error) if result.error is not None else "no error recorded"
                text = redact(f"the run of {self.name} failed: {error}")  # as the CLI says errors: no secret
            return types.CallToolResult(content=[types.TextContent(text=text)], is_error=True, _meta=meta)
        structured = structured_value(result.output) if self.output_schema is not None else None
        return types.CallToolResult(
            content=[types.TextContent(text=as_text(result.output))], structured_content=structured, _meta=meta
        )


def build_server(tools: Mapping[str, WorkflowTool]) -> Server[Any]:
    """The low-level MCP server whose tools are ``tools``: the SDK's ``Server`` takes the schemas as they are
    (its high-level ``MCPServer`` makes them from Python signatures, which a workflow has not)."""

    async def list_tools(ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None) -> Any:
        return types.ListToolsResult(tools=[tool.tool for tool in tools.values()])

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> Any:
        tool = tools.get(params.name)
        if tool is None:
            served = ", ".join(sorted(tools))
            raise MCPError(types.INVALID_PARAMS, f"unknown tool {params.name!r}: this server serves {served}")
        return await tool.call(ctx, params.arguments)

    return Server(
        "runner",
        version=__version__,
        instructions="Each tool runs one runner workflow and answers with its final output.",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )
