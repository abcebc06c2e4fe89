"""One run of a workflow: providers opened and always closed, the engine, and the report's raw material.

The report is built from what was recorded even when the run fails or is interrupted (Ctrl-C), so an
interrupted run still leaves a valid partial report.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner import interrupts
from runner.dispatch import first_error
from runner.engine import loop as loops
from runner.engine.execute import Engine, TokenSinkFactory
from runner.engine.resources import open_resources
from runner.errors import RunnerError
from runner.events import Recorder
from runner.plan.compile import Plan, walk_plans
from runner.providers import PROVIDERS
from runner.providers.base import ChatProvider
from runner.report.document import RunInfo, build_report, now_utc
from runner.report.layout import describe_workflow
from runner.tools import ToolRunner, import_callable, load_tool
from runner.workflow.records import PythonStage


@dataclass
class RunOutcome:
    status: str  # ok | failed | interrupted
    output: Any
    error: BaseException | None
    info: RunInfo
    recorder: Recorder
    end: float

    def report(self) -> dict[str, Any]:
        message = None
        if self.error is not None:
            message = (
                str(self.error)
                if isinstance(self.error, RunnerError)
                else ("interrupted" if self.status == "interrupted" else f"{type(self.error).__name__}: {self.error}")
            )
        return build_report(self.info, self.recorder, status=self.status, end=self.end, error=message)


def models_in_use(plan: Plan) -> set[str]:
    """The models of the agents that run, and the summary models of their working memories."""
    agents = [sp.agent for sp in walk_plans(plan.stages) if sp.agent is not None]
    used = {agent.model.name for agent in agents}
    for agent in agents:
        memory = plan.workflow.memory.get(agent.spec.memory or "")
        if memory is not None and memory.working is not None and memory.working.summary_model:
            used.add(memory.working.summary_model)
    return used


def open_providers(plan: Plan) -> dict[str, ChatProvider]:
    providers: dict[str, ChatProvider] = {}
    for name in sorted(models_in_use(plan)):
        spec = plan.workflow.models[name]
        providers[name] = PROVIDERS[spec.provider].load_factory()(name, spec.config)
    return providers


def load_user_code(plan: Plan) -> tuple[ToolRunner, dict[str, Callable[..., Any]]]:
    """Import the tools the agents use and the python stages' functions, from the workflow's folder."""
    wf = plan.workflow
    base_dir = Path(wf.file).resolve().parent
    used_tools = {t for agent in plan.agents.values() for t in agent.spec.tools}
    tools = {
        name: load_tool(
            name,
            spec.function,
            timeout=spec.timeout,
            description=spec.description,
            parameters=spec.parameters,
            base_dir=base_dir,
        )
        for name, spec in wf.tools.items()
        if name in used_tools
    }
    functions = {
        sp.stage.function: import_callable(sp.stage.function, base_dir=base_dir, what="python stage function")
        for sp in walk_plans(plan.stages)
        if isinstance(sp.stage, PythonStage)
    }
    return ToolRunner(tools), functions


async def execute(
    plan: Plan,
    inputs: Mapping[str, Any],
    recorder: Recorder,
    *,
    sink: TokenSinkFactory | None = None,
    run_info: Mapping[str, Any] | None = None,
    run_dir: str | Path | None = None,
) -> Any:
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    tool_runner, functions = load_user_code(plan)
    run_id = str((run_info or {}).get("id", "run"))
    resources = open_resources(plan, Path(run_dir) if run_dir is not None else Path(".runner") / "runs" / run_id)
    providers = open_providers(plan)
    # Under the runner program a signal cancels this task (runner.interrupts: exit 130 or 143, a partial
    # report); one that came while the lines above ran cancels it now. Called as a library, SIGTERM cancels
    # the run like Ctrl-C does while it lasts.
    detach = interrupts.attach(loop, main) if main is not None else None
    sigterm = False
    if detach is None and main is not None and threading.current_thread() is threading.main_thread():
        try:
            loop.add_signal_handler(signal.SIGTERM, main.cancel)
            sigterm = True
        except (NotImplementedError, RuntimeError):  # not on this platform or loop
            pass
    try:
        engine = Engine(
            plan,
            inputs,
            providers,
            recorder,
            sink=sink,
            run_info=run_info,
            tools=tool_runner,
            functions=functions,
            resources=resources,
        )
        output = await engine.run()
        await resources.aclose(recorder)  # a failed background record fails the run
        return output
    finally:
        # Close every client even when the run failed or was cancelled; a failing close must not hide
        # the run's own error. Closing twice is harmless.
        await asyncio.gather(*(p.aclose() for p in providers.values()), resources.aclose(), return_exceptions=True)
        tool_runner.close()
        if detach is not None:
            detach()
        if sigterm:
            loop.remove_signal_handler(signal.SIGTERM)


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
    """Run on a fresh event loop; never raises for a failed or interrupted run: the outcome says.

    ``recorder``: a :class:`~runner.events.NullRecorder` runs with recording off. ``watch(recorder, info)``
    runs as a task beside the run (live progress, the event log), cancelled and awaited when the run ends.
    ``tune_gc``: fewer garbage collections during the run (:func:`gc_tuned`); for the CLI, which owns the
    process. A program that calls runner keeps its garbage collector as it set it."""
    wf = plan.workflow
    _, loop_name = loops.loop_factory() if use_uvloop else (None, "asyncio")
    recorder = recorder if recorder is not None else Recorder()
    run_id = uuid.uuid4().hex[:12]
    info = RunInfo(
        run_id, wf.name, wf.file, wf.sha256, now_utc(), time.perf_counter(), loop_name, inputs, describe_workflow(wf)
    )
    run_vars = {"id": run_id, "name": wf.name}

    def main() -> Coroutine[Any, Any, Any]:
        run = execute(plan, inputs, recorder, sink=sink, run_info=run_vars, run_dir=run_dir)
        return run if watch is None else _watched(run, watch(recorder, info))

    try:
        with gc_tuned() if tune_gc else contextlib.nullcontext():
            output = loops.run(main, use_uvloop=use_uvloop)
    except KeyboardInterrupt as exc:
        return RunOutcome("interrupted", None, exc, info, recorder, time.perf_counter())
    except asyncio.CancelledError as exc:
        return RunOutcome("interrupted", None, exc, info, recorder, time.perf_counter())
    except Exception as exc:  # noqa: BLE001 - recorded in the report; the CLI decides the exit code
        return RunOutcome("failed", None, first_error(exc), info, recorder, time.perf_counter())
    return RunOutcome("ok", output, None, info, recorder, time.perf_counter())


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
