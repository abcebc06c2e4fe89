"""Bottleneck advice: the causes of lost time, largest first, each named with the setting to change.

Causes come from two places: the split of the critical path (:mod:`runner.report.critical_path`: seconds by
category and subject, such as ``pool`` of model ``main`` or ``concurrency`` of the fan-out at ``stages[0]``), and
the embedding caches that had a problem in the run (issue 21: a cache that failed silently).

Each cause has one small function in :data:`ADVICE_BY_CAUSE`, from the cause and the :class:`Analysis` to zero
or one :class:`Advice`: a new cause is one function and its entry there. A test pins the registry to the report
schema's ``bottlenecks[].cause`` enum, whose values are the critical path's categories and ``cache``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any

from runner.report.critical_path import CATEGORIES, PathSummary
from runner.report.layout import Layout, StageShape
from runner.report.spans import Span

OVERHEAD_NAMED_FROM = 0.10  # the runner's overhead is named a bottleneck from this share of the wall time up
OVERHEAD_NAMED_ABOVE_S = 0.05  # ... and from this many seconds: a few milliseconds of a tiny run are no bottleneck
NAMED_FROM_S = 0.005  # a cause on the path that rounds to "0.00 s" is no bottleneck


@dataclass(frozen=True, slots=True)
class Cause:
    """One cause of lost time: ``name`` is a category of the critical path or ``cache``; ``subject`` what it is
    about (a model, a stage's YAML path, a tool, an embedder, or empty); ``seconds`` it cost (on the critical
    path; for a cache, its file I/O) and ``share`` of the wall time."""

    name: str
    subject: str
    seconds: float
    share: float = 0.0


@dataclass(frozen=True, slots=True)
class Advice:
    """What to do about a cause: the ``message`` a reader sees, the ``setting`` to change (a dotted path in the
    workflow, or None when no setting helps) and its current ``value`` when known."""

    message: str
    setting: str | None = None
    value: Any = None


@dataclass(frozen=True)
class Analysis:
    """What advice is drawn from: the split of the critical path, every span, the workflow's layout, the wall
    time and the embedding caches' figures by embedder."""

    summary: PathSummary
    spans: Mapping[str, Span]
    layout: Layout
    wall: float
    cache: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: MappingProxyType({}))

    @cached_property
    def agent_spans(self) -> list[Span]:
        """The agent calls that started."""
        return [s for s in self.spans.values() if s.kind == "agent" and s.start is not None]

    @cached_property
    def stages(self) -> dict[str, StageShape]:
        """Every stage by its YAML path, nested ones too."""
        found: dict[str, StageShape] = {}

        def visit(stages: tuple[StageShape, ...]) -> None:
            for s in stages:
                found[s.path] = s
                visit(s.stages)
                for branch in s.branches:
                    visit(branch)

        visit(self.layout.stages)
        return found


AdviceFunction = Callable[[Cause, Analysis], Advice | None]


def bottlenecks(run: Analysis, *, limit: int = 3) -> list[dict[str, Any]]:
    """The report's ``bottlenecks``: the caches that had a problem first (by name: a cache that does not work
    costs every later run too), then the causes on the critical path, largest first."""
    caches = [
        Cause("cache", name, float(figures.get("cache_io_seconds") or 0.0))
        for name, figures in sorted(run.cache.items())
    ]
    on_path = [
        Cause(name, subject, seconds, seconds / run.wall if run.wall > 0 else 0.0)
        for (name, subject), seconds in run.summary.causes.items()
        if seconds >= NAMED_FROM_S
    ]
    order = {c: i for i, c in enumerate(CATEGORIES)}
    found = sorted(_advised(on_path, run), key=lambda b: (-b["seconds"], order[b["cause"]], b["subject"]))
    return (_advised(caches, run) + found)[:limit]


