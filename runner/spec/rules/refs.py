"""References between sections (agents -> models and tools, stages -> agents), unique stage ids, and
definitions nobody uses (warnings)."""

from __future__ import annotations

from runner.spec.diagnostics import Diagnostic
from runner.spec.records import AgentStage, Loc, Workflow
from runner.spec.rules.common import diag, suggest
from runner.spec.rules.scope import Walk
from runner.spec.rules.source import Source


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
        for i, tool in enumerate(agent.tools):
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
            key = (*path, "agent") if isinstance(stage, AgentStage) else (*path, "fanout", "agent")
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
    for memory in getattr(wf, "memory", {}).values():  # a working memory's summary_model is a use too
        summary_model = getattr(getattr(memory, "working", None), "summary_model", None)
        if summary_model:
            used_models.add(summary_model)
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
