"""The engine: runs a compiled plan on one event loop with structured concurrency.

Every task belongs to a TaskGroup; a fan-out is bounded by its ``max_concurrency`` semaphore; providers
are shared by every agent on the same model. The hot path of a fan-out branch is one context dict, the
renders its templates need, one provider call and two event appends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runner.engine.plan import AgentPlan, CompiledTemplate, Plan, StagePlan
from runner.errors import RunError
from runner.events import Recorder
from runner.providers.base import CallContext, ChatProvider, Usage
from runner.templates import FAST_ATTRS, base_context

TokenSinkFactory = Callable[[str, str], Callable[[str], None] | None]
"""(node_id, agent name) -> the callback receiving that node's streamed text, or None."""


@dataclass(slots=True)
class Output:
    """A stage's output as templates see it: ``content``, ``name`` (the agent), ``node``, ``usage``."""

    content: str
    name: str
    node: str
    usage: Usage

    def __str__(self) -> str:
        return self.content


FAST_ATTRS[Output] = frozenset({"content", "name", "node", "usage"})
FAST_ATTRS[Usage] = frozenset({"prompt_tokens", "completion_tokens"})


def as_text(value: Any) -> str:
    """A stage's default input from the previous output: text as is, a fan-out's outputs one per paragraph."""
    if value is None:
        return ""
    if isinstance(value, list):
        return "\n\n".join(as_text(v) for v in value)
    return str(value)


