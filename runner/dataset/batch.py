"""Rows of a dataset run through one workflow, at most ``concurrency`` at a time, sharing what a run opens.

What is opened once for the whole batch rather than per row (issue 17: opening the pool anew cost a third of
the overhead at 100 requests): one provider per model (so one HTTP client and its pool of connections, reused
from row to row, and the model's rate limiter and connection bound, which therefore hold across all rows),
the tools and python stages' functions, the embedders and vector stores. Each row has its own
:class:`~runner.engine.execute.Engine` (its inputs, stage outputs and fan-out bounds) and its own recorder, whose
events become the row's figures (:class:`RowStats`) and are then dropped: memory stays flat over any number of
rows. Each row keeps its own files (working memory) under ``<run folder>/rows/<index>``.

A row that fails is a :class:`RowResult` with status "failed", never an exception out of the batch; a cancelled
batch cancels its rows in flight, whose results are then not given (a resume runs them again).

With ``repeat`` N (an eval's ``repeat:``, issue 24) a row runs N times in its slot, its result the first run's with
the others in ``repeats``. About 400 lines: a row's run and the figures read from its events belong together.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.calls import ChatResult
from runner.dataset.adaptive import AdaptiveLimits
from runner.dispatch import first_error
from runner.engine.execute import Engine
from runner.engine.family import family_of
from runner.engine.opening import load_user_code, open_mcp_servers, open_providers, response_caches, wrapped
from runner.engine.resources import RunResources, open_resources
from runner.errors import RunnerError
from runner.events import TRACE, Recorder, started_at_text, trace_id_of
from runner.plan.compile import Plan
from runner.providers.base import ChatProvider
from runner.stages import FanoutStage
from runner.stages.base import Output
from runner.stages.workflow import Child
from runner.workflow.records import Workflow

if TYPE_CHECKING:
    from runner.report.otel import RowTracer  # made by the caller only when an export is asked for

_END = object()


@dataclass(frozen=True, slots=True)
class RowStats:
    """A row's figures, taken from its events: each top-level stage's seconds, the time its calls waited by
    cause and model (``("rate limit", "main")``), and its tokens."""

    stages: dict[str, float] = field(default_factory=dict)
    waits: dict[tuple[str, str], float] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    cost_usd: float = 0.0  # of the calls on models that declare pricing
    unpriced_calls: int = 0  # calls on models that do not
    tool_calls: tuple[tuple[str, str, str], ...] = ()  # (calling node, tool, arguments' JSON) for assertions


@dataclass(frozen=True, slots=True)
class RowResult:
    """One row's end: ``index`` (0-based, in the dataset), ``key`` (``--key``'s column, else the index),
    ``status`` ("ok" or "failed"), ``output`` (the last stage's), ``stages`` (the outputs by top-level stage id),
    ``error`` (why it failed, located for a row that could not be read), ``latency_s`` and ``stats``."""

    index: int
    key: str
    status: str
    output: Any
    stages: Mapping[str, Any]
    error: str | None
    latency_s: float
    stats: RowStats = field(default_factory=RowStats)
    repeats: tuple[RowResult, ...] = ()  # the row's other runs (the workflow's repeat: N, issue 24)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def tokens(self) -> int:
        return self.stats.prompt_tokens + self.stats.completion_tokens

    def line(self, keep: Sequence[str] = ()) -> dict[str, Any]:
        """The row's line in ``results.jsonl``."""
        line: dict[str, Any] = {"index": self.index, "key": self.key, "status": self.status}
        line["output"] = plain(self.output)
        if keep:
            line["stages"] = {name: plain(self.stages.get(name)) for name in keep}
        line["error"] = self.error
        line["tokens"] = {"prompt": self.stats.prompt_tokens, "completion": self.stats.completion_tokens}
        line["latency_s"] = round(self.latency_s, 6)
        return line


def plain(value: Any) -> Any:
    """A stage output as JSON: an agent's reply as its text, a fan-out's as a list, a python stage's as it is, a
    sub-workflow's as its last stage's."""
    if isinstance(value, Child):
        return plain(value.output)
    if isinstance(value, Output):
        return value.content
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


@dataclass(frozen=True, slots=True)
class RowInput:
    """A row to run: its inputs, or ``error`` when it could not be made into inputs (then it fails unrun)."""

    index: int
    key: str
    inputs: Mapping[str, Any] | None
    error: str | None = None


class Batch:
    """The shared parts of a batch and the rows run through them. Use as ``async with Batch(...) as batch``;
    :meth:`run` runs rows from an iterable, :meth:`results` yields them as they finish.

    ``providers``: the caller's, by model name, never closed; the others are opened once here and closed when
    the block ends. ``transport``: an ``httpx`` transport for OpenAI-compatible models. ``run_dir``: where rows
    keep their files (``rows/<index>`` below it)."""

    def __init__(
        self,
        plan: Plan,
        *,
        concurrency: int = 8,
        providers: Mapping[str, ChatProvider] | None = None,
        transport: Any = None,
        run_dir: Path | None = None,
        batch_id: str = "batch",
        wrapper: Any = None,
        tracer: RowTracer | None = None,
        repeat: int = 1,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be 1 or more, not {concurrency}")
        self.plan = plan
        self.concurrency = concurrency
        self.repeat = repeat  # runs of each row (issue 24), one after the other in the row's slot
        self.given = dict(providers or {})
        self.transport = transport
        self.wrapper = wrapper  # a cassette recording or replaying every row (runner.cassette), else None
        self.tracer = tracer  # OpenTelemetry export (runner.report.otel): every row's spans, as it ends
        self.run_dir = run_dir if run_dir is not None else Path(plan.workflow.report.dir) / "runs" / batch_id
        self.batch_id = batch_id
        self._rows_dir = self.run_dir / "rows"
        # Only working memory writes files of a row's own; without it the rows share one resources record (a path
        # per row would cost a pathlib parse and, for the life of the process, an interned name per row).
        self._own_dirs = any(agent.spec.memory for agent in plan.agents.values())
        self.owned: dict[str, ChatProvider] = {}
        self._cooldowns: dict[str, float] = {}  # fallback models: when each model's 429 cooldown ends, for all rows
        self.limit_warnings: dict[str, str] = {}  # limits in audit mode: the first row's warning of each limit
        self.providers: dict[str, ChatProvider] = {}
        self.stop_reason: str | None = None
        self.in_flight = 0
        self._top = {sp.id for sp in plan.stages}
        self._opened = False
        self._room = asyncio.Event()  # set when a row ends or an allowance changes
        self.adaptive = AdaptiveLimits([], concurrency, lambda: self.in_flight)
        self.shared_slots: dict[str, asyncio.Semaphore] = {}
        self._pricing = {  # models whose calls the batch report prices
            name: spec.config.pricing
            for name, spec in plan.workflow.models.items()
            if spec.config is not None and spec.config.pricing is not None
        }

    async def __aenter__(self) -> Batch:
        self.tools, self.functions = load_user_code(self.plan)
        # As a single run does (runner.engine.session.execute): the models' response caches inside the cassette,
        # if any, and every endpoint the batch opens (embedders too) sending through them, for every row.
        caches = response_caches(self.plan, self.given)
        self.wrapper = self.wrapper if caches is None else caches(self.wrapper)
        with wrapped(self.wrapper):
            self.resources = open_resources(self.plan, self.run_dir, transport=self.transport)
        self.mcp: Any = None
        try:
            # the MCP servers: one process each for the whole batch, shared by every row (issue 22)
            self.mcp = await open_mcp_servers(self.plan, self.tools, self.run_dir)
            with wrapped(self.wrapper):
                open_providers(self.plan, self.given, self.transport, into=self.owned)
        except BaseException:
            await self._close()
            raise
        self.providers = {**self.given, **self.owned}
        self.family = family_of(self.plan)  # sub-workflows (issue 22): opened once for every row, as the models
        if self.family is not None:
            try:
                with wrapped(self.wrapper):
                    self.family.open(self.providers, self.transport, self.run_dir, resources_transport=self.transport)
                await self.family.open_mcp(self.run_dir)
            except BaseException:
                await self._close()
                raise
        # Each model the batch opened that reports its answers adapts the rows in flight (runner/dataset/adaptive.py);
        # the caller's providers are left as they are.
        observed = {name: p for name, p in self.owned.items() if callable(getattr(p, "observe", None))}
        self.adaptive = AdaptiveLimits(sorted(observed), self.concurrency, lambda: self.in_flight, self._room.set)
        for name, provider in observed.items():
            provider.observe(self.adaptive.observer(name))  # type: ignore[attr-defined]
        self.adaptive.start()
        # A top-level fan-out's max_concurrency bounds its branches across all rows, as the models' pools and rate
        # limits do (a nested fan-out's bound stays per invocation, as in a single run).
        self.shared_slots = {
            sp.id: asyncio.Semaphore(bound)
            for sp in self.plan.stages
            if isinstance(sp.stage, FanoutStage) and (bound := sp.stage.max_concurrency) is not None
        }
        self._opened = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._close()

    async def _close(self) -> None:
        results = await asyncio.gather(
            *(p.aclose() for p in self.owned.values()), self.resources.aclose(), return_exceptions=True
        )
        if getattr(self, "mcp", None) is not None:
            await asyncio.shield(self.mcp.aclose())
            self.mcp = None
        self.tools.close()
        self.owned.clear()
        family, self.family = getattr(self, "family", None), None
        if family is not None:
            await family.aclose()
        failed = [r for r in results if isinstance(r, Exception)]
        if failed and not isinstance(failed[0], RunnerError):
            raise failed[0]

    def stop(self, reason: str) -> None:
        """Start no more rows (``--max-errors`` reached); the rows in flight finish."""
        if self.stop_reason is None:
            self.stop_reason = reason

    async def run_row(self, row: RowInput) -> RowResult:
        """One row, start to end: a failed row is a result, a cancelled one raises ``CancelledError``. With
        ``repeat`` N, the first run's result, its ``repeats`` the others; its latency, tokens and cost all runs'."""
        if self.repeat <= 1 or row.inputs is None:
            return await self._run_once(row, 0)
        runs = [await self._run_once(row, i) for i in range(self.repeat)]
        first = runs[0]
        stats = dataclasses.replace(
            first.stats,
            prompt_tokens=sum(r.stats.prompt_tokens for r in runs),
            completion_tokens=sum(r.stats.completion_tokens for r in runs),
            cost_usd=sum(r.stats.cost_usd for r in runs),
            retries=sum(r.stats.retries for r in runs),
        )
        latency = sum(r.latency_s for r in runs)
        return dataclasses.replace(first, stats=stats, latency_s=latency, repeats=tuple(runs[1:]))

    async def _run_once(self, row: RowInput, attempt: int) -> RowResult:
        started, epoch = time.perf_counter(), time.time()  # each repeat is a trace of its own
        if row.inputs is None:
            return RowResult(row.index, row.key, "failed", None, {}, row.error, 0.0)
        recorder = Recorder()
        # Per row: its own files, the batch's embedders and stores (the dicts are shared, not copied).
        resources = self.resources
        if self._own_dirs:
            resources = RunResources(self._rows_dir / str(row.index), resources.embedders, resources.stores)
        limits = self.plan.workflow.limits
        budget = None
        if limits is not None:  # a budget per row (issue 23): each row's calls counted against the limits
            from runner.engine.budget import Budget  # noqa: PLC0415

            budget = Budget(limits, recorder, self.plan.workflow.file)

        def wrap(providers: Mapping[str, ChatProvider], wf: Workflow) -> Mapping[str, ChatProvider]:
            if limits is not None and budget is not None:  # a sub-workflow's calls count in the row's budget
                from runner.engine.budget import budgeted  # noqa: PLC0415

                providers = budgeted(providers, limits, recorder, self.plan.workflow.file, wf.models, budget=budget)
            if any(spec.fallback is not None for spec in wf.models.values()):
                from runner.providers.fallback import with_fallbacks  # noqa: PLC0415

                providers = with_fallbacks(providers, wf.models, self._cooldowns)
            return providers

        providers = wrap(self.providers, self.plan.workflow)
        engine = Engine(
            self.plan,
            row.inputs,
            providers,
            recorder,
            run_info={
                "id": f"{self.batch_id}-{row.index}" + (f"-{attempt}" if attempt else ""),
                "name": self.plan.workflow.name,
                "row": row.index,
            },
            tools=self.tools,
            functions=self.functions,
            resources=resources,
            shared_slots=self.shared_slots,
            children=self.family.runs(wrap) if self.family is not None else None,
        )
        stages: dict[str, Any] = {}
        ended = "cancelled"
        if self.tracer is not None:  # the row's requests carry traceparent (this task's context only)
            TRACE.set(trace_id_of(f"{self.batch_id}-{row.index}", started_at_text(datetime.fromtimestamp(epoch, UTC))))
        try:
            output = await engine.run(stages)
            ended = "ok"
        except Exception as exc:  # noqa: BLE001 - a failed row is a result; the batch goes on
            ended = "failed"
            self._note_limits(row.index, recorder)
            error = first_error(exc)
            message = str(error) if isinstance(error, RunnerError) else f"{type(error).__name__}: {error}"
            return RowResult(
                row.index,
                row.key,
                "failed",
                None,
                stages,
                message,
                time.perf_counter() - started,
                self._stats(recorder),
            )
        finally:
            if self.tracer is not None:  # a cancelled row's spans too: an interrupted batch exports what it did
                self.tracer.row(row.index, row.key, recorder.events, ended, started, epoch, time.perf_counter())
        self._note_limits(row.index, recorder)
        return RowResult(
            row.index, row.key, "ok", output, stages, None, time.perf_counter() - started, self._stats(recorder)
        )

    def _note_limits(self, index: int, recorder: Recorder) -> None:
        """Keep the first row's audit warning of each limit (the batch says each once, not once a row)."""
        if self.plan.workflow.limits is None:
            return
        for _, kind, _, data in recorder.events:
            if kind == "limit_warning" and data["limit"] not in self.limit_warnings:
                self.limit_warnings[data["limit"]] = f"row {index}: {data['message']}"

    def _stats(self, recorder: Recorder) -> RowStats:
        stages: dict[str, float] = {}
        opened: dict[str, float] = {}
        models: dict[str, str] = {}
        waits: dict[tuple[str, str], float] = {}
        queued: dict[str, float] = {}
        prompt = completion = retries = unpriced = 0
        cost = 0.0
        tools: list[tuple[str, str, str]] = []
        for at, kind, node, data in recorder.events:
            if kind == "started":
                if isinstance(data, dict) and data.get("kind") == "tool":
                    tools.append((str(data.get("parent", "")), str(data.get("tool")), str(data.get("arguments", ""))))
                if node in self._top:
                    opened[node] = at
                if isinstance(data, dict) and data.get("model"):
                    models[node] = data["model"]
                if node in queued:
                    cause = ("max_concurrency", node.partition("[")[0].rpartition("/")[2] or node)
                    waits[cause] = waits.get(cause, 0.0) + at - queued.pop(node)
            elif kind == "queued":
                queued[node] = at
            elif kind == "fallback":  # a fallback model answers: its pricing counts (issue 23)
                models[node] = str(data.get("to") or models.get(node, ""))
            elif kind in ("finished", "failed", "cancelled") and node in opened:
                stages[node] = at - opened.pop(node)
            elif kind in ("rate_wait", "pool_wait"):
                cause = ("rate limit" if kind == "rate_wait" else "pool", models.get(node, "?"))
                waits[cause] = waits.get(cause, 0.0) + float(data.get("wait", 0.0))
            elif kind == "retry":
                retries += 1
                cause = ("retries", models.get(node, "?"))
                waits[cause] = waits.get(cause, 0.0) + float(data.get("delay", 0.0) or 0.0)
            if kind == "finished" and isinstance(data, ChatResult):
                prompt += data.usage.prompt_tokens
                completion += data.usage.completion_tokens
                pricing = self._pricing.get(models.get(node, ""))
                if pricing is None:
                    unpriced += 1
                else:
                    cost += pricing.cost(
                        data.usage.prompt_tokens, data.usage.completion_tokens, data.usage.cached_tokens
                    )
        return RowStats(stages, waits, prompt, completion, retries, cost, unpriced, tuple(tools))

    async def run(
        self,
        rows: Iterable[RowInput],
        on_result: Callable[[RowResult], Awaitable[None] | None],
        on_start: Callable[[RowInput], None] | None = None,
        slots: asyncio.Semaphore | None = None,
    ) -> None:
        """Run ``rows`` (read one at a time, only when a slot is free: the iterable may be a file read as a
        stream), at most ``concurrency`` in flight; ``on_result`` gets each result as its row ends (on the loop;
        what it raises stops the batch), ``on_start`` each row as it starts. ``slots``: a bound shared with other
        calls of :meth:`run` on this batch running at once (a Ray worker's shards, runner/dataset/onray), else
        one of ``concurrency`` for this call."""
        if not self._opened:
            raise RuntimeError("a Batch runs rows inside `async with`")
        slots = slots if slots is not None else asyncio.Semaphore(self.concurrency)

        async def one(row: RowInput) -> None:
            try:
                returned = on_result(await self.run_row(row))
                if returned is not None:
                    await returned
            finally:
                self.in_flight -= 1
                slots.release()
                self._room.set()

        source = iter(rows)
        async with asyncio.TaskGroup() as group:
            while True:
                await slots.acquire()  # a slot first, then the row: no row is read before it can run
                while self.in_flight >= self.adaptive.allowed():  # a model's server asked for fewer
                    self._room.clear()
                    await self._room.wait()
                row = next(source, _END)
                if row is _END or self.stop_reason is not None:
                    slots.release()
                    break
                assert isinstance(row, RowInput)
                if on_start is not None:
                    on_start(row)
                self.in_flight += 1
                group.create_task(one(row))

    async def results(self, rows: Iterable[RowInput]) -> AsyncGenerator[RowResult, None]:
        """The rows' results as they finish (an async generator over :meth:`run`). A row keeps its slot until
        the consumer has taken its result, so a slow consumer slows the batch rather than growing memory."""
        queue: asyncio.Queue[RowResult | None] = asyncio.Queue()
        waiting = asyncio.Semaphore(self.concurrency)  # results given and not yet taken

        async def give(result: RowResult) -> None:
            await waiting.acquire()
            queue.put_nowait(result)

        async def produce() -> None:
            try:
                await self.run(rows, give)
            finally:
                queue.put_nowait(None)

        task = asyncio.get_running_loop().create_task(produce())
        try:
            while (item := await queue.get()) is not None:
                waiting.release()
                yield item
            await task  # what the batch raised, the consumer sees
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
