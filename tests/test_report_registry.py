"""The report's registries, pinned to the schemas' choices and the CLI's: the report formats (one entry each,
shared by `report: {formats}`, `runner run` and `runner report --format`) and bottleneck advice by cause (one
function each)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from runner.cli import build_parser
from runner.commands.report import REPORT_FORMATS
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
from runner.report.document import build_report, report_json
from runner.report.files import write_outputs
from runner.report.formats import EVAL_FORMATS, FORMATS_BY_NAME, RUN_FORMATS, ReportFormat, format_of
from runner.report.summary import format_summary
from runner.secrets import redact
from tests.conftest import ROOT, assert_valid_report, report_schema, run_cli
from tests.test_report_analysis import FAN_THEN_AGENT, fan_then_agent_events, info
from tests.trace_check import assert_valid_trace

# -- report formats ---------------------------------------------------------------------------------------------


def workflow_formats_schema() -> dict:
    schema = json.loads((ROOT / "schemas" / "workflow.schema.json").read_text(encoding="utf-8"))
    return schema["properties"]["report"]["properties"]["formats"]


def test_report_formats_offers_what_runner_run_writes_the_json_first() -> None:
    formats = workflow_formats_schema()
    assert formats["items"]["enum"] == [*RUN_FORMATS, *EVAL_FORMATS] == ["json", "markdown", "trace", "html", "junit"]
    assert [name for name, f in FORMATS_BY_NAME.items() if f.written_by_run] == ["markdown", "json", "trace", "html"]
    for name in RUN_FORMATS:  # the description tells an author each format and its file
        fmt = FORMATS_BY_NAME[name]
        assert f"`{name}`" in formats["description"]
        assert name == "json" or f"`{fmt.suffix}`" in formats["description"]


def report_format_choices() -> argparse.Action:
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    report = subparsers.choices["report"]
    return next(a for a in report._actions if "--format" in a.option_strings)


def test_runner_report_offers_every_format_the_summary_first() -> None:
    action = report_format_choices()
    assert action.choices == list(FORMATS_BY_NAME) == list(REPORT_FORMATS)
    assert list(FORMATS_BY_NAME) == ["text", "markdown", "json", "trace", "html"]
    assert action.default == "text" and not FORMATS_BY_NAME["text"].written_by_run


def fan_then_agent_report() -> dict:
    return build_report(info(FAN_THEN_AGENT), fan_then_agent_events(), status="ok", end=0.51, error=None)


def test_every_format_loads_its_writer_and_writes_the_report() -> None:
    report = fan_then_agent_report()
    texts = {name: fmt.render(report) for name, fmt in FORMATS_BY_NAME.items()}
    assert texts["text"] == format_summary(report) + "\n"
    assert texts["json"] == report_json(report) + "\n" and json.loads(texts["json"]) == report
    assert texts["markdown"].startswith("# Run `wf`: ok in 0.510 s\n")
    assert_valid_trace(json.loads(texts["trace"]))
    assert texts["html"].startswith("<!DOCTYPE html>")


def test_runner_run_writes_each_format_beside_the_json_report(tmp_path: Path) -> None:
    report = fan_then_agent_report()
    target = tmp_path / "wf-20261124T120000.000Z.json"
    paths = write_outputs(report, target, tuple(reversed(RUN_FORMATS)))  # the order asked for does not matter
    assert [p.name for p in paths] == [
        "wf-20261124T120000.000Z.json",
        "wf-20261124T120000.000Z.md",
        "wf-20261124T120000.000Z.trace.json",
        "wf-20261124T120000.000Z.html",
    ]
    assert sorted(tmp_path.iterdir()) == sorted(paths)
    for name, path in zip(RUN_FORMATS, paths, strict=True):
        fmt = FORMATS_BY_NAME[name]
        assert format_of(path) is fmt and path == (target if name == "json" else fmt.path_beside(target))
        assert path.read_text(encoding="utf-8") == redact(fmt.render(report))
    assert [format_of(p).label for p in paths] == ["report", "summary", "trace", "waterfall"]


def test_a_format_runner_run_cannot_write_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as info_:
        write_outputs(fan_then_agent_report(), tmp_path / "r.json", ("json", "text"))
    assert str(info_.value) == "runner run writes no 'text' file; choose from: json, markdown, trace, html"
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError) as info_:
        FORMATS_BY_NAME["text"].path_beside(tmp_path / "r.json")
    assert str(info_.value) == "the text format is not written as a file"
    with pytest.raises(ValueError) as info_:
        format_of(tmp_path / "r.txt")
    assert (
        str(info_.value)
        == "r.txt is not named like a report file (its name ends in none of .json, .md, .trace.json, .html)"
    )


def test_a_run_prints_each_file_it_wrote_with_its_formats_label(write_wf, tmp_path: Path) -> None:
    path = write_wf(
        "version: 1\nname: fmt\nmodels: {m: {provider: scripted, reply: hi}}\nagents: {a: {model: m}}\n"
        f"stages: [{{id: one, agent: a}}]\nreport: {{formats: [{', '.join(reversed(RUN_FORMATS))}]}}\n"
    )
    proc = run_cli("run", str(path), "--report-dir", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    (target,) = (tmp_path / "r").glob("*Z.json")
    beside = [FORMATS_BY_NAME[name] for name in RUN_FORMATS[1:]]
    assert proc.stderr.splitlines()[-4:] == [
        *(f"{fmt.label}: {fmt.path_beside(target)}" for fmt in beside),
        f"report: {target}",
    ]
    assert [fmt.label for fmt in beside] == ["summary", "trace", "waterfall"]


def test_a_format_is_an_entry_named_by_its_writer() -> None:
    # what a new format adds: its writer module, this entry, the schema's enum (the tests above)
    fmt = ReportFormat("csv", "tests.test_report_registry:nodes_csv", ".csv", "table", "the table")
    assert fmt.render(fan_then_agent_report()) == "notes,notes[0],notes[1],notes[2],digest,digest.tool[0.0]\n"
    assert fmt.path_beside(Path("r/wf-1.json")) == Path("r/wf-1.csv")


def nodes_csv(report: dict) -> str:
    return ",".join(n["id"] for n in report["nodes"]) + "\n"


# -- bottleneck advice ------------------------------------------------------------------------------------------


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
