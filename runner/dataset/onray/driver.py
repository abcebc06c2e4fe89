"""The driver of a dataset batch on Ray (``runner run WF --dataset FILE --executor ray``, issue 18).

The driver reads the dataset as a stream and sends it in shards of rows to async Ray actors
(runner/dataset/onray/worker.py), each shard's results coming back in chunks as its rows end. Only the driver
writes: :class:`RayBatch` stands where the local :class:`~runner.dataset.batch.Batch` stands in
runner/commands/dataset.py (same ``run(rows, on_result, on_start)``), so results.jsonl, the ledger, ``--resume``
and ``--retry-errors`` are the same whichever executor ran a row.

- ``--concurrency`` is global: it is split among the workers, whose shares add up to it.
- Each worker keeps two shards: while one drains, the next is already there (a shard's wait is reported).
- A worker that dies (killed, out of memory, its node lost) has the rows of its shards that had not come back
  sent again, to a worker started in its place; a row's result is taken once, from the shard that holds it.
- Ctrl-C cancels the shards and kills the workers; rows sent and not back are "started" in the ledger, which a
  resume runs again.
- The workflow's folder travels as the actors' runtime environment (``working_dir``); the values of the
  variables named by ``api_key_env`` are given to the actors' constructors (held in memory, never in the runtime
  environment, which Ray logs and shows).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from runner.dataset.batch import RowInput, RowResult
from runner.dataset.onray.budget import RateBudget
from runner.dataset.onray.connect import NAMESPACE, import_ray, secrets_of
from runner.dataset.onray.worker import RowWorker
from runner.errors import RunnerError
from runner.fsutil import atomic_write_text
from runner.plan.compile import Plan

# Rows a shard holds (at least twice a worker's share of --concurrency); $RUNNER_RAY_SHARD_ROWS sets it (measured
# with bench/ray_throughput.py --shard-rows: docs/ray.md).
SHARD_ROWS = 200
SHARDS_AHEAD = 2  # shards each worker holds: one running, one waiting
TRACE_ROWS = 100_000  # rows drawn in trace.json at most
_END = object()


class WorkerFigures:
    """What one worker did, for the report: rows, their span, the shards and how long they waited."""

    def __init__(self, name: str, track: int) -> None:
        self.name, self.track = name, track
        self.rows = self.ok = self.shards = self.lost_shards = 0
        self.first = self.last = 0.0
        self.shard_waits: list[float] = []
        self.cpu_s: float | None = None  # the worker process's CPU seconds, asked at the end (a lost one: None)

    def document(self) -> dict[str, Any]:
        span = max(self.last - self.first, 1e-9) if self.rows else 0.0
        waits = sorted(self.shard_waits)
        return {
            "rows": self.rows,
            "ok": self.ok,
            "failed": self.rows - self.ok,
            "busy_s": round(span, 6),
            "rows_per_s": round(self.rows / span, 3) if self.rows else 0.0,
            "shards": self.shards,
            "shards_lost": self.lost_shards,
            "shard_wait_p50_s": round(waits[len(waits) // 2], 6) if waits else 0.0,
            "shard_wait_max_s": round(waits[-1], 6) if waits else 0.0,
            "cpu_s": None if self.cpu_s is None else round(self.cpu_s, 6),
        }


class RayBatch:
    """A batch's rows on Ray actors, in the place of a local :class:`~runner.dataset.batch.Batch` (``async
    with``, :meth:`run`, :meth:`stop`). ``workers``: actors to start (default: the cluster's CPUs), at most
    ``concurrency``; ``folder``: the workflow's folder (the actors' working directory)."""

    def __init__(
        self,
        plan: Plan,
        *,
        workflow_file: str,
        offline: bool,
        concurrency: int,
        workers: int | None,
        run_dir: Path,
        batch_id: str,
        tracer: Any = None,
    ) -> None:
        self.plan = plan
        self.tracer = tracer  # --otel: the rows' spans come back with their results (runner.report.otel.RowTracer)
        self.workflow_file = os.path.abspath(workflow_file)
        self.offline = offline
        self.concurrency = concurrency
        self.wanted = workers
        self.run_dir = run_dir
        self.batch_id = batch_id
        self.stop_reason: str | None = None
        self.limit_warnings: dict[str, str] = {}
        self.providers: dict[str, Any] = {}  # the judges' of assertions, opened here when the workflow has any
        self.adaptive = _NoChanges()
        self.worker_of: dict[int, str] = {}  # rows ended and not yet written: the worker that ran each
        self.actors: list[Any] = []
        self.figures: list[WorkerFigures] = []  # the live workers', by slot
        self.retired: list[WorkerFigures] = []  # the lost workers'
        self.trace: list[dict[str, Any]] = []
        self.replaced = 0
        self.budget: Any = None
        self.budget_figures: dict[str, Any] = {}
        self._owned: dict[str, Any] = {}
        self._created = 0

    # -- the workers ------------------------------------------------------------------------------------------

    async def __aenter__(self) -> RayBatch:
        ray = self.ray = import_ray()
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        count = self.wanted or max(int(cpus), 1)
        count = max(1, min(count, self.concurrency))
        self.shares = [self.concurrency // count + (1 if i < self.concurrency % count else 0) for i in range(count)]
        self.cpus = min(1.0, cpus / count)  # one CPU each where the cluster has them, so Ray spreads the actors
        self.limits = {
            name: (rl.requests_per_minute, rl.tokens_per_minute)
            for name, spec in self.plan.workflow.models.items()
            if spec.config is not None
            and (rl := spec.config.rate_limit) is not None
            and (rl.requests_per_minute or rl.tokens_per_minute)
        }
        self.secrets = secrets_of(self.plan)
        try:
            if self.limits:
                self.budget = (
                    ray.remote(RateBudget)
                    .options(name=f"{self.batch_id}-budget", namespace=NAMESPACE, num_cpus=0)
                    .remote(self.limits)
                )
            self.actors = [self._spawn(i) for i in range(count)]
            self.figures = [WorkerFigures(self._name(i, 0), i) for i in range(count)]
            await asyncio.gather(*(actor.ping.remote() for actor in self.actors))
        except BaseException as exc:
            self._kill_all()
            if isinstance(exc, ray.exceptions.RayError):
                raise RunnerError(f"the Ray workers could not start: {_cause(exc)}") from None
            raise
        if self.plan.workflow.asserts:  # assertions are checked on the driver: their judges' providers
            from runner.engine.opening import open_providers  # noqa: PLC0415

            open_providers(self.plan, {}, None, into=self._owned)
            self.providers = dict(self._owned)
        return self

    def _name(self, slot: int, generation: int) -> str:
        return f"worker-{slot + 1}" + (f".{generation}" if generation else "")

    def _spawn(self, slot: int, generation: int = 0) -> Any:
        self._created += 1
        name = self._name(slot, generation)
        actor_class = self.ray.remote(RowWorker).options(
            name=f"{self.batch_id}-{name}",
            namespace=NAMESPACE,
            num_cpus=self.cpus,
            max_concurrency=1000,
        )
        return actor_class.remote(
            name,
            os.path.basename(self.workflow_file),
            self.offline,
            self.shares[slot],
            self.secrets,
            self.budget,
            self.limits,
            len(self.shares),
            str(self.run_dir),
            self.batch_id,
            None if self.tracer is None else self.tracer.content,
        )

    async def __aexit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                got = await asyncio.gather(*(a.figures.remote() for a in self.actors), return_exceptions=True)
                trips = sum(g["budget_round_trips"] for g in got if isinstance(g, dict))
                for figures, g in zip(self.figures, got, strict=True):
                    figures.cpu_s = g["cpu_s"] if isinstance(g, dict) else None
                if self.budget is not None:
                    self.budget_figures = {**await self.budget.figures.remote(), "round_trips": trips}
                await asyncio.gather(*(a.close.remote() for a in self.actors), return_exceptions=True)
        finally:
            self._kill_all()
            for provider in self._owned.values():
                await provider.aclose()

    def _kill_all(self) -> None:
        for actor in [*self.actors, self.budget]:
            if actor is not None:
                try:
                    self.ray.kill(actor)
                except Exception:  # noqa: BLE001, S110 - already gone
                    pass

    def stop(self, reason: str) -> None:
        """Send no more shards (``--max-errors`` reached); the shards out finish."""
        if self.stop_reason is None:
            self.stop_reason = reason

    # -- the rows ---------------------------------------------------------------------------------------------

    async def run(
        self,
        rows: Iterable[RowInput],
        on_result: Callable[[RowResult], Awaitable[None] | None],
        on_start: Callable[[RowInput], None] | None = None,
    ) -> None:
        """Run ``rows`` on the workers; ``on_result`` gets each result on the driver's loop as it comes back (in
        the order rows end within a worker), ``on_start`` each row as it is sent."""
        source: Iterator[RowInput] = iter(rows)
        again: deque[RowInput] = deque()  # rows of a lost worker's shards, sent first
        size = max(_shard_rows(), 2 * max(self.shares))
        self._t0 = time.time()
        ended = [False]

        def take() -> list[RowInput]:
            shard: list[RowInput] = []
            while again and len(shard) < size:
                shard.append(again.popleft())
            while not ended[0] and len(shard) < size and self.stop_reason is None:
                row = next(source, _END)
                if row is _END:
                    ended[0] = True
                    break
                assert isinstance(row, RowInput)
                if on_start is not None:
                    on_start(row)
                shard.append(row)
            return shard

        async def feed(slot: int) -> None:
            while shard := take():
                pending = {row.index: row for row in shard}
                actor, figures = self.actors[slot], self.figures[slot]
                sent = time.time()
                try:
                    stream = actor.run_shard.options(num_returns="streaming").remote(shard)
                    async for ref in stream:
                        item = await ref
                        if isinstance(item, float):
                            figures.shards += 1
                            figures.shard_waits.append(max(item - sent, 0.0))
                            continue
                        for result, started, finished, spans in item:
                            if pending.pop(result.index, None) is None:
                                continue  # a row's result is taken once
                            if spans and self.tracer is not None:  # --otel: the row's trace, exported by the caller
                                self.tracer.spans.extend(spans)
                            self._note(figures, result, started, finished)
                            returned = on_result(result)
                            if returned is not None:
                                await returned
                except self.ray.exceptions.RayActorError as exc:
                    # The worker is gone: its rows not back go out again, first, to the one started in its place
                    # (or to any worker whose feeder asks first).
                    again.extendleft(reversed(list(pending.values())))
                    figures.lost_shards += 1
                    self._replace(slot, actor, exc)

        async with asyncio.TaskGroup() as group:
            for slot in range(len(self.actors)):
                for _ in range(SHARDS_AHEAD):
                    group.create_task(feed(slot))

    def _replace(self, slot: int, dead: Any, exc: BaseException) -> None:
        if self.actors[slot] is not dead:
            return  # the slot's other feeder replaced it already
        if self.replaced >= 3 * len(self.actors):
            raise RunnerError(f"Ray workers kept dying ({self.replaced} replaced); the last: {_cause(exc)}")
        self.replaced += 1
        try:  # gone, or only unreachable for now: either way its rows are sent again, so it must not run on
            self.ray.kill(dead)
        except Exception:  # noqa: BLE001, S110 - already gone
            pass
        generation = 1 + sum(1 for f in self.retired if f.track == slot)
        self.retired.append(self.figures[slot])  # its rows stay counted under its own name
        self.actors[slot] = self._spawn(slot, generation)
        self.figures[slot] = WorkerFigures(self._name(slot, generation), slot)

    def _note(self, figures: WorkerFigures, result: RowResult, started: float, finished: float) -> None:
        figures.rows += 1
        figures.ok += result.ok
        figures.first = started if figures.rows == 1 else min(figures.first, started)
        figures.last = max(figures.last, finished)
        self.worker_of[result.index] = figures.name
        if len(self.trace) < TRACE_ROWS:
            self.trace.append(
                {
                    "name": f"row {result.key}",
                    "ph": "X",
                    "ts": round((started - self._t0) * 1e6),
                    "dur": round(max(finished - started, 0.0) * 1e6),
                    "pid": 1,
                    "tid": figures.track + 1,
                    "args": {"index": result.index, "status": result.status, "worker": figures.name},
                }
            )

    # -- the report -------------------------------------------------------------------------------------------

    def document(self) -> dict[str, Any]:
        """The batch report's ``workers`` section."""
        out: dict[str, Any] = {
            "executor": "ray",
            "workers": {f.name: f.document() for f in sorted([*self.figures, *self.retired], key=lambda f: f.name)},
            "replaced": self.replaced,
        }
        if self.budget_figures:
            out["rate_budget"] = self.budget_figures
        return out

    def write_trace(self, folder: Path) -> Path:
        """trace.json: one track per worker (Chrome's trace format: chrome://tracing, Perfetto)."""
        names = {f.track: f.name for f in self.figures}  # a replaced worker's track is named after the last one
        meta = [
            {"name": "thread_name", "ph": "M", "pid": 1, "tid": track + 1, "args": {"name": name}}
            for track, name in sorted(names.items())
        ]
        path = folder / "trace.json"
        atomic_write_text(path, json.dumps({"traceEvents": meta + self.trace}) + "\n")
        return path


class _NoChanges:
    """Adaptive concurrency runs in each worker; the driver has no changes of its own to report."""

    changes: list[dict[str, Any]] = []


def _shard_rows() -> int:
    text = os.environ.get("RUNNER_RAY_SHARD_ROWS", "")
    if not text:
        return SHARD_ROWS
    if not text.isdigit() or int(text) < 1:
        raise RunnerError(f"RUNNER_RAY_SHARD_ROWS={text}: expected a whole number of rows, 1 or more")
    return int(text)


def _cause(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
