"""The engine: runs a compiled plan on one event loop with structured concurrency.

A fan-out's branches run as tasks of one ``asyncio.TaskGroup`` (``runner/dispatch.py``: at most ``max_concurrency``
at once; the first failure cancels the rest and starts nothing more); providers
are shared by every agent on the same model. The hot path of a fan-out branch is one context dict, the
renders its templates need, one provider call and two event appends; policies (timeouts, retries,
conditions) cost nothing on stages that declare none.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
import random
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.calls import ChatResult, Usage
from runner.dispatch import first_error, run_all
from runner.engine.resources import RunResources
from runner.errors import (
    ProviderConfigError,
    ProviderError,
    RunError,
    RunnerError,
    StageTimeout,
    TemplateError,
    ToolError,
)
from runner.events import Recorder
from runner.plan.compile import AgentPlan, CompiledTemplate, Plan, StagePlan
from runner.providers.base import CallContext, ChatProvider, Message
from runner.sandbox.environment import FAST_ATTRS
from runner.templates import base_context
from runner.tools import ToolRunner
from runner.workflow.records import FanoutStage, MemorySpec, PythonStage, StagePolicy

TokenSinkFactory = Callable[[str, str], Callable[[str], None] | None]
"""(node_id, agent name) -> the callback receiving that node's streamed text, or None."""

_NO_USAGE = Usage()
_new = object.__new__  # see call_agent


@dataclass(slots=True)
class Output:
    """A stage's output as templates see it: ``content``, ``name`` (the agent or function), ``node``,
    ``usage``, and ``error`` (None, or why the branch failed under ``on_error: collect``)."""

    content: str
    name: str
    node: str
    usage: Usage
    error: str | None = None

    def __str__(self) -> str:
        return self.content


FAST_ATTRS[Output] = frozenset({"content", "name", "node", "usage", "error"})
FAST_ATTRS[Usage] = frozenset({"prompt_tokens", "completion_tokens"})


class _Skipped:
    """A stage whose ``when`` was false: ``stages.<id>`` is None and ``prev`` passes through."""


SKIPPED = _Skipped()


def as_text(value: Any) -> str:
    """A stage's default input from the previous output: text as is, a fan-out's outputs one per paragraph."""
    if value is None:
        return ""
    if isinstance(value, list):
        return "\n\n".join(as_text(v) for v in value)
    return str(value)


def truthy(value: Any) -> bool:
    """A ``when`` condition's value: text such as "false", "no", "0" or "" is false, like the value false."""
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "no", "0", "none", "off")
    return bool(value)


