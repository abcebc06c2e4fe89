"""Issue 14, the report and the commands around it, each as a class rather than a case:

* every report writer (JSON, Markdown, trace, the terminal table and summary, ``runner report`` in each format,
  ``runner report diff``) over every node kind and status and every run status, from real runs, from events,
  and from reports drawn at random from the report's schema;
* ``runner graph`` over every stage kind and policy;
* the run summary's edge cases (calls that never started, a timed-out stage, no finished call, rates over
  near-zero times, a large improvement in ``report diff``);
* ``report diff``'s options anywhere after its word;
* one renderer for a file's problems, whatever the command;
* the live progress line on terminals of any width.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import typing
from pathlib import Path
from typing import Any

import pytest

from runner.cli import main
from runner.engine.session import run_plan
from runner.events import NullRecorder, Recorder
from runner.plan.compile import compile_workflow
from runner.plan.graph import LABELS, render_mermaid, render_text
from runner.progress import CLEAR, Progress
from runner.report.critical_path import CATEGORIES, CATEGORY_LABELS
from runner.report.document import build_report
from runner.report.layout import Layout, ModelShape, StageShape
from runner.report.summary import format_summary, format_table
from runner.validate.check import load_workflow
from runner.workflow.inputs import resolve_inputs
from runner.workflow.records import Stage
from tests.conftest import ROOT, run_cli
from tests.graph_check import assert_mermaid_well_formed
from tests.report_docs import assert_every_node_is_shown, random_report, save, writer_outputs
from tests.test_report_analysis import AGENT_A, FAN_THEN_AGENT, fan_then_agent_events, info, result

TOOLS = '''\
import asyncio
import time


def split(input: str) -> list[str]:
    time.sleep(0.03)  # a python stage with time of its own on the critical path
    return input.split()


def check(input: str) -> str:
    if input == "bad":
        raise ValueError("bad item")
    return input


async def pause(input: str) -> str:
    await asyncio.sleep(0.02)
    return input


def count(text: str) -> int:
    """Count the words of a text.

    Args:
        text: the text
    """
    return len(text.split())
'''

# Every node kind (agent, python, fanout, branch, tool) and the statuses a successful run can give them (ok,
# failed inside `on_error: collect`, skipped): a python stage first and last on the critical path.
KINDS = """\
version: 1
name: kinds
models:
  m: {provider: scripted, reply: "ok {{ input | length }}", latency: {first_token_ms: 5, tokens_per_second: 400}}
  instant: {provider: scripted, reply: "done"}
  tooled:
    provider: scripted
    turns:
      - tool_calls:
          - {name: count, arguments: {text: "{{ input }}"}}
    reply: "{{ tool_results[0] }} words"
tools:
  count: {function: "corpus_tools:count", timeout: 5}
agents:
  a: {model: m}
  quick: {model: instant}
  user: {model: tooled, tools: [count]}
stages:
  - {id: split, python: "corpus_tools:split", input: "one bad three"}
  - id: each
    fanout:
      for_each: "{{ stages.split }}"
      as: item
      max_concurrency: 2
      on_error: collect
      stages:
        - {id: check, python: "corpus_tools:check", input: "{{ vars.item }}"}
        - {id: note, agent: a}
  - id: both
    fanout:
      branches:
        - [{id: left, agent: quick}]
        - [{id: right, python: "corpus_tools:pause", input: "r"}]
  - {id: maybe, agent: a, when: "{{ false }}"}
  - {id: maybe_py, python: "corpus_tools:pause", when: "{{ false }}"}
  - id: maybe_fan
    when: "{{ false }}"
    fanout: {for_each: [1, 2], agent: a}
  - {id: tools, agent: user, input: "a b c"}
  - id: again
    loop: {max_iterations: 2, stages: [{id: once, agent: quick}]}
  - id: route
    switch: {on: "x", cases: {x: [{id: routed, agent: quick}]}}
  - {id: sub, workflow: kinds_child.yaml, inputs: {text: "z"}}
  - {id: last, python: "corpus_tools:split", input: "x y"}
"""

# The child workflow KINDS runs (a sub-workflow stage: issue 22).
KINDS_CHILD = """\
version: 1
name: kinds-child
inputs:
  text: {type: string}
models:
  instant: {provider: scripted, reply: "child done"}
