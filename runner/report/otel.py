"""The report as OpenTelemetry spans (issue 22, item 5): pure data, no OpenTelemetry import.

:func:`otel_spans` turns a finished run's report (the same nodes the timing report and the trace file hold)
into :class:`OtelSpan` records; :mod:`runner.report.otlp` hands them to the OpenTelemetry SDK's OTLP exporter.
Keeping the mapping here means it is tested without the SDK and costs nothing to runs that do not export.

The mapping follows OpenTelemetry's GenAI semantic conventions (development status, as of semconv 1.41):

* the run is the root span, ``invoke_workflow {name}`` (``gen_ai.operation.name`` = ``invoke_workflow``);
* an agent call is a client span ``chat {model}`` with ``gen_ai.operation.name``, ``gen_ai.provider.name`` (and
  the older ``gen_ai.system``), ``gen_ai.request.model``, ``gen_ai.agent.name`` and
  ``gen_ai.usage.input_tokens`` / ``output_tokens``; the report's waits (fan-out slot, rate limiter, pool
  connection), failed attempts and back-offs nest in it as they do in the trace file;
* a tool call is an ``execute_tool {tool}`` span with ``gen_ai.tool.name``, a child of the call that made it;
* fan-outs, their branches, loops and their iterations, switches and python stages are internal spans
  ``{kind} {id}``, nested as the workflow nests them.

Ids are derived, not drawn: the trace id from the run's id and start, a span id from the trace id and the
node's id. So anything that knows the run and the node (a provider's request, a tool's call) can name the
span it happens in while the run is going, before any span is exported (W3C ``traceparent``).

No text of a prompt or a reply goes into a span unless ``content`` is asked for, nor an error message (a
model's error or a structured output's complaint may quote the reply): a failed span says ``error.type``, and
with ``content`` its status also has the report's (secret-redacted) error message.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from runner.calls import ChatResult
from runner.events import Event, span_id_of, started_at_text, trace_id_of
from runner.events import traceparent as traceparent  # re-exported: the ids and the header are one scheme
from runner.report.layout import Layout, StageShape
from runner.report.spans import add_branch_spans, branch_indices, collect, span_dict
from runner.report.trace import agent_children

SCOPE = "runner"
"""The instrumentation scope's name on every span."""

AttributeValue = str | int | float | bool


@dataclass(frozen=True, slots=True)
class OtelSpan:
    """One span to export: ids as integers (128-bit trace, 64-bit span), times in Unix nanoseconds."""

    name: str
    trace_id: int
    span_id: int
    parent_id: int | None
    start_ns: int
    end_ns: int
    kind: str = "internal"  # internal | client
    attributes: dict[str, AttributeValue] = field(default_factory=dict)
    error: str | None = None  # error.type, when the span failed
    message: str | None = None  # the error's text, only with content (it may quote a reply)


def parents(layout: Layout, ids: Iterable[str]) -> dict[str, str]:
    """Node id -> the id of the node it nests in, as the workflow nests them (a listed branch's stages and a
    switch's case keep their own ids, so their parents come from the layout, not the id). Nodes the layout does
    not place (a stage kind added later) nest in the longest prefix of their id that is a node."""
    present = set(ids)
    indices = branch_indices(dict.fromkeys(present))  # it reads the keys only
    out: dict[str, str] = {}

    def visit(stages: tuple[StageShape, ...], prefix: str, parent: str) -> None:
        for shape in stages:
            node = prefix + shape.id
            if parent:
                out[node] = parent
            if shape.mode == "switch":
                for case in shape.branches:
                    visit(case, prefix, node)
            elif shape.mode == "branches":
                for i, branch in enumerate(shape.branches):
                    out[f"{node}[{i}]"] = node
                    visit(branch, prefix, f"{node}[{i}]")
            elif shape.mode in ("loop", "each_stages", "each_agent"):
                for i in indices.get(node, ()):
                    out[f"{node}[{i}]"] = node
                    if shape.mode != "each_agent":
                        visit(shape.stages, f"{node}[{i}].", f"{node}[{i}]")

    visit(layout.stages, "", "")
    for node in present:
        if node in out:
            continue
        cut = len(node)
        while cut > 0:
            cut = max(node.rfind(".", 0, cut), node.rfind("[", 0, cut))
            if cut > 0 and node[:cut] in present:
                out[node] = node[:cut]
                break
    return {k: v for k, v in out.items() if k in present and v in present}


def _ns(base: int, seconds: float | None, wall: float) -> int:
    return base + round((wall if seconds is None else max(0.0, seconds)) * 1_000_000_000)


def replies(events: Iterable[Event]) -> dict[str, str]:
    """Node id -> the text of its model's reply (the last ``finished`` ChatResult): for ``content`` only."""
    out: dict[str, str] = {}
    for _, kind, node_id, data in events:
        if kind == "finished" and isinstance(data, ChatResult):
            out[node_id] = data.content
    return out


