"""What `runner validate` says about human gates (issue 23, item 2), at their exact place: an approve's `show`
naming no stage or one not finished before it, an ask's schema that is no JSON Schema, and templates reading a
field the ask's schema does not have. `runner run` refuses the same file before asking anyone."""

from __future__ import annotations

from runner.validate.check import check_file
from tests.conftest import run_cli

HEAD = """\
version: 1
name: gates
models:
  m: {provider: scripted, reply: "ok"}
agents:
  a: {model: m}
stages:
  - {id: draft, agent: a, input: "x"}
"""


def problems(path) -> list[tuple[int, int, str, str, str]]:
    _, diags = check_file(path)
    return [(d.line, d.column, d.rule, d.message, d.hint) for d in diags]


def test_show_names_stages_that_exist_and_finished_before_the_gate(write_wf) -> None:
    path = write_wf(
        HEAD
        + """\
  - id: review
    approve: {message: "ok?", show: [drafts, later, draft]}
  - {id: later, agent: a}
"""
    )
    assert problems(path) == [
        (
            10,
            38,
            "unknown-stage",
            "approve gate 'review' shows stage 'drafts', which does not exist",
            "did you mean 'draft'?",
        ),
        (
            10,
            46,
            "stage-not-ready",
            "approve gate 'review' shows stage 'later', which has not finished before it",
            "show a stage that runs before the gate (and not only inside a fan-out's pipeline)",
        ),
    ]


def test_an_ask_schema_that_is_no_json_schema_is_located_at_its_bad_key(write_wf) -> None:
    path = write_wf(
        HEAD
        + """\
  - id: pick
    ask:
      question: "how many?"
      schema:
        type: object
        properties:
          n: {type: int}
"""
    )
    assert problems(path) == [
        (
            15,
            15,
            "invalid-setting",
            "the schema of ask gate 'pick' is not a valid JSON Schema: \"int\" is not a type: use string, number, "
            "integer, boolean, object, array, null (at schema.properties.n.type)",
            "write a JSON Schema (draft 2020-12) the answer must match, such as {type: object, properties: {...}, "
            "required: [...]}",
        )
    ]
    proc = run_cli("run", str(path), "--approve", "x")
    assert proc.returncode == 1
    assert "[invalid-setting]" in proc.stderr and "is not a valid JSON Schema" in proc.stderr


def test_reads_of_the_answer_are_checked_against_the_ask_schema(write_wf) -> None:
    path = write_wf(
        HEAD
        + """\
  - id: pick
    ask:
      question: "which?"
      schema: {type: object, properties: {channel: {enum: [blog, mail]}, note: {type: string}}, required: [channel]}
  - {id: use, agent: a, input: "{{ stages.pick.data.chanel }} {{ stages.pick.data.note }}"}
"""
    )
    assert problems(path) == [
        (
            13,
            36,
            "data-field",
            "stages.pick.data.chanel: no field 'chanel' in stages.pick.data (the output schema of stage 'pick')",
            "did you mean 'channel'?",
        ),
        (
            13,
            66,
            "data-optional",
            "stages.pick.data.note: field 'note' is optional in the output schema of stage 'pick' (not in its "
            "required list), and a reply may leave it out",
            "add 'note' to required, or read it with a fallback: {{ stages.pick.data.note | default('') }}",
        ),
    ]


def test_a_clean_gated_workflow_validates(write_wf) -> None:
    path = write_wf(
        HEAD
        + """\
  - id: review
    approve: {message: "Publish {{ stages.draft.content }}?", show: [draft], timeout: 30, on_timeout: approve}
  - id: pick
    ask: {question: "which?", schema: {type: object, properties: {channel: {type: string}}, required: [channel]}}
  - {id: use, agent: a, input: "{{ stages.pick.data.channel }}"}
"""
    )
    assert problems(path) == []


def test_the_schema_refuses_a_wrong_on_timeout(write_wf) -> None:
    path = write_wf(HEAD + '  - {id: review, approve: {message: "ok?", on_timeout: wait}}\n')
    ((line, _, rule, message, _),) = problems(path)
    assert (line, rule) == (9, "schema")
    assert message == "stages[1] (id='review').approve.on_timeout: 'wait' is not one of reject, approve"


def test_an_asks_default_needs_a_timeout_and_must_match_its_schema(write_wf) -> None:
    path = write_wf(
        HEAD
        + """\
  - id: pick
    ask: {question: "n?", schema: {type: integer}, default: 3}
  - id: late
    ask: {question: "n?", schema: {type: integer}, timeout: 5, default: "three"}
"""
    )
    assert problems(path) == [
        (
            10,
            52,
            "invalid-setting",
            "ask gate 'pick' has a default answer but no timeout: the default is used only when one passes",
            "add `timeout: <seconds>` beside it, or remove it",
        ),
        (
            12,
            64,
            "invalid-setting",
            "the default answer of ask gate 'late' does not match its schema: at $: expected integer, got string",
            "give a default that the schema accepts",
        ),
    ]
    refused = run_cli("run", str(path), "--offline")
    assert refused.returncode == 1 and "the default answer of ask gate 'late'" in refused.stderr
