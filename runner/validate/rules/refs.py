"""References between sections (agents -> models and tools, stages -> agents), unique stage ids, and
definitions nobody uses (warnings)."""

from __future__ import annotations

from runner.config.source import Loc
from runner.diagnostics import Diagnostic
from runner.stages import kind_of
from runner.stages import walk as walk_stages
from runner.validate.rules.common import diag, suggest
from runner.validate.rules.scope import Walk
from runner.validate.rules.source import Source
from runner.workflow.records import FanoutStage, Workflow


def check_references(wf: Workflow, source: Source, walk: Walk) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    file = wf.file
    for agent in wf.agents.values():
        if agent.model not in wf.models:
            out.append(
                diag(
                    file,
                    source.value(("agents", agent.name, "model"), agent.loc, len(agent.name)),
                    "unknown-model",
                    f"agent '{agent.name}' uses model '{agent.model}', which is not defined",
                    suggest(agent.model, wf.models, "models"),
                )
            )
        for i, tool in zip(agent.tool_positions or range(len(agent.tools)), agent.tools, strict=True):
            if tool not in wf.tools:
                out.append(
                    diag(
                        file,
                        source.value(("agents", agent.name, "tools", i), agent.loc, len(agent.name)),
                        "unknown-tool",
                        f"agent '{agent.name}' lists tool '{tool}', which is not defined",
                        suggest(tool, wf.tools, "tools"),
                    )
                )
        if agent.memory is not None and agent.memory not in wf.memory:
            out.append(
                diag(
                    file,
                    source.value(("agents", agent.name, "memory"), agent.loc, len(agent.name)),
                    "unknown-memory",
                    f"agent '{agent.name}' uses memory '{agent.memory}', which is not defined",
                    suggest(agent.memory, wf.memory, "memory"),
                )
            )
    for memory in wf.memory.values():
        summary_model = memory.working.summary_model if memory.working is not None else None
        if summary_model is not None and summary_model not in wf.models:
            out.append(
                diag(
                    file,
                    source.value(("memory", memory.name, "summary_model"), memory.loc, len(memory.name)),
                    "unknown-model",
                    f"memory '{memory.name}' uses summary model '{summary_model}', which is not defined",
                    suggest(summary_model, wf.models, "models"),
                )
            )
        embedding = memory.long_term.embedding if memory.long_term is not None else None
        if embedding is not None and embedding not in wf.embeddings:
            out.append(
                diag(
                    file,
                    source.value(("memory", memory.name, "long_term", "embedding"), memory.loc, len(memory.name)),
                    "unknown-embedding",
                    f"memory '{memory.name}' uses embedding '{embedding}', which is not defined",
                    suggest(embedding, wf.embeddings, "embeddings"),
                )
            )
    seen: dict[str, Loc] = {}
    for stage, path in walk.order:
        if stage.id in seen:
            first = seen[stage.id]
            out.append(
                diag(
                    file,
                    source.value((*path, "id"), stage.loc, len(stage.id)),
                    "duplicate-id",
                    f"stage id '{stage.id}' is already used at line {first.line}",
                    "give every stage, nested ones included, its own id",
                )
            )
        else:
            seen[stage.id] = stage.loc
        if stage.agent is not None and stage.agent not in wf.agents:
            key = (*path, *kind_of(stage).agent_key)
            out.append(
                diag(
                    file,
                    source.value(key, stage.loc, len(stage.id)),
                    "unknown-agent",
                    f"stage '{stage.id}' uses agent '{stage.agent}', which is not defined",
                    suggest(stage.agent, wf.agents, "agents"),
                )
            )
    out.extend(_unused(wf, source, walk))
    out.extend(_pools(wf, source, walk))
    out.extend(_memory_budgets(wf, source))
    return out


