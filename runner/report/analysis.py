"""Where the time went: the critical path through the spans, its split into model latency, queueing,
retries, tools and the runner's own overhead, per-model figures, concurrency, and the bottlenecks named
with the setting to change.

The critical path follows the workflow's structure (:mod:`runner.report.layout`): stages run in order,
so the path is the concatenation of each stage's path; a fan-out ends when its slowest branch does, so
its path goes through the branch that ended last (the lowest index on a tie). Each step's time is split:

* ``concurrency``: queued -> started, the wait for a fan-out's ``max_concurrency`` slot;
* ``retries``: failed attempts and their back-offs, each from where its attempt began;
* ``rate_limit`` and ``pool``: the waits for the rate limiter and a pool connection outside failed attempts;
* ``tools``: tool calls made by the node;
* ``model``: the rest of the call;
* ``python``: a python stage's own time (after its retries);
* ``overhead``: every gap between steps along the path, and before the first and after the last one
  (templates, scheduling, the event loop; the wall time minus everything above).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runner.report.layout import Layout, ModelShape, StageShape
from runner.report.spans import Span, branch_indices

# Every category with the words a reader sees for it. The categories are this mapping's keys, so a new one
# cannot come without its label (a missing label once crashed the Markdown writer: issue 14).
CATEGORY_LABELS = {
    "model": "model latency",
    "pool": "waiting for a pool connection",
    "rate_limit": "waiting for the rate limiter",
    "concurrency": "waiting for a fan-out slot (`max_concurrency`)",
    "retries": "failed attempts and back-off",
    "tools": "tool calls",
    "python": "python stages",
    "overhead": "runner overhead",
}
CATEGORIES = tuple(CATEGORY_LABELS)
OVERHEAD_NAMED_FROM = 0.10  # the runner's overhead is named a bottleneck from this share of the wall time up
OVERHEAD_NAMED_ABOVE_S = 0.05  # ... and from this many seconds: a few milliseconds of a tiny run are no bottleneck
# A call's output rate counts only when its tokens took at least this long to arrive: a reply that comes in one
# chunk (a local or scripted model, a cached answer) arrives in microseconds, and tokens over microseconds gave
# rates of millions of tokens a second (issue 14).
RATE_MIN_WINDOW_S = 0.02


@dataclass(slots=True)
class Step:
    node: str
    kind: str  # agent | fanout | branch
    start: float
    end: float
    model: str | None = None
    fanout: StageShape | None = None  # the fan-out whose slot this step waited for
    shape: StageShape | None = None  # the stage, for agent and python steps
    stage_retried: bool = False  # retried as a whole stage (its policy), not by the provider
    time: dict[str, float] = field(default_factory=dict)
    tools: dict[str, float] = field(default_factory=dict)  # tool name -> seconds on the path


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (the smallest value with at least q% of values at or below it)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _union_within(intervals: Sequence[tuple[float, float]], lo: float, hi: float) -> float:
    total, reach = 0.0, lo
    for s, e in sorted(intervals):
        s, e = max(s, reach), min(e, hi)
        if e > s:
            total += e - s
            reach = e
    return total


def retry_windows(span: Span, wall: float) -> list[tuple[float, float]]:
    """The failed attempts with their back-offs: each from where its attempt began (the call's start, the end of
    the tool calls or back-off before it) to the end of its back-off."""
    start = span.start if span.start is not None else 0.0
    end = span.end_or(wall)
    bounds = [start] + [e for _, e, _, _ in span.tools]
    windows: list[tuple[float, float]] = []
    for at, delay, _ in sorted(span.retries):
        begin = max([b for b in bounds if b <= at] + [w[1] for w in windows if w[1] <= at])
        windows.append((begin, min(max(at + delay, begin), end)))
    return windows


def split_call(span: Span, wall: float) -> tuple[dict[str, float], dict[str, float]]:
    """An agent call's time split into categories (without queueing), and its tool time by tool. An agent
    with tools makes several model calls; a retry counts from where its attempt began, so earlier calls and tool
    calls keep their own categories."""
    start = span.start if span.start is not None else 0.0
    end = span.end_or(wall)
    windows = retry_windows(span, wall)
    retries = _union_within(windows, start, end)

    def outside(at: float) -> bool:
        return not any(b < at <= e for b, e in windows)

    left = max(0.0, end - start - retries)
    rate = min(left, sum(w for at, w, _ in span.rate_waits if outside(at)))
    pool = min(left - rate, sum(w for at, w in span.pool_waits if outside(at)))
    tools_by_name: dict[str, float] = {}
    for name in {t[2] for t in span.tools}:
        tools_by_name[name] = _union_within([(s, e) for s, e, n, _ in span.tools if n == name], start, end)
    tools_total = _union_within([(s, e) for s, e, _, _ in span.tools], start, end)
    tools = min(left - rate - pool, tools_total)
    named = sum(tools_by_name.values())
    if named > 0 and abs(named - tools) > 1e-12:
        # tools ran in parallel (their times overlap) or were clipped: share the tool time out in proportion
        tools_by_name = {k: v * tools / named for k, v in tools_by_name.items()}
    return (
        {
            "retries": retries,
            "rate_limit": rate,
            "pool": pool,
            "tools": tools,
            "model": left - rate - pool - tools,
        },
        tools_by_name,
    )


def critical_path(layout: Layout, spans: Mapping[str, Span], wall: float) -> list[Step]:
    indices = branch_indices(spans)

    def agent_step(span: Span, fanout: StageShape | None, shape: StageShape) -> Step:
        start = span.start if span.start is not None else span.queued or 0.0
        queued = span.queued if span.queued is not None else start
        step = Step(
            span.id,
            "agent",
            queued,
            span.end_or(wall),
            model=span.model,
            fanout=fanout,
            shape=shape,
            stage_retried=any(c == "stage" for _, _, c in span.retries),
        )
        if span.start is None:  # still waiting for its slot when the run ended
            step.time = {"concurrency": step.end - queued}
            return step
        step.time, step.tools = split_call(span, wall)
        step.time["concurrency"] = start - queued
        return step

    def sequence(stages: tuple[StageShape, ...], prefix: str) -> list[Step]:
        steps: list[Step] = []
        for shape in stages:
            steps.extend(stage(shape, prefix))
        return steps

    def stage(shape: StageShape, prefix: str) -> list[Step]:
        node = prefix + shape.id
        span = spans.get(node)
        if span is None or (span.start is None and span.queued is None):
            return []
        if shape.mode == "python":
            end = span.end_or(wall)
            retry_end = span.retry_end(wall)
            start = span.start if span.start is not None else end
            return [
                Step(
                    node,
                    "python",
                    start,
                    end,
                    shape=shape,
                    stage_retried=True,
                    time={"retries": retry_end - start, "python": end - retry_end},
                )
            ]
        if not shape.is_fanout:
            return [agent_step(span, None, shape)]
        start = span.start if span.start is not None else 0.0
        steps = [Step(node, "fanout", start, span.end_or(wall))]
        best, best_end = None, -math.inf
        for i in indices.get(node, ()):
            branch = spans.get(f"{node}[{i}]")
            if branch is None:
                continue
            end = branch.end_or(wall)
            if end > best_end:
                best, best_end = i, end
        if best is None:
            return steps
        bid = f"{node}[{best}]"
        branch = spans[bid]
        if shape.mode == "each_agent":
            steps.append(agent_step(branch, shape, shape))
            return steps
        queued = branch.queued if branch.queued is not None else start
        began = branch.start if branch.start is not None else branch.end_or(wall)
        steps.append(
            Step(
                bid, "branch", queued, branch.end_or(wall), fanout=shape, time={"concurrency": max(0.0, began - queued)}
            )
        )
        if shape.mode == "branches":
            steps.extend(sequence(shape.branches[best], prefix))
        else:
            steps.extend(sequence(shape.stages, f"{bid}."))
        return steps

    return sequence(layout.stages, "")


@dataclass(slots=True)
class PathSummary:
    steps: list[Step]
    time: dict[str, float]
    # (cause, subject) -> seconds on the path; subject: a model, a fan-out stage's path, a tool, ""
    causes: dict[tuple[str, str], float]
    startup: float = 0.0  # the part of the overhead before the first step started (imports, clients, user code)


def summarize_path(steps: list[Step], wall: float) -> PathSummary:
    time = dict.fromkeys(CATEGORIES, 0.0)
    causes: dict[tuple[str, str], float] = {}

    def add(category: str, subject: str, seconds: float) -> None:
        if seconds <= 0:
            return
        time[category] += seconds
        causes[(category, subject)] = causes.get((category, subject), 0.0) + seconds

    cursor = 0.0
    startup = steps[0].start if steps else 0.0
    for step in steps:
        if step.kind == "fanout":  # only moves the cursor: its time is that of the branch it waited for
            if step.start > cursor:
                add("overhead", "", step.start - cursor)
                cursor = step.start
            continue
        if step.start > cursor:
            add("overhead", "", step.start - cursor)
        for category, seconds in step.time.items():
            if category == "concurrency":
                add(category, step.fanout.path if step.fanout is not None else "", seconds)
            elif category == "tools":
                for tool, t in step.tools.items():
                    add("tools", tool, t)
            elif step.shape is not None and (category == "python" or (category == "retries" and step.stage_retried)):
                add(category, step.shape.path, seconds)
            else:
                add(category, step.model or "", seconds)
        if step.kind in ("agent", "python"):
            cursor = max(cursor, step.end)
        else:  # a branch step covers only its wait; its stages follow as steps of their own
            cursor = max(cursor, step.start + step.time.get("concurrency", 0.0))
    if wall > cursor:
        add("overhead", "", wall - cursor)
    return PathSummary(steps, time, causes, startup)


def model_stats(spans: Mapping[str, Span], models: Mapping[str, ModelShape]) -> dict[str, dict[str, Any]]:
    by_model: dict[str, list[Span]] = {}
    for span in spans.values():
        if span.kind == "agent" and span.model is not None and span.start is not None:
            by_model.setdefault(span.model, []).append(span)
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(by_model):
        calls = by_model[name]
        ok = [s for s in calls if s.status == "ok" and s.end is not None]
        latency = [s.end - s.start for s in ok if s.end is not None and s.start is not None]
        ttft = [s.first_token - s.start for s in ok if s.first_token is not None and s.start is not None]
        timed = [(s.tokens_out or 0, w) for s in ok if (w := _generation_window(s)) >= RATE_MIN_WINDOW_S]
        tokens_out, gen = sum(n for n, _ in timed), sum(w for _, w in timed)
        causes = Counter(cause for s in calls for _, _, cause in s.retries)
        pool = [w for s in calls for _, w in s.pool_waits]
        rate = [w for s in calls for _, w, _ in s.rate_waits]
        shape = models.get(name)
        entry: dict[str, Any] = {
            "provider": shape.provider if shape else None,
            "model": shape.model if shape else None,
            "calls": len(calls),
            "ok": len(ok),
            "failed": sum(1 for s in calls if s.status == "failed"),
            "requests": sum(s.attempts if s.attempts is not None else 1 + len(s.retries) for s in calls),
            "latency_s": {
                "p50": _r(percentile(latency, 50)),
                "p95": _r(percentile(latency, 95)),
                "max": _r(max(latency) if latency else None),
            },
            "ttft_s": {"p50": _r(percentile(ttft, 50)), "p95": _r(percentile(ttft, 95))},
            "tokens_in": sum(s.tokens_in or 0 for s in calls),
            "tokens_out": sum(s.tokens_out or 0 for s in calls),
            "tokens_per_s": round(tokens_out / gen, 3) if gen > 0 and tokens_out else None,
            "retries": dict(sorted(causes.items())),
            "pool_wait": _waits(pool),
            "rate_wait": _waits(rate),
        }
        out[name] = entry
    return out


def _generation_window(span: Span) -> float:
    """From the first token (or the start, for a reply that was not streamed) to the end."""
    begin = span.first_token if span.first_token is not None else span.start
    if begin is None or span.end is None:
        return 0.0
    return span.end - begin


def endpoint_stats(endpoints: Mapping[str, Span]) -> dict[str, dict[str, Any]]:
    """Retries and waits of endpoints that are no stage (embedders), by node id."""
    return {
        name: {
            "retries": dict(sorted(Counter(c for _, _, c in span.retries).items())),
            "pool_wait": _waits([w for _, w in span.pool_waits]),
            "rate_wait": _waits([w for _, w, _ in span.rate_waits]),
        }
        for name, span in sorted(endpoints.items())
    }


def _waits(values: list[float]) -> dict[str, Any]:
    return {"count": len(values), "total_s": _r(sum(values)), "max_s": _r(max(values) if values else 0.0)}


def concurrency(spans: Mapping[str, Span], wall: float) -> dict[str, Any]:
    """In-flight agent calls (requests to models): the most at once and the time-weighted mean."""
    edges: list[tuple[float, int]] = []
    busy = 0.0
    for span in spans.values():
        if span.kind == "agent" and span.start is not None:
            end = span.end_or(wall)
            edges.append((span.start, 1))
            edges.append((end, -1))
            busy += end - span.start
    level = peak = 0
    for _, delta in sorted(edges):  # at equal times -1 sorts first: back-to-back calls do not overlap
        level += delta
        peak = max(peak, level)
    return {"peak": peak, "mean": round(busy / wall, 3) if wall > 0 else 0.0}


def _secs(value: float) -> str:
    return f"{value:.2f} s"


def bottlenecks(
    summary: PathSummary,
    spans: Mapping[str, Span],
    layout: Layout,
    wall: float,
    *,
    limit: int = 3,
) -> list[dict[str, Any]]:
    """The top causes on the critical path, each with the setting to change, largest first."""
    shapes = _fanouts_by_path(layout)
    agent_spans = [s for s in spans.values() if s.kind == "agent" and s.start is not None]
    found: list[dict[str, Any]] = []
    for (cause, subject), seconds in summary.causes.items():
        if seconds < 0.005:  # what rounds to "0.00 s" is no bottleneck
            continue
        share = seconds / wall if wall > 0 else 0.0
        entry = _advice(cause, subject, seconds, share, spans, agent_spans, shapes, layout, summary, wall)
        if entry is not None:
            found.append(
                {"cause": cause, "subject": subject, "seconds": round(seconds, 6), "share": round(share, 4), **entry}
            )
    order = {c: i for i, c in enumerate(CATEGORIES)}
    found.sort(key=lambda b: (-b["seconds"], order[b["cause"]], b["subject"]))
    return found[:limit]


def cache_advice(cache: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Advice for each embedding cache that had a problem in the run (issue 21: it used to fail silently).
    These come before the time bottlenecks: a cache that does not work costs every later run too."""
    found = []
    for name, figures in sorted(cache.items()):
        problem = figures.get("problem")
        if not problem:
            continue
        setting = f"embeddings.{name}.cache.dir"
        found.append(
            {
                "cause": "cache",
                "subject": name,
                "seconds": round(float(figures.get("cache_io_seconds") or 0.0), 6),
                "share": 0.0,
                "setting": setting,
                "value": figures.get("dir"),
                "message": f"the embedding cache of `{name}` ({figures.get('dir')}): {problem}; "
                f"fix the folder or point `{setting}` at one that can be written",
            }
        )
    return found


