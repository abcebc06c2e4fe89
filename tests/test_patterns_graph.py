"""`runner graph` on the agent patterns (issue 16): a structured output shows its fields (what later stages read as
`stages.<id>.data`), and Mermaid draws a loop as the cycle it is, a dotted edge from its body back to it."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.plan.compile import compile_workflow
from runner.plan.graph import render_mermaid, render_text
from runner.validate.check import load_workflow
from tests.conftest import run_cli
from tests.graph_check import assert_mermaid_well_formed

pytestmark = pytest.mark.timeout(60)

GRAPHS = {
    "routing.yaml": [
        "routing: 2 stages",
        "  1. classify: agent classifier (model classifier_model, scripted; output {label, reason})",
        "  2. route: switch on {{ stages.classify.data.label }}: 3 cases",
        "     case billing:",
        "       1. billing_reply: agent billing (model desk_model, scripted)",
        "     case technical:",
        "       1. technical_reply: agent technical (model desk_model, scripted)",
        "     case other:",
        "       1. other_reply: agent frontdesk (model desk_model, scripted)",
    ],
    "orchestrator-workers.yaml": [
        "orchestrator-workers: 3 stages",
        "  1. plan: agent planner (model planner_model, scripted; output {subtasks, style})",
        "  2. work: fanout for each subtask in {{ stages.plan.data.subtasks }}, max 4 at once",
        "     each: agent worker (model worker_model, scripted)",
        "  3. merge: agent synthesiser (model synthesiser_model, scripted)",
    ],
    "evaluator-optimizer.yaml": [
        "evaluator-optimizer: 3 stages",
        "  1. draft: agent writer (model writer_model, scripted)",
        "  2. improve: loop of 2 stages, at most 4 times until {{ stages.critique.data.approved }}",
        "     each iteration:",
        "       1. critique: agent critic (model critic_model, scripted; output {approved, feedback})",
        "       2. revise: agent reviser (model reviser_model, scripted); when {{ not stages.critique.data.approved }}",
        "  3. outcome: switch on {{ stages.critique.data.approved }}: 2 cases",
        "     case True:",
        "       1. publish: agent publisher (model desk_model, scripted)",
        "     case False:",
        "       1. escalate: agent editor (model desk_model, scripted)",
    ],
}


@pytest.mark.parametrize("name", list(GRAPHS))
def test_runner_graph_shows_the_pattern(name: str) -> None:
    proc = run_cli("graph", f"workflows/{name}")
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout.splitlines() == GRAPHS[name]
    mermaid = run_cli("graph", "--format", "mermaid", f"workflows/{name}")
    assert mermaid.returncode == 0, mermaid.stderr
    assert_mermaid_well_formed(mermaid.stdout.rstrip("\n"))


def test_mermaid_draws_a_loop_back_from_its_body(tmp_path: Path) -> None:
    proc = run_cli("graph", "--format", "mermaid", "workflows/evaluator-optimizer.yaml")
    lines = proc.stdout.splitlines()
    assert lines[4:12] == [
        '  n_improve[["improve: loop of 2 stages, at most 4 times until #123;#123; stages.critique.data.approved '
        '#125;#125;"]]',
        "  n_draft --> n_improve",
        '  n_improve_body_critique["critique: agent critic (model critic_model, scripted; output #123;approved, '
        'feedback#125;)"]',
        "  n_improve --> n_improve_body_critique",
        '  n_improve_body_revise["revise: agent reviser (model reviser_model, scripted); when #123;#123; not '
        'stages.critique.data.approved #125;#125;"]',
        "  n_improve_body_critique --> n_improve_body_revise",
        "  n_improve_body_revise -.->|next iteration| n_improve",
        "  n_improve_join(( ))",
    ]
    # a loop nested in a fan-out's pipeline: its body goes back to it, not to the fan-out
    nested = tmp_path / "nested.yaml"
    nested.write_text(
        """\
version: 1
name: nested
models:
  m: {provider: scripted}
agents:
  a: {model: m}
stages:
  - id: each
    fanout:
      for_each: [1, 2]
      stages:
        - id: again
          loop:
            max_iterations: 2
            stages: [{id: one, agent: a}, {id: two, agent: a}]
""",
        encoding="utf-8",
    )
    mermaid = render_mermaid(compile_workflow(load_workflow(nested)))
    assert_mermaid_well_formed(mermaid)
    assert [line for line in mermaid.splitlines() if "-.->" in line] == [
        "  n_each_each_again_body_two -.->|next iteration| n_each_each_again"
    ]


def test_a_stages_own_output_wins_and_a_schema_without_fields_shows_its_type(tmp_path: Path) -> None:
    path = tmp_path / "outputs.yaml"
    path.write_text(
        """\
version: 1
name: outputs
models:
  m: {provider: scripted}
agents:
  voter:
    model: m
    output: {schema: {type: object, required: [vote], properties: {vote: {enum: [yes, no]}}}}
  lister:
    model: m
    output: {schema: {type: array, items: {type: string}}}
stages:
  - id: votes
    fanout: {for_each: [1, 2], agent: voter}
  - id: count
    agent: voter
    output: {schema: {type: object, required: [n], properties: {n: {type: integer}}}}
  - {id: names, agent: lister}
""",
        encoding="utf-8",
    )
    assert render_text(compile_workflow(load_workflow(path))).splitlines() == [
        "outputs: 3 stages",
        "  1. votes: fanout for each item in 2 items",
        "     each: agent voter (model m, scripted; output {vote})",
        "  2. count: agent voter (model m, scripted; output {n})",
        "  3. names: agent lister (model m, scripted; output (array))",
    ]