def _advised(causes: list[Cause], run: Analysis) -> list[dict[str, Any]]:
    found = []
    for cause in causes:
        advice = ADVICE_BY_CAUSE[cause.name](cause, run)
        if advice is not None:
            found.append(
                {
                    "cause": cause.name,
                    "subject": cause.subject,
                    "seconds": round(cause.seconds, 6),
                    "share": round(cause.share, 4),
                    "setting": advice.setting,
                    "value": advice.value,
                    "message": advice.message,
                }
            )
    return found


def model_advice(cause: Cause, run: Analysis) -> Advice:
    """Model latency: cap the output, or a faster model; a scripted model's latency is a setting."""
    subject = cause.subject
    model = run.layout.models.get(subject)
    calls = sum(1 for st in run.summary.steps if st.kind == "agent" and st.model == subject)
    if model is not None and model.provider == "scripted":
        setting = f"models.{subject}.latency"
        advice = f"its latency is simulated: `{setting}` sets it"
    else:
        setting = f"models.{subject}.params.max_tokens"
        than = f" than `{model.model}`" if model is not None and model.model else ""
        advice = f"cap the output with `{setting}`, use a faster model{than}, or run more of the work in parallel"
    took = f"{_secs(cause.seconds)} of the critical path ({_count(calls, 'call', 'calls')})"
    return Advice(f"model `{subject}` took {took}: {advice}", setting)


def pool_advice(cause: Cause, run: Analysis) -> Advice:
    """Waits for a connection of the model's pool: raise ``max_connections``."""
    subject = cause.subject
    model = run.layout.models.get(subject)
    waited = [w for s in run.agent_spans if s.model == subject for _, w in s.pool_waits]
    n = model.max_connections if model else None
    setting = f"models.{subject}.pool.max_connections"
    return Advice(
        f"calls to `{subject}` waited {_secs(cause.seconds)} for a connection on the critical path "
        f"({_secs(sum(waited))} over {_count(len(waited), 'call', 'calls')} in all): raise `{setting}`"
        + (f" above {n}" if n is not None else ""),
        setting,
        n,
    )


def rate_limit_advice(cause: Cause, run: Analysis) -> Advice:
    """Waits for the model's rate limiter: raise the limit that held the calls, if the quota allows."""
    subject = cause.subject
    model = run.layout.models.get(subject)
    waits = [(w, limit) for s in run.agent_spans if s.model == subject for _, w, limit in s.rate_waits]
    limits = Counter(limit for _, limit in waits if limit)
    which = limits.most_common(1)[0][0] if limits else "requests_per_minute"
    setting = f"models.{subject}.rate_limit.{which}"
    value = getattr(model, which, None) if model else None
    return Advice(
        f"calls to `{subject}` waited {_secs(cause.seconds)} for the rate limiter ({which}) on the critical path "
        f"({_secs(sum(w for w, _ in waits))} over {_count(len(waits), 'call', 'calls')} in all): raise `{setting}`"
        + (f" above {value:g}" if isinstance(value, int | float) else "")
        + " if your quota allows",
        setting,
        value,
    )


def concurrency_advice(cause: Cause, run: Analysis) -> Advice | None:
    """Branches waiting for a fan-out's slot: raise its ``max_concurrency``."""
    shape = run.stages.get(cause.subject)
    if shape is None or not shape.is_fanout:
        return None
    # A branch that never got a slot (the run stopped first) waited until its end too.
    slot_waits = [
        slot_wait
        for s in run.spans.values()
        if _is_branch_of(s.id, shape.id)
        and s.queued is not None
        and (slot_wait := (s.start if s.start is not None else s.end_or(run.wall)) - s.queued) > 0
    ]
    setting = f"{shape.path}.fanout.max_concurrency"
    return Advice(
        f"branches of `{shape.id}` waited {_secs(cause.seconds)} for a slot on the critical path "
        f"({_secs(sum(slot_waits))} over {_count(len(slot_waits), 'branch', 'branches')} in all): raise `{setting}`"
        + (f" above {shape.max_concurrency}" if shape.max_concurrency is not None else ""),
        setting,
        shape.max_concurrency,
    )


