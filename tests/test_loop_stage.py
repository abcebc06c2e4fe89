"""The `loop` stage (issue 16, item 4): a bounded loop whose iterations run through the engine's services, see
`loop`, hand their outputs on, appear as spans on the critical path, and say what ended them; and what
`runner validate` says about a loop, at its exact place."""

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
from runner.plan.graph import render_mermaid, render_text
from runner.report.markdown import to_markdown
from runner.report.summary import format_summary
from runner.validate.check import check_file, load_workflow
from runner.workflow.inputs import resolve_inputs
from tests.conftest import ROOT, assert_valid_report, run_cli
from tests.graph_check import assert_mermaid_well_formed

REFINE = """\
version: 1
name: refine
models:
  writer_m:
    provider: scripted
    reply: "draft {{ loop.iteration }}{% if loop.previous %} after {{ loop.previous.critique.content }}{% endif %}"
  critic_m:
    provider: scripted
    reply: "{{ 'APPROVED' if loop.iteration >= vars.approve_at else 'REVISE ' ~ loop.iteration }}"
  plain: {provider: scripted, reply: "{{ agent.name }}<{{ input }}>"}
agents:
  writer: {model: writer_m}
  critic: {model: critic_m, vars: {approve_at: 2}}
  closer: {model: plain}
stages:
  - id: improve
    input: topic
    loop:
      max_iterations: 4
      until: "{{ stages.critique.content == 'APPROVED' }}"
      stages:
        - {id: revise, agent: writer}
        - {id: critique, agent: critic}
  - {id: after, agent: closer}
  - id: final
    agent: closer
    input: "{{ stages.revise.content }}|{{ stages.improve | length }}|{{ stages.improve[0].critique.content }}"
"""


