"""The report's registries, pinned to the schemas' choices: bottleneck advice by cause (one function each)."""

from __future__ import annotations

import pytest

from runner.report import build_report
from runner.report.advice import (
    ADVICE_BY_CAUSE,
    Advice,
    Analysis,
    Cause,
    cache_advice,
    concurrency_advice,
    overhead_advice,
    python_advice,
)
from runner.report.critical_path import CATEGORIES, PathSummary
from tests.conftest import assert_valid_report, report_schema
from tests.test_report_analysis import FAN_THEN_AGENT, fan_then_agent_events, info


def test_every_cause_the_report_schema_names_has_one_advice_function() -> None:
    causes = report_schema()["properties"]["bottlenecks"]["items"]["properties"]["cause"]["enum"]
    assert list(ADVICE_BY_CAUSE) == causes == [*CATEGORIES, "cache"]


def bottlenecks_of_fan_then_agent() -> list[tuple[str, str, str]]:
    report = build_report(info(FAN_THEN_AGENT), fan_then_agent_events(), status="ok", end=0.51, error=None)
    assert_valid_report(report)
    return [(b["cause"], b["subject"], b["message"]) for b in report["bottlenecks"]]


def test_a_causes_advice_is_its_function_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    # The run's causes on the path: model 0.18 s, concurrency 0.102 s, retries 0.1 s, tools 0.09 s.
    assert [c for c, _, _ in bottlenecks_of_fan_then_agent()] == ["model", "concurrency", "retries"]

    monkeypatch.setitem(ADVICE_BY_CAUSE, "retries", lambda cause, run: Advice(f"{cause.subject} retried", "x.y", 3))
    assert bottlenecks_of_fan_then_agent()[2] == ("retries", "m", "m retried")

    # a function with nothing to say leaves its cause out, and the next one moves up
    monkeypatch.setitem(ADVICE_BY_CAUSE, "model", lambda cause, run: None)
    assert [(c, s) for c, s, _ in bottlenecks_of_fan_then_agent()] == [
        ("concurrency", "stages[0]"),
        ("retries", "m"),
        ("tools", "search"),
    ]


def empty_analysis(**cache: dict) -> Analysis:
    return Analysis(PathSummary([], dict.fromkeys(CATEGORIES, 0.0), {}), {}, FAN_THEN_AGENT, 1.0, cache)


def test_an_advice_function_gives_nothing_where_it_has_nothing_to_say() -> None:
    run = empty_analysis(good={"dir": "c", "problem": None}, bad={"dir": "d", "problem": "3 corrupt entries"})
    assert python_advice(Cause("python", "stages[9]", 1.0, 1.0), run) is None  # no such stage
    assert concurrency_advice(Cause("concurrency", "stages[1]", 1.0, 1.0), run) is None  # no fan-out
    assert overhead_advice(Cause("overhead", "", 0.5, 0.5), run) is None  # a run that made no call
    assert cache_advice(Cause("cache", "good", 0.0), run) is None
    assert cache_advice(Cause("cache", "bad", 0.0), run) == Advice(
        "the embedding cache of `bad` (d): 3 corrupt entries; fix the folder or point `embeddings.bad.cache.dir` "
        "at one that can be written",
        "embeddings.bad.cache.dir",
        "d",
    )
