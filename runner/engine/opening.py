"""What a run opens before its first stage, and what a dataset batch opens once for all its rows: the models'
providers (the ones the run uses, made from the registry), the response caches and cassette their endpoints send
through, and the user's code (tools and python stages' functions, imported before any model is called)."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.plan.compile import Plan, walk_plans
from runner.providers import PROVIDERS
from runner.providers.base import ChatProvider
from runner.tools import ToolRunner, import_callable, load_tool
from runner.workflow.records import ModelSpec, PythonStage, Workflow

if TYPE_CHECKING:
    from runner.engine.checkpoint import Checkpoint
    from runner.events import Recorder
    from runner.providers.transport import TransportWrapper


def models_in_use(plan: Plan) -> set[str]:
    """The models of the agents that run, and the summary models of their working memories."""
    agents = [sp.agent for sp in walk_plans(plan.stages) if sp.agent is not None]
    used = {agent.model.name for agent in agents}
    for agent in agents:
        memory = plan.workflow.memory.get(agent.spec.memory or "")
        if memory is not None and memory.working is not None and memory.working.summary_model:
            used.add(memory.working.summary_model)
    # the llm-rubric judges of assert: lists (issue 24), declared models: a batch opens them with the others
    used.update(a.model for lst in plan.workflow.asserts for a in lst.items if a.model in plan.workflow.models)
    for name in list(used):  # a model's fallbacks stand in for it (issue 23)
        fallback = plan.workflow.models[name].fallback if name in plan.workflow.models else None
        used.update(fallback.models if fallback is not None else ())
    return used


def open_providers(
    plan: Plan,
    given: Mapping[str, ChatProvider] | None = None,
    transport: Any = None,
    *,
    into: dict[str, ChatProvider] | None = None,
) -> dict[str, ChatProvider]:
    """A provider for each model the run uses that ``given`` does not supply (the caller's, which the run never
    closes). ``transport`` goes to every provider whose factory takes one (the OpenAI-compatible ones: an
    ``httpx`` transport, e.g. ``httpx.MockTransport``). Each is added to ``into`` as it is made, so that those
    made before one that fails (a missing key variable) can still be closed."""
    providers: dict[str, ChatProvider] = {} if into is None else into
    for name in sorted(models_in_use(plan) - set(given or ())):
        providers[name] = open_model(plan.workflow.models[name], transport)
    return providers


def open_model(spec: ModelSpec, transport: Any = None) -> ChatProvider:
    """The provider of one model's settings (``transport`` as in :func:`open_providers`)."""
    factory = PROVIDERS[spec.provider].load_factory()
    config = spec.config
    if spec.fallback is not None:  # a 429 moves to the fallback at once, not after the model's retries
        from runner.providers.fallback import without_429_retries  # noqa: PLC0415

        config = without_429_retries(config, spec.fallback)
    if transport is not None and "transport" in inspect.signature(factory).parameters:
        return factory(spec.name, config, transport=transport)
    return factory(spec.name, config)


def response_caches(
    plan: Plan, given: Mapping[str, ChatProvider] | None
) -> Callable[[TransportWrapper | None], TransportWrapper | None] | None:
    """When a model the run opens has a response cache (``models.<name>.cache.responses``): the function that
    puts the run's caches inside its wrapper (its cassette, if any). None otherwise, and then the HTTP stack is
    not imported for it."""
    models = {name: plan.workflow.models[name].config for name in models_in_use(plan) - set(given or ())}
    if not any(getattr(config, "cache", None) for config in models.values()):
        return None
    from runner.cassette.cache import run_transports  # noqa: PLC0415 - httpx only for a run that caches

    return lambda outer: run_transports(outer, models, plan.workflow.file)


@contextlib.contextmanager
def wrapped(wrapper: TransportWrapper | None) -> Iterator[None]:
    """Endpoints made inside send through ``wrapper`` (:func:`runner.providers.transport.wrapping`)."""
    if wrapper is None:
        yield
        return
    from runner.providers.transport import wrapping  # noqa: PLC0415 - httpx only for a run that wraps

    with wrapping(wrapper):
        yield


async def open_mcp_servers(plan: Plan, tools: ToolRunner, run_dir: Path, recorder: Any = None) -> Any:
    """Start the MCP servers the run's agents use and add their tools to ``tools`` (issue 22); None when no agent
    uses one (and then nothing of the MCP SDK is imported). The caller ``aclose``s the result on every exit path."""
    if not any(agent.spec.mcp_tools for agent in plan.agents.values()):
        return None
    from runner.mcp import require_sdk  # noqa: PLC0415

    require_sdk(plan.workflow.file)
    from runner.mcp.sources import open_mcp  # noqa: PLC0415 - the SDK, only for a run that uses MCP

    return await open_mcp(plan, tools, run_dir, recorder)


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


def run_wrapper(
    plan: Plan, recorder: Recorder, checkpoint: Checkpoint | None = None
) -> Callable[[Mapping[str, ChatProvider], Workflow], Mapping[str, ChatProvider]]:
    """What wraps a run's providers, the parent's and each child's: one budget (the parent's ``limits``, which
    count every call of the run, a child's included, and, for a resumed run, what its checkpoint says the earlier
    part spent) and each workflow's own fallbacks."""
    budget = None
    if plan.workflow.limits is not None:
        from runner.engine.budget import Budget  # noqa: PLC0415

        resume = None if checkpoint is None else str(checkpoint.folder)
        budget = Budget(plan.workflow.limits, recorder, plan.workflow.file, resume=resume)
        if checkpoint is not None:
            kept = checkpoint.spent_totals()  # every call of the earlier parts, as the budget counted them
            if kept is not None:
                budget.count_totals(kept)
            else:  # a run that kept no budget (limits added since): its finished agent calls, one each
                budget.count_spent(plan.workflow.models, checkpoint.spent(plan.agents))
            checkpoint.spending = budget.totals

    def wrap(chat: Mapping[str, ChatProvider], wf: Workflow) -> Mapping[str, ChatProvider]:
        if budget is not None:  # every model call of the run counted against its budget
            from runner.engine.budget import budgeted  # noqa: PLC0415

            chat = budgeted(chat, budget.limits, recorder, budget.file, wf.models, budget=budget)
        if any(spec.fallback is not None for spec in wf.models.values()):
            from runner.providers.fallback import with_fallbacks  # noqa: PLC0415

            chat = with_fallbacks(chat, wf.models)  # over the budget's: each model priced as itself
        return chat

    return wrap
