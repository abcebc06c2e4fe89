"""Events -> spans: one per node (agent calls, fan-outs, and the branches of fan-outs that run stages),
with the retries, waits and tool calls recorded under it. Times are seconds since the run started."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.calls import ChatResult
from runner.events import Event
from runner.report.layout import Layout, StageShape
from runner.secrets import redact

# "restored": a node a resumed run took from its checkpoint (issue 23), ok without running
_STATUS = {"finished": "ok", "failed": "failed", "cancelled": "cancelled", "skipped": "skipped", "restored": "ok"}
_INDEX = re.compile(r"\[(\d+)\](?=\.|$)")
_ENDPOINT_KINDS = frozenset({"retry", "pool_wait", "rate_wait"})


@dataclass(slots=True)
class Span:
    """One node's timeline as the events tell it: queued, started, first token, finished, and why."""

    id: str
    kind: str = "agent"  # agent | fanout | branch | python | tool | workflow | endpoint (a node that is no stage)
    status: str = "running"
    queued: float | None = None
    start: float | None = None
    first_token: float | None = None
    end: float | None = None
    agent: str | None = None
    model: str | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    tokens_cached: int = 0  # of tokens_in, read from the provider's prompt cache
    attempts: int | None = None
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)  # tool, parent, function, reason, failed_branches, timeout_s
    retries: list[tuple[float, float, str]] = field(default_factory=list)  # (at, delay, cause)
    pool_waits: list[tuple[float, float]] = field(default_factory=list)  # (at, seconds waited)
    rate_waits: list[tuple[float, float, str]] = field(default_factory=list)  # (at, seconds, limit)
    tools: list[tuple[float, float, str, bool]] = field(default_factory=list)  # (start, end, tool, ok)
    void: dict[int, int] = field(default_factory=dict)  # retry index -> streamed characters it made void
    repairs: int = 0  # repair turns of a structured output (issue 16)

    def end_or(self, wall: float) -> float:
        return self.end if self.end is not None else wall

    def retry_end(self, wall: float) -> float:
        """When the last back-off ended: the final attempt starts here (the start when there were none)."""
        start = self.start if self.start is not None else 0.0
        last = start
        for at, delay, _ in self.retries:
            last = max(last, at + delay)
        return min(last, self.end_or(wall))