agents:
  quick: {model: instant}
stages:
  - {id: inner, agent: quick, input: "{{ inputs.text }}"}
"""

# A failed run: a branch fails under fail_fast and its siblings are cancelled (one while it waited for a slot).
FAIL_FAST = """\
version: 1
name: failfast
models:
  slow: {provider: scripted, reply: "late", latency: {first_token_ms: 5000}}
agents:
  s: {model: slow}
stages:
  - id: fan
    fanout:
      for_each: [ok, bad, ok, ok]
      as: item
      max_concurrency: 3
      stages:
        - {id: check, python: "corpus_tools:check", input: "{{ vars.item }}"}
        - {id: wait, agent: s}
"""

# A failed run: stages stopped by their own timeouts, an agent and a fan-out.
TIMEOUTS = """\
version: 1
name: timeouts
models:
  slow: {provider: scripted, reply: "late", latency: {first_token_ms: 5000}}
agents:
  s: {model: slow}
stages:
  - id: fan
    timeout: 0.05
    fanout: {for_each: [1, 2], agent: s}
"""

SLOW_AGENT = """\
version: 1
name: slowagent
models:
  quick: {provider: scripted, reply: "a b c d e f g h"}
  slow_m: {provider: scripted, reply: "late", latency: {first_token_ms: 5000}}
agents:
  q: {model: quick}
  s: {model: slow_m}
stages:
  - {id: quick, agent: q}
  - {id: slow, agent: s, timeout: 0.05}
"""


def run_report(tmp_path: Path, text: str, name: str = "wf.yaml") -> dict[str, Any]:
    (tmp_path / "corpus_tools.py").write_text(TOOLS, encoding="utf-8")
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    wf = load_workflow(path)
    outcome = run_plan(compile_workflow(wf), resolve_inputs(wf, []), run_dir=tmp_path / "run")
    return outcome.report()


GATED = """\
version: 1
name: gated
models:
  m: {provider: scripted, reply: "draft"}
agents:
  a: {model: m}
stages:
  - id: pick
    ask: {question: "How many?", schema: {type: object, properties: {n: {type: integer}}, required: [n]}}
  - {id: write, agent: a, input: "{{ stages.pick.data.n }}"}
  - {id: review, approve: {message: "Publish?", show: [write]}}
  - {id: publish, agent: a}
