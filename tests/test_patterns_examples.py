"""The agent-pattern examples of workflows/ (issue 16, item 7): routing, orchestrator-workers and evaluator-optimizer
run offline as users run them and do what their description says; and the bar "a mutation of each (a misspelled
field, for_each over an object, a missing max_iterations, a case not in the enum) is reported at its exact line",
checked with `runner validate` as users run it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.timeout(120)

WORKFLOWS = ROOT / "workflows"
PATTERNS = ("routing.yaml", "orchestrator-workers.yaml", "evaluator-optimizer.yaml")


def text_of(name: str) -> str:
    return (WORKFLOWS / name).read_text(encoding="utf-8")


def at(text: str, needle: str) -> tuple[int, int]:
    """The 1-based line and column of the one ``needle`` in ``text``."""
    assert text.count(needle) == 1, needle
    index = text.index(needle)
    return text.count("\n", 0, index) + 1, index - (text.rfind("\n", 0, index) + 1) + 1


def report_of(folder: Path) -> dict:
    (path,) = folder.glob("*Z.json")
    return json.loads(path.read_text(encoding="utf-8"))


# -- they run, offline, as the README says -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ticket", "desk"),
    [
        (None, "Billing desk: we are on it. (Ticket: I was charged twice for my March invoice.)"),
        ("The app shows an error on start", "Technical desk: we are on it. (Ticket: The app shows an error on start)"),
        ("Do you ship to Norway?", "Frontdesk desk: we are on it. (Ticket: Do you ship to Norway?)"),
    ],
)
def test_routing_hands_the_ticket_to_the_desk_of_its_label(tmp_path: Path, ticket: str | None, desk: str) -> None:
    sets = ["--set", f"ticket={ticket}"] if ticket is not None else []
    proc = run_cli("run", "workflows/routing.yaml", "--report-dir", str(tmp_path), "--quiet", *sets)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == desk + "\n"
    report = report_of(tmp_path)
    route = next(n for n in report["nodes"] if n["id"] == "route")
    label = desk.split()[0].lower().replace("frontdesk", "other")
    assert (route["case"], route["reason"]) == (label, f"on gave {label!r}")


def test_orchestrator_workers_works_every_planned_subtask_and_merges(tmp_path: Path) -> None:
    proc = run_cli("run", "workflows/orchestrator-workers.yaml", "--report-dir", str(tmp_path), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (
        "Notes for users on release notes for runner 2.0, from 3 parts: "
        "Features: done, as asked (list the new features, one line each.) "
        "Fixes: done, as asked (summarise the bug fixes users will notice.) "
        "Upgrade: done, as asked (say what users must change to upgrade.)\n"
    )
    report = report_of(tmp_path)
    workers = [n for n in report["nodes"] if n["id"].startswith("work[")]
    assert [n["id"] for n in workers] == ["work[0]", "work[1]", "work[2]"]
    assert max(n["start_s"] for n in workers) < min(n["end_s"] for n in workers)  # the workers ran at once


def test_evaluator_optimizer_revises_until_the_critic_approves(tmp_path: Path) -> None:
    proc = run_cli("run", "workflows/evaluator-optimizer.yaml", "--report-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    approved = (
        "When a service fails, its clients retry, and if they all retry at once they fail again together. Jitter "
        "spreads their retries over time. With full jitter, a thousand clients retry over the whole back-off "
        "window, not in one burst."
    )
    lines = proc.stdout.splitlines()
    assert lines[1:4] == [
        '[improve[1].critique critic] {"approved": false, "feedback": "say what jitter does"}',
        "[improve[1].revise reviser] When a service fails, its clients retry, and if they all retry at once they "
        "fail again together. Jitter spreads their retries over time.",
        '[improve[2].critique critic] {"approved": false, "feedback": "give a number"}',
    ]
    assert lines[5:] == [
        '[improve[3].critique critic] {"approved": true, "feedback": "ready to publish"}',
        f"[publish publisher] {approved}",
    ]
    said = proc.stderr.splitlines()
    assert "loop improve: its until held after 3 iterations" in said
    assert "switch outcome: case 'True' ran" in said
    nodes = {n["id"]: n for n in report_of(tmp_path)["nodes"]}
    assert (nodes["improve"]["ended_by"], nodes["improve"]["iterations"]) == ("until", 3)
    assert nodes["improve[3].revise"]["status"] == "skipped"


def test_evaluator_optimizer_escalates_when_the_critic_never_approves(tmp_path: Path) -> None:
    text = text_of("evaluator-optimizer.yaml").replace("'approved': loop.iteration >= 3", "'approved': false")
    text = text.replace("[[loop.iteration, 3] | min - 1]", "[(loop.iteration - 1) % 2]")
    path = tmp_path / "never.yaml"
    path.write_text(text, encoding="utf-8")
    proc = run_cli("run", str(path), "--report-dir", str(tmp_path / "r"), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Not approved after 4 rounds: When a service fails")
    nodes = {n["id"]: n for n in report_of(tmp_path / "r")["nodes"]}
    assert (nodes["improve"]["ended_by"], nodes["improve"]["iterations"]) == ("max_iterations", 4)
    assert nodes["outcome"]["case"] == "False"


# -- a mutation of each is reported at its exact line -------------------------------------------------------------

MUTATIONS = [
    pytest.param(
        "routing.yaml",
        ('on: "{{ stages.classify.data.label }}"', 'on: "{{ stages.classify.data.lable }}"'),
        [
            (
                "stages.classify.data.lable",
                "error: stages.classify.data.lable: no field 'lable' in stages.classify.data (the output schema of "
                "stage 'classify') [data-field]",
                "did you mean 'label'?",
            )
        ],
        id="routing-misspelled-field",
    ),
    pytest.param(
        "routing.yaml",
        ("        technical: [", "        tech: ["),
        [
            (
                "cases:",
                "warning: switch 'route' has no case for 'technical', a value of stages.classify.data.label, and no "
                "default: for it no stage runs [switch-uncovered]",
                "add a case for each value, or a default: [stages] that runs for the rest",
            ),
            (
                "tech: [",
                "error: case 'tech' of switch 'route' never runs: on gives stages.classify.data.label, which is one of "
                "'billing', 'technical' or 'other' in the output schema of stage 'classify' [switch-case]",
                "did you mean 'technical'?",
            ),
        ],
        id="routing-case-not-in-enum",
    ),
    pytest.param(
        "orchestrator-workers.yaml",
        ('for_each: "{{ stages.plan.data.subtasks }}"', 'for_each: "{{ stages.plan.data.style }}"'),
        [
            (
                "{{ stages.plan.data.style }}",
                "error: for_each of stage 'work' gives stages.plan.data.style, which is a mapping in the output schema "
                "of stage 'plan', not a list [for-each-not-list]",
                "iterate over a field whose schema is an array (type: array), or make this one an array",
            )
        ],
        id="orchestrator-for-each-over-an-object",
    ),
    pytest.param(
        "orchestrator-workers.yaml",
        ("{{ vars.subtask.instructions }} (goal", "{{ vars.subtask.instruction }} (goal"),
        [
            (
                "vars.subtask.instruction ",
                "error: stages.plan.data.subtasks[*].instruction: no field 'instruction' in "
                "stages.plan.data.subtasks[*] (the output schema of stage 'plan') [data-field]",
                "did you mean 'instructions'?",
            )
        ],
        id="orchestrator-misspelled-field",
    ),
    pytest.param(
        "evaluator-optimizer.yaml",
        ("      max_iterations: 4                # required: at most four verdicts\n", ""),
        [
            (
                'until: "{{ stages.critique.data.approved }}"',
                "error: stages[1] (id='improve').loop: missing required key 'max_iterations' [schema]",
                "add 'max_iterations: N' (N >= 1): a loop must be bounded; the report warns when it stops there "
                "before 'until' holds",
            )
        ],
        id="evaluator-missing-max-iterations",
    ),
    pytest.param(
        "evaluator-optimizer.yaml",
        ('until: "{{ stages.critique.data.approved }}"', 'until: "{{ stages.critique.data.aproved }}"'),
        [
            (
                "stages.critique.data.aproved",
                "error: stages.critique.data.aproved: no field 'aproved' in stages.critique.data (the output schema "
                "of stage 'critique') [data-field]",
                "did you mean 'approved'?",
            )
        ],
        id="evaluator-misspelled-field",
    ),
]


@pytest.mark.parametrize(("name", "edit", "expected"), MUTATIONS)
def test_a_mutation_is_reported_at_its_exact_line(
    tmp_path: Path, name: str, edit: tuple[str, str], expected: list[tuple[str, str, str]]
) -> None:
    before, after = edit
    original = text_of(name)
    assert original.count(before) == 1, before
    text = original.replace(before, after)
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    proc = run_cli("validate", str(path))
    assert proc.returncode == 1, proc.stdout
    reported = [line for line in proc.stdout.splitlines() if line.startswith(f"{path}:")]
    hints = [line.removeprefix("       = hint: ") for line in proc.stdout.splitlines() if "= hint: " in line]
    located = [
        (f"{path}:{':'.join(map(str, at(text, needle)))}: {message}", hint) for needle, message, hint in expected
    ]
    assert list(zip(reported, hints, strict=True)) == located
    errors = sum(" error: " in line for line in reported)
    assert proc.stdout.splitlines()[-1] == f"{errors} error(s), {len(reported) - errors} warning(s) in 1 file(s)"


@pytest.mark.parametrize("name", PATTERNS)
def test_each_pattern_example_validates_clean_in_strict_mode(name: str) -> None:
    proc = run_cli("validate", "--strict", f"workflows/{name}")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "1 file(s) valid\n", "")


def test_a_tab_indenting_a_line_of_a_template_block_is_reported_at_the_tab(tmp_path: Path) -> None:
    """A line of a block scalar that starts with a word and a quote (`else 'technical' if ...` in routing.yaml's
    reply) was taken for a key without its ':' when a tab indented it: the tab is the mistake."""
    text = text_of("routing.yaml")
    line, _ = at(text, "else 'technical'")
    lines = text.split("\n")
    lines[line - 1] = "\t" + lines[line - 1][1:]
    path = tmp_path / "routing.yaml"
    path.write_text("\n".join(lines), encoding="utf-8")
    proc = run_cli("validate", str(path))
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[0] == (
        f"{path}:{line}:1: error: a tab character: YAML indents and separates with spaces only [yaml-syntax]"
    )
    assert "       = hint: replace the tab with spaces" in proc.stdout.splitlines()