def collect(events: Iterable[Event], t0: float) -> tuple[dict[str, Span], dict[str, Span]]:
    """Spans of nodes in the order they first appeared, and the spans of endpoints (events under ids that
    never started, such as ``embeddings.<name>``)."""
    spans: dict[str, Span] = {}
    endpoints: dict[str, Span] = {}
    for at, kind, node_id, data in events:
        rel = at - t0
        span = spans.get(node_id)
        if span is None:
            if kind == "queued" or kind == "started" or kind in _STATUS:
                span = spans[node_id] = Span(node_id)
            elif kind not in _ENDPOINT_KINDS:
                continue  # figures (cache_stats, memory_stats, memory) that the report reads elsewhere
            else:
                span = endpoints.get(node_id)
                if span is None:
                    span = endpoints[node_id] = Span(node_id, kind="endpoint", status="ok")
        if kind == "started":
            if span.start is None:  # a stage retried as a whole starts again: its span keeps the first start
                span.start = rel
            span.status, span.end = "running", None
            span.detail.pop("timeout_s", None)  # an attempt that timed out and was retried
            if span.queued is None:
                span.queued = rel
            if data:
                span.kind = data.get("kind", span.kind)
                span.agent = data.get("agent", span.agent)
                span.model = data.get("model", span.model)
                for key in ("tool", "server", "parent", "function"):
                    if key in data:
                        span.detail[key] = str(data[key])
        elif kind == "queued":
            span.queued = rel
        elif kind in _STATUS:
            span.end = rel
            span.status = _STATUS[kind]
            if isinstance(data, ChatResult):
                if data.first_token_at is not None:
                    span.first_token = data.first_token_at - t0
                span.tokens_in = data.usage.prompt_tokens
                span.tokens_out = data.usage.completion_tokens
                span.tokens_cached = data.usage.cached_tokens
                span.attempts = data.attempts
            elif isinstance(data, Mapping):
                if data.get("error") is not None:
                    span.error = redact(data["error"])
                if (kind == "skipped" or kind == "restored") and data.get("kind"):
                    span.kind = str(data["kind"])
                if kind == "restored":
                    span.detail["from_checkpoint"] = True
                    span.start = span.queued = rel
                if "reason" in data:
                    span.detail["reason"] = str(data["reason"])
                if "failed_branches" in data:
                    span.detail["failed_branches"] = int(data["failed_branches"])
                if "iterations" in data:  # a loop: how many ended, what ended it, and a warning when max did
                    span.detail["iterations"] = int(data["iterations"])
                for key in ("ended_by", "warning"):
                    if key in data:
                        span.detail[key] = str(data[key])
                if "case" in data:  # a switch: the case that ran, or None
                    span.detail["case"] = None if data["case"] is None else str(data["case"])
                if kind == "failed" and data.get("timeout") is not None:  # stopped by its stage's timeout
                    span.detail["timeout_s"] = float(data["timeout"])
            if kind == "finished":
                span.error = None
        elif kind == "first_token":
            span.first_token = rel
        elif kind == "retry":
            # provider retries carry the error kind as cause and the message as error; a stage retried as a
            # whole says scope "stage" (or, as the engine records it today, carries only its message, as cause)
            stage = data.get("scope") == "stage" or "error" not in data
            cause = "stage" if stage else str(data.get("cause", "error"))
            span.retries.append((rel, float(data.get("delay") or 0.0), cause))
        elif kind == "stream_diverged" and span.retries:
            # the text streamed before the latest retry is void: the retry's answer departed from it
            span.void[len(span.retries) - 1] = int(data.get("shown_chars") or 0)
        elif kind == "repair":
            span.repairs += 1
        elif kind == "fallback":  # the call moved to a fallback model (issue 23): the model that answers is that one
            span.model = str(data.get("to") or span.model)
        elif kind == "pool_wait":
            span.pool_waits.append((rel, float(data.get("wait") or 0.0)))
        elif kind == "rate_wait":
            span.rate_waits.append((rel, float(data.get("wait") or 0.0), str(data.get("limit") or "")))
        elif kind == "tool":
            start = float(data["start"]) - t0 if data.get("start") is not None else rel
            span.tools.append((start, rel, str(data.get("tool", "tool")), not data.get("error")))
    for span in spans.values():  # tool calls recorded as spans of their own count in their caller's time
        parent = spans.get(span.detail.get("parent", "")) if span.kind == "tool" else None
        if parent is not None and span.start is not None and span.end is not None:
            parent.tools.append((span.start, span.end, span.detail.get("tool", "tool"), span.status == "ok"))
    return spans, endpoints


def branch_indices(spans: Mapping[str, object]) -> dict[str, list[int]]:
    """Fan-out node id -> the branch indices seen under it, sorted: ``a[0].b[1].c`` gives a: 0 and a[0].b: 1."""
    found: dict[str, set[int]] = {}
    for node_id in spans:
        if "[" not in node_id:
            continue
        for m in _INDEX.finditer(node_id):
            found.setdefault(node_id[: m.start()], set()).add(int(m.group(1)))
    return {k: sorted(v) for k, v in found.items()}


def add_branch_spans(spans: dict[str, Span], layout: Layout, run_status: str) -> None:
    """Give every branch of a fan-out that runs stages a span of kind ``branch`` (the engine records only its
    ``queued`` event): from its queueing to the end of its last stage, failed or cancelled if a stage was."""
    indices = branch_indices(spans)

    def visit(stages: tuple[StageShape, ...], prefix: str) -> None:
        for shape in stages:
            node = prefix + shape.id
            if shape.mode == "loop":  # its iterations have spans of their own (the engine records them)
                for i in indices.get(node, ()):
                    visit(shape.stages, f"{node}[{i}].")
                continue
            if shape.mode == "workflow":  # a child workflow's stages run as <id>.<inner> (issue 22)
                visit(shape.stages, f"{node}.")
                continue
            if shape.mode == "switch":  # the stages of the case that ran keep their ids
                for case in shape.branches:
                    visit(case, prefix)
                continue
            if not shape.is_fanout or node not in spans:
                continue
            if shape.mode == "each_agent":
                continue
            seen = indices.get(node, [])
            count = len(shape.branches) if shape.mode == "branches" else (seen[-1] + 1 if seen else 0)
            for i in range(count):
                bid = f"{node}[{i}]"
                if shape.mode == "branches":
                    inner, inner_prefix = shape.branches[i], prefix
                else:
                    inner, inner_prefix = shape.stages, f"{bid}."
                visit(inner, inner_prefix)
                children = [spans[c] for s in inner if (c := inner_prefix + s.id) in spans]
                if bid not in spans and not children:
                    continue
                span = spans.get(bid)
                if span is None:
                    span = spans[bid] = Span(bid)
                span.kind = "branch"
                starts = [c.queued if c.queued is not None else c.start for c in children]
                span.start = min((s for s in starts if s is not None), default=None)
                if span.queued is None:
                    span.queued = span.start
                statuses = [c.status for c in children]
                finished = len(children) == len(inner) and all(c.end is not None for c in children)
                if "failed" in statuses:
                    span.status = "failed"
                elif "cancelled" in statuses:
                    span.status = "cancelled"
                elif finished and all(s == "ok" for s in statuses):
                    span.status = "ok"
                else:
                    span.status = "cancelled" if run_status == "interrupted" else "unfinished"
                if span.status != "unfinished" and children and all(c.end is not None for c in children):
                    span.end = max(c.end for c in children if c.end is not None)

    visit(layout.stages, "")


