"""One run of a workflow: providers opened and always closed, the engine, and the report's raw material.

:class:`Session` is the one run path: ``runner.arun``, ``runner.run`` and ``runner.stream`` (``runner/api.py``),
the ``runner run`` command and :func:`run_plan` all run a Session. It runs on whatever loop is running and does
only what a library may do inside someone else's program: it installs no signal handler, leaves the garbage
collector, the loop policy and the loop's task factory as it found them, and prints nothing. What a program
that owns its process adds (signals, a tuned collector, a loop of its own, the terminal) is the caller's:
:func:`run_session` and the CLI.

The report is built from what was recorded even when the run fails or is interrupted (Ctrl-C), so an
interrupted run still leaves a valid partial report.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.dispatch import first_error
from runner.engine import loop as loops
from runner.engine.execute import Engine, TokenSinkFactory
from runner.engine.family import family_of
from runner.engine.opening import (
    load_user_code,
    open_mcp_servers,
    open_providers,
    response_caches,
    run_wrapper,
    wrapped,
)
from runner.engine.resources import open_resources
from runner.errors import GateRejected, GateWaiting, RunnerError
from runner.events import TRACE, Recorder, started_at_text, trace_id_of
from runner.plan.compile import Plan
from runner.providers.base import ChatProvider
from runner.report.document import RunInfo, build_report, now_utc
from runner.report.layout import describe_workflow
from runner.stages.gating import Gatekeeper

if TYPE_CHECKING:
    from runner.engine.checkpoint import Checkpoint
    from runner.providers.transport import TransportWrapper

Attach = Callable[[asyncio.AbstractEventLoop, "asyncio.Task[Any]"], Callable[[], None] | None]
"""(loop, the run's main task) -> the function that undoes it, or None: how the CLI hands the run's task to its
signal handlers (:func:`runner.interrupts.attach`)."""


@dataclass
class RunOutcome:
    """How a run ended: its status, the final output or the error, and what the report needs."""

    status: str  # ok | failed | interrupted | rejected (an approve gate) | waiting (at a gate: GateWaiting)
    output: Any
    error: BaseException | None
    info: RunInfo
    recorder: Recorder
    end: float
    stages: dict[str, Any] = field(default_factory=dict)  # outputs by top-level stage id, as far as the run got

    def report(self) -> dict[str, Any]:
        message = None
        if self.error is not None:
            message = (
                str(self.error)
                if isinstance(self.error, RunnerError)
                else ("interrupted" if self.status == "interrupted" else f"{type(self.error).__name__}: {self.error}")
            )
        return build_report(self.info, self.recorder, status=self.status, end=self.end, error=message)


async def execute(
    plan: Plan,
    inputs: Mapping[str, Any],
    recorder: Recorder,
    *,
    sink: TokenSinkFactory | None = None,
    run_info: Mapping[str, Any] | None = None,
    run_dir: str | Path | None = None,
    providers: Mapping[str, ChatProvider] | None = None,
    transport: Any = None,
    stages: dict[str, Any] | None = None,
    wrapper: TransportWrapper | None = None,
    gatekeeper: Gatekeeper | None = None,
    checkpoint: Checkpoint | None = None,
) -> Any:
    """Run ``plan`` on the running loop and return its last stage's output.

    ``providers``: the caller's providers by model name, used as they are and never closed (the caller made
    them and may use them again); the others are made here from the workflow's settings (``transport`` going
    to those that take one) and closed on every exit path. ``stages`` receives the top-level stages' outputs by
    id as they end. ``wrapper`` wraps the transport of every endpoint made here (a cassette recording or
    replaying the run: :mod:`runner.cassette`). ``gatekeeper``: where human gates get their decisions
    (:class:`runner.engine.gates.Gates`); without one, a gate makes the run wait. ``checkpoint``: the run's
    checkpoint (finished nodes restored from it, each node committed to it as it ends:
    :mod:`runner.engine.checkpoint`)."""
    tool_runner, functions = load_user_code(plan)
    run_id = str((run_info or {}).get("id", "run"))
    folder = Path(run_dir) if run_dir is not None else Path(".runner") / "runs" / run_id
    owned: dict[str, ChatProvider] = {}
    caches = response_caches(plan, providers)
    wrapper = wrapper if caches is None else caches(wrapper)
    with wrapped(wrapper):  # embedders send through the same seam as models, so they record and replay too
        resources = open_resources(plan, folder)
    family = family_of(plan)
    mcp: Any = None
    try:
        mcp = await open_mcp_servers(plan, tool_runner, folder, recorder)  # before any model call (issue 22)
        with wrapped(wrapper):
            open_providers(plan, providers, transport, into=owned)
        chat: dict[str, ChatProvider] = {**(providers or {}), **owned}
        children = None
        wrap = run_wrapper(plan, recorder, checkpoint)
        if family is not None:  # sub-workflows (issue 22): theirs, sharing the models defined the same
            with wrapped(wrapper):
                family.open(chat, transport, folder)
            await family.open_mcp(folder, recorder)
            children = family.runs(wrap)
        chat = dict(wrap(chat, plan.workflow))
        engine = Engine(
            plan,
            inputs,
            chat,
            recorder,
            sink=sink,
            run_info=run_info,
            tools=tool_runner,
            functions=functions,
            resources=resources,
            gatekeeper=gatekeeper,
            checkpoint=checkpoint,
            children=children,
        )
        output = await engine.run(stages)
        await resources.aclose(recorder)  # a failed background record fails the run
        return output
    finally:
        # Close every client this run made even when the run failed or was cancelled (or a later model's
        # settings failed while opening); a failing close must not hide the run's own error. Closing twice is
        # harmless.
        await asyncio.gather(*(p.aclose() for p in owned.values()), resources.aclose(), return_exceptions=True)
        if mcp is not None:  # every server process stopped, also on Ctrl-C and SIGTERM (the run's cancellation)
            await asyncio.shield(mcp.aclose())
        tool_runner.close()
        if family is not None:
            await family.aclose()
        figures_of: dict[str, Any] = getattr(wrapper, "cache_figures", dict)()
        if family is not None:
            figures_of.update(family.cache_figures())  # the children's own response caches
        for name, figures in figures_of.items():
            recorder.emit("cache_stats", name, figures)  # the response caches', for the report's cache section


class Session:
    """One run of a compiled plan on the running loop: the core every way of running a workflow goes through.

    ``await session.run()`` returns a :class:`RunOutcome` for a run that ended, ok or failed: a failed run is
    an outcome (``status`` "failed", ``error`` why), not an exception, so that its partial report is always
    there. A cancelled run is different: :meth:`run` sets :attr:`outcome` (status "interrupted", the partial
    report's material) and re-raises ``CancelledError``, because swallowing a cancellation breaks the caller's
    structured concurrency (``asyncio.timeout`` and task groups rely on it reaching them). A human gate that
    stops the run is an outcome too: ``waiting`` (no one to ask: ``error`` is the
    :class:`~runner.errors.GateWaiting` naming the gate, the state a resumed run continues from) or ``rejected``.

    ``sink`` receives streamed text (:data:`~runner.engine.execute.TokenSinkFactory`); ``recorder`` the events
    (a :class:`~runner.events.NullRecorder` runs with recording off); ``run_dir`` is where the run keeps files
    besides its report (working memory's history), by default ``<report.dir>/runs/<name>-<UTC stamp>``, as
    ``runner run`` puts it; ``providers``, ``transport``, ``wrapper``, ``gatekeeper`` and ``checkpoint`` as in
    :func:`execute` (a checkpoint's folder is the run folder; the session marks it finished when the run ends ok,
    and leaves its closing to whoever opened it).
    """

    def __init__(
        self,
        plan: Plan,
        inputs: Mapping[str, Any],
        *,
        sink: TokenSinkFactory | None = None,
        recorder: Recorder | None = None,
        run_dir: str | Path | None = None,
        providers: Mapping[str, ChatProvider] | None = None,
        transport: Any = None,
        wrapper: TransportWrapper | None = None,
        traced: bool = False,
        gatekeeper: Gatekeeper | None = None,
        checkpoint: Checkpoint | None = None,
    ) -> None:
        self.plan = plan
        self.checkpoint = checkpoint
        self.wrapper = wrapper
        self.traced = traced  # its spans are exported: its requests carry W3C traceparent (runner.events.TRACE)
        self.gatekeeper = gatekeeper
        self.inputs = inputs
        self.sink = sink
        self.recorder = recorder if recorder is not None else Recorder()
        self.run_dir = run_dir
        self.providers = providers
        self.transport = transport
        self.stages: dict[str, Any] = {}
        self.outcome: RunOutcome | None = None
        self._info: RunInfo | None = None
        self._started = False

    @property
    def info(self) -> RunInfo:
        """The run's identity and start: made on first use, which the callers make as the run starts, on its
        loop (whose kind the report names)."""
        if self._info is None:
            wf = self.plan.workflow
            self._info = RunInfo(
                os.urandom(6).hex(),
                wf.name,
                wf.file,
                wf.sha256,
                now_utc(),
                time.perf_counter(),
                _loop_name(),
                self.inputs,
                describe_workflow(wf),
            )
        return self._info

    async def run(self) -> RunOutcome:
        """Run once; see the class's docstring for what it returns and raises."""
        if self._started:
            raise RuntimeError("a Session runs once")
        self._started = True
        info = self.info
        run_dir = self.run_dir
        if run_dir is None:
            stamp = info.started_at.strftime("%Y%m%dT%H%M%S.%fZ")
            run_dir = Path(self.plan.workflow.report.dir) / "runs" / f"{info.workflow}-{stamp}"
        ckpt = self.checkpoint
        if ckpt is not None:
            run_dir = ckpt.folder
            ckpt.memory = any(m.working is not None for m in self.plan.workflow.memory.values())
            if ckpt.nodes:
                self.recorder.emit("resumed", "run", {"folder": str(ckpt.folder), "nodes": ckpt.nodes})
        token = TRACE.set(trace_id_of(info.run_id, started_at_text(info.started_at))) if self.traced else None
        try:
            output = await execute(
                self.plan,
                self.inputs,
                self.recorder,
                sink=self.sink,
                run_info={"id": info.run_id, "name": info.workflow},
                run_dir=run_dir,
                providers=self.providers,
                transport=self.transport,
                stages=self.stages,
                wrapper=self.wrapper,
                gatekeeper=self.gatekeeper,
                checkpoint=ckpt,
            )
            if ckpt is not None:
                ckpt.finished()
        except (asyncio.CancelledError, KeyboardInterrupt) as exc:
            self.end("interrupted", None, exc)
            raise
        except Exception as exc:  # noqa: BLE001 - recorded in the report; the caller decides what it means
            error = first_error(exc)
            return self.end(failed_status(error), None, error)
        finally:
            if token is not None:
                TRACE.reset(token)
        return self.end("ok", output, None)

    def end(self, status: str, output: Any, error: BaseException | None) -> RunOutcome:
        """Record how the run ended (the first end recorded stands) and return the outcome."""
        if self.outcome is None:
            self.outcome = RunOutcome(
                status, output, error, self.info, self.recorder, time.perf_counter(), dict(self.stages)
            )
        return self.outcome


def failed_status(error: BaseException) -> str:
    """The status of a run that ``error`` ended: ``waiting`` at a human gate with no one to ask (the resumable
    state: ``error`` is the :class:`~runner.errors.GateWaiting`), ``rejected`` at an approve gate, else
    ``failed``."""
    if isinstance(error, GateWaiting):
        return "waiting"
    if isinstance(error, GateRejected):
        return "rejected"
    return "failed"


def _loop_name() -> str:
    """``uvloop`` or ``asyncio``: the kind of the running loop (``asyncio`` when none runs)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return "asyncio"
    return "uvloop" if any(c.__module__.startswith("uvloop") for c in type(loop).__mro__) else "asyncio"


def run_session(
    session: Session,
    *,
    use_uvloop: bool = True,
    watch: Callable[[Recorder, RunInfo], Coroutine[Any, Any, None]] | None = None,
    tune_gc: bool = False,
    attach: Attach | None = None,
    quiet: bool = False,
) -> RunOutcome:
    """Run ``session`` on a fresh loop of its own (uvloop unless ``use_uvloop`` is False); never raises for a
    failed or interrupted run: the outcome says.

    ``watch(recorder, info)`` runs as a task beside the run (live progress, the event log), cancelled and
    awaited when the run ends. ``tune_gc``: fewer garbage collections during the run (:func:`gc_tuned`); for
    the CLI, which owns the process. ``attach`` is given the loop and the run's task as it starts (the CLI's
    signal handlers then cancel it). ``quiet``: say nothing when uvloop is missing."""

    async def main() -> RunOutcome:
        task = asyncio.current_task()
        detach = attach(asyncio.get_running_loop(), task) if attach is not None and task is not None else None
        try:
            run = session.run()
            return await (run if watch is None else _watched(run, watch(session.recorder, session.info)))
        finally:
            if detach is not None:
                detach()

    try:
        with gc_tuned() if tune_gc else contextlib.nullcontext():
            return loops.run(main, use_uvloop=use_uvloop, quiet=quiet)
    except (KeyboardInterrupt, asyncio.CancelledError) as exc:  # the session has the partial outcome
        return session.end("interrupted", None, exc)
    except Exception as exc:  # noqa: BLE001 - recorded in the report; the CLI decides the exit code
        error = first_error(exc)
        return session.end(failed_status(error), None, error)


def run_plan(
    plan: Plan,
    inputs: Mapping[str, Any],
    *,
    sink: TokenSinkFactory | None = None,
    use_uvloop: bool = True,
    run_dir: str | Path | None = None,
    recorder: Recorder | None = None,
    watch: Callable[[Recorder, RunInfo], Coroutine[Any, Any, None]] | None = None,
    tune_gc: bool = False,
) -> RunOutcome:
    """:func:`run_session` of a new :class:`Session` (for the tests and benchmarks that run a plan directly).

    A program that calls runner keeps its garbage collector as it set it unless ``tune_gc`` says otherwise."""
    session = Session(plan, inputs, sink=sink, recorder=recorder, run_dir=run_dir)
    return run_session(session, use_uvloop=use_uvloop, watch=watch, tune_gc=tune_gc)


async def _watched(run: Coroutine[Any, Any, Any], watcher: Coroutine[Any, Any, None]) -> Any:
    """Await ``run`` with ``watcher`` as a task beside it, cancelled and awaited when ``run`` ends."""
    task = asyncio.get_running_loop().create_task(watcher)
    try:
        return await run
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@contextlib.contextmanager
def gc_tuned() -> Iterator[None]:
    """Fewer garbage collections while the run is in flight.

    A wide fan-out allocates a few small objects per branch and keeps them alive until the fan-out
    ends, so the default gen-0 threshold (700) triggers collections that find nothing to free yet walk
    every live task again (bench/engine_overhead.py: bare TaskGroup tasks spend a sixth of their
    instructions in collections at 5,000 branches). The thresholds are raised for the run and restored
    afterwards; reference counting still frees everything acyclic at once. Nothing changes when the
    collector is off.
    """
    if not gc.isenabled():
        yield
        return
    old = gc.get_threshold()
    # Freezing (to hand the run's survivors to the oldest generation at the end without walking them) is
    # only for a process whose collector nobody else froze: unfreeze cannot tell our objects from a host's.
    freeze = gc.get_freeze_count() == 0
    if freeze:
        gc.freeze()
    gc.set_threshold(max(old[0], 200_000), max(old[1], 20), max(old[2], 20))
    try:
        yield
    finally:
        if freeze:
            # What the run made is still young: restored as is, the low gen-0 threshold would walk all of it
            # at the next allocation (measured: 20-35 ms after a 10,000-branch run). Freezing first moves it
            # out of the young generation; unfreeze then hands it to the oldest one, collected as usual later.
            gc.freeze()
            gc.set_threshold(*old)
            gc.unfreeze()
        else:
            gc.set_threshold(*old)