"""


def gated_reports(folder: Path) -> dict[str, dict[str, Any]]:
    """Human gates (issue 23): a run through both gates, one waiting at the ask, one rejected at the approve."""
    from runner.engine.gates import GateAnswers, Gates
    from runner.engine.session import Session, run_session
    from runner.stages.gating import Decision

    path = folder / "gated.yaml"
    path.write_text(GATED, encoding="utf-8")
    wf = load_workflow(path)

    async def reject(_request: Any) -> Decision:
        return Decision(False, "not | `now`", "on_gate")

    answered = GateAnswers(frozenset({"review"}), {"pick": {"n": 2}})
    keepers = {
        "gated": Gates(answered),
        "waiting": Gates(),
        "rejected": Gates(GateAnswers(frozenset(), {"pick": {"n": 1}}), reject),
    }
    out = {}
    for name, keeper in keepers.items():
        session = Session(compile_workflow(wf), resolve_inputs(wf, []), run_dir=folder / name, gatekeeper=keeper)
        out[name] = run_session(session).report()
    return out


def interrupted_report() -> dict[str, Any]:
    """Ctrl-C while a fan-out of five waited on two calls: three branches never got a slot."""
    rec = Recorder()
    rec.emit("started", "notes", {"kind": "fanout"}, at=0.001)
    for i in range(5):
        rec.emit("queued", f"notes[{i}]", at=0.002)
    rec.emit("started", "notes[0]", AGENT_A, at=0.003)
    rec.emit("started", "notes[1]", AGENT_A, at=0.003)
    return build_report(info(FAN_THEN_AGENT), rec, status="interrupted", end=0.5, error="interrupted")


def pipeline_interrupted_report() -> dict[str, Any]:
    """Ctrl-C in a per-item pipeline: one branch done, the other cancelled in its second stage."""
    first = StageShape("first", "stages[0].fanout.stages[0]", "agent", "a", "m")
    second = StageShape("second", "stages[0].fanout.stages[1]", "agent", "a", "m")
    layout = Layout(
        stages=(StageShape("per", "stages[0]", "each_stages", stages=(first, second)),),
        models={"m": ModelShape("m", "scripted")},
    )
    rec = Recorder()
    rec.emit("started", "per", {"kind": "fanout"}, at=0.0)
    for i in range(2):
        rec.emit("started", f"per[{i}].first", AGENT_A, at=0.0)
        rec.emit("finished", f"per[{i}].first", result(first=0.05), at=0.1)
        rec.emit("started", f"per[{i}].second", AGENT_A, at=0.1)
    rec.emit("finished", "per[0].second", result(first=0.15), at=0.2)
    rec.emit("cancelled", "per[1].second", {"error": "cancelled"}, at=0.5)
    rec.emit("cancelled", "per", {"error": "cancelled"}, at=0.5)
    return build_report(info(layout), rec, status="interrupted", end=0.5, error="interrupted")


def unfinished_report() -> dict[str, Any]:
    rec = Recorder()
    rec.emit("started", "digest", {"kind": "agent", "agent": "e", "model": "m"}, at=0.1)
    return build_report(info(FAN_THEN_AGENT), rec, status="failed", end=1.0, error="boom")


def unrecorded_report() -> dict[str, Any]:
    return build_report(info(FAN_THEN_AGENT), NullRecorder(), status="ok", end=0.25, error=None)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    folder = tmp_path_factory.mktemp("corpus")
    (folder / "kinds_child.yaml").write_text(KINDS_CHILD, encoding="utf-8")
    return {
        "kinds": run_report(folder, KINDS, "kinds.yaml"),
        "failfast": run_report(folder, FAIL_FAST, "failfast.yaml"),
        "timeouts": run_report(folder, TIMEOUTS, "timeouts.yaml"),
        "slowagent": run_report(folder, SLOW_AGENT, "slowagent.yaml"),
        "interrupted": interrupted_report(),
        "pipeline": pipeline_interrupted_report(),
        "unfinished": unfinished_report(),
        "unrecorded": unrecorded_report(),
        **gated_reports(folder),
    }


def test_the_corpus_covers_every_node_kind_status_and_run_status(corpus) -> None:
    nodes = [n for report in corpus.values() for n in report["nodes"]]
    kinds = REPORT_ENUMS("kind")
    statuses = REPORT_ENUMS("status")
    assert {n["kind"] for n in nodes} == kinds
    assert {n["status"] for n in nodes} == statuses
    assert {(n["kind"], n["status"]) for n in nodes} >= {(k, "ok") for k in kinds} | {
        ("agent", "skipped"),
        ("python", "skipped"),
        ("fanout", "skipped"),
        ("python", "failed"),
        ("branch", "failed"),
        ("agent", "cancelled"),
        ("branch", "cancelled"),
        ("agent", "unfinished"),
    }
    assert {r["run"]["status"] for r in corpus.values()} == {"ok", "failed", "interrupted", "waiting", "rejected"}
    kinds_on_path = {s["kind"] for s in corpus["kinds"]["critical_path"]["steps"]}
    assert kinds_on_path == {"agent", "python", "fanout", "branch", "loop", "iteration", "switch", "workflow"}


def REPORT_ENUMS(key: str) -> set[str]:  # noqa: N802 - reads like the constant it stands for
    from tests.report_docs import REPORT_SCHEMA

    return set(REPORT_SCHEMA["properties"]["nodes"]["items"]["properties"][key]["enum"])


@pytest.mark.parametrize(
    "name", ["kinds", "failfast", "timeouts", "slowagent", "interrupted", "pipeline", "unfinished", "unrecorded"]
)
def test_every_writer_renders_every_node_kind_and_run_status(corpus, name, tmp_path, capsys) -> None:
    report = corpus[name]
    outputs = writer_outputs(report)
    assert_every_node_is_shown(report, outputs)
    path = save(report, tmp_path / f"{name}.json")
    printed = {}
    for fmt in ("text", "markdown", "json", "trace"):  # `runner report FILE --format F`: what the writer made
        assert main(["report", str(path), "--format", fmt]) == 0
        printed[fmt] = capsys.readouterr().out
    assert printed["text"] == outputs["text"] + "\n"
    assert printed["markdown"] == outputs["markdown"]
    assert printed["json"] == outputs["json"] + "\n"
    assert json.loads(printed["trace"]) == json.loads(outputs["trace"])
    assert main(["report", "diff", str(path), str(path)]) == 0  # a run against itself: no change
    assert capsys.readouterr().out.startswith(f"{report['workflow']['name']}: wall time ")


def test_a_python_stage_on_the_critical_path_is_named_in_every_writer(corpus) -> None:
    report = corpus["kinds"]
    path = report["critical_path"]
    assert path["nodes"][0] == "split" and path["nodes"][-1] == "last"
    assert path["time_s"]["python"] >= 0.03
    outputs = writer_outputs(report)
    assert re.search(r"^\| python stages \| \d+\.\d{3} \| \d+\.\d% \|$", outputs["markdown"], re.M)
    assert re.search(r"^of the \d+\.\d{3} s: .*python \d+\.\d{3} s \(\d+%\)", outputs["text"], re.M)


def test_every_cost_category_has_a_label() -> None:
    assert tuple(CATEGORY_LABELS) == CATEGORIES
    assert all(CATEGORY_LABELS[c] for c in CATEGORIES)


@pytest.mark.parametrize("seed", range(120))
def test_any_report_the_schema_accepts_renders_in_every_writer(seed, tmp_path, capsys) -> None:
    """`runner report FILE` reads any file that validates: hand-edited, from another version, partial."""
    report = random_report(seed)
    outputs = writer_outputs(report)
    other = random_report(seed + 10_000)
    other["workflow"]["name"] = report["workflow"]["name"]
    a, b = save(report, tmp_path / "a.json"), save(other, tmp_path / "b.json")
    assert main(["report", str(a), "--format", "text"]) == 0
    assert capsys.readouterr().out == outputs["text"] + "\n"
    assert main(["report", "diff", str(a), str(b)]) in (0, 1)
    assert capsys.readouterr().err == ""


# -- the run summary's edge cases -------------------------------------------------------------------------------


def test_calls_that_never_started_are_not_counted_as_calls(corpus) -> None:
    report = corpus["interrupted"]
    lines = format_table(report).splitlines()
    assert lines[0] == "run wf: interrupted in 0.500 s on uvloop; 2 agent calls (3 never started), tokens in/out 0/0"
    assert lines[3].split() == ["notes[*]", "x5", "branches", "2", "cancelled,", "3", "not", "started"]
    markdown = writer_outputs(report)["markdown"].splitlines()
    assert "| agent calls | 2, 3 never started (2 requests, 0 retries) |" in markdown
    assert "| `notes[*]` x5 | agent | a | 2 cancelled, 3 not started |  |  |  | max 0.001 | 2 | 0 / 0 |" in markdown
    assert [n.get("attempts") for n in report["nodes"] if n["kind"] == "agent"] == [1, 1, None, None, None]


def test_skipped_calls_are_no_calls_and_branches_that_never_ran_say_so(corpus) -> None:
    # `maybe` was skipped by its `when:`: not a call, and not one that never started (4 calls of the 8 are the
    # loop's two iterations, the switch's case and the sub-workflow's stage)
    assert format_table(corpus["kinds"]).splitlines()[0].split("; ")[1].startswith("8 agent calls, tokens in/out ")
    # fail_fast: one branch failed, two were stopped running (cancelled, or unfinished when the stop came
    # between their two stages), the fourth never got a slot
    rows = {line.split()[0]: line for line in format_table(corpus["failfast"]).splitlines()[2:]}
    said = re.search(r"branches +(1 failed, (\d+) cancelled, (?:(\d+) unfinished, )?1 not started) ", rows["fan[*]"])
    assert said is not None, rows["fan[*]"]
    assert int(said.group(2)) + int(said.group(3) or 0) == 2


def test_a_timed_out_stage_is_failed_with_its_timeout_not_cancelled(corpus) -> None:
    report = corpus["slowagent"]
    slow = next(n for n in report["nodes"] if n["id"] == "slow")
    assert (slow["status"], slow["timeout_s"], slow["error"]) == ("failed", 0.05, "stage 'slow' timed out after 0.05 s")
    rows = {line.split()[0]: line.split() for line in format_table(report).splitlines()[2:]}
    assert rows["slow"][:4] == ["slow", "agent", "timed", "out"]
    markdown = writer_outputs(report)["markdown"]
    assert "| `slow` | agent | s | timed out: stage 'slow' timed out after 0.05 s |" in markdown
    fan = next(n for n in corpus["timeouts"]["nodes"] if n["id"] == "fan")
    assert (fan["status"], fan["timeout_s"], fan["error"]) == ("failed", 0.05, "stage 'fan' timed out after 0.05 s")
    assert {n["status"] for n in corpus["timeouts"]["nodes"] if n["id"] != "fan"} == {"cancelled"}


def test_a_model_without_a_successful_call_prints_no_blank_figures(corpus) -> None:
    lines = format_summary(corpus["slowagent"]).splitlines()
    assert "model slow_m: 1 call (1 request), no call succeeded" in lines
    assert not any(re.search(r"p50 +p95|  s\b", line) for line in lines)
    markdown = writer_outputs(corpus["slowagent"])["markdown"]
    assert "| `slow_m` | 1 | 1 |  |  |  | 0 | 0.000 | 0.000 |" in markdown.splitlines()


def _one_model(*calls: tuple[float, float | None, float, int]) -> dict[str, Any]:
    """A report of calls on model ``m``: each (start, first token, end, tokens out)."""
    layout = Layout(
        stages=(StageShape("fan", "stages[0]", "each_agent", "a", "m"),), models={"m": ModelShape("m", "scripted")}
    )
    rec = Recorder()
    rec.emit("started", "fan", {"kind": "fanout"}, at=0.0)
    for i, (start, first, end, tokens) in enumerate(calls):
        rec.emit("started", f"fan[{i}]", AGENT_A, at=start)
        rec.emit("finished", f"fan[{i}]", result(tokens_out=tokens, first=first), at=end)
    rec.emit("finished", "fan", None, at=max(c[2] for c in calls))
    return build_report(info(layout), rec, status="ok", end=1.0, error=None)


def test_no_rate_is_reported_over_a_time_too_short_to_measure() -> None:
    # a reply that arrived in one chunk: 90 tokens in 11 microseconds is no rate (it printed 4,461,335 tok/s)
    instant = _one_model((0.1, 0.100001, 0.100012, 90))
    assert instant["models"]["m"]["tokens_per_s"] is None
    assert "tokens/s" not in format_summary(instant)
    # tokens that streamed over 200 ms give the rate; the instant call beside them is left out of it
    timed = _one_model((0.1, 0.2, 0.4, 40), (0.1, 0.100001, 0.100012, 90))
    assert timed["models"]["m"]["tokens_per_s"] == 200.0
    assert ", 200 tokens/s" in format_summary(timed)
    assert _one_model((0.1, None, 0.3, 40))["models"]["m"]["tokens_per_s"] == 200.0  # not streamed: from start


def saved_run(tmp_path: Path, name: str, wall: float) -> Path:
    report = build_report(info(FAN_THEN_AGENT), fan_then_agent_events(), status="ok", end=wall, error=None)
    return save(report, tmp_path / name)


@pytest.mark.parametrize(
    ("wall_b", "code", "verdict"),
    [
        (0.405, 0, "(-59.5%): faster by more than 10%"),
        (0.95, 0, "(-5.0%): within 10%"),
        (1.05, 0, "(+5.0%): within 10%"),
        (1.2, 1, "(+20.0%): slower by more than 10%"),
    ],
)
def test_diff_says_an_improvement_is_one_and_fails_only_a_regression(tmp_path, capsys, wall_b, code, verdict) -> None:
    a, b = saved_run(tmp_path, "a.json", 1.0), saved_run(tmp_path, "b.json", wall_b)
    assert main(["report", "diff", str(a), str(b)]) == code
    assert capsys.readouterr().out.splitlines()[0] == f"wf: wall time 1.000 s -> {wall_b:.3f} s {verdict}"


# -- report diff's options anywhere -------------------------------------------------------------------------------


def test_diff_takes_its_threshold_before_between_or_after_the_reports(tmp_path, capsys) -> None:
    a, b = str(saved_run(tmp_path, "a.json", 1.0)), str(saved_run(tmp_path, "b.json", 1.2))
    for argv in (
        ["report", "diff", "--threshold", "25", a, b],
        ["report", "diff", a, "--threshold", "25", b],
        ["report", "diff", a, b, "--threshold", "25"],
        ["report", "diff", "--threshold=25", a, b],
    ):
        assert main(argv) == 0, argv
        assert capsys.readouterr().out.splitlines()[0] == "wf: wall time 1.000 s -> 1.200 s (+20.0%): within 25%"
    assert main(["report", "diff", "--threshold", "15", a, b]) == 1
    capsys.readouterr()
    for argv in (["report", a, "--format", "markdown"], ["report", "--format", "markdown", a]):
        assert main(argv) == 0
        assert capsys.readouterr().out.startswith("# Run `wf`: ok in 1.000 s\n")


def test_diff_usage_errors_exit_2_with_its_own_usage(tmp_path, capsys) -> None:
    a = str(saved_run(tmp_path, "a.json", 1.0))
    for argv, message in (
        (["report", "diff", a], "runner report diff: error: the following arguments are required: B"),
        (
            ["report", "diff", "--threshold", "-5", a, a],
            "runner report diff: error: argument --threshold: expected a percentage of 0 or more, got '-5'",
        ),
        (
            ["report", "diff", "--threshold", "lots", a, a],
            "runner report diff: error: argument --threshold: expected a percentage, got 'lots'",
        ),
        (["report", a, "--format", "pdf"], None),
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.splitlines()
        if message is not None:
            assert err == ["usage: runner report diff [-h] [--threshold PCT] A B", message]


def test_the_forms_the_help_shows_work_as_users_type_them(tmp_path) -> None:
    a, b = str(saved_run(tmp_path, "a.json", 1.0)), str(saved_run(tmp_path, "b.json", 1.05))
    help_text = run_cli("report", "--help")
    assert help_text.returncode == 0
    assert help_text.stdout.splitlines()[:2] == [
        "usage: runner report [-h] [--format {text,markdown,json,trace,html}] FILE",
        "       runner report diff [-h] [--threshold PCT] A B",
    ]
    proc = run_cli("report", "diff", "--threshold", "10", a, b)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout.splitlines()[0] == "wf: wall time 1.000 s -> 1.050 s (+5.0%): within 10%"


# -- runner graph over every stage kind ------------------------------------------------------------------------------

EVERY_STAGE = """\
version: 1
name: every
timeout: 60
models:
  m: {provider: scripted}