def retries_advice(cause: Cause, run: Analysis) -> Advice:
    """Failed attempts and back-offs: of a stage retried as a whole (its subject is the stage's path), or of a
    model's calls (its subject is the model), where the most frequent cause says what to look at."""
    subject, secs = cause.subject, _secs(cause.seconds)
    stage = run.stages.get(subject)
    if stage is not None:
        setting = f"{stage.path}.retry"
        return Advice(
            f"stage `{stage.id}` failed and was retried as a whole for {secs} on the critical path: "
            f"fix what fails (see the node's error); `{setting}` sets the attempts and back-off",
            setting,
        )
    causes = Counter(c for s in run.agent_spans if s.model == subject for _, _, c in s.retries)
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
    return Advice(
        f"calls to `{subject}` spent {secs} retrying on the critical path "
        f"({_count(sum(causes.values()), 'retry', 'retries')} in all: {listed}): {advice}",
        setting,
    )


def tools_advice(cause: Cause, run: Analysis) -> Advice:
    """A tool's calls on the path: make it faster or cache it; its ``timeout`` bounds it."""
    subject = cause.subject
    calls = sum(1 for s in run.agent_spans for t in s.tools if t[2] == subject)
    setting = f"tools.{subject}.timeout"
    return Advice(
        f"tool `{subject}` ran {_secs(cause.seconds)} on the critical path ({_count(calls, 'call', 'calls')} "
        f"in all): make it faster or cache its results; `{setting}` bounds it",
        setting,
    )


def gates_advice(cause: Cause, run: Analysis) -> Advice | None:
    """A person's time at a gate: no setting of the run makes it shorter, so no advice (the summary shows it)."""
    return None


def python_advice(cause: Cause, run: Analysis) -> Advice | None:
    """A python stage's own time: no setting helps, the function has to change."""
    stage = run.stages.get(cause.subject)
    if stage is None:
        return None
    return Advice(
        f"python stage `{stage.id}` (`{stage.function}`) took {_secs(cause.seconds)} of the critical path: "
        "make the function faster, or async if it waits on I/O"
    )


def overhead_advice(cause: Cause, run: Analysis) -> Advice | None:
    """The runner's own time, named only when it is a real share of a run that called something; whether it
    came before the first stage (start-up) or between steps says where to look."""
    seconds = cause.seconds
    if cause.share < OVERHEAD_NAMED_FROM or seconds < OVERHEAD_NAMED_ABOVE_S or not run.spans:
        return None
    startup = min(run.summary.startup, seconds)
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
    return Advice(f"the runner itself took {_secs(seconds)} ({cause.share:.0%} of the wall time), {why}")


def cache_advice(cause: Cause, run: Analysis) -> Advice | None:
    """An embedding cache that had a problem (an unusable folder, failed writes, corrupt entries)."""
    name = cause.subject
    figures = run.cache.get(name, {})
    problem = figures.get("problem")
    if not problem:
        return None
    setting = f"embeddings.{name}.cache.dir"
    return Advice(
        f"the embedding cache of `{name}` ({figures.get('dir')}): {problem}; "
        f"fix the folder or point `{setting}` at one that can be written",
        setting,
        figures.get("dir"),
    )


# Each cause's advice, by the cause's name: the critical path's categories, then `cache`.
ADVICE_BY_CAUSE: Mapping[str, AdviceFunction] = {
    "model": model_advice,
    "pool": pool_advice,
    "rate_limit": rate_limit_advice,
    "concurrency": concurrency_advice,
    "retries": retries_advice,
    "tools": tools_advice,
    "python": python_advice,
    "gates": gates_advice,
    "overhead": overhead_advice,
    "cache": cache_advice,
}


def _secs(value: float) -> str:
    return f"{value:.2f} s"


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _is_branch_of(node_id: str, stage_id: str) -> bool:
    """``stage_id[i]`` itself, also under a prefix (``outer[0].inner[1]`` is a branch of ``inner``)."""
    head, sep, tail = node_id.rpartition("[")
    if not sep or "." in tail:
        return False
    return head == stage_id or head.endswith("." + stage_id)