def _retryable(exc: BaseException) -> bool:
    """Whether a stage retry may help: not for the user's own mistakes (templates, config, imports, a 4xx)."""
    if isinstance(exc, TemplateError | ProviderConfigError | ToolError):
        return False
    if isinstance(exc, ProviderError):
        return exc.retryable
    return isinstance(exc, Exception)


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
        tools: ToolRunner | None = None,
        functions: Mapping[str, Callable[..., Any]] | None = None,
        resources: RunResources | None = None,
    ) -> None:
        self.plan = plan
        self.inputs = inputs
        self.providers = providers
        self.recorder = recorder
        self.sink = sink
        self.run_info = dict(run_info or {})
        self.tools = tools or ToolRunner({})
        self.functions = dict(functions or {})
        self.resources = resources or RunResources(Path(".runner") / "runs" / str(self.run_info.get("id", "run")))
        self._sys_cache: dict[str, str] = {}
        self._tool_specs: dict[str, tuple[dict[str, Any], ...]] = {
            name: tuple(self.tools.tools[t].spec() for t in agent.spec.tools)
            for name, agent in plan.agents.items()
            if agent.spec.tools
        }

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
        return base_context(inputs=self.inputs, stages=stages, prev=prev, vars=vars_, run=self.run_info)

    async def run_stage(
        self, sp: StagePlan, stages: dict[str, Any], prev: Any, vars_: Mapping[str, Any], prefix: str
    ) -> Any:
        stage = sp.stage
        if sp.agent is not None and sp.agent.spec.vars:  # the agent's vars are defaults under the caller's
            vars_ = {**sp.agent.spec.vars, **vars_}
        if stage.vars:
            vars_ = {**vars_, **stage.vars}
        policy = stage.policy
        if policy.when is None and policy.timeout is None and policy.retry.max_attempts == 1:
            return await self._run_stage_once(sp, stages, prev, vars_, prefix, self._context(stages, prev, vars_))
        return await self._run_stage_with_policy(sp, policy, stages, prev, vars_, prefix)

    async def _run_stage_with_policy(
        self,
        sp: StagePlan,
        policy: StagePolicy,
        stages: dict[str, Any],
        prev: Any,
        vars_: Mapping[str, Any],
        prefix: str,
    ) -> Any:
        node = prefix + sp.id
        if policy.when is not None and sp.when is not None:
            condition = sp.when.template.evaluate(self._context(stages, prev, vars_))
            if not truthy(condition):
                self.recorder.emit("skipped", node, {"kind": _kind(sp), "reason": f"when was {condition!r}"})
                return SKIPPED
        retry = policy.retry
        attempt = 1
        while True:
            ctx = self._context(stages, prev, vars_)
            try:
                if policy.timeout is None:
                    return await self._run_stage_once(sp, stages, prev, vars_, prefix, ctx)
                scope = asyncio.timeout(policy.timeout)
                try:
                    async with scope:
                        return await self._run_stage_once(sp, stages, prev, vars_, prefix, ctx)
                except TimeoutError:
                    if scope.expired():
                        # The node saw its cancellation ("cancelled"); the report must say the timeout stopped it.
                        timed_out = StageTimeout(f"stage '{node}' timed out after {policy.timeout:g} s")
                        self.recorder.emit("failed", node, {"error": str(timed_out), "timeout": policy.timeout})
                        raise timed_out from None
                    raise
            except Exception as exc:
                error = first_error(exc)
                if attempt >= retry.max_attempts or not _retryable(error):
                    raise error from None
                delay = random.uniform(0, min(retry.max_delay, retry.initial_delay * 2 ** (attempt - 1)))
                cause = error.kind if isinstance(error, ProviderError) else type(error).__name__
                self.recorder.emit(
                    "retry",
                    node,
                    {"cause": cause, "error": _brief(error), "scope": "stage", "attempt": attempt, "delay": delay},
                )
                await asyncio.sleep(delay)
                attempt += 1

    async def _run_stage_once(
        self,
        sp: StagePlan,
        stages: dict[str, Any],
        prev: Any,
        vars_: Mapping[str, Any],
        prefix: str,
        ctx: dict[str, Any],
    ) -> Any:
        if sp.is_fanout:
            return await self.run_fanout(sp, stages, prev, vars_, prefix, ctx)
        text = sp.input.template.render(ctx) if sp.input is not None else as_text(prev)
        if sp.agent is not None:
            return await self.call_agent(prefix + sp.id, sp.agent, text, ctx)
        return await self.call_python(prefix + sp.id, sp, text, ctx)

    async def call_python(self, node: str, sp: StagePlan, text: str, ctx: Mapping[str, Any]) -> Any:
        stage = sp.stage
        assert isinstance(stage, PythonStage)
        fn = self.functions[stage.function]
        offered = {
            "input": text,
            "prev": ctx["prev"],
            "stages": ctx["stages"],
            "inputs": ctx["inputs"],
            "vars": ctx["vars"],
        }
        params = inspect.signature(fn).parameters
        takes_all = any(p.kind is p.VAR_KEYWORD for p in params.values())
        kwargs = offered if takes_all else {k: v for k, v in offered.items() if k in params}
        rec = self.recorder
        rec.emit("started", node, {"kind": "python", "function": stage.function})
        try:
            if inspect.iscoroutinefunction(fn):
                value = await fn(**kwargs)
            else:
                # in the branch's context, as asyncio.to_thread does: the function sees its caller's context vars
                context = contextvars.copy_context()
                value = await asyncio.get_running_loop().run_in_executor(
                    self.tools.executor(), context.run, _call_with, fn, kwargs
                )
        except BaseException as exc:
            rec.emit("cancelled" if isinstance(exc, asyncio.CancelledError) else "failed", node, {"error": _brief(exc)})
            if isinstance(exc, Exception) and not isinstance(exc, RunError):
                cause = first_error(exc)  # the user's own TaskGroup: its first real error, not the group
                raise RunError(
                    f"python stage '{node}' ({stage.function}) raised {type(cause).__name__}: {cause}"
                ) from exc
            raise
        rec.emit("finished", node)
        if isinstance(value, str):
            return Output(value, stage.function, node, _NO_USAGE)
        return value

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
            rec.emit(
                "cancelled" if isinstance(exc, asyncio.CancelledError) else "failed",
                node,
                {"error": _brief(first_error(exc))},
            )
            raise
        stage = sp.stage
        assert isinstance(stage, FanoutStage)
        # Only on_error: collect keeps failed branches as outputs; otherwise a failure has raised above.
        failed = (
            sum(1 for o in outputs if isinstance(o, Output) and o.error is not None)
            if stage.on_error == "collect"
            else 0
        )
        rec.emit("finished", node, {"failed_branches": failed} if failed else None)
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
        assert isinstance(stage, FanoutStage)
        as_name = stage.as_name
        shared_input: str | None = None
        if sp.input is None:
            shared_input = as_text(prev)
        elif sp.branches or not sp.input.per_branch:  # listed branches have no per-branch variables
            shared_input = sp.input.template.render(ctx)
        items: Sequence[Any] = sp.branches if sp.branches else self._items(sp, ctx)
        n = len(items)
        limit = stage.max_concurrency
        bounded = limit is not None and limit < n
        collect = stage.on_error == "collect"
        rec = self.recorder
        agent = sp.agent
        input_tpl: CompiledTemplate | None = sp.input
        if bounded:  # the branches past the bound wait for a slot from now: the report's concurrency wait
            for i in range(n):
                rec.emit("queued", f"{node}[{i}]")

        async def branch(i: int, item: Any) -> Any:
            branch_node = f"{node}[{i}]"
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
            except Exception as exc:
                if not collect:
                    raise
                error = first_error(exc)
                rec.emit("failed", branch_node, {"error": _brief(error), "kind": "branch"}) if sp.branches else None
                return Output(
                    "", agent.spec.name if agent is not None else "", branch_node, _NO_USAGE, error=_brief(error)
                )

        if agent is not None and not sp.branches and not collect:
            # The common wide fan-out: each branch is one agent call, started directly (no wrapper coroutine).
            render_input = input_tpl.template.render if shared_input is None and input_tpl is not None else None
            call_agent = self.call_agent

            def start_agent(i: int) -> Coroutine[Any, Any, Any]:
                item = items[i]
                item_ctx = ctx.copy()  # a copy, then a set: cheaper than {**ctx, "vars": ...}
                item_ctx["vars"] = {**vars_, as_name: item} if vars_ else {as_name: item}
                text = render_input(item_ctx) if render_input is not None else shared_input
                assert text is not None
                return call_agent(f"{node}[{i}]", agent, text, item_ctx)

            return await run_all(n, start_agent, limit=limit)
        return await run_all(n, lambda i: branch(i, items[i]), limit=limit)

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
        """Run one agent turn on ``text``: model calls and tool calls until a final answer.

        Takes ``ctx`` over (adds ``agent`` and ``input``): callers pass a context of their own, which saves
        a copy per branch on the fan-out hot path.
        """
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
        messages: list[Message] = (
            [{"role": "system", "content": system}, {"role": "user", "content": text}]
            if system
            else [{"role": "user", "content": text}]
        )
        on_token = self.sink(node, name) if self.sink is not None else None
        rec = self.recorder
        events = rec.events
        events.append((rec.clock(), "started", node, agent.started_event))  # rec.emit, inlined: the hot path
        provider = self.providers[agent.model.name]
        # CallContext(node, name, ctx, on_token, rec) and, below, Output(...): built field by field, without
        # an __init__ call (0.06 µs each; the two are 3% of a fan-out branch). A test compares them with the
        # usual build.
        call = _new(CallContext)
        call.node_id = node
        call.agent = name
        call.template_vars = ctx
        call.on_token = on_token
        call.recorder = rec
        call.iteration = 0
        try:
            if agent.spec.tools or agent.spec.memory:
                result = await self._agent_loop(node, agent, provider, messages, call)
            else:
                result = await provider.chat(messages, call)
        except BaseException as exc:
            rec.emit("cancelled" if isinstance(exc, asyncio.CancelledError) else "failed", node, {"error": _brief(exc)})
            raise
        # The result itself is the event's data: the report reads its timings and usage, so the hot path
        # builds no dict for it.
        events.append((rec.clock(), "finished", node, result))
        if on_token is not None:
            on_token("")  # end of this node's stream
        out = _new(Output)
        out.content = result.content
        out.name = name
        out.node = node
        out.usage = result.usage
        out.error = None
        return out

    async def _agent_loop(
        self, node: str, agent: AgentPlan, provider: ChatProvider, messages: list[Message], call: CallContext
    ) -> ChatResult:
        """ReAct: call the model with the tools; run the tool calls it makes (in parallel, bounded); give
        it the results; repeat until it answers without tool calls, at most ``max_iters`` model calls.

        With working memory, what is sent is the memory's context within its token budget (the full
        history goes to the run folder); with long-term memory, recalled notes join the system message
        (``retrieval: auto``) or a ``recall`` tool is offered (``retrieval: tool``), and the turn is
        recorded in the background once answered.
        """
        spec = agent.spec
        mem = self.plan.workflow.memory.get(spec.memory) if spec.memory else None
        long_term = mem.long_term if mem is not None else None
        store = self.resources.stores.get(spec.memory) if spec.memory and long_term is not None else None
        specs = list(self._tool_specs.get(spec.name, ()))
        if store is not None and long_term is not None:
            if long_term.retrieval == "auto":
                from runner.embeddings.store import format_hits  # noqa: PLC0415

                recalled = format_hits(await store.search(call.template_vars["input"], long_term.top_k))
                _append_to_system(messages, recalled)
            else:
                from runner.embeddings.store import recall_tool_spec  # noqa: PLC0415

                specs.append(recall_tool_spec(long_term.top_k))
        working = self._working_memory(node, agent, mem)
        if working is not None:
            if working.config.working_summary_mode != "compress":
                from runner.memory.working import READ_STORED_RESULT_TOOL  # noqa: PLC0415

                specs.append(READ_STORED_RESULT_TOOL)
            working.extend(messages)
        tools = tuple(specs)
        first: float | None = None
        prompt = completion = attempts = 0
        try:
            for iteration in range(spec.max_iters):
                context = await working.context() if working is not None else messages
                call.iteration = iteration
                result = await provider.chat(context, call, tools=tools)
                first = first if first is not None else result.first_token_at
                prompt += result.usage.prompt_tokens
                completion += result.usage.completion_tokens
                attempts += result.attempts
                if not result.tool_calls:
                    if working is not None:
                        working.add({"role": "assistant", "content": result.content})
                    if store is not None:
                        question = call.template_vars["input"]
                        store.record_later([f"{question}\n-> {result.content}"], [{"agent": spec.name, "node": node}])
                    return ChatResult(
                        result.content, Usage(prompt, completion), (), first, attempts, result.finish_reason
                    )
                said: Message = {
                    "role": "assistant",
                    "content": result.content or None,
                    "tool_calls": [c.as_message_part() for c in result.tool_calls],
                }
                messages.append(said)
                if working is not None:
                    working.add(said)
                limit = asyncio.Semaphore(spec.max_parallel_tools)
                async with asyncio.TaskGroup() as tg:
                    tasks = [
                        tg.create_task(
                            self._tool_call(
                                node,
                                f"{iteration}.{j}",
                                c.name,
                                c.arguments,
                                limit,
                                working,
                                store,
                                long_term.top_k if long_term is not None else 0,
                            )
                        )
                        for j, c in enumerate(result.tool_calls)
                    ]
                for c, task in zip(result.tool_calls, tasks, strict=True):
                    answer: Message = {"role": "tool", "tool_call_id": c.id, "content": task.result()}
                    messages.append(answer)
                    if working is not None:
                        working.add(answer)
        finally:
            if working is not None:
                await working.aclose()
                self.recorder.emit("memory_stats", node, working.stats().as_dict())
        raise RunError(
            f"agent '{spec.name}' (node {node}) reached max_iters={spec.max_iters} without a final answer: "
            "raise agents." + spec.name + ".max_iters or check its tools"
        )

    def _working_memory(self, node: str, agent: AgentPlan, mem: MemorySpec | None) -> Any:
        if mem is None or mem.working is None:
            return None
        from runner.memory.working import WorkingMemory, provider_summarizer  # noqa: PLC0415

        config = mem.working
        summarize = None
        if config.summarises:
            model = config.summary_model or agent.model.name
            summarize = provider_summarizer(
                self.providers[model],
                node_id=node,
                agent=agent.spec.name,
                recorder=self.recorder,
                template_vars=base_context(inputs=self.inputs, run=self.run_info, agent=agent.info, vars={}),
            )
        return WorkingMemory(
            config,
            run_dir=self.resources.run_dir,
            agent=node,
            summarize=summarize,
            recorder=self.recorder,
            node_id=node,
        )

    async def _tool_call(
        self,
        node: str,
        index: str,
        name: str,
        arguments: str,
        limit: asyncio.Semaphore,
        working: Any,
        store: Any,
        top_k: int,
    ) -> str:
        tool_node = f"{node}.tool[{index}]"
        async with limit:
            self.recorder.emit("started", tool_node, {"kind": "tool", "tool": name, "parent": node})
            try:
                if name == "read_stored_result" and working is not None:
                    text, ok = await self._builtin(working.read_stored_result, arguments)
                elif name == "recall" and store is not None:
                    text, ok = await self._recall(store, top_k, arguments)
                else:
                    text, ok = await self.tools.run(name, arguments)
            except BaseException as exc:
                self.recorder.emit("cancelled", tool_node, {"error": _brief(exc)})
                raise
            self.recorder.emit("finished" if ok else "failed", tool_node, None if ok else {"error": text})
            return text

    async def _builtin(self, fn: Callable[..., str], arguments: str) -> tuple[str, bool]:
        try:
            args = json.loads(arguments or "{}")
            context = contextvars.copy_context()
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.tools.executor(), context.run, _call_with, fn, args), True
        except (json.JSONDecodeError, TypeError, RunnerError) as exc:
            return f"error: {exc}", False

    async def _recall(self, store: Any, top_k: int, arguments: str) -> tuple[str, bool]:
        from runner.embeddings.store import format_hits  # noqa: PLC0415

        try:
            query = json.loads(arguments or "{}")["query"]
        except (json.JSONDecodeError, KeyError, TypeError):
            return 'error: recall takes {"query": "..."}', False
        return format_hits(await store.search(str(query), top_k)), True


def _append_to_system(messages: list[Message], text: str) -> None:
    if messages and messages[0].get("role") == "system":
        messages[0] = {**messages[0], "content": f"{messages[0]['content']}\n\n{text}"}
    else:
        messages.insert(0, {"role": "system", "content": text})


def _call_with(fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    return fn(**kwargs)


def _kind(sp: StagePlan) -> str:
    return "fanout" if sp.is_fanout else ("agent" if sp.agent is not None else "python")


def _brief(exc: BaseException) -> str:
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    exc = first_error(exc)
    return str(exc) or type(exc).__name__
