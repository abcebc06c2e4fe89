"""The exact text users see for invalid workflows: one located message per problem, never a traceback."""

from __future__ import annotations

from runner.cli import main

HEADER = """\
version: 1
name: demo
models:
  m: {provider: scripted, reply: "hi"}
agents:
  a: {model: m}
"""


def validate(capsys, path) -> tuple[int, list[str]]:
    code = main(["validate", str(path)])
    out = capsys.readouterr().out
    return code, [line for line in out.splitlines() if line.startswith(str(path))]


def test_unknown_key_wrong_type_and_missing_key_all_at_once(write_wf, capsys) -> None:
    path = write_wf(
        HEADER
        + """\
stages:
  - id: one
    agent: a
    inputt: hello
  - id: two
    agent: a
    vars: [1, 2]
  - agent: a
"""
    )
    code, lines = validate(capsys, path)
    assert code == 1
    assert lines == [
        f"{path}:10:5: error: unknown key 'inputt' in stages[0] (id='one') [schema]",
        f"{path}:13:11: error: stages[1] (id='two').vars: expected a mapping, got a list [schema]",
        f"{path}:14:5: error: stages[2]: missing required key 'id' [schema]",
    ]


def test_text_output_shows_source_caret_and_hint(write_wf, capsys) -> None:
    path = write_wf(HEADER + "stages:\n  - id: one\n    agent: a\n    inputt: hello\n")
    assert main(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert out == (
        f"{path}:10:5: error: unknown key 'inputt' in stages[0] (id='one') [schema]\n"
        "    10 |     inputt: hello\n"
        "       |     ^^^^^^\n"
        "       = hint: did you mean 'input'?\n"
        "1 error(s), 0 warning(s) in 1 file(s)\n"
    )


def test_duplicate_key_through_the_cli(write_wf, capsys) -> None:
    path = write_wf(HEADER + "stages:\n  - id: one\n    agent: a\n    agent: a\n")
    code, lines = validate(capsys, path)
    assert code == 1
    assert lines == [f"{path}:10:5: error: duplicate key 'agent' (first defined at line 9, column 5) [duplicate-key]"]


def test_wrong_enum_and_const(write_wf, capsys) -> None:
    path = write_wf(
        """\
version: 2
name: demo
models:
  m: {provider: scriptd}
stages:
  - {id: one, agent: a}
"""
    )
    code, lines = validate(capsys, path)
    assert code == 1
    assert lines == [
        f"{path}:1:10: error: version: must be 1, got 2 [schema]",
        f"{path}:4:17: error: models.m.provider: 'scriptd' is not one of scripted, openai [schema]",
    ]


def test_stage_needs_agent_or_fanout(write_wf, capsys) -> None:
    path = write_wf(HEADER + "stages:\n  - id: one\n  - id: two\n    agent: a\n    fanout: {for_each: [1], agent: a}\n")
    code, lines = validate(capsys, path)
    assert code == 1
    assert lines == [
        f"{path}:8:5: error: stages[0] (id='one'): a stage needs exactly one of 'agent', 'approve', 'ask', "
        "'fanout', 'loop', 'python', 'switch' or 'workflow' [schema]",
        f"{path}:9:5: error: stages[1] (id='two'): a stage needs exactly one of 'agent', 'approve', 'ask', "
        "'fanout', 'loop', 'python', 'switch' or 'workflow' [schema]",
    ]


def test_references_and_duplicate_ids(write_wf, capsys) -> None:
    path = write_wf(
        HEADER
        + """\
  b: {model: mm}
stages:
  - {id: one, agent: aa}
  - id: fan
    fanout:
      branches:
        - [{id: one, agent: a}]
"""
    )
    code, lines = validate(capsys, path)
    assert code == 1
    assert lines == [
        f"{path}:7:3: warning: agent 'b' is not used by any stage [unused-agent]",
        f"{path}:7:14: error: agent 'b' uses model 'mm', which is not defined [unknown-model]",
        f"{path}:9:22: error: stage 'one' uses agent 'aa', which is not defined [unknown-agent]",
        f"{path}:13:17: error: stage id 'one' is already used at line 9 [duplicate-id]",
    ]


def test_template_syntax_error_is_located_inside_a_block_scalar(write_wf, capsys) -> None:
    path = write_wf(HEADER + "stages:\n  - id: one\n    agent: a\n    input: |\n      line one\n      {{ oops\n")
    code, lines = validate(capsys, path)
    assert code == 1
    assert lines == [
        f"{path}:12:7: error: template syntax error: unexpected end of template, expected 'end of print "
        "statement'. [template-syntax]"
    ]


def test_clean_file_exits_zero(write_wf, capsys) -> None:
    path = write_wf(HEADER + "stages:\n  - {id: one, agent: a}\n")
    assert main(["validate", str(path)]) == 0
    assert capsys.readouterr().out == "1 file(s) valid\n"


def test_missing_path_is_a_usage_error(capsys, tmp_path) -> None:
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 2
    assert capsys.readouterr().err == f"runner: error: {tmp_path / 'nope.yaml'}: no such file or folder\n"
