"""A Ray worker of a dataset batch: an async actor that compiles the workflow once and runs the rows of the
shards it is sent through one :class:`~runner.dataset.batch.Batch`, exactly as the local executor does (shared
providers, pools and adaptive concurrency; a failed row is a result).

It is made into a Ray actor by the driver (runner/dataset/onray/driver.py), so this module does not import Ray.
Results go back in small chunks as rows end (a Ray streaming generator: one object per chunk, not per row,
since an object costs about a millisecond): the driver alone writes results.jsonl and the ledger.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from runner.dataset.batch import Batch, RowInput, RowResult
from runner.dataset.onray.budget import LeasedLimiter

CHUNK_ROWS = 64  # rows per chunk sent back at most
CHUNK_SECONDS = 0.05  # a chunk goes back at the latest this long after its first row ended


Ended = tuple[RowResult, float, float, list[Any]]
"""A row's end as a worker sends it: its result, when it started and ended (Unix seconds), its spans."""


class RowWorker:
    """One worker: ``name`` (its track in the report), ``workflow`` (the file, relative to the runtime
    environment's working directory, where the workflow's folder was unpacked), ``concurrency`` (its share of
    the batch's ``--concurrency``), ``secrets`` (the values of the variables named by ``api_key_env``, put in
    this process's environment and nowhere else), ``budget`` (the cluster's RateBudget actor, or None) and
    ``limits`` (the models it holds budgets for)."""

    def __init__(
        self,
        name: str,
        workflow: str,
        offline: bool,
        concurrency: int,
        secrets: Mapping[str, str],
        budget: Any,
        limits: Mapping[str, tuple[float | None, float | None]],
        workers: int,
        run_dir: str,
        batch_id: str = "",
        otel_content: bool | None = None,
    ) -> None:
        self._cpu = time.process_time()  # the report's CPU seconds of this worker count from here
        os.environ.update(secrets)
        from runner.plan.compile import compile_workflow  # noqa: PLC0415
        from runner.validate.check import load_workflow  # noqa: PLC0415
        from runner.workflow.offline import offline_workflow  # noqa: PLC0415

        wf = load_workflow(workflow)
        if offline:
            wf = offline_workflow(wf)
        self.name = name
        self.plan = compile_workflow(wf)
        self.concurrency = concurrency
        self.budget, self.limits, self.workers = budget, dict(limits), workers
        self.run_dir = Path(run_dir)
        self.batch_id = batch_id or name  # the rows' run ids and trace ids are the batch's, as on the local executor
        # OpenTelemetry export (--otel): each row's spans made here, as the local executor makes them (a trace per
        # row, ids from the batch's id and the row's), and sent to the driver with the row's result
        self.tracer: Any = None
        if otel_content is not None:
            from runner.report.layout import describe_workflow  # noqa: PLC0415
            from runner.report.otel import RowTracer  # noqa: PLC0415

            self.tracer = RowTracer(describe_workflow(wf), wf.name, wf.sha256, batch_id, content=otel_content)
        self.batch: Batch | None = None
        self._slots: asyncio.Semaphore | None = None
        self._opening = asyncio.Lock()
        self.leased: list[LeasedLimiter] = []

    async def _open(self) -> Batch:
        async with self._opening:
            if self.batch is None:
                batch = Batch(
                    self.plan,
                    concurrency=self.concurrency,
                    run_dir=self.run_dir,
                    batch_id=self.batch_id,
                    repeat=self.plan.workflow.repeat,  # an eval's repeat: N, each row's runs in its slot (issue 24)
                    tracer=self.tracer,
                )
                await batch.__aenter__()
                if self.budget is not None:  # the models' limits held cluster-wide (budget.py)
                    for model, (rpm, tpm) in self.limits.items():
                        endpoint = getattr(batch.providers.get(model), "_endpoint", None)
                        if endpoint is not None:
                            limiter = LeasedLimiter(model, self.budget, rpm, tpm, self.workers)
                            endpoint.limiter = limiter
                            self.leased.append(limiter)
                self._slots = asyncio.Semaphore(self.concurrency)
                self.batch = batch
            return self.batch

    async def ping(self) -> str:
        """Ready: the workflow compiled (the driver waits for this before sending shards)."""
        return self.name

    async def run_shard(self, rows: list[RowInput]) -> AsyncIterator[float | list[Ended]]:
        """Run ``rows``: yield first when the shard's first row started (wall-clock seconds: the shard's wait, for
        the report), then chunks of ``(result, started, ended, spans)`` as rows end (``spans``: with --otel, the
        OpenTelemetry spans of the rows that ended since the one before: the row's own, as a row's spans are made
        as it ends, with no await before its result is handed on)."""
        batch = await self._open()
        ended: asyncio.Queue[Ended | None] = asyncio.Queue()
        starts: dict[int, float] = {}
        first = asyncio.Event()

        def on_start(row: RowInput) -> None:
            starts[row.index] = time.time()
            first.set()

        def on_result(result: RowResult) -> None:
            spans: list[Any] = []
            if self.tracer is not None:
                spans, self.tracer.spans = self.tracer.spans, []
            ended.put_nowait((result, starts.pop(result.index, time.time()), time.time(), spans))

        async def produce() -> None:
            try:
                await batch.run(rows, on_result, on_start, slots=self._slots)
            finally:
                ended.put_nowait(None)
                first.set()

        task = asyncio.get_running_loop().create_task(produce())
        try:
            await first.wait()
            yield min(starts.values(), default=time.time())
            done = False
            while not done:
                item = await ended.get()
                if item is None:
                    break
                chunk = [item]
                deadline = time.monotonic() + CHUNK_SECONDS
                while len(chunk) < CHUNK_ROWS:
                    try:
                        item = ended.get_nowait()
                    except asyncio.QueueEmpty:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            break
                        try:
                            item = await asyncio.wait_for(ended.get(), remaining)
                        except TimeoutError:
                            break
                    if item is None:
                        done = True
                        break
                    chunk.append(item)
                yield chunk
            await task  # what the batch raised, the driver sees
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def figures(self) -> dict[str, Any]:
        """This worker's CPU seconds so far, and the round trips it made to the cluster's rate budget."""
        return {
            "cpu_s": time.process_time() - self._cpu,
            "budget_round_trips": sum(limiter.asked for limiter in self.leased),
        }

    async def close(self) -> None:
        if self.batch is not None:
            batch, self.batch = self.batch, None
            await batch.__aexit__(None, None, None)
