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

from runner.cli import main
from tests.conftest import ROOT, run_cli

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