tools:
  count: {function: "corpus_tools:count"}
agents:
  a: {model: m}
  t: {model: m, tools: [count]}
stages:
  - {id: split, python: "corpus_tools:split", input: "a b", timeout: 5, retry: {max_attempts: 3}}
  - id: each
    when: "{{ stages.split | length > 1 }}"
    fanout:
      for_each: "{{ stages.split }}"
      as: word
      max_concurrency: 2
      on_error: collect
      stages:
        - {id: check, python: "corpus_tools:check", input: "{{ vars.word }}"}
        - id: inner
          fanout:
            branches:
              - [{id: left, agent: a, when: "{{ vars.word != '#' }}"}]
              - [{id: right, agent: t}]
  - id: fixed
    fanout: {for_each: [1, 2, 3], agent: a}
  - id: notes
    input: |
      Read
      {{ prev }}
    agent: a
"""


def test_graph_shows_every_stage_kind_and_its_policies(tmp_path) -> None:
    (tmp_path / "corpus_tools.py").write_text(TOOLS, encoding="utf-8")
    path = tmp_path / "every.yaml"
    path.write_text(EVERY_STAGE, encoding="utf-8")
    plan = compile_workflow(load_workflow(path))
    assert render_text(plan).splitlines() == [
        "every: 4 stages, timeout 60 s",
        "  1. split: python corpus_tools:split; timeout 5 s; up to 3 attempts",
        "  2. each: fanout for each word in {{ stages.split }}, max 2 at once, on error collect; "
        "when {{ stages.split | length > 1 }}",
        "     each:",
        "       1. check: python corpus_tools:check",
        "       2. inner: fanout over 2 branches",
        "          branch 0:",
        "            1. left: agent a (model m, scripted); when {{ vars.word != '#' }}",
        "          branch 1:",
        "            1. right: agent t (model m, scripted; tools count)",
        "  3. fixed: fanout for each item in 3 items",
        "     each: agent a (model m, scripted)",
        "  4. notes: agent a (model m, scripted)",
    ]
    assert_mermaid_well_formed(render_mermaid(plan))
    mermaid = render_mermaid(plan)
    assert '  n_split[/"split: python corpus_tools:split; timeout 5 s; up to 3 attempts"/]' in mermaid
    assert "when #123;#123; vars.word != '#35;' #125;#125;" in mermaid
    assert "length #gt; 1" in mermaid


def test_every_stage_kind_has_a_graph_label() -> None:
    assert set(LABELS) == set(typing.get_args(Stage))


def test_mermaid_ids_stay_unique_when_stage_names_differ_only_in_punctuation(tmp_path) -> None:
    path = tmp_path / "ids.yaml"
    path.write_text(
        "version: 1\nname: ids\nmodels:\n  m: {provider: scripted}\nagents:\n  a: {model: m}\n"
        "stages:\n  - {id: a-b, agent: a}\n  - {id: a_b, agent: a}\n",
        encoding="utf-8",
    )
    mermaid = render_mermaid(compile_workflow(load_workflow(path)))
    assert_mermaid_well_formed(mermaid)
    assert "  n_a_b --> n_a_b_2" in mermaid.splitlines()


# -- one renderer for a file's problems ------------------------------------------------------------------------------

BAD = """\
version: 1
name: bad
models:
  m: {provider: scripted}
  spare: {provider: scripted}
