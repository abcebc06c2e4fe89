"""The engine: runs a compiled plan on one event loop with structured concurrency.

The engine runs stages in order and applies their policies (``runner/engine/policy.py``); each stage's kind
runs it (``runner/stages/``: :meth:`StageKind.run`), asking the engine for the services of
:class:`runner.stages.base.EngineServices`: running a nested sequence of stages, an agent's turn
(``runner/engine/agent.py``), a python stage's function and the thread pool. A fan-out's branches run as
tasks of one ``asyncio.TaskGroup`` (``runner/dispatch.py``); providers are shared by every agent on the same
model. The hot path of a fan-out branch is one context dict, the renders its templates need, one provider
call and two event appends; policies (timeouts, retries, conditions) cost nothing on stages that declare none.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.calls import Usage
from runner.engine.agent import AgentCaller
from runner.engine.agent import TokenSinkFactory as TokenSinkFactory
from runner.engine.family import ChildRun
from runner.engine.policy import run_with_policy
from runner.engine.resources import RunResources
from runner.errors import RunError, RunnerError, StageTimeout
from runner.events import Recorder
from runner.plan.compile import Plan, StagePlan
from runner.providers.base import ChatProvider
from runner.sandbox.fields import FAST_ATTRS
from runner.stages.base import CONTEXT_NAMES
from runner.stages.base import SKIPPED as SKIPPED
from runner.stages.base import Output as Output
from runner.stages.base import as_text as as_text
from runner.stages.gating import Gatekeeper, GateRequest
from runner.stages.workflow import Child, IncludePlan
from runner.templates import base_context
from runner.tools import ToolRunner

if TYPE_CHECKING:  # the checkpoint's module (sqlite3) loads only for a run that keeps one
    from runner.engine.checkpoint import Checkpoint

FAST_ATTRS[Output] = frozenset({"content", "name", "node", "usage", "error"})
FAST_ATTRS[Usage] = frozenset({"prompt_tokens", "completion_tokens", "cached_tokens"})


class Engine:
    """Runs one plan once (``run``); the stage kinds' :class:`~runner.stages.base.EngineServices`."""

    def __init__(
        self,
        plan: Plan,
        inputs: Mapping[str, Any],
        providers: Mapping[str, ChatProvider],
        recorder: Recorder,
        *,
        sink: TokenSinkFactory | None = None,
        run_info: Mapping[str, Any] | None = None,
        tools: ToolRunner | None = None,
        functions: Mapping[str, Callable[..., Any]] | None = None,
        resources: RunResources | None = None,
        shared_slots: Mapping[str, asyncio.Semaphore] | None = None,
        gatekeeper: Gatekeeper | None = None,
        checkpoint: Checkpoint | None = None,
        children: Mapping[str, ChildRun] | None = None,
    ) -> None:
        self.plan = plan
        self.gatekeeper = gatekeeper
        # The run's checkpoint (issue 23): finished nodes are restored from it, not run, and each node's output is
        # committed to it as the node ends. None (a dataset row, --no-checkpoint, a library run): nothing is.
        self.checkpoint = checkpoint
        self.children: Mapping[str, ChildRun] = children or {}
        self.shared_slots: Mapping[str, asyncio.Semaphore] = shared_slots or {}
        self.inputs = inputs
        self.providers = providers
        self.recorder = recorder
        self.sink = sink
        self.run_info = dict(run_info or {})
        self.tools = tools or ToolRunner({})
        self.functions = dict(functions or {})
        self.resources = resources or RunResources(Path(".runner") / "runs" / str(self.run_info.get("id", "run")))
        agents = AgentCaller(
            providers,
            recorder,
            sink,
            plan.agents,
            plan.workflow.memory,
            self.tools,
            self.resources,
            inputs,
            self.run_info,
        )
        # A bound method of the agent caller: the fan-out hot path calls it once per branch.
        self.call_agent = agents.call

    async def run(self, stages: dict[str, Any] | None = None) -> Any:
        """The last stage's output. ``stages`` receives each top-level stage's output by id as it ends (what
        templates see as ``stages``; the public API's ``Result.stages``), also when the run fails later."""
        stages = {} if stages is None else stages
        timeout = self.plan.workflow.timeout
        if timeout is None:
            return await self.run_sequence(self.plan.stages, stages, None, {}, "")
        scope = asyncio.timeout(timeout)
        try:
            async with scope:
                return await self.run_sequence(self.plan.stages, stages, None, {}, "")
        except TimeoutError:
            if scope.expired():
                raise StageTimeout(f"the run timed out after {timeout:g} s (the workflow's 'timeout')") from None
            raise

    async def run_sequence(
        self, plans: Sequence[StagePlan], stages: dict[str, Any], prev: Any, vars_: Mapping[str, Any], prefix: str
    ) -> Any:
        for sp in plans:
            out = await self.run_stage(sp, stages, prev, vars_, prefix)
            if out is SKIPPED:
                stages[sp.id] = None
                continue
            stages[sp.id] = prev = out
        return prev

    def _context(self, stages: dict[str, Any], prev: Any, vars_: Mapping[str, Any]) -> dict[str, Any]:
        ctx = base_context(inputs=self.inputs, stages=stages, prev=prev, vars=vars_, run=self.run_info)
        names = CONTEXT_NAMES.get()  # inside a loop: `loop` (runner/stages/loop.py)
        if names:
            ctx.update(names)
        return ctx

    async def run_stage(
        self, sp: StagePlan, stages: dict[str, Any], prev: Any, vars_: Mapping[str, Any], prefix: str
    ) -> Any:
        ckpt = self.checkpoint
        if ckpt is None:
            return await self._run_stage(sp, stages, prev, vars_, prefix)
        node = prefix + sp.id
        out = ckpt.restored(node)
        if out is not ckpt.MISSING:
            if sp.blocks:
                for key, value in ckpt.exports(node).items():
                    stages.setdefault(key, value)
            self.recorder.emit("restored", node, {"kind": sp.kind.name})
            return out
        if not prefix:  # the stages before it are written before a top-level stage sends anything
            await ckpt.settled()
        before = set(stages) if sp.blocks else None
        out = await self._run_stage(sp, stages, prev, vars_, prefix)
        exports = {k: v for k, v in stages.items() if k not in before and k != sp.id} if before is not None else None
        if sp.agent is not None and sp.kind.name == "fanout" and isinstance(out, list):  # its branches are stored
            ckpt.commit_branches(node, out, now=not prefix)
        else:
            ckpt.commit(node, out, exports, now=not prefix)
        return out

    async def _run_stage(
        self, sp: StagePlan, stages: dict[str, Any], prev: Any, vars_: Mapping[str, Any], prefix: str
    ) -> Any:
        stage = sp.stage
        if sp.agent is not None and sp.agent.spec.vars:  # the agent's vars are defaults under the caller's
            vars_ = {**sp.agent.spec.vars, **vars_}
        if stage.vars:
            vars_ = {**vars_, **stage.vars}
        policy = stage.policy
        if policy.when is None and policy.timeout is None and policy.retry.max_attempts == 1:
            return await sp.kind.run(sp, self, stages, prev, vars_, prefix, self._context(stages, prev, vars_))

        def context() -> dict[str, Any]:
            return self._context(stages, prev, vars_)

        def run_once(ctx: dict[str, Any]) -> Any:
            return sp.kind.run(sp, self, stages, prev, vars_, prefix, ctx)

        return await run_with_policy(sp, policy, prefix + sp.id, self.recorder, context, run_once)

    async def run_workflow(self, include: IncludePlan, inputs: Mapping[str, Any], start: Any, prefix: str) -> Child:
        """A child workflow's run (``runner/stages/workflow.py``): an engine of its own over the child's plan and
        what the run opened for it, recording into this run's events under ``prefix``."""
        from runner.workflow.inputs import resolve_inputs  # noqa: PLC0415

        plan: Plan = include.child
        wf = plan.workflow
        try:
            values = resolve_inputs(wf, [], inputs, how="inputs: {{{name}: ...}}")
        except RunnerError as exc:  # what validate could not know (a template's value): located at the include
            raise RunError(f"{include.include.loc}: the inputs of workflow {wf.file}: {exc}") from None
        shared = self.children[wf.file]
        engine = Engine(
            plan,
            values,
            shared.providers,
            self.recorder,
            sink=self.sink,
            run_info=self.run_info,
            tools=shared.tools,
            functions=shared.functions,
            resources=shared.resources,
            children=self.children,
        )
        stages: dict[str, Any] = {}
        if wf.timeout is None:
            return Child(await engine.run_sequence(plan.stages, stages, start, {}, prefix), stages)
        scope = asyncio.timeout(wf.timeout)
        try:
            async with scope:
                return Child(await engine.run_sequence(plan.stages, stages, start, {}, prefix), stages)
        except TimeoutError:
            if scope.expired():
                raise StageTimeout(f"workflow {wf.file} timed out after {wf.timeout:g} s (its 'timeout')") from None
            raise

    def function(self, name: str) -> Callable[..., Any]:
        return self.functions[name]

    async def gate(self, request: GateRequest) -> Any:
        if self.gatekeeper is None:  # no one to ask and nothing given: the run waits at the gate
            from runner.engine.gates import Gates  # noqa: PLC0415 - only for a workflow with gates

            self.gatekeeper = Gates()
        return await self.gatekeeper.decide(request, self.recorder)

    def executor(self) -> Executor:
        return self.tools.executor()
