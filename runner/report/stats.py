"""Figures of a run beside its critical path: percentiles, per-model latency, time to first token, tokens per
second, retries and waits, the same for endpoints that are no stage (embedders), and the achieved concurrency."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from runner.report.layout import ModelShape
from runner.report.spans import Span

# A call's output rate counts only when its tokens took at least this long to arrive: a reply that comes in one
# chunk (a local or scripted model, a cached answer) arrives in microseconds, and tokens over microseconds gave
# rates of millions of tokens a second (issue 14).
RATE_MIN_WINDOW_S = 0.02


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (the smallest value with at least q% of values at or below it)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    """The median, as ``statistics.median`` gives it (the mean of the two middle values of an even count),
    without that module's import (``fractions``, ``decimal``, ``random``: 5 ms of every ``runner run``)."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


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
        cached = sum(s.tokens_cached for s in calls)
        if cached:  # of tokens_in, those read from the provider's prompt cache (said only when there are some)
            entry["tokens_cached"] = cached
        if shape is not None and shape.pricing is not None:
            entry["cost_usd"] = round(shape.pricing.cost(entry["tokens_in"], entry["tokens_out"], cached), 6)
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


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