agents:
  a: {model: m}
stages:
  - {id: one, agent: a, input: "{{ inputs.nope }}"}
"""


def test_run_and_graph_print_a_files_problems_as_validate_does(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD, encoding="utf-8")
    expected = (
        f"{path}:5:3: warning: model 'spare' is not used by any agent [unused-model]\n"
        "     5 |   spare: {provider: scripted}\n"
        "       |   ^^^^^\n"
        "       = hint: remove it, or give it to an agent ('model: spare')\n"
        f"{path}:9:36: error: inputs.nope is not declared [unknown-input]\n"
        '     9 |   - {id: one, agent: a, input: "{{ inputs.nope }}"}\n'
        "       |                                    ^^^^^^^^^^^\n"
        "       = hint: define it under 'inputs:'\n"
        "1 error(s), 1 warning(s) in 1 file(s)\n"
    )
    validate = run_cli("validate", str(path))
    assert (validate.returncode, validate.stdout) == (1, expected)
    run = run_cli("run", str(path), "--report-dir", str(tmp_path / "r"))
    assert (run.returncode, run.stdout, run.stderr) == (1, "", expected)
    graph = run_cli("graph", str(path))
    assert (graph.returncode, graph.stdout, graph.stderr) == (1, "", expected)
    assert not (tmp_path / "r").exists()  # nothing ran


def test_an_input_files_yaml_error_is_shown_with_its_source_line(tmp_path, capsys) -> None:
    (tmp_path / "inputs.yaml").write_text("topic: a: b\n", encoding="utf-8")
    inputs = tmp_path / "inputs.yaml"
    code = main(["run", str(ROOT / "workflows" / "quickstart.yaml"), "--input", str(inputs)])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith(f"{inputs}:1:9: error: ")
    assert err.splitlines()[1:3] == ["     1 | topic: a: b", "       |         ^"]
    assert "runner: error:" not in err


# -- the progress line on a terminal of any width --------------------------------------------------------------------


class Terminal:
    """Enough of a terminal to see what a stream of progress frames leaves on the screen: printable characters
    at the cursor, wrapping at the right margin (deferred, as xterm does), ``\\r``, ``\\n`` and erase-line."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.rows: list[list[str]] = [[]]
        self.row = self.col = 0

    def feed(self, text: str) -> None:
        i = 0
        while i < len(text):
            if text.startswith("\x1b[2K", i):
                self.rows[self.row] = []
                i += 4
                continue
            char = text[i]
            i += 1
            if char == "\r":
                self.col = 0
            elif char == "\n":
                self._next_row()
            else:
                if self.col >= self.width:
                    self._next_row()
                line = self.rows[self.row]
                line.extend(" " * (self.col + 1 - len(line)))
                line[self.col] = char
                self.col += 1

    def _next_row(self) -> None:
        self.row += 1
        self.col = 0
        if self.row == len(self.rows):
            self.rows.append([])

    def lines(self) -> list[str]:
        return ["".join(r).rstrip() for r in self.rows]


