"""The ``agent`` stage kind: one agent turn on the stage's input (``agent: writer``).

The turn itself (the model call, and the ReAct loop of tool calls for an agent with tools or memory) is the
engine's (``runner/engine/agent.py``): a fan-out's per-item agent calls it too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any

from runner.config.source import Loc, TemplateSrc
from runner.stages.base import (
    NO_POLICY,
    BuildContext,
    EngineServices,
    ShapeContext,
    StageKind,
    StagePlan,
    StagePolicy,
    StageShape,
    YamlPath,
    as_text,
)


@dataclass(frozen=True, slots=True)
class AgentStage:
    """``agent``: the agent named here answers the stage's input (by default the previous stage's output)."""

    id: str
    agent: str
    input: TemplateSrc | None
    vars: Mapping[str, Any]
    loc: Loc
    policy: StagePolicy = NO_POLICY
    output: Any = None  # a runner.config.output.OutputSpec: the reply's schema, over the agent's own (issue 16)


def agent_text(agent: Any, output: Any = None) -> str:
    """An agent plan in ``runner graph``: ``agent a (model m, scripted; tools search; output {label, reason})``;
    ``output`` is the stage's own structured output, which wins over the agent's."""
    if agent is None:  # the plan of a stage that calls an agent always has its agent
        raise AssertionError("a stage that calls an agent has no agent plan")
    spec = agent.spec
    names = [*spec.tools, *(f"mcp.{u.server}.{u.tool}" if u.tool else f"mcp {u.server}" for u in spec.mcp_tools)]
    tools = f"; tools {', '.join(names)}" if names else ""
    structured = output if output is not None else getattr(spec, "output", None)
    shown = f"; {output_text(structured.schema)}" if structured is not None else ""
    return f"agent {spec.name} (model {agent.model.name}, {agent.model.provider}{tools}{shown})"


def output_text(schema: Any) -> str:
    """A structured output in ``runner graph``, so the values later stages read (``stages.<id>.data``) show:
    an object's fields (``output {label, reason}``), else the schema's type (``output (array)``)."""
    if isinstance(schema, Mapping):
        fields = schema.get("properties")
        if isinstance(fields, Mapping) and fields:
            return f"output {{{', '.join(map(str, fields))}}}"
        if isinstance(schema.get("type"), str):
            return f"output ({schema['type']})"
    return "structured output"


class AgentKind(StageKind[AgentStage]):
    name = "agent"
    record = AgentStage
    output = "message"

    def build(self, raw: Mapping[str, Any], path: YamlPath, b: BuildContext) -> AgentStage:
        c = b.common(raw, path)
        output = b.output(raw, path, c.id) if "output" in raw else None
        return AgentStage(c.id, raw["agent"], c.input, c.vars, c.loc, c.policy, output)

    def run(
        self,
        sp: StagePlan,
        engine: EngineServices,
        stages: dict[str, Any],
        prev: Any,
        vars_: Mapping[str, Any],
        prefix: str,
        ctx: dict[str, Any],
    ) -> Awaitable[Any]:
        text = sp.input.template.render(ctx) if sp.input is not None else as_text(prev)
        return engine.call_agent(prefix + sp.stage.id, sp.agent, text, ctx, sp.stage.output)

    def graph_label(self, sp: StagePlan) -> str:
        return agent_text(sp.agent, sp.stage.output)

    def shape(self, stage: AgentStage, path: str, s: ShapeContext) -> StageShape:
        return StageShape(stage.id, path, "agent", stage.agent, s.model_of(stage.agent))


AGENT = AgentKind()
