"""``runner validate`` output formats (text, json, github, sarif), --strict, exit codes and file discovery."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.cli import main
from runner.validate.formats import FORMATS_BY_NAME, format_github, sarif_document
from runner.validate.rules.catalog import RULES
from tests.conftest import ROOT, SHARED_DATA, run_cli

TWO_PROBLEMS = """\
version: 1
name: demo
models:
  m: {provider: scripted}
agents:
  a: {model: m}
  spare: {model: m}
stages:
  - {id: s, agent: a, input: "About {{ inputs.topc }}"}
"""


def validate(capsys, *args: str) -> tuple[int, str]:
    code = main(["validate", *args])
    return code, capsys.readouterr().out


def test_formats_registry() -> None:
    assert list(FORMATS_BY_NAME) == ["text", "json", "github", "sarif"]


def test_text_shows_every_problem_with_caret_and_hint(write_wf, capsys) -> None:
    path = write_wf(TWO_PROBLEMS)
    code, out = validate(capsys, str(path))
    assert code == 1
    assert out == (
        f"{path}:7:3: warning: agent 'spare' is not used by any stage [unused-agent]\n"
        "     7 |   spare: {model: m}\n"
        "       |   ^^^^^\n"
        "       = hint: remove it, or run it in a stage ('agent: spare')\n"
        f"{path}:9:40: error: inputs.topc is not declared [unknown-input]\n"
        '     9 |   - {id: s, agent: a, input: "About {{ inputs.topc }}"}\n'
        "       |                                        ^^^^^^^^^^^\n"
        "       = hint: define it under 'inputs:'\n"
        "1 error(s), 1 warning(s) in 1 file(s)\n"
    )


def test_text_caret_keeps_tabs_of_the_source_line(write_wf, capsys) -> None:
    # A tab inside a quoted scalar is plain text to YAML; the caret line copies it so the caret lines up.
    path = write_wf(TWO_PROBLEMS.replace('"About {{ inputs.topc }}"', '"\t{{ inputs.x }}"'))
    code, out = validate(capsys, str(path))
    assert code == 1
    assert out.splitlines()[5:7] == [
        '     9 |   - {id: s, agent: a, input: "\t{{ inputs.x }}"}',
        "       | " + " " * 30 + "\t" + " " * 3 + "^" * 8,
    ]


def test_json_format(write_wf, capsys) -> None:
    path = write_wf(TWO_PROBLEMS)
    code, out = validate(capsys, "--format", "json", str(path))
    assert code == 1
    assert json.loads(out) == {
        "files": 1,
        "problems": [
            {
                "file": str(path),
                "line": 7,
                "column": 3,
                "end_line": 7,
                "end_column": 8,
                "severity": "warning",
                "rule": "unused-agent",
                "message": "agent 'spare' is not used by any stage",
                "hint": "remove it, or run it in a stage ('agent: spare')",
            },
            {
                "file": str(path),
                "line": 9,
                "column": 40,
                "end_line": 9,
                "end_column": 51,
                "severity": "error",
                "rule": "unknown-input",
                "message": "inputs.topc is not declared",
                "hint": "define it under 'inputs:'",
            },
        ],
    }


def test_json_format_of_a_clean_run(capsys) -> None:
    code, out = validate(capsys, "--format", "json", str(ROOT / "workflows" / "quickstart.yaml"))
    assert code == 0
    assert json.loads(out) == {"files": 1, "problems": []}


def test_github_format(write_wf, capsys) -> None:
    path = write_wf(TWO_PROBLEMS)
    code, out = validate(capsys, "--format", "github", str(path))
    assert code == 1
    assert out == (
        f"::warning file={path},line=7,col=3,endColumn=8,title=unused-agent::agent 'spare' is not used by any "
        "stage%0Ahint: remove it, or run it in a stage ('agent: spare')\n"
        f"::error file={path},line=9,col=40,endColumn=51,title=unknown-input::inputs.topc is not declared"
        "%0Ahint: define it under 'inputs:'\n"
    )


def test_github_escapes_properties_and_data() -> None:
    from runner.diagnostics import Diagnostic

    d = Diagnostic("dir,a/b:c.yaml", 2, 3, 4, 5, "error", "schema", "100% wrong\r\nsecond line", "a, b: c")
    assert format_github([d], 1) == (
        "::error file=dir%2Ca/b%3Ac.yaml,line=2,col=3,endLine=4,endColumn=5,title=schema::"
        "100%25 wrong%0D%0Asecond line%0Ahint: a, b: c\n"
    )


def sarif_validator():
    schema_file = SHARED_DATA / "sarif-schema-2.1.0.json"
    if not schema_file.is_file():
        pytest.skip(f"the SARIF 2.1.0 schema is not at {schema_file}")
    from jsonschema import Draft4Validator

    return Draft4Validator(json.loads(schema_file.read_text(encoding="utf-8")))


def test_sarif_is_valid_sarif_2_1_0_with_rules_and_exact_regions(write_wf, capsys, monkeypatch) -> None:
    path = write_wf(TWO_PROBLEMS)
    monkeypatch.chdir(path.parent)
    code, out = validate(capsys, "--format", "sarif", path.name)
    assert code == 1
    doc = json.loads(out)
    errors = sorted(e.message for e in sarif_validator().iter_errors(doc))
    assert errors == []
    run = doc["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == list(RULES)
    assert all(r["shortDescription"]["text"] and r["help"]["text"] for r in rules)
    assert run["columnKind"] == "unicodeCodePoints"
    assert run["results"][1] == {
        "ruleId": "unknown-input",
        "ruleIndex": list(RULES).index("unknown-input"),
        "level": "error",
        "message": {"text": "inputs.topc is not declared\nhint: define it under 'inputs:'"},
        "locations": [
            {
                "physicalLocation": {
                    "artifactLocation": {"uri": "wf.yaml", "uriBaseId": "%SRCROOT%"},
                    # endColumn is one past the last character of `inputs.topc` (columns 40-50)
                    "region": {"startLine": 9, "startColumn": 40, "endLine": 9, "endColumn": 51},
                }
            }
        ],
    }
    assert run["results"][0]["level"] == "warning"


def test_sarif_of_the_whole_corpus_is_valid() -> None:
    from runner.commands.validate import check_paths

    problems, files = check_paths([str(path) for path in sorted((ROOT / "tests" / "invalid").glob("*.yaml"))])
    doc = sarif_document(problems, files)
    assert sorted(e.message for e in sarif_validator().iter_errors(doc)) == []
    regions = [r["locations"][0]["physicalLocation"]["region"] for r in doc["runs"][0]["results"]]
    assert all((g["endLine"], g["endColumn"]) > (g["startLine"], g["startColumn"]) for g in regions)


def test_sarif_uri_of_a_file_outside_the_working_folder_is_absolute(tmp_path, monkeypatch) -> None:
    from runner.diagnostics import Diagnostic

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    outside = tmp_path / "other dir" / "wf.yaml"
    doc = sarif_document([Diagnostic(str(outside), 1, 1, 1, 2, "error", "schema", "x")], 1)
    location = doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert location == {"uri": outside.as_uri()}


def test_strict_turns_warnings_into_errors(write_wf, capsys) -> None:
    path = write_wf(TWO_PROBLEMS.replace("inputs.topc", "prev"))
    code, out = validate(capsys, str(path))
    assert code == 0
    assert out.splitlines()[0] == f"{path}:7:3: warning: agent 'spare' is not used by any stage [unused-agent]"
    code, out = validate(capsys, "--strict", str(path))
    assert code == 1
    assert out.splitlines()[0] == f"{path}:7:3: error: agent 'spare' is not used by any stage [unused-agent]"
    assert out.splitlines()[-1] == "1 error(s), 0 warning(s) in 1 file(s)"


def test_folders_recurse_into_yaml_and_yml_and_skip_hidden_folders(tmp_path, capsys) -> None:
    good = (ROOT / "workflows" / "quickstart.yaml").read_text(encoding="utf-8")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "b").mkdir()
    (tmp_path / ".cache").mkdir()
    (tmp_path / "a" / "one.yaml").write_text(good)
    (tmp_path / "a" / "b" / "two.yml").write_text(good)
    (tmp_path / "a" / "notes.txt").write_text("not: [yaml")
    (tmp_path / ".cache" / "junk.yaml").write_text("not: [yaml")
    code, out = validate(capsys, str(tmp_path), str(tmp_path / "a" / "one.yaml"))
    assert (code, out) == (0, "2 file(s) valid\n")


def test_a_file_named_explicitly_is_checked_whatever_its_suffix(tmp_path, capsys) -> None:
    path = tmp_path / "workflow.txt"
    path.write_text("version: 1\n")
    code, out = validate(capsys, str(path))
    assert code == 1
    assert out.splitlines()[0] == f"{path}:1:1: error: the top level: missing required key 'name' [schema]"


def test_exit_codes_through_a_subprocess(write_wf) -> None:
    clean = run_cli("validate", "workflows/")
    assert (clean.returncode, clean.stderr) == (0, "")
    assert clean.stdout.endswith(" file(s) valid\n")
    bad = run_cli("validate", str(write_wf(TWO_PROBLEMS)))
    assert bad.returncode == 1
    usage = run_cli("validate", "--format", "xml", "workflows/")
    assert usage.returncode == 2
    assert "invalid choice: 'xml'" in usage.stderr
    missing = run_cli("validate", "no/such/file.yaml")
    assert (missing.returncode, missing.stderr) == (2, "runner: error: no/such/file.yaml: no such file or folder\n")


def test_the_examples_are_clean_even_when_strict(capsys) -> None:
    code, out = validate(capsys, "--strict", str(ROOT / "workflows"))
    assert code == 0, out
    assert out.endswith("file(s) valid\n")


def test_problems_of_several_files_are_sorted_by_file_then_line(tmp_path, capsys) -> None:
    (tmp_path / "b.yaml").write_text("version: 1\n")
    (tmp_path / "a.yaml").write_text("name: x\n")
    code, out = validate(capsys, "--format", "json", str(tmp_path / "b.yaml"), str(tmp_path / "a.yaml"))
    assert code == 1
    assert [(Path(p["file"]).name, p["line"]) for p in json.loads(out)["problems"]] == [
        ("a.yaml", 1),
        ("a.yaml", 1),
        ("b.yaml", 1),
        ("b.yaml", 1),
    ]