_FRAME = re.compile(r"\d+ done")


def _set_size(fd: int, columns: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))


def _drain(master: int) -> str:
    chunks = []
    while select.select([master], [], [], 0)[0]:
        chunks.append(os.read(master, 65536))
    return b"".join(chunks).decode()


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("columns", [1, 2, 5, 12, 30, 50, 80, 200])
def test_every_redraw_fits_the_terminal_and_leaves_no_stale_copy(columns, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "300")  # a stale COLUMNS: the terminal's own size must win
    master, slave = pty.openpty()
    _set_size(slave, columns)
    stream = open(slave, "w", encoding="utf-8", closefd=True)  # noqa: SIM115 - closed below
    try:
        clock = Clock()
        bar = Progress(stream, clock=clock)
        terminal = Terminal(columns)
        rec = Recorder()
        for i in range(60):  # counts grow through every width: 1 to 60 done, thousands of tokens, retries
            rec.emit("queued", f"fan[{i}]")
            rec.emit("started", f"fan[{i}]", AGENT_A)
            if i % 7 == 0:
                rec.emit("retry", f"fan[{i}]", {"cause": "429", "delay": 0.1, "error": "x"})
            rec.emit("finished", f"fan[{i}]", result(tokens_in=400 * i, tokens_out=37 * i))
            clock.now += 0.1
            bar.tick(rec)
            terminal.feed(_drain(master))
            assert len([line for line in terminal.lines() if line]) <= 1, terminal.lines()
            assert terminal.row == 0  # never wrapped onto a second row
        bar.hide()
        terminal.feed(_drain(master))
        assert [line for line in terminal.lines() if line] == []
        frames = bar.frames
        assert frames == (0 if columns <= 1 else 60)
    finally:
        stream.close()
        os.close(master)