def _memory_budgets(wf: Workflow, source: Source) -> list[Diagnostic]:
    """A working memory's budget outside 20-50% of the declared context window of an agent's model."""
    out: list[Diagnostic] = []
    reported: set[tuple[str, str]] = set()
    for agent in wf.agents.values():
        memory = wf.memory.get(agent.memory or "")
        model = wf.models.get(agent.model)
        if memory is None or memory.working is None or model is None:
            continue
        window = model.config.context_window if model.config is not None else None
        if not isinstance(window, int) or (memory.name, model.name) in reported:
            continue
        budget = memory.working.max_total_tokens
        if 0.2 * window <= budget <= 0.5 * window:
            continue
        reported.add((memory.name, model.name))
        share = budget / window
        out.append(
            diag(
                wf.file,
                source.value(("memory", memory.name, "max_total_tokens"), memory.loc, len(memory.name)),
                "memory-budget",
                f"memory '{memory.name}' keeps {budget} tokens, {share:.0%} of the {window}-token context window "
                f"of model '{model.name}' (agent '{agent.name}')",
                f"set max_total_tokens between {window // 5} and {window // 2}",
            )
        )
    return out


def _pools(wf: Workflow, source: Source, walk: Walk) -> list[Diagnostic]:
    """A fan-out bounded above the connection pool of a model its branches call (a warning: it works, the
    extra calls wait for a connection)."""
    out: list[Diagnostic] = []
    for stage, path in walk.order:
        if not isinstance(stage, FanoutStage) or stage.max_concurrency is None:
            continue
        # the agents its branches call: its own per-item agent, and those of every stage nested in it
        agents = [s.agent for s in walk_stages((stage,)) if s.agent is not None]
        reported: set[str] = set()
        for name in agents:
            agent = wf.agents.get(name)
            model = wf.models.get(agent.model) if agent is not None else None
            pool = model.config.pool if model is not None and model.config is not None else None
            size = pool.max_connections if pool is not None else None
            if model is None or not isinstance(size, int) or model.name in reported:
                continue
            if stage.max_concurrency > size:
                reported.add(model.name)
                out.append(
                    diag(
                        wf.file,
                        source.value((*path, "fanout", "max_concurrency"), stage.loc, len(stage.id)),
                        "concurrency-above-pool",
                        f"fan-out '{stage.id}' runs up to {stage.max_concurrency} calls at once, but model "
                        f"'{model.name}' has a pool of {size} connections",
                        f"lower max_concurrency to {size}, or raise models.{model.name}.pool.max_connections",
                    )
                )
    return out


def _unused(wf: Workflow, source: Source, walk: Walk) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    used_agents = {stage.agent for stage, _ in walk.order if stage.agent is not None}
    for name, agent in wf.agents.items():
        if name not in used_agents:
            out.append(
                diag(
                    wf.file,
                    source.key(("agents", name), agent.loc, len(name)),
                    "unused-agent",
                    f"agent '{name}' is not used by any stage",
                    "remove it, or run it in a stage ('agent: " + name + "')",
                )
            )
    used_models = {agent.model for agent in wf.agents.values()}
    for memory in wf.memory.values():  # a working memory's summary_model is a use too
        if memory.working is not None and memory.working.summary_model is not None:
            used_models.add(memory.working.summary_model)
    for name in list(used_models):  # a used model's fallbacks are used too (issue 23)
        fallback = wf.models[name].fallback if name in wf.models else None
        used_models.update(fallback.models if fallback is not None else ())
    used_models.update(a.model for lst in wf.asserts for a in lst.items if a.model)  # llm-rubric judges (issue 24)
    for name, model in wf.models.items():
        if name not in used_models:
            out.append(
                diag(
                    wf.file,
                    source.key(("models", name), model.loc, len(name)),
                    "unused-model",
                    f"model '{name}' is not used by any agent",
                    "remove it, or give it to an agent ('model: " + name + "')",
                )
            )
    used_tools = {tool for agent in wf.agents.values() for tool in agent.tools}
    for name, tool in wf.tools.items():
        if name not in used_tools:
            out.append(
                diag(
                    wf.file,
                    source.key(("tools", name), tool.loc, len(name)),
                    "unused-tool",
                    f"tool '{name}' is not listed by any agent",
                    "remove it, or add it to an agent's 'tools'",
                )
            )
    return out