def span_dict(span: Span) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": span.id,
        "kind": span.kind,
        "status": span.status,
        "queued_s": _r(span.queued),
        "start_s": _r(span.start),
        "first_token_s": _r(span.first_token),
        "end_s": _r(span.end),
        "queue_wait_s": _r(span.start - span.queued) if span.start is not None and span.queued is not None else None,
    }
    if span.agent is not None:
        out["agent"] = span.agent
    out.update(span.detail)
    if span.model is not None:
        out["model"] = span.model
    if span.kind == "agent":
        # no request made: a call still waiting for its slot, or one restored from a checkpoint
        if span.start is not None and "from_checkpoint" not in span.detail:
            out["attempts"] = span.attempts if span.attempts is not None else 1 + len(span.retries)
        out["retries"] = len(span.retries)
        out["pool_wait_s"] = _r(sum(w for _, w in span.pool_waits))
        out["rate_wait_s"] = _r(sum(w for _, w, _ in span.rate_waits))
        if span.tools:
            out["tool_calls"] = len(span.tools)
            out["tool_s"] = _r(sum(e - s for s, e, _, _ in span.tools))
        if span.repairs:
            out["repairs"] = span.repairs
    if span.retries:
        out["retry_events"] = [{"at_s": _r(at), "delay_s": _r(d), "cause": c} for at, d, c in span.retries]
        for index, chars in span.void.items():
            out["retry_events"][index]["void_chars"] = chars
    if span.pool_waits:
        out["pool_waits"] = [{"at_s": _r(at), "wait_s": _r(w)} for at, w in span.pool_waits]
    if span.rate_waits:
        out["rate_waits"] = [{"at_s": _r(at), "wait_s": _r(w), "limit": lim} for at, w, lim in span.rate_waits]
    if span.tools:
        out["tool_spans"] = [{"tool": n, "start_s": _r(s), "end_s": _r(e), "ok": ok} for s, e, n, ok in span.tools]
    if span.tokens_in is not None:
        out["tokens_in"] = span.tokens_in
    if span.tokens_out is not None:
        out["tokens_out"] = span.tokens_out
    if span.error is not None:
        out["error"] = span.error
    return out


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def stats_from_events(events: Iterable[Event]) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """The cache figures by embedder name (``cache_stats`` events: the last per embedder) and the working-memory
    figures by agent (``memory_stats`` events, one per agent call: counts and times added up, ``max_*`` the
    largest, the rest from the first call; ``calls`` counts them)."""
    cache: dict[str, dict[str, Any]] = {}
    memory: dict[str, dict[str, Any]] = {}
    for _, kind, node_id, data in events:
        if kind == "cache_stats" and isinstance(data, Mapping):
            cache[node_id] = dict(data)  # by the workflow's name for the embedder
        elif kind == "memory_stats" and isinstance(data, Mapping):
            agent = str(data.get("agent", node_id))
            seen = memory.get(agent)
            if seen is None:
                memory[agent] = {**data, "calls": 1}
                continue
            seen["calls"] += 1
            for key, value in data.items():
                if isinstance(value, bool) or not isinstance(value, int | float) or key == "budget":
                    continue
                old = seen.get(key, 0)
                seen[key] = max(old, value) if key.startswith("max_") else old + value
    return cache, memory
