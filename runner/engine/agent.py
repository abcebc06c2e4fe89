"""An agent's turn: the model call, and for an agent with tools or memory the ReAct loop around it.

The hot path of a fan-out branch is :meth:`AgentCaller.call` on an agent without tools or memory: one
messages list, one provider call and two event appends, with the call's records built field by field.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from runner.calls import ChatResult, Usage
from runner.config.output import OutputSpec
from runner.engine.resources import RunResources
from runner.engine.toolcalls import tool_call
from runner.errors import RunError
from runner.events import Recorder
from runner.plan.compile import AgentPlan
from runner.providers.base import CallContext, ChatProvider, Message
from runner.stages.base import Output, brief
from runner.templates import base_context
from runner.tools import ToolRunner, cut_result
from runner.workflow.records import MemorySpec

TokenSinkFactory = Callable[[str, str], Callable[[str], None] | None]
"""(node_id, agent name) -> the callback receiving that node's streamed text, or None."""

_new = object.__new__  # see AgentCaller.call


class AgentCaller:
    """Runs agent turns for one run: shares the providers, the recorder, the token sink, the tools and the
    memories, and renders each agent's system prompt once when it does not vary between calls."""

    def __init__(
        self,
        providers: Mapping[str, ChatProvider],
        recorder: Recorder,
        sink: TokenSinkFactory | None,
        agents: Mapping[str, AgentPlan],
        memory: Mapping[str, MemorySpec],
        tools: ToolRunner,
        resources: RunResources,
        inputs: Mapping[str, Any],
        run_info: Mapping[str, Any],
    ) -> None:
        self.providers = providers
        self.recorder = recorder
        self.sink = sink
        self.memory = memory
        self.tools = tools
        self.resources = resources
        self.inputs = inputs
        self.run_info = run_info
        self._sys_cache: dict[str, str] = {}
        self._tool_specs: dict[str, tuple[dict[str, Any], ...]] = {
            name: tuple(tools.tools[t].spec() for t in (*agent.spec.tools, *tools.by_agent.get(name, {}).values()))
            for name, agent in agents.items()
            if agent.spec.tools or name in tools.by_agent
        }
        # An MCP tool's result is cut to the agent's tool-message budget (issue 22): its working memory's
        # max_tool_message_tokens, else the default, at about 4 characters a token.
        self._mcp_budget: dict[str, int] = {
            name: 4 * _tool_message_tokens(memory.get(agent.spec.memory or ""))
            for name, agent in agents.items()
            if name in tools.by_agent
        }

    async def call(
        self, node: str, agent: AgentPlan, text: str, ctx: dict[str, Any], output: OutputSpec | None = None
    ) -> Output:
        """Run one agent turn on ``text``: model calls and tool calls until a final answer.

        Takes ``ctx`` over (adds ``agent`` and ``input``): callers pass a context of their own, which saves
        a copy per branch on the fan-out hot path. ``output``: the stage's structured output, which wins over
        the agent's own; with one, the reply is parsed and checked, repaired or refused (issue 16), and its
        value is the output's ``data``.
        """
        if output is None:
            output = agent.spec.output
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
        call.output = output
        data = None
        try:
            if agent.spec.tools or agent.spec.memory or agent.spec.mcp_tools:
                result = await self._loop(node, agent, provider, messages, call)
            else:
                result = await provider.chat(messages, call)
            if output is not None:
                result, data = await self._structured(node, agent, provider, messages, call, result, output)
        except BaseException as exc:
            rec.emit("cancelled" if isinstance(exc, asyncio.CancelledError) else "failed", node, {"error": brief(exc)})
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
        out.data = data
        return out

    async def _structured(
        self,
        node: str,
        agent: AgentPlan,
        provider: ChatProvider,
        messages: list[Message],
        call: CallContext,
        result: ChatResult,
        output: OutputSpec,
    ) -> tuple[ChatResult, Any]:
        """The reply's value when it parses and matches ``output.schema``. Otherwise a repair turn: the reply
        and what is wrong with it go back to the model (a ``repair`` event each, which the report counts), at
        most ``output.max_repairs`` times; then the stage fails saying where the value is wrong, what the schema
        wanted and how the reply began. The returned result adds up the usage and attempts of every turn."""
        from runner.structured import StructuredError, check_reply, repair_prompt  # noqa: PLC0415

        repairs = 0
        prompt, completion = result.usage.prompt_tokens, result.usage.completion_tokens
        attempts, first = result.attempts, result.first_token_at
        while True:
            try:
                value = check_reply(result.content, output.schema)
            except StructuredError as err:
                if repairs >= output.max_repairs:
                    turns = f"{repairs} repair turn{'' if repairs == 1 else 's'}" if repairs else "no repair turn"
                    raise RunError(
                        f"agent '{agent.spec.name}' (node {node}) gave no valid structured output ({turns}, "
                        f"output.max_repairs={output.max_repairs}): {err.describe()}"
                    ) from None
                repairs += 1
                self.recorder.emit("repair", node, {"repair": repairs, "problem": err.problem})
                messages.append({"role": "assistant", "content": result.content})
                messages.append({"role": "user", "content": repair_prompt(err, output.schema)})
                restart = getattr(call.on_token, "restart", None)
                if callable(restart):
                    restart()  # the reply shown above is void: the terminal says so before the repaired one
                call.iteration = 0
                if agent.spec.tools or agent.spec.memory or agent.spec.mcp_tools:
                    result = await self._loop(node, agent, provider, messages, call)
                else:
                    result = await provider.chat(messages, call)
                prompt += result.usage.prompt_tokens
                completion += result.usage.completion_tokens
                attempts += result.attempts
                continue
            if repairs == 0:
                return result, value
            total = ChatResult(result.content, Usage(prompt, completion), (), first, attempts, result.finish_reason)
            return total, value

    async def _loop(
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
        mem = self.memory.get(spec.memory) if spec.memory else None
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
                top_k = long_term.top_k if long_term is not None else 0
                keys = self.tools.by_agent.get(spec.name, {})
                async with asyncio.TaskGroup() as tg:
                    tasks = [
                        tg.create_task(
                            tool_call(
                                self.recorder,
                                self.tools,
                                node,
                                f"{iteration}.{j}",
                                keys.get(c.name, c.name),
                                c.arguments,
                                limit,
                                working,
                                store,
                                top_k,
                            )
                        )
                        for j, c in enumerate(result.tool_calls)
                    ]
                for c, task in zip(result.tool_calls, tasks, strict=True):
                    text = task.result()
                    if c.name in keys:
                        text = cut_result(text, self._mcp_budget[spec.name], keys[c.name])
                    answer: Message = {"role": "tool", "tool_call_id": c.id, "content": text}
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


def _tool_message_tokens(memory: MemorySpec | None) -> int:
    if memory is not None and memory.working is not None:
        return memory.working.max_tool_message_tokens
    from runner.config.memory import DEFAULT_MAX_TOOL_MESSAGE_TOKENS  # noqa: PLC0415

    return DEFAULT_MAX_TOOL_MESSAGE_TOKENS


def _append_to_system(messages: list[Message], text: str) -> None:
    if messages and messages[0].get("role") == "system":
        messages[0] = {**messages[0], "content": f"{messages[0]['content']}\n\n{text}"}
    else:
        messages.insert(0, {"role": "system", "content": text})
