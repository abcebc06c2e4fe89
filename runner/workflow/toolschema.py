"""A workflow seen as a tool (``runner serve --mcp``, issue 22 item 4): the JSON Schema of its arguments, made
from its ``inputs:``, and of its result when its last stage gives a typed (structured) output.

Pure functions on the records, no protocol: the MCP server (``runner/commands/mcp_tools.py``) puts them in its
``tools/list`` answer, and a caller's arguments are checked by :func:`runner.workflow.inputs.resolve_inputs`,
the same check as ``runner run --input``, so a tool call and a run accept the same values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runner.stages.agent import AgentStage
from runner.workflow.records import InputSpec, Workflow


def input_property(spec: InputSpec) -> dict[str, Any]:
    """One input as a property of the arguments' schema: its type (an array's item type), its description,
    and its default (the value a call that leaves it out gets)."""
    prop: dict[str, Any] = {"type": spec.type}
    if spec.type == "array" and spec.items is not None:
        prop["items"] = {"type": spec.items}
    if spec.description:
        prop["description"] = spec.description
    if not spec.required and spec.default is not None:
        prop["default"] = spec.default
    return prop


def input_schema(wf: Workflow) -> dict[str, Any]:
    """The JSON Schema of a call's arguments: an object with one property per input, the inputs without a
    default required, nothing else allowed (``resolve_inputs`` refuses an undeclared input too)."""
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {spec.name: input_property(spec) for spec in wf.inputs},
        "additionalProperties": False,
    }
    required = [spec.name for spec in wf.inputs if spec.required]
    if required:
        schema["required"] = required
    return schema


def output_schema(wf: Workflow) -> Mapping[str, Any] | None:
    """The schema of the workflow's final output when it is typed: its last stage is an agent stage whose
    structured output (the stage's own ``output``, else its agent's) is a JSON object. None otherwise: MCP's
    structured results are objects, and the text of any other output is the result."""
    if not wf.stages:
        return None
    last = wf.stages[-1]
    if not isinstance(last, AgentStage):
        return None
    agent = wf.agents.get(last.agent)
    output = last.output if last.output is not None else getattr(agent, "output", None)
    schema = getattr(output, "schema", None)
    if isinstance(schema, Mapping) and schema.get("type") == "object":
        return schema
    return None


def structured_value(output: Any) -> dict[str, Any] | None:
    """The value of a typed final output (a structured reply's ``data``) when it is an object, else None."""
    data = getattr(output, "data", None)
    return data if isinstance(data, dict) else None