def write(tmp_path: Path, text: str, name: str = "wf.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def run(tmp_path: Path, text: str, watch: Any = None) -> tuple[RunOutcome, dict[str, Any]]:
    path = write(tmp_path, text)
    _, problems = check_file(path)
    assert problems == []
    wf = load_workflow(path)
    outcome = run_plan(compile_workflow(wf), resolve_inputs(wf, []), run_dir=tmp_path / "run", watch=watch)
    report = outcome.report()
    assert_valid_report(report)
    return outcome, report


def nodes(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["id"]: n for n in report["nodes"]}


def test_the_loop_runs_until_its_condition_holds_and_hands_on_its_iterations(tmp_path: Path) -> None:
    outcome, report = run(tmp_path, REFINE)
    assert outcome.status == "ok", outcome.error
    iterations = outcome.stages["improve"]
    assert [{k: v.content for k, v in it.items()} for it in iterations] == [
        {"revise": "draft 1", "critique": "REVISE 1"},
        {"revise": "draft 2 after REVISE 1", "critique": "APPROVED"},
    ]
    assert outcome.stages["revise"].content == "draft 2 after REVISE 1"  # the last iteration's
    assert outcome.stages["after"].content == "closer<APPROVED>"  # the default input: the last output's text
    assert outcome.output.content == "closer<draft 2 after REVISE 1|2|REVISE 1>"

    found = nodes(report)
    assert found["improve"]["kind"] == "loop" and found["improve"]["status"] == "ok"
    assert (found["improve"]["iterations"], found["improve"]["ended_by"]) == (2, "until")
    assert "warning" not in found["improve"]
    assert {i: found[i]["kind"] for i in ("improve[1]", "improve[2]")} == {
        "improve[1]": "iteration",
        "improve[2]": "iteration",
    }
    assert found["improve[2].critique"]["status"] == "ok" and "improve[3]" not in found
    # the iterations ran one after another: the critical path goes through each of them, in order
    assert report["critical_path"]["nodes"] == [
        "improve",
        "improve[1]",
        "improve[1].revise",
        "improve[1].critique",
        "improve[2]",
        "improve[2].revise",
        "improve[2].critique",
        "after",
        "final",
    ]
    assert "loop improve: its until held after 2 iterations" in format_summary(report).splitlines()


def test_a_loop_stopped_by_max_iterations_is_a_warning_with_the_setting(tmp_path: Path) -> None:
    outcome, report = run(tmp_path, REFINE.replace("approve_at: 2", "approve_at: 9"))
    assert outcome.status == "ok"
    assert len(outcome.stages["improve"]) == 4
    loop = nodes(report)["improve"]
    assert (loop["iterations"], loop["ended_by"]) == (4, "max_iterations")
    warning = (
        "loop 'improve' stopped at max_iterations (4) before its until was met: raise "
        "`stages[0].loop.max_iterations`, or check that `{{ stages.critique.content == 'APPROVED' }}` can become true"
    )
    assert loop["warning"] == warning
    assert f"warning: {warning}" in format_summary(report).splitlines()
    markdown = to_markdown(report)
    assert f"## Loops and switches\n\n- warning: {warning}\n" in markdown


def test_a_loop_without_until_runs_max_iterations_and_that_is_no_warning(tmp_path: Path) -> None:
    text = REFINE.replace("      until: \"{{ stages.critique.content == 'APPROVED' }}\"\n", "").replace(
        "max_iterations: 4", "max_iterations: 3"
    )
    outcome, report = run(tmp_path, text)
    assert outcome.status == "ok"
    loop = nodes(report)["improve"]
    assert (loop["iterations"], loop["ended_by"], "warning" in loop) == (3, "max_iterations", False)
    assert "loop improve: ran its max_iterations after 3 iterations" in format_summary(report).splitlines()


PER_ITEM = """\
version: 1
name: per-item
models:
  counter: {provider: scripted, reply: "{{ vars.n }}:{{ loop.iteration }}", latency: {first_token_ms: 5}}
agents:
  count: {model: counter}
stages:
  - id: fan
    fanout:
      for_each: [1, 3, 2]
      as: n
      stages:
        - id: improve
          loop:
            max_iterations: 5
            until: "{{ loop.iteration >= vars.n }}"
            stages:
              - {id: step, agent: count}
"""


def test_loops_in_parallel_branches_each_see_their_own_iteration(tmp_path: Path) -> None:
    outcome, report = run(tmp_path, PER_ITEM)
    assert outcome.status == "ok", outcome.error
    assert [[it["step"].content for it in branch] for branch in outcome.stages["fan"]] == [
        ["1:1"],
        ["3:1", "3:2", "3:3"],
        ["2:1", "2:2"],
    ]
    found = nodes(report)
    assert [found[f"fan[{i}].improve"]["iterations"] for i in range(3)] == [1, 3, 2]
    assert found["fan[1].improve[3].step"]["kind"] == "agent"


NESTED = """\
version: 1
name: nested
models:
  m: {provider: scripted, reply: "{{ input }}/{{ loop.iteration }}"}
agents:
  a: {model: m}
stages:
  - id: outer
    input: go
    loop:
      max_iterations: 2
      stages:
        - id: inner
          loop:
            max_iterations: 2
            stages:
              - {id: deep, agent: a}
        - {id: back, agent: a, input: "outer {{ loop.iteration }} after {{ stages.inner | length }}"}
"""


def test_a_nested_loop_has_its_own_loop_and_gives_the_outer_one_back(tmp_path: Path) -> None:
    outcome, _ = run(tmp_path, NESTED)
    assert outcome.status == "ok", outcome.error
    assert [[d["deep"].content for d in it["inner"]] for it in outcome.stages["outer"]] == [
        ["go/1", "go/1/2"],
        ["outer 1 after 2/1/1", "outer 1 after 2/1/1/2"],
    ]
    assert [it["back"].content for it in outcome.stages["outer"]] == ["outer 1 after 2/1", "outer 2 after 2/2"]


TOOLS = """\
import asyncio

calls = []


async def check(input):
    calls.append(input)
    if input == "hang":
        await asyncio.Event().wait()  # until cancelled
    if input == "fail":
        raise ValueError("bad draft")
    if input == "flaky" and len(calls) == 1:
        raise ValueError("first attempt fails")
    return "checked " + input


async def boom():
    await asyncio.sleep(0.05)
    raise ValueError("boom")
"""

FAILING = """\
version: 1
name: failing
models:
  m: {provider: scripted}
agents:
  a: {model: m}
stages:
  - id: improve
    loop:
      max_iterations: 5
      stages:
        - {id: write, agent: a}
        - {id: check, python: "MODULE:check", input: "{{ 'ok' if loop.iteration == 1 else 'WHAT' }}"}
"""


def with_tools(tmp_path: Path, text: str, what: str, module: str) -> str:
    (tmp_path / f"{module}.py").write_text(TOOLS, encoding="utf-8")
    return text.replace("MODULE", module).replace("WHAT", what)


def test_a_failure_in_an_iteration_fails_the_loop_with_the_iterations_done(tmp_path: Path) -> None:
    outcome, report = run(tmp_path, with_tools(tmp_path, FAILING, "fail", "loop_tools_fail"))
    assert outcome.status == "failed"
    assert (
        report["run"]["error"] == "python stage 'improve[2].check' (loop_tools_fail:check) raised ValueError: bad draft"
    )
    found = nodes(report)
    assert (found["improve"]["status"], found["improve"]["iterations"]) == ("failed", 1)
    assert [found[f"improve[{i}]"]["status"] for i in (1, 2)] == ["ok", "failed"]


def test_a_retried_loop_runs_again_from_its_first_iteration(tmp_path: Path) -> None:
    text = with_tools(tmp_path, FAILING, "flaky", "loop_tools_retry").replace(
        "    loop:\n      max_iterations: 5",
        "    retry: {max_attempts: 2, initial_delay: 0}\n    loop:\n      max_iterations: 2",
    )
    outcome, report = run(tmp_path, text.replace("'ok' if loop.iteration == 1 else 'flaky'", "'flaky'"))
    assert outcome.status == "ok", outcome.error
    loop = nodes(report)["improve"]
    assert (loop["status"], loop["iterations"], len(loop["retry_events"])) == ("ok", 2, 1)
    assert [it["check"].content for it in outcome.stages["improve"]] == ["checked flaky", "checked flaky"]


def test_a_loops_timeout_stops_the_iteration_under_way(tmp_path: Path) -> None:
    text = with_tools(tmp_path, FAILING, "hang", "loop_tools_timeout").replace(
        "    loop:\n", "    timeout: 0.5\n    loop:\n"
    )
    outcome, report = run(tmp_path, text)
    assert outcome.status == "failed"
    assert report["run"]["error"] == "stage 'improve' timed out after 0.5 s"
    found = nodes(report)
    assert (found["improve"]["status"], found["improve"]["timeout_s"]) == ("failed", 0.5)
    assert [found[f"improve[{i}]"]["status"] for i in (1, 2)] == ["ok", "cancelled"]


FAIL_FAST = """\
version: 1
name: failfast
models:
  m: {provider: scripted}
agents:
  a: {model: m}
stages:
  - id: both
    fanout:
      branches:
        - - id: improve
            loop:
              max_iterations: 5
              stages:
                - {id: write, agent: a}
                - {id: check, python: "MODULE:check", input: "{{ 'ok' if loop.iteration == 1 else 'hang' }}"}
        - - {id: fails, python: "MODULE:boom"}
"""


def test_fail_fast_cancels_a_loop_in_a_sibling_branch(tmp_path: Path) -> None:
    outcome, report = run(tmp_path, with_tools(tmp_path, FAIL_FAST, "", "loop_tools_ff"))
    assert outcome.status == "failed"
    assert report["run"]["error"] == "python stage 'fails' (loop_tools_ff:boom) raised ValueError: boom"
    found = nodes(report)
    assert (found["improve"]["status"], found["improve"]["iterations"]) == ("cancelled", 1)
    assert [found[f"improve[{i}]"]["status"] for i in (1, 2)] == ["ok", "cancelled"]


def test_ctrl_c_in_a_loop_leaves_a_partial_report_with_the_iterations_done(tmp_path: Path) -> None:
    async def interrupt_in_iteration_2(recorder: Recorder, _info: Any) -> None:
        while not any(e[1] == "started" and e[2] == "improve[2].check" for e in recorder.events):  # noqa: ASYNC110
            await asyncio.sleep(0.002)
        os.kill(os.getpid(), signal.SIGINT)

    text = with_tools(tmp_path, FAILING, "hang", "loop_tools_sigint")
    outcome, report = run(tmp_path, text, watch=interrupt_in_iteration_2)
    assert outcome.status == "interrupted"
    found = nodes(report)
    assert (found["improve"]["status"], found["improve"]["iterations"]) == ("cancelled", 1)
    assert [found[f"improve[{i}]"]["status"] for i in (1, 2)] == ["ok", "cancelled"]
    assert found["improve[1].check"]["status"] == "ok"
    assert report["critical_path"]["nodes"][:4] == ["improve", "improve[1]", "improve[1].write", "improve[1].check"]


# -- as users run it -------------------------------------------------------------------------------------------------


def test_runner_run_says_what_ended_the_loop_and_graph_draws_it(tmp_path: Path) -> None:
    proc = run_cli("run", "workflows/review-loop.yaml", "--report-dir", str(tmp_path), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "publisher: APPROVED after 3 rounds\n"
    summary = run_cli("report", str(next(tmp_path.glob("*.json"))))
    assert summary.returncode == 0, summary.stderr
    lines = summary.stdout.splitlines()
    assert "loop rounds: its until held after 3 iterations" in lines
    assert "switch route: case 'APPROVED' ran" in lines
    assert next(line for line in lines if line.startswith("critical path: ")) == (
        "critical path: rounds -> rounds[1] -> rounds[1].draft -> rounds[1].critique -> rounds[2] -> "
        "rounds[2].draft -> rounds[2].critique -> rounds[3] -> rounds[3].draft -> rounds[3].critique -> route -> "
        "publish -> notify"
    )

    graph = run_cli("graph", "workflows/review-loop.yaml")
    assert graph.returncode == 0, graph.stderr
    assert graph.stdout.splitlines()[:5] == [
        "review-loop: 3 stages",
        "  1. rounds: loop of 2 stages, at most 4 times until {{ stages.critique.content == 'APPROVED' }}",
        "     each iteration:",
        "       1. draft: agent writer (model writer_model, scripted)",
        "       2. critique: agent critic (model critic_model, scripted)",
    ]
    mermaid = render_mermaid(compile_workflow(load_workflow(ROOT / "workflows" / "review-loop.yaml")))
    assert_mermaid_well_formed(mermaid)
    assert "  n_rounds --> n_rounds_body_draft" in mermaid.splitlines()


def graph_of(tmp_path: Path, text: str) -> list[str]:
    return render_text(compile_workflow(load_workflow(write(tmp_path, text)))).splitlines()


def test_graph_says_a_loop_without_until_runs_its_count(tmp_path: Path) -> None:
    text = REFINE.replace("      until: \"{{ stages.critique.content == 'APPROVED' }}\"\n", "")
    assert graph_of(tmp_path, text)[1] == "  1. improve: loop of 2 stages, at most 4 times"


# -- runner validate -------------------------------------------------------------------------------------------------

EXAMPLE = (ROOT / "workflows" / "review-loop.yaml").read_text(encoding="utf-8")


def problems_of(tmp_path: Path, text: str) -> list[tuple[int, int, str, str, str, str]]:
    path = write(tmp_path, text, "mutant.yaml")
    _, found = check_file(path)
    return [(p.line, p.column, p.severity, p.rule, p.message, p.hint) for p in found]


def at(text: str, needle: str, occurrence: int = 1) -> tuple[int, int]:
    """The 1-based line and column of ``needle`` (its n-th occurrence) in ``text``."""
    index = -1
    for _ in range(occurrence):
        index = text.index(needle, index + 1)
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def test_the_example_validates_clean(tmp_path: Path) -> None:
    assert problems_of(tmp_path, EXAMPLE) == []


def test_a_loop_without_max_iterations_is_an_error_at_the_loop(tmp_path: Path) -> None:
    mutant = EXAMPLE.replace("      max_iterations: 4                # required: a loop is always bounded\n", "")
    assert problems_of(tmp_path, mutant) == [
        (
            *at(mutant, "until: "),
            "error",
            "schema",
            "stages[0] (id='rounds').loop: missing required key 'max_iterations'",
            "add 'max_iterations: N' (N >= 1): a loop must be bounded; the report warns when it stops there before "
            "'until' holds",
        )
    ]
    proc = run_cli("validate", str(tmp_path / "mutant.yaml"))
    line, column = at(mutant, "until: ")
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[0] == (
        f"{tmp_path / 'mutant.yaml'}:{line}:{column}: error: stages[0] (id='rounds').loop: missing required key "
        "'max_iterations' [schema]"
    )


@pytest.mark.parametrize("count", ["0", "-2"])
def test_max_iterations_under_one_is_an_error_at_its_value(tmp_path: Path, count: str) -> None:
    mutant = EXAMPLE.replace("max_iterations: 4", f"max_iterations: {count}")
    assert problems_of(tmp_path, mutant) == [
        (
            *at(mutant, count + "                # required"),
            "error",
            "schema",
            f"stages[0] (id='rounds').loop.max_iterations: must be >= 1, got {count}",
            "use a value >= 1",
        )
    ]


def test_an_until_that_reads_an_undefined_stage_is_an_error_at_the_name(tmp_path: Path) -> None:
    mutant = EXAMPLE.replace('until: "{{ stages.critique.content', 'until: "{{ stages.critiqe.content')
    assert problems_of(tmp_path, mutant) == [
        (
            *at(mutant, "stages.critiqe"),
            "error",
            "unknown-stage",
            "stages.critiqe: there is no stage 'critiqe'",
            "did you mean 'critique'?",
        )
    ]


def test_loop_outside_a_loop_is_an_error_that_names_the_caller(tmp_path: Path) -> None:
    mutant = EXAMPLE.replace("- {id: publish, agent: publisher,", "- {id: publish, agent: writer,")
    assert problems_of(tmp_path, mutant) == [
        (
            *at(mutant, "loop.iteration"),
            "error",
            "unknown-name",
            "'loop' is not defined in the templates of model 'writer_model' when stage 'publish' calls it",
            "'loop' exists only in the stages of a loop stage (and its 'until'), and in the templates of the agents "
            "and models only they call",
        ),
        (
            *at(mutant, "loop.previous", 1),
            "error",
            "unknown-name",
            "'loop' is not defined in the templates of model 'writer_model' when stage 'publish' calls it",
            "'loop' exists only in the stages of a loop stage (and its 'until'), and in the templates of the agents "
            "and models only they call",
        ),
        (
            *at(mutant, "loop.previous", 2),
            "error",
            "unknown-name",
            "'loop' is not defined in the templates of model 'writer_model' when stage 'publish' calls it",
            "'loop' exists only in the stages of a loop stage (and its 'until'), and in the templates of the agents "
            "and models only they call",
        ),
    ]


def test_an_unchecked_read_of_the_previous_iteration_is_an_error(tmp_path: Path) -> None:
    mutant = EXAMPLE.replace("{% if loop.previous %}, now with", ", now with").replace(
        "[8:] }}{% endif %}.", "[8:] }}."
    )
    assert problems_of(tmp_path, mutant) == [
        (
            *at(mutant, "loop.previous"),
            "error",
            "stage-not-ready",
            "loop.previous is None in the first iteration, and the templates of model 'writer_model' reads it "
            "without a check",
            "check it first: {% if loop.previous %}...{% endif %}, or "
            "{{ loop.previous.<id>.content if loop.previous else '' }}",
        )
    ]


def test_a_later_stage_of_the_same_iteration_points_at_loop_previous(tmp_path: Path) -> None:
    mutant = EXAMPLE.replace('input: "Write about {{ inputs.topic }}."', 'input: "{{ stages.critique.content }}"')
    assert problems_of(tmp_path, mutant) == [
        (
            *at(mutant, 'stages.critique.content }}"\n'),
            "error",
            "stage-not-ready",
            "stages.critique is not available in the input of stage 'draft': stage 'critique' runs later in each "
            "iteration of loop 'rounds'",
            "read the previous iteration's as loop.previous.critique (loop.previous is None in the first iteration: "
            "{% if loop.previous %}...{% endif %})",
        )
    ]


def test_a_stage_id_in_a_loop_that_another_stage_has_is_an_error_at_it(tmp_path: Path) -> None:
    mutant = EXAMPLE.replace(
        "        - id: critique                 # reads", "        - id: notify                   # reads"
    )
    found = [p for p in problems_of(tmp_path, mutant) if p[3] == "duplicate-id"]
    assert found == [
        (
            *at(mutant, "notify", 2),
            "error",
            "duplicate-id",
            f"stage id 'notify' is already used at line {at(mutant, 'notify')[0]}",
            "give every stage, nested ones included, its own id",
        )
    ]


def test_a_workflow_that_ends_in_a_loop_prints_its_last_output(tmp_path: Path) -> None:
    text = REFINE[: REFINE.index("  - {id: after, agent: closer}")].replace("  closer: {model: plain}\n", "")
    text = text.replace('  plain: {provider: scripted, reply: "{{ agent.name }}<{{ input }}>"}\n', "")
    proc = run_cli("run", str(write(tmp_path, text)), "--report-dir", str(tmp_path / "reports"), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "APPROVED\n"


def test_what_a_loop_hands_out_is_checked_where_it_is_read(tmp_path: Path) -> None:
    # the first stage of an iteration starts from the loop's input (text) in the first iteration
    mutant = EXAMPLE.replace('input: "Write about {{ inputs.topic }}."', 'input: "{{ prev.content }}"')
    assert problems_of(tmp_path, mutant) == [
        (
            *at(mutant, "prev.content"),
            "error",
            "no-attribute",
            "prev.content: prev is text in the input of stage 'draft' in the first iteration (the loop's input), not "
            "a message",
            "use '{{ prev }}' for the text, or loop.previous.<id>.content for the previous iteration's (behind "
            "{% if loop.previous %})",
        )
    ]
    # after it, stages.<loop id> is the list of iterations
    mutant = EXAMPLE.replace("{{ stages.rounds | length }} rounds: ", "{{ stages.rounds.content }}: ")
    assert problems_of(tmp_path, mutant) == [
        (
            *at(mutant, "stages.rounds.content"),
            "error",
            "no-attribute",
            "stages.rounds.content: stages.rounds is a list (a loop's iterations, each its stages' outputs by id), "
            "not a message",
            "read the last iteration's stage by its own id (stages.<id>), or index it: stages.rounds[-1].<id>.content",
        )
    ]


FAN_IN_LOOP = """\
version: 1
name: fan-in-loop
models:
  m: {provider: scripted, reply: "{{ vars.item | default('b') }}@{{ loop.iteration }}"}
agents:
  a: {model: m}
stages:
  - id: rounds
    loop:
      max_iterations: 2
      stages:
        - id: each
          fanout: {for_each: [x, y], agent: a}
        - id: both
          fanout:
            branches:
              - [{id: left, agent: a}]
              - [{id: right, agent: a}]
"""


def test_fan_outs_inside_a_loop_see_its_iteration_in_every_branch(tmp_path: Path) -> None:
    outcome, report = run(tmp_path, FAN_IN_LOOP)
    assert outcome.status == "ok", outcome.error
    assert [[o.content for o in it["each"]] for it in outcome.stages["rounds"]] == [["x@1", "y@1"], ["x@2", "y@2"]]
    assert [(it["left"].content, it["right"].content) for it in outcome.stages["rounds"]] == [
        ("b@1", "b@1"),
        ("b@2", "b@2"),
    ]
    assert {"rounds[2].each[1]", "rounds[2].both[1]", "rounds[2].left", "rounds[2].right"} <= set(nodes(report))
    path = report["critical_path"]["nodes"]
    assert path[:3] == ["rounds", "rounds[1]", "rounds[1].each"] and "rounds[2].both" in path
    assert all(node.startswith("rounds") for node in path)