def _fanouts_by_path(layout: Layout) -> dict[str, StageShape]:
    return {path: s for path, s in _stages_by_path(layout).items() if s.is_fanout}


def _stages_by_path(layout: Layout) -> dict[str, StageShape]:
    found: dict[str, StageShape] = {}

    def visit(stages: tuple[StageShape, ...]) -> None:
        for s in stages:
            found[s.path] = s
            visit(s.stages)
            for branch in s.branches:
                visit(branch)

    visit(layout.stages)
    return found


def _advice(
    cause: str,
    subject: str,
    seconds: float,
    share: float,
    spans: Mapping[str, Span],
    agent_spans: list[Span],
    shapes: Mapping[str, StageShape],
    layout: Layout,
    summary: PathSummary,
    wall: float,
) -> dict[str, Any] | None:
    """``message``, ``setting`` and ``value`` (the setting's current value) for one cause."""
    secs = _secs(seconds)
    model = layout.models.get(subject)
    if cause == "pool":
        waited = [w for s in agent_spans if s.model == subject for _, w in s.pool_waits]
        n = model.max_connections if model else None
        setting = f"models.{subject}.pool.max_connections"
        return {
            "setting": setting,
            "value": n,
            "message": f"calls to `{subject}` waited {secs} for a connection on the critical path "
            f"({_secs(sum(waited))} over {_count(len(waited), 'call', 'calls')} in all): raise `{setting}`"
            + (f" above {n}" if n is not None else ""),
        }
    if cause == "rate_limit":
        waits = [(w, limit) for s in agent_spans if s.model == subject for _, w, limit in s.rate_waits]
        limits = Counter(limit for _, limit in waits if limit)
        which = limits.most_common(1)[0][0] if limits else "requests_per_minute"
        setting = f"models.{subject}.rate_limit.{which}"
        value = getattr(model, which, None) if model else None
        return {
            "setting": setting,
            "value": value,
            "message": f"calls to `{subject}` waited {secs} for the rate limiter ({which}) on the critical path "
            f"({_secs(sum(w for w, _ in waits))} over {_count(len(waits), 'call', 'calls')} in all): raise `{setting}`"
            + (f" above {value:g}" if isinstance(value, int | float) else "")
            + " if your quota allows",
        }
    if cause == "concurrency":
        shape = shapes.get(subject)
        if shape is None:
            return None
        # A branch that never got a slot (the run stopped first) waited until its end too.
        slot_waits = [
            slot_wait
            for s in spans.values()
            if _is_branch_of(s.id, shape.id)
            and s.queued is not None
            and (slot_wait := (s.start if s.start is not None else s.end_or(wall)) - s.queued) > 0
        ]
        total = sum(slot_waits)
        setting = f"{shape.path}.fanout.max_concurrency"
        return {
            "setting": setting,
            "value": shape.max_concurrency,
            "message": f"branches of `{shape.id}` waited {secs} for a slot on the critical path "
            f"({_secs(total)} over {_count(len(slot_waits), 'branch', 'branches')} in all): raise `{setting}`"
            + (f" above {shape.max_concurrency}" if shape.max_concurrency is not None else ""),
        }
    stage = _stages_by_path(layout).get(subject)
    if cause == "retries" and stage is not None:
        setting = f"{stage.path}.retry"
        return {
            "setting": setting,
            "value": None,
            "message": f"stage `{stage.id}` failed and was retried as a whole for {secs} on the critical path: "
            f"fix what fails (see the node's error); `{setting}` sets the attempts and back-off",
        }
    if cause == "python" and stage is not None:
        return {
            "setting": None,
            "value": None,
            "message": f"python stage `{stage.id}` (`{stage.function}`) took {secs} of the critical path: "
            "make the function faster, or async if it waits on I/O",
        }
    if cause == "retries":
        causes = Counter(c for s in agent_spans if s.model == subject for _, _, c in s.retries)
        listed = ", ".join(f"{c} x{n}" for c, n in sorted(causes.items(), key=lambda kv: (-kv[1], kv[0])))
        top = causes.most_common(1)[0][0] if causes else ""
        if top == "429":
            setting = f"models.{subject}.rate_limit.requests_per_minute"
            advice = f"the server is rate limiting: set `{setting}` below its limit"
        elif top == "timeout":
            setting = f"models.{subject}.timeout"
            advice = f"timeouts fired: check the endpoint, or the limits in `{setting}`"
        else:
            setting = f"models.{subject}.retry"
            advice = f"the endpoint is failing: check its health; `{setting}` sets the back-off"
        return {
            "setting": setting,
            "value": None,
            "message": f"calls to `{subject}` spent {secs} retrying on the critical path "
            f"({_count(sum(causes.values()), 'retry', 'retries')} in all: {listed}): {advice}",
        }
    if cause == "model":
        calls = sum(1 for st in summary.steps if st.kind == "agent" and st.model == subject)
        if model is not None and model.provider == "scripted":
            setting = f"models.{subject}.latency"
            advice = f"its latency is simulated: `{setting}` sets it"
        else:
            setting = f"models.{subject}.params.max_tokens"
            than = f" than `{model.model}`" if model is not None and model.model else ""
            advice = f"cap the output with `{setting}`, use a faster model{than}, or run more of the work in parallel"
        return {
            "setting": setting,
            "value": None,
            "message": f"model `{subject}` took {secs} of the critical path ({calls} "
            f"call{'s' if calls != 1 else ''}): {advice}",
        }
    if cause == "tools":
        calls = sum(1 for s in agent_spans for t in s.tools if t[2] == subject)
        setting = f"tools.{subject}.timeout"
        return {
            "setting": setting,
            "value": None,
            "message": f"tool `{subject}` ran {secs} on the critical path ({calls} call{'s' if calls != 1 else ''} "
            f"in all): make it faster or cache its results; `{setting}` bounds it",
        }
    if cause == "overhead":
        if share < OVERHEAD_NAMED_FROM or seconds < OVERHEAD_NAMED_ABOVE_S or not spans:
            return None
        startup = min(summary.startup, seconds)
        if startup >= seconds / 2:
            why = (
                f"{_secs(startup)} of it before the first stage started (imports, opening clients, loading "
                "tools); it does not grow with the workflow"
            )
        else:
            why = (
                "between steps: template rendering, scheduling and the event loop; look for heavy templates "
                "or a very wide fan-out"
            )
        return {
            "setting": None,
            "value": None,
            "message": f"the runner itself took {secs} ({share:.0%} of the wall time), {why}",
        }
    return None


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _is_branch_of(node_id: str, stage_id: str) -> bool:
    """``stage_id[i]`` itself, also under a prefix (``outer[0].inner[1]`` is a branch of ``inner``)."""
    head, sep, tail = node_id.rpartition("[")
    if not sep or "." in tail:
        return False
    return head == stage_id or head.endswith("." + stage_id)


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
