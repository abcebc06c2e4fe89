"""The `switch` stage (issue 16, item 5): one case runs (or the default, or none, and the report says which),
through the engine's services; and what `runner validate` says about a switch, at its exact place."""

from __future__ import annotations

import asyncio
import os
import signal
import textwrap
from pathlib import Path
from typing import Any

import pytest

from runner.engine.session import RunOutcome, run_plan
from runner.events import Recorder
from runner.plan.compile import compile_workflow
from runner.plan.graph import render_mermaid
from runner.report.markdown import to_markdown
from runner.report.summary import format_summary
from runner.validate.check import check_file, load_workflow
from runner.workflow.inputs import resolve_inputs
from tests.conftest import assert_valid_report, run_cli
from tests.graph_check import assert_mermaid_well_formed

ROUTING = """\
version: 1
name: routing
inputs:
  ticket: {type: string, default: "my invoice is wrong"}
models:
  classifier_m:
    provider: scripted
    reply: "{{ 'billing' if 'invoice' in input else 'tech' if 'error' in input else 'other' }}"
  desk_m: {provider: scripted, reply: "{{ agent.name }}<{{ input }}>", latency: {first_token_ms: 5}}
agents:
  classifier: {model: classifier_m}
  billing: {model: desk_m}
  tech: {model: desk_m}
  triage: {model: desk_m}
  closer: {model: desk_m}
stages:
  - {id: classify, agent: classifier, input: "{{ inputs.ticket }}"}
  - id: route
    input: "{{ inputs.ticket }}"
    switch:
      on: "{{ stages.classify.content }}"
      cases:
        billing:
          - {id: refund, agent: billing}
          - {id: confirm, agent: billing, input: "confirm {{ stages.refund.content }}"}
        tech:
          - {id: debug, agent: tech}
      default:
        - {id: fallback, agent: triage}
  - {id: after, agent: closer}
  - id: final
    agent: closer
    input: "{{ stages.route.case }}|{{ stages.route.output.content }}"
"""