def response_models(events: Iterable[Event]) -> dict[str, str]:
    """Node id -> the model that answered, as the server named it (``gen_ai.response.model``), where it did."""
    out: dict[str, str] = {}
    for _, kind, node_id, data in events:
        if kind == "finished" and isinstance(data, ChatResult) and data.model is not None:
            out[node_id] = data.model
    return out


def otel_spans(
    report: Mapping[str, Any],
    layout: Layout,
    *,
    content: Mapping[str, str] | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
    answered_by: Mapping[str, str] | None = None,
) -> list[OtelSpan]:
    """The report's spans, root first, every parent before its children. ``content``: node id -> reply text,
    put in ``gen_ai.output.messages`` (only when the user asked for it: ``--otel-content``). ``attributes``: more
    attributes for the root span (a dataset row's batch id and row). ``answered_by``: node id -> the model the
    server said answered (:func:`response_models`)."""
    run, wf = report["run"], report["workflow"]
    wall = float(run["wall_s"])
    base = int(datetime.fromisoformat(run["started_at"].replace("Z", "+00:00")).timestamp() * 1_000_000) * 1000
    trace = trace_id_of(run["id"], run["started_at"])
    root_id = span_id_of(trace, "")
    root_attrs: dict[str, AttributeValue] = {
        "gen_ai.operation.name": "invoke_workflow",
        "runner.workflow.name": wf["name"],
        "runner.workflow.sha256": wf["sha256"],
        "runner.run.id": run["id"],
        "runner.run.status": run["status"],
        "runner.tokens_in": int(report["totals"]["tokens_in"]),
        "runner.tokens_out": int(report["totals"]["tokens_out"]),
    }
    root_attrs.update(attributes or {})
    spans = [
        OtelSpan(
            f"invoke_workflow {wf['name']}",
            trace,
            root_id,
            None,
            base,
            _ns(base, wall, wall),
            attributes=root_attrs,
            error=None if run["status"] == "ok" else run["status"],
            message=run.get("error") if content is not None else None,
        )
    ]
    ids = {n["id"] for n in report["nodes"]}
    nodes = [
        n
        for n in report["nodes"]
        if (n.get("queued_s") is not None or n.get("start_s") is not None)
        and not (n["kind"] == "tool" and n.get("parent") in ids)  # nested in its caller's span instead
    ]
    shown = {n["id"] for n in nodes}
    parent_of = parents(layout, shown)
    # a parent's span comes before its children's: by depth, then as the report lists them
    depth: dict[str, int] = {}

    def level(node: str) -> int:
        if node not in depth:
            up = parent_of.get(node)
            depth[node] = 0 if up is None else level(up) + 1
        return depth[node]

    models = report.get("models", {})
    for n in sorted(nodes, key=lambda n: level(n["id"])):
        node_id = n["id"]
        up = parent_of.get(node_id)
        if up is None and n["kind"] == "tool" and n.get("parent") in shown:
            up = n["parent"]
        sid = span_id_of(trace, node_id)
        pid = span_id_of(trace, up) if up is not None else root_id
        begin_s = n["queued_s"] if n.get("queued_s") is not None else n["start_s"]
        begin, end = _ns(base, begin_s, wall), max(_ns(base, begin_s, wall), _ns(base, n.get("end_s"), wall))
        attrs: dict[str, AttributeValue] = {"runner.node.id": node_id, "runner.node.kind": n["kind"]}
        attrs["runner.status"] = n["status"]
        failed = n["status"] in ("failed", "cancelled", "unfinished")
        error = ("timeout" if n.get("timeout_s") is not None else n["status"]) if failed else None
        kind, name = "internal", f"{n['kind']} {node_id}"
        if n["kind"] == "agent":
            model = models.get(n.get("model"), {})
            provider = str(model.get("provider") or "unknown")
            request_model = str(model.get("model") or n.get("model") or "unknown")
            kind, name = "client", f"chat {request_model}"
            attrs.update(
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": provider,
                    "gen_ai.system": provider,  # the attribute's name before semconv 1.37, still read by many
                    "gen_ai.request.model": request_model,
                }
            )
            if answered_by is not None and node_id in answered_by:
                attrs["gen_ai.response.model"] = answered_by[node_id]
            if n.get("agent"):
                attrs["gen_ai.agent.name"] = n["agent"]
            if n.get("model"):
                attrs["runner.model"] = n["model"]
            for key, attr in (("tokens_in", "gen_ai.usage.input_tokens"), ("tokens_out", "gen_ai.usage.output_tokens")):
                if n.get(key) is not None:
                    attrs[attr] = int(n[key])
            for key in ("attempts", "retries"):
                if n.get(key) is not None:
                    attrs[f"runner.{key}"] = int(n[key])
            if n.get("first_token_s") is not None and n.get("start_s") is not None:
                attrs["runner.time_to_first_token_s"] = round(n["first_token_s"] - n["start_s"], 6)
            if content is not None and node_id in content:
                attrs["gen_ai.output.messages"] = _output_messages(content[node_id])
        elif n["kind"] == "tool":
            kind, name = "internal", f"execute_tool {n.get('tool', node_id)}"
            attrs.update({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": str(n.get("tool", ""))})
        elif n["kind"] == "python" and n.get("function"):
            attrs["runner.function"] = str(n["function"])
        if n.get("queue_wait_s") is not None:
            attrs["runner.queue_wait_s"] = float(n["queue_wait_s"])
        message = n.get("error") if content is not None and error is not None else None
        spans.append(OtelSpan(name, trace, sid, pid, begin, end, kind, attrs, error, message))
        if n["kind"] == "agent":
            spans.extend(_agent_parts(n, trace, sid, base, begin, end))
    return spans


def _agent_parts(node: Mapping[str, Any], trace: int, parent: int, base: int, begin: int, end: int) -> list[OtelSpan]:
    """The trace file's nesting inside an agent call (:func:`runner.report.trace.agent_children`), as spans:
    its microseconds since the start are the report's, so nesting is as exact as there."""
    out: list[OtelSpan] = []
    b_us, e_us = (begin - base) // 1000, (end - base) // 1000
    for k, (item, nested) in enumerate(agent_children(node, b_us, e_us)):
        key = f"{node['id']}#{k}"
        sid = span_id_of(trace, key)
        out.append(_part(item, trace, sid, parent, base))
        for j, child in enumerate(nested):
            out.append(_part(child, trace, span_id_of(trace, f"{key}.{j}"), sid, base))
    return out


def _part(item: tuple[str, str, int, int, dict[str, Any]], trace: int, sid: int, parent: int, base: int) -> OtelSpan:
    name, category, b, e, args = item
    attrs: dict[str, AttributeValue] = {"runner.span.category": category}
    error = None
    if category == "tool":
        tool = name.removeprefix("tool ")
        name = f"execute_tool {tool}"
        attrs.update({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool})
        error = None if args.get("ok", True) else "tool_error"
    elif category == "attempt" and "cause" in args:
        error = str(args["cause"])
    elif category == "retry":
        attrs["runner.retry.delay_s"] = float(args.get("delay_s", 0.0))
    return OtelSpan(name, trace, sid, parent, base + b * 1000, base + e * 1000, "internal", attrs, error)


def _output_messages(text: str) -> str:
    """``gen_ai.output.messages`` as the conventions shape it (JSON text of a list of messages)."""
    import json  # noqa: PLC0415 - only with --otel-content

    return json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": text}]}], ensure_ascii=False)


class RowTracer:
    """The spans of a dataset run's rows: one trace per row (a row is a run of the workflow; one trace for a
    batch of 10,000 rows would be one no trace viewer opens), each root naming the batch and the row. Rows are
    added as they end, ok, failed or cancelled, from their events; the caller exports :attr:`spans`."""

    def __init__(self, layout: Layout, workflow: str, sha256: str, batch_id: str, content: bool = False) -> None:
        self.layout = layout
        self.workflow = {"name": workflow, "sha256": sha256}
        self.models = {name: {"provider": m.provider, "model": m.model} for name, m in layout.models.items()}
        self.batch_id = batch_id
        self.content = content
        self.spans: list[OtelSpan] = []

    def row(self, index: int, key: str, events: list[Event], status: str, t0: float, epoch: float, end: float) -> None:
        """Add a row's spans: its events (times on ``t0``'s clock, the ``perf_counter`` when it started, which
        was ``epoch`` in Unix seconds), how it ended and when."""
        spans, _ = collect(events, t0)
        for span in spans.values():
            if span.status == "running":
                span.status = "cancelled" if status == "cancelled" else "unfinished"
        add_branch_spans(spans, self.layout, "interrupted" if status == "cancelled" else status)
        nodes = [span_dict(s) for s in spans.values()]
        agents = [n for n in nodes if n["kind"] == "agent"]
        started_at = started_at_text(datetime.fromtimestamp(epoch, UTC))
        report: dict[str, Any] = {
            "workflow": self.workflow,
            "run": {
                "id": f"{self.batch_id}-{index}",
                "started_at": started_at,
                "status": status,
                "wall_s": max(0.0, end - t0),
            },
            "totals": {
                "tokens_in": sum(n.get("tokens_in", 0) for n in agents),
                "tokens_out": sum(n.get("tokens_out", 0) for n in agents),
            },
            "models": self.models,
            "nodes": nodes,
        }
        attributes: dict[str, AttributeValue] = {
            "runner.batch.id": self.batch_id,
            "runner.row.index": index,
            "runner.row.key": key,
        }
        content = replies(events) if self.content else None
        models = response_models(events)
        self.spans += otel_spans(report, self.layout, content=content, attributes=attributes, answered_by=models)