class Engine:
    def __init__(
        self,
        plan: Plan,
        inputs: Mapping[str, Any],
        providers: Mapping[str, ChatProvider],
        recorder: Recorder,
        *,
        sink: TokenSinkFactory | None = None,
        run_info: Mapping[str, Any] | None = None,
    ) -> None:
        self.plan = plan
        self.inputs = inputs
        self.providers = providers
        self.recorder = recorder
        self.sink = sink
        self.run_info = dict(run_info or {})
        self._sys_cache: dict[str, str] = {}

    async def run(self) -> Any:
        return await self.run_sequence(self.plan.stages, {}, None, {}, "")

    async def run_sequence(
        self, plans: Sequence[StagePlan], stages: dict[str, Any], prev: Any, vars_: Mapping[str, Any], prefix: str
    ) -> Any:
        for sp in plans:
            prev = await self.run_stage(sp, stages, prev, vars_, prefix)
            stages[sp.id] = prev
        return prev

    def _context(self, stages: dict[str, Any], prev: Any, vars_: Mapping[str, Any]) -> dict[str, Any]:
        return base_context(inputs=self.inputs, stages=stages, prev=prev, vars=vars_, run=self.run_info)

    async def run_stage(
        self, sp: StagePlan, stages: dict[str, Any], prev: Any, vars_: Mapping[str, Any], prefix: str
    ) -> Any:
        stage = sp.stage
        if sp.agent is not None and sp.agent.spec.vars:  # the agent's vars are defaults under the caller's
            vars_ = {**sp.agent.spec.vars, **vars_}
        if stage.vars:
            vars_ = {**vars_, **stage.vars}
        ctx = self._context(stages, prev, vars_)
        if not sp.is_fanout:
            assert sp.agent is not None
            text = sp.input.template.render(ctx) if sp.input is not None else as_text(prev)
            return await self.call_agent(prefix + sp.id, sp.agent, text, ctx)
        return await self.run_fanout(sp, stages, prev, vars_, prefix, ctx)

    async def run_fanout(
        self,
        sp: StagePlan,
        stages: dict[str, Any],
        prev: Any,
        vars_: Mapping[str, Any],
        prefix: str,
        ctx: dict[str, Any],
    ) -> list[Any]:
        node = prefix + sp.id
        rec = self.recorder
        rec.emit("started", node, {"kind": "fanout"})
        try:
            outputs = await self._fanout_body(sp, stages, prev, vars_, prefix, ctx, node)
        except BaseException as exc:
            rec.emit("cancelled" if isinstance(exc, asyncio.CancelledError) else "failed", node, {"error": _brief(exc)})
            raise
        rec.emit("finished", node)
        return outputs

    async def _fanout_body(
        self,
        sp: StagePlan,
        stages: dict[str, Any],
        prev: Any,
        vars_: Mapping[str, Any],
        prefix: str,
        ctx: dict[str, Any],
        node: str,
    ) -> list[Any]:
        stage = sp.stage
        as_name: str = getattr(stage, "as_name", "item")
        shared_input: str | None = None
        if sp.input is None:
            shared_input = as_text(prev)
        elif not sp.input.per_branch:
            shared_input = sp.input.template.render(ctx)
        items: Sequence[Any]
        if sp.branches:
            items = sp.branches
        else:
            items = self._items(sp, ctx)
        limit: int | None = getattr(stage, "max_concurrency", None)
        sem = asyncio.Semaphore(limit) if limit is not None and limit < len(items) else None
        rec = self.recorder
        agent = sp.agent
        input_tpl: CompiledTemplate | None = sp.input

        async def branch(i: int, item: Any) -> Any:
            branch_node = f"{node}[{i}]"
            if sem is not None:
                rec.emit("queued", branch_node)
                await sem.acquire()
            try:
                if sp.branches:
                    scope = dict(stages)
                    out = await self.run_sequence(item, scope, shared_input, vars_, prefix)
                    for key, value in scope.items():  # ids are unique across nesting: no clobbering
                        stages.setdefault(key, value)
                    return out
                item_vars = {**vars_, as_name: item} if vars_ else {as_name: item}
                item_ctx = {**ctx, "vars": item_vars}
                if shared_input is not None:
                    text = shared_input
                else:
                    assert input_tpl is not None
                    text = input_tpl.template.render(item_ctx)
                if agent is not None:
                    return await self.call_agent(branch_node, agent, text, item_ctx)
                return await self.run_sequence(sp.stages, dict(stages), text, item_vars, branch_node + ".")
            finally:
                if sem is not None:
                    sem.release()

        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(branch(i, item)) for i, item in enumerate(items)]
        return [t.result() for t in tasks]

    def _items(self, sp: StagePlan, ctx: Mapping[str, Any]) -> Sequence[Any]:
        if isinstance(sp.for_each, tuple):
            return sp.for_each
        assert isinstance(sp.for_each, CompiledTemplate)
        value = sp.for_each.template.evaluate(ctx)
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            src = sp.for_each.template.src
            raise RunError(
                f"{src.loc}: for_each of stage '{sp.id}' must give a list, got {type(value).__name__} {value!r:.60}"
            )
        return value

    async def call_agent(self, node: str, agent: AgentPlan, text: str, ctx: dict[str, Any]) -> Output:
        """Call ``agent`` on ``text``. Takes ``ctx`` over (adds ``agent`` and ``input``): callers pass a
        context of their own, which saves a copy per branch on the fan-out hot path."""
        name = agent.spec.name
        ctx["agent"] = agent.info
        ctx["input"] = text
        tpl = agent.sys_prompt
        if tpl is None:
            system = ""
        elif agent.sys_prompt_varies:
            system = tpl.template.render(ctx)
        else:
            system = self._sys_cache.get(name) or self._sys_cache.setdefault(name, tpl.template.render(ctx))
        messages: list[dict[str, Any]] = (
            [{"role": "system", "content": system}, {"role": "user", "content": text}]
            if system
            else [{"role": "user", "content": text}]
        )
        on_token = self.sink(node, name) if self.sink is not None else None
        rec = self.recorder
        rec.emit("started", node, agent.started_event)
        try:
            result = await self.providers[agent.model.name].chat(messages, CallContext(node, name, ctx, on_token, rec))
        except BaseException as exc:
            rec.emit("cancelled" if isinstance(exc, asyncio.CancelledError) else "failed", node, {"error": _brief(exc)})
            raise
        # The result itself is the event's data: the report reads its timings and usage, so the hot path
        # builds no dict for it.
        rec.emit("finished", node, result)
        if on_token is not None:
            on_token("")  # end of this node's stream
        return Output(result.content, name, node, result.usage)


def _brief(exc: BaseException) -> str:
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    return str(exc) or type(exc).__name__