def write(tmp_path: Path, text: str, name: str = "wf.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def run(tmp_path: Path, text: str, watch: Any = None, ticket: str | None = None) -> tuple[RunOutcome, dict[str, Any]]:
    path = write(tmp_path, text)
    _, problems = check_file(path)
    assert problems == []
    wf = load_workflow(path)
    sets = [f"ticket={ticket}"] if ticket is not None else []
    outcome = run_plan(compile_workflow(wf), resolve_inputs(wf, sets), run_dir=tmp_path / "run", watch=watch)
    report = outcome.report()
    assert_valid_report(report)
    return outcome, report


def nodes(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["id"]: n for n in report["nodes"]}


def test_the_case_of_the_value_runs_and_the_switch_says_which(tmp_path: Path) -> None:
    outcome, report = run(tmp_path, ROUTING)
    assert outcome.status == "ok", outcome.error
    route = outcome.stages["route"]
    assert route.case == "billing"
    assert route.output.content == "billing<confirm billing<my invoice is wrong>>"
    assert outcome.stages["refund"].content == "billing<my invoice is wrong>"  # its stages keep their ids
    assert "debug" not in outcome.stages and "fallback" not in outcome.stages
    assert outcome.stages["after"].content == "closer<billing<confirm billing<my invoice is wrong>>>"
    assert outcome.output.content == "closer<billing|billing<confirm billing<my invoice is wrong>>>"

    found = nodes(report)
    assert {k: found["route"][k] for k in ("kind", "status", "case", "reason")} == {
        "kind": "switch",
        "status": "ok",
        "case": "billing",
        "reason": "on gave 'billing'",
    }
    assert "debug" not in found
    assert report["critical_path"]["nodes"] == ["classify", "route", "refund", "confirm", "after", "final"]
    assert "switch route: case 'billing' ran" in format_summary(report).splitlines()
    assert "## Loops and switches\n\n- switch route: case 'billing' ran\n" in to_markdown(report)


def test_the_default_runs_when_no_case_has_the_value(tmp_path: Path) -> None:
    outcome, report = run(tmp_path, ROUTING, ticket="hello")
    assert outcome.status == "ok", outcome.error
    assert (outcome.stages["route"].case, outcome.stages["route"].output.content) == ("default", "triage<hello>")
    route = nodes(report)["route"]
    assert (route["case"], route["reason"]) == ("default", "on gave 'other', which no case has: the default ran")
    assert "switch route: on gave 'other', which no case has: the default ran" in format_summary(report).splitlines()


def test_no_case_and_no_default_runs_nothing_and_says_so(tmp_path: Path) -> None:
    text = ROUTING.replace("      default:\n        - {id: fallback, agent: triage}\n", "")
    text = text.replace("  triage: {model: desk_m}\n", "").replace(
        "  - {id: after, agent: closer}\n", "  - {id: after, agent: closer}\n  - {id: done, agent: closer}\n"
    )
    text = text.replace(
        'input: "{{ stages.route.case }}|{{ stages.route.output.content }}"', 'input: "{{ stages.route.case }}"'
    )
    outcome, report = run(tmp_path, text, ticket="hello")
    assert outcome.status == "ok", outcome.error
    assert outcome.stages["route"].case is None
    assert outcome.stages["after"].content == "closer<other>"  # the switch's input passed through: classify's
    assert outcome.output.content == "closer<None>"
    route = nodes(report)["route"]
    assert (route["status"], route["case"], route["reason"]) == (
        "ok",
        None,
        "no case for 'other' and no default: no stage ran",
    )
    assert "switch route: no case for 'other' and no default: no stage ran" in format_summary(report).splitlines()
    assert report["critical_path"]["nodes"] == ["classify", "route", "after", "done", "final"]


WORDS = """\
version: 1
name: words
models:
  m: {provider: scripted, reply: "{{ agent.name }}"}
agents:
  yes_agent: {model: m}
  no_agent: {model: m}
  one_agent: {model: m}
stages:
  - id: route
    switch:
      on: "VALUE"
      cases:
        yes: [{id: said_yes, agent: yes_agent}]
        no: [{id: said_no, agent: no_agent}]
        1: [{id: said_one, agent: one_agent}]
"""


@pytest.mark.parametrize(("value", "agent"), [("yes", "yes_agent"), ("no", "no_agent"), ("1", "one_agent")])
def test_case_keys_are_the_words_written(tmp_path: Path, value: str, agent: str) -> None:
    # YAML 1.1 reads `on`, `yes` and `no` as booleans: as keys they stay the words written
    outcome, _ = run(tmp_path, WORDS.replace("VALUE", value))
    assert outcome.status == "ok", outcome.error
    assert (outcome.stages["route"].case, outcome.output.output.content) == (value, agent)


TOOLS = """\
import asyncio


async def hang(input):
    await asyncio.Event().wait()  # until cancelled


def fail(input):
    raise ValueError("no refund for " + input)
"""


def test_a_failing_case_fails_the_switch(tmp_path: Path) -> None:
    (tmp_path / "switch_tools_fail.py").write_text(TOOLS, encoding="utf-8")
    text = ROUTING.replace("- {id: refund, agent: billing}", '- {id: refund, python: "switch_tools_fail:fail"}')
    outcome, report = run(tmp_path, text)
    assert outcome.status == "failed"
    assert report["run"]["error"] == (
        "python stage 'refund' (switch_tools_fail:fail) raised ValueError: no refund for my invoice is wrong"
    )
    route = nodes(report)["route"]
    assert (route["status"], route["case"]) == ("failed", "billing")


def test_a_switchs_timeout_stops_its_case(tmp_path: Path) -> None:
    (tmp_path / "switch_tools_timeout.py").write_text(TOOLS, encoding="utf-8")
    text = ROUTING.replace("- {id: refund, agent: billing}", '- {id: refund, python: "switch_tools_timeout:hang"}')
    outcome, report = run(tmp_path, text.replace("  - id: route\n", "  - id: route\n    timeout: 0.2\n"))
    assert outcome.status == "failed"
    assert report["run"]["error"] == "stage 'route' timed out after 0.2 s"
    found = nodes(report)
    assert (found["route"]["status"], found["route"]["timeout_s"], found["refund"]["status"]) == (
        "failed",
        0.2,
        "cancelled",
    )


def test_ctrl_c_in_a_case_leaves_a_partial_report(tmp_path: Path) -> None:
    async def interrupt_in_refund(recorder: Recorder, _info: Any) -> None:
        while not any(e[1] == "started" and e[2] == "refund" for e in recorder.events):  # noqa: ASYNC110
            await asyncio.sleep(0.002)
        os.kill(os.getpid(), signal.SIGINT)

    (tmp_path / "switch_tools_sigint.py").write_text(TOOLS, encoding="utf-8")
    text = ROUTING.replace("- {id: refund, agent: billing}", '- {id: refund, python: "switch_tools_sigint:hang"}')
    outcome, report = run(tmp_path, text, watch=interrupt_in_refund)
    assert outcome.status == "interrupted"
    found = nodes(report)
    assert (found["classify"]["status"], found["route"]["status"], found["refund"]["status"]) == (
        "ok",
        "cancelled",
        "cancelled",
    )
    assert report["critical_path"]["nodes"] == ["classify", "route", "refund"]


def test_a_switch_skipped_by_its_when_runs_no_case(tmp_path: Path) -> None:
    text = ROUTING.replace("  - id: route\n", '  - id: route\n    when: "{{ false }}"\n').replace(
        'input: "{{ stages.route.case }}|{{ stages.route.output.content }}"', 'input: "{{ prev.content }}"'
    )
    outcome, report = run(tmp_path, text)
    assert outcome.status == "ok", outcome.error
    assert outcome.stages["route"] is None and outcome.output.content == "closer<closer<billing>>"
    assert nodes(report)["route"]["status"] == "skipped"
    assert "refund" not in nodes(report)


# -- as users run it -------------------------------------------------------------------------------------------------


def test_runner_run_and_graph_on_a_switch(tmp_path: Path) -> None:
    path = write(tmp_path, ROUTING)
    proc = run_cli("run", str(path), "--report-dir", str(tmp_path / "reports"), "--quiet", "--set", "ticket=an error")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "closer<tech|tech<an error>>\n"
    graph = run_cli("graph", str(path))
    assert graph.returncode == 0, graph.stderr
    assert graph.stdout.splitlines()[2:11] == [
        "  2. route: switch on {{ stages.classify.content }}: 2 cases and a default",
        "     case billing:",
        "       1. refund: agent billing (model desk_m, scripted)",
        "       2. confirm: agent billing (model desk_m, scripted)",
        "     case tech:",
        "       1. debug: agent tech (model desk_m, scripted)",
        "     default:",
        "       1. fallback: agent triage (model desk_m, scripted)",
        "  3. after: agent closer (model desk_m, scripted)",
    ]
    mermaid = render_mermaid(compile_workflow(load_workflow(path)))
    assert_mermaid_well_formed(mermaid)
    lines = mermaid.splitlines()
    assert '  n_route{"route: switch on #123;#123; stages.classify.content #125;#125;: 2 cases and a default"}' in lines
    assert "  n_route --> n_route_case1_debug" in lines and "  n_route --> n_route_default_fallback" in lines


# -- runner validate -------------------------------------------------------------------------------------------------


def problems_of(tmp_path: Path, text: str) -> list[tuple[int, int, str, str, str, str]]:
    path = write(tmp_path, text, "mutant.yaml")
    _, found = check_file(path)
    return [(p.line, p.column, p.severity, p.rule, p.message, p.hint) for p in found]


def at(text: str, needle: str, occurrence: int = 1) -> tuple[int, int]:
    """The 1-based line and column of ``needle`` (its n-th occurrence) in ``text``."""
    index = -1
    for _ in range(occurrence):
        index = text.index(needle, index + 1)
    return text.count("\n", 0, index) + 1, index - (text.rfind("\n", 0, index) + 1) + 1


def test_duplicate_case_keys_are_an_error_at_the_second(tmp_path: Path) -> None:
    mutant = ROUTING.replace("        tech:\n", "        billing:\n")
    first = at(mutant, "billing:\n")
    assert problems_of(tmp_path, mutant) == [
        (
            *at(mutant, "billing:\n", 2),
            "error",
            "duplicate-key",
            f"duplicate key 'billing' (first defined at line {first[0]}, column {first[1]})",
            "remove one of the two; YAML keeps only the last, which silently drops the first",
        )
    ]
    proc = run_cli("validate", str(tmp_path / "mutant.yaml"))
    line, column = at(mutant, "billing:\n", 2)
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[0] == (
        f"{tmp_path / 'mutant.yaml'}:{line}:{column}: error: duplicate key 'billing' (first defined at line "
        f"{first[0]}, column {first[1]}) [duplicate-key]"
    )


def test_a_number_and_its_text_are_the_same_case(tmp_path: Path) -> None:
    mutant = WORDS.replace("VALUE", "1").replace("        no: [", '        "1": [')
    first = at(mutant, '"1": [')
    line, column = at(mutant, "        1: [")
    assert problems_of(tmp_path, mutant) == [
        (
            line,
            column + 8,
            "error",
            "duplicate-key",
            f"duplicate key '1' (first defined at line {first[0]}, column {first[1]})",
            "remove one of the two; YAML keeps only the last, which silently drops the first",
        )
    ]


def test_an_on_that_reads_an_undefined_name_is_an_error_at_it(tmp_path: Path) -> None:
    mutant = ROUTING.replace('on: "{{ stages.classify.content }}"', 'on: "{{ stages.clasify.content }}"')
    assert problems_of(tmp_path, mutant) == [
        (
            *at(mutant, "stages.clasify"),
            "error",
            "unknown-stage",
            "stages.clasify: there is no stage 'clasify'",
            "did you mean 'classify'?",
        )
    ]
    mutant = ROUTING.replace('on: "{{ stages.classify.content }}"', 'on: "{{ label }}"')
    assert problems_of(tmp_path, mutant) == [
        (
            *at(mutant, "label }}"),
            "error",
            "unknown-name",
            "'label' is not defined in the on of stage 'route'",
            "templates here see: inputs, prev, run, stages, vars",
        )
    ]


def test_reading_a_cases_stage_after_the_switch_needs_a_check(tmp_path: Path) -> None:
    mutant = ROUTING.replace('input: "{{ stages.route.case }}|', 'input: "{{ stages.refund.content }}|')
    assert problems_of(tmp_path, mutant) == [
        (
            *at(mutant, "stages.refund.content }}|"),
            "error",
            "stage-not-ready",
            "stages.refund may have no output in the input of stage 'final': stage 'refund' runs in case 'billing' "
            "of switch 'route', and only the case that 'on' picks runs",
            "check it first: {% if stages.refund is defined %}...{% endif %}, or read stages.route.output, the last "
            "output of the case that ran",
        )
    ]
    guarded = ROUTING.replace(
        'input: "{{ stages.route.case }}|',
        'input: "{% if stages.refund is defined %}{{ stages.refund.content }}{% endif %}|',
    )
    assert problems_of(tmp_path, guarded) == [
        (
            *at(guarded, "stages.refund is defined"),
            "warning",
            "stage-maybe-skipped",
            "stages.refund may have no output in the input of stage 'final': stage 'refund' runs in case 'billing' of "
            "switch 'route', and only the case that 'on' picks runs; a check guards it",
            "make sure every read of it is behind that check",
        )
    ]


def test_a_case_cannot_read_another_cases_stage(tmp_path: Path) -> None:
    mutant = ROUTING.replace(
        "- {id: debug, agent: tech}", '- {id: debug, agent: tech, input: "{{ stages.refund.content }}"}'
    )
    assert problems_of(tmp_path, mutant) == [
        (
            *at(mutant, 'stages.refund.content }}"}', 2),
            "error",
            "stage-not-ready",
            "stages.refund is not available in the input of stage 'debug': stage 'refund' runs in case 'billing' of "
            "switch 'route', and only one case runs",
            "read it after switch 'route', behind a check: {% if stages.refund is defined %}",
        )
    ]


def test_a_switchs_output_is_its_case_and_output_not_a_message(tmp_path: Path) -> None:
    mutant = ROUTING.replace("{{ stages.route.output.content }}", "{{ stages.route.content }}")
    assert problems_of(tmp_path, mutant) == [
        (
            *at(mutant, "stages.route.content"),
            "error",
            "no-attribute",
            "stages.route.content: stages.route is a switch's outcome, not a message",
            "read stages.route.output.content: the output of the case that ran",
        )
    ]


def test_stage_ids_in_cases_are_unique_with_every_other_stage(tmp_path: Path) -> None:
    mutant = ROUTING.replace("- {id: debug, agent: tech}", "- {id: refund, agent: tech}")
    assert [p for p in problems_of(tmp_path, mutant) if p[3] == "duplicate-id"] == [
        (
            *at(mutant, "refund", 3),
            "error",
            "duplicate-id",
            f"stage id 'refund' is already used at line {at(mutant, 'refund')[0]}",
            "give every stage, nested ones included, its own id",
        )
    ]


def test_a_switch_without_cases_is_an_error_at_it(tmp_path: Path) -> None:
    text = ROUTING[: ROUTING.index("      cases:")] + "  - {id: after, agent: closer}\n"
    assert problems_of(tmp_path, text) == [
        (
            *at(text, 'on: "'),
            "error",
            "schema",
            "stages[1] (id='route').switch: missing required key 'cases'",
            "add 'cases'",
        )
    ]


def test_a_workflow_that_ends_in_a_switch_prints_its_cases_last_output(tmp_path: Path) -> None:
    text = ROUTING[: ROUTING.index("  - {id: after, agent: closer}")].replace("  closer: {model: desk_m}\n", "")
    proc = run_cli("run", str(write(tmp_path, text)), "--report-dir", str(tmp_path / "reports"), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "billing<confirm billing<my invoice is wrong>>\n"


FLAKY = """\
calls = []


def flaky(input):
    calls.append(input)
    if len(calls) == 1:
        raise ValueError("first attempt fails")
    return "refunded"
"""


def test_a_retried_switch_runs_its_case_again(tmp_path: Path) -> None:
    (tmp_path / "switch_tools_retry.py").write_text(FLAKY, encoding="utf-8")
    text = ROUTING.replace("- {id: refund, agent: billing}", '- {id: refund, python: "switch_tools_retry:flaky"}')
    text = text.replace("  - id: route\n", "  - id: route\n    retry: {max_attempts: 2, initial_delay: 0}\n")
    outcome, report = run(tmp_path, text)
    assert outcome.status == "ok", outcome.error
    assert outcome.stages["route"].output.content == "billing<confirm refunded>"
    route = nodes(report)["route"]
    assert (route["status"], route["case"], len(route["retry_events"])) == ("ok", "billing", 1)
