"""The critical path: the chain of steps that set the wall time, and its split into what the time went on.

The path follows the workflow's structure (:mod:`runner.report.layout`): stages run in order,
so the path is the concatenation of each stage's path; a fan-out ends when its slowest branch does, so
its path goes through the branch that ended last (the lowest index on a tie); a loop's goes through each of its
iterations in turn, a switch's through the case that ran. Each step's time is split:

* ``concurrency``: queued -> started, the wait for a fan-out's ``max_concurrency`` slot;
* ``retries``: failed attempts and their back-offs, each from where its attempt began;
* ``rate_limit`` and ``pool``: the waits for the rate limiter and a pool connection outside failed attempts;
* ``tools``: tool calls made by the node;
* ``model``: the rest of the call;
* ``python``: a python stage's own time (after its retries);
* ``gates``: a human gate's wait for a person's decision or answer (``approve``, ``ask``);
* ``overhead``: every gap between steps along the path, and before the first and after the last one
  (templates, scheduling, the event loop; the wall time minus everything above).

Each category, with its subject (a model, a fan-out's path, a tool), is a cause that
:mod:`runner.report.advice` names with the setting to change.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from runner.report.layout import Layout, StageShape
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
    "gates": "waiting for a person (approve and ask gates)",
    "overhead": "runner overhead",
}
CATEGORIES = tuple(CATEGORY_LABELS)
# Steps whose time is that of the steps inside them (a fan-out's branch, a loop's iterations, a switch's case).
_CONTAINERS = frozenset({"fanout", "loop", "iteration", "switch", "workflow"})


@dataclass(slots=True)
class Step:
    """One node on the critical path and the time it held it."""

    node: str
    kind: str  # agent | python | fanout | branch | loop | iteration | switch | workflow | approve | ask
    start: float
    end: float
    model: str | None = None
    fanout: StageShape | None = None  # the fan-out whose slot this step waited for
    shape: StageShape | None = None  # the stage, for agent and python steps
    stage_retried: bool = False  # retried as a whole stage (its policy), not by the provider
    time: dict[str, float] = field(default_factory=dict)
    tools: dict[str, float] = field(default_factory=dict)  # tool name -> seconds on the path


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
        if shape.mode in ("approve", "ask"):  # a person's time, not the run's
            end = span.end_or(wall)
            start = span.start if span.start is not None else end
            return [Step(node, shape.mode, start, end, shape=shape, time={"gates": end - start})]
        if shape.mode == "loop":  # iterations run one after another: the path goes through each of them
            steps = [Step(node, "loop", span.start if span.start is not None else 0.0, span.end_or(wall))]
            for i in indices.get(node, ()):
                iteration = spans.get(f"{node}[{i}]")
                if iteration is None or iteration.start is None:
                    continue
                steps.append(Step(iteration.id, "iteration", iteration.start, iteration.end_or(wall)))
                steps.extend(sequence(shape.stages, f"{iteration.id}."))
            return steps
        if shape.mode == "workflow":  # a child workflow (issue 22): through its stages, run as <id>.<inner>
            steps = [Step(node, "workflow", span.start if span.start is not None else 0.0, span.end_or(wall))]
            steps.extend(sequence(shape.stages, f"{node}."))
            return steps
        if shape.mode == "switch":  # through the one case that ran: the one whose stages have spans
            steps = [Step(node, "switch", span.start if span.start is not None else 0.0, span.end_or(wall))]
            for case in shape.branches:
                if any(prefix + inner.id in spans for inner in case):
                    steps.extend(sequence(case, prefix))
                    break
            return steps
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
    """The critical path, the time on it by category, and by cause and subject."""

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
        if step.kind in _CONTAINERS:  # only moves the cursor: its time is that of the steps inside it
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
            elif step.shape is not None and (
                category in ("python", "gates") or (category == "retries" and step.stage_retried)
            ):
                add(category, step.shape.path, seconds)
            else:
                add(category, step.model or "", seconds)
        if step.kind in ("agent", "python", "approve", "ask"):
            cursor = max(cursor, step.end)
        else:  # a branch step covers only its wait; its stages follow as steps of their own
            cursor = max(cursor, step.start + step.time.get("concurrency", 0.0))
    if wall > cursor:
        add("overhead", "", wall - cursor)
    return PathSummary(steps, time, causes, startup)