def test_the_line_follows_a_resized_terminal(monkeypatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    master, slave = pty.openpty()
    _set_size(slave, 100)
    stream = open(slave, "w", encoding="utf-8", closefd=True)  # noqa: SIM115 - closed below
    try:
        bar = Progress(stream, clock=Clock())
        bar.tick(Recorder())
        assert _drain(master) == CLEAR + "runner: 0 done, 0 running, 0 queued, tokens 0 in / 0 out, 0.0 s"
        _set_size(slave, 30)  # the window shrank (SIGWINCH): the next frame is read at the new width
        bar.tick(Recorder())
        assert _drain(master) == CLEAR + "0 done, 0 running, 0.0 s"
        _set_size(slave, 45)
        bar.tick(Recorder())
        assert _drain(master) == CLEAR + "runner: 0 done, 0 running, 0 queued, 0.0 s"
    finally:
        stream.close()
        os.close(master)


def test_a_run_on_a_narrow_terminal_leaves_no_stale_progress_lines(write_wf, tmp_path) -> None:
    """stderr on a 50-column terminal, stdout piped (so only stderr knows the width), a stale COLUMNS."""
    path = write_wf(
        """\
        version: 1
        name: narrow
        models:
          m:
            provider: scripted
            reply: "one two three four five six"
            latency: {first_token_ms: 100, tokens_per_second: 40}
        agents:
          a: {model: m}
        stages:
          - id: fan
            fanout: {for_each: [1, 2, 3, 4, 5, 6], agent: a, max_concurrency: 2}
        """
    )
    master, slave = pty.openpty()
    _set_size(slave, 50)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", "run", str(path), "--report-dir", str(tmp_path / "r")],
        stdout=subprocess.PIPE,
        stderr=slave,
        cwd=ROOT,
        env=env,
    )
    os.close(slave)
    raw = b""
    try:
        while select.select([master], [], [], 20)[0]:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed its end
                break
            if not data:
                break
            raw += data
        assert proc.wait(20) == 0
    finally:
        proc.kill()
        os.close(master)
        assert proc.stdout is not None
        proc.stdout.close()
    text = raw.decode()
    frames = text.split(CLEAR)[1:-1]
    assert len(frames) >= 3  # the line was drawn, more than once
    assert all(len(frame) <= 49 for frame in frames), frames
    terminal = Terminal(50)
    terminal.feed(text)
    assert not any(_FRAME.search(line) for line in terminal.lines()), terminal.lines()
