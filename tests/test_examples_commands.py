"""Every example x every command, as users run them (issue 14: a crash class like the Markdown writer's or
`runner graph`'s on a python stage must not come back).

For each file in workflows/ and the README's example workflow: ``runner validate`` in every format,
``runner run --offline`` writing every report format, ``runner graph`` in both formats, ``runner report FILE``
in every format and ``runner report diff`` of two runs. The first run of each is a real process (all of them
at once, to keep the test short); the other commands run in-process through ``runner.cli.main``, which is
what the ``runner`` script calls. Each checks the exit code, that no traceback was printed, and that the
output is well-formed: JSON parses, SARIF validates against the SARIF 2.1.0 schema (when
/work/shared/data has it), reports against schemas/report.schema.json, traces are well nested, Mermaid is
a flowchart of known shapes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from runner.cli import main
from runner.report.diff import wall_change
from runner.report.document import report_json
from runner.report.summary import format_summary
from tests.conftest import ROOT, SHARED_DATA, assert_valid_report
from tests.graph_check import assert_mermaid_well_formed
from tests.test_readme import BLOCKS, kind_of
from tests.trace_check import assert_valid_trace

ALL_FORMATS = "report: {dir: reports, formats: [json, markdown, trace]}\n"
EXAMPLES = [p.name for p in sorted((ROOT / "workflows").glob("*.yaml"))] + ["readme-example.yaml"]


@dataclass
class FirstRun:
    returncode: int
    stdout: str
    stderr: str
    reports: Path


def with_all_formats(text: str) -> str:
    """The workflow with ``report: {formats: [json, markdown, trace]}`` (its own ``report:`` line replaced)."""
    kept = [line for line in text.splitlines(keepends=True) if not line.startswith("report:")]
    return "".join(kept).rstrip("\n") + "\n\n" + ALL_FORMATS


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of workflows/ (caches, stores and reports land in it), each example writing every report format,
    and the README's example beside them."""
    root = tmp_path_factory.mktemp("examples")
    shutil.copytree(ROOT / "workflows", root, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".runner", "reports"))
    readme = next(b for b in BLOCKS if kind_of(b) == "workflow")  # the others are files of workflows/ as they are
    (root / "readme-example.yaml").write_text(readme.text, encoding="utf-8")
    for name in EXAMPLES:
        path = root / name
        path.write_text(with_all_formats(path.read_text(encoding="utf-8")), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def first_runs(folder: Path) -> dict[str, FirstRun]:
    """``runner run --offline`` of every example, as processes running at the same time."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    procs = {}
    for name in EXAMPLES:
        out = folder / "runs" / name / "a"
        procs[name] = (
            subprocess.Popen(
                [sys.executable, "-m", "runner", "run", "--offline", name, "--report-dir", str(out)],
                cwd=folder,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
            out,
        )
    runs = {}
    try:
        for name, (proc, out) in procs.items():
            stdout, stderr = proc.communicate(timeout=90)
            runs[name] = FirstRun(proc.returncode, stdout, stderr, out)
    finally:
        for proc, _ in procs.values():
            proc.kill()
    return runs


@cache
def sarif_validator() -> Any:
    from jsonschema.validators import validator_for

    schema = json.loads((SHARED_DATA / "sarif-schema-2.1.0.json").read_text(encoding="utf-8"))
    return validator_for(schema)(schema)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, (argv, err)
    return code, out, err


def the_report(folder: Path) -> Path:
    (path,) = sorted(folder.glob("*Z.json"))
    return path


@pytest.mark.parametrize("name", EXAMPLES)
def test_validate_in_every_format(name: str, folder: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(folder)
    assert cli(capsys, "validate", name) == (0, "1 file(s) valid\n", "")
    assert cli(capsys, "validate", "--strict", "--format", "github", name) == (0, "", "")
    code, out, _ = cli(capsys, "validate", "--format", "json", name)
    assert (code, json.loads(out)) == (0, {"files": 1, "problems": []})
    code, out, _ = cli(capsys, "validate", "--format", "sarif", name)
    assert code == 0
    document = json.loads(out)
    assert document["runs"][0]["results"] == []
    if (SHARED_DATA / "sarif-schema-2.1.0.json").exists():
        errors = [e.message for e in sarif_validator().iter_errors(document)]
        assert errors == []


@pytest.mark.parametrize("name", EXAMPLES)
def test_graph_in_both_formats(name: str, folder: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(folder)
    code, text, err = cli(capsys, "graph", name)
    assert (code, err) == (0, "")
    assert re.match(r"^[\w-]+: \d+ stages?(, timeout \S+ s)?\n  1\. ", text)
    code, mermaid, err = cli(capsys, "graph", name, "--format", "mermaid")
    assert (code, err) == (0, "")
    assert_mermaid_well_formed(mermaid.rstrip("\n"))


@pytest.mark.parametrize("name", EXAMPLES)
def test_run_offline_writes_every_report_format(name: str, first_runs: dict[str, FirstRun]) -> None:
    run = first_runs[name]
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    path = the_report(run.reports)
    base = path.with_suffix("")
    markdown, trace = base.with_name(base.name + ".md"), base.with_name(base.name + ".trace.json")
    assert sorted(p for p in run.reports.iterdir() if p.is_file()) == sorted([path, markdown, trace])
    report = json.loads(path.read_text(encoding="utf-8"))
    assert_valid_report(report)
    assert report["run"]["status"] == "ok"
    assert_valid_trace(json.loads(trace.read_text(encoding="utf-8")))
    assert markdown.read_text(encoding="utf-8").startswith(f"# Run `{report['workflow']['name']}`: ok in ")
    said = run.stderr.splitlines()
    assert said[-1] == f"report: {path}"
    assert said.index(f"summary: {markdown}") + 1 == said.index(f"trace: {trace}")
    assert format_summary(report) in run.stderr  # the summary printed is the one the report gives


@pytest.mark.parametrize("name", EXAMPLES)
def test_report_in_every_format_and_diff_of_two_runs(
    name: str, folder: Path, first_runs: dict[str, FirstRun], capsys, monkeypatch
) -> None:
    monkeypatch.chdir(folder)  # where the example's relative stores and caches are
    a = the_report(first_runs[name].reports)
    saved = json.loads(a.read_text(encoding="utf-8"))
    base = a.with_suffix("")
    code, text, err = cli(capsys, "report", str(a))
    assert (code, text, err) == (0, format_summary(saved) + "\n", "")
    # the same writers as the run's: the files it wrote, byte for byte
    code, markdown, _ = cli(capsys, "report", str(a), "--format", "markdown")
    assert (code, markdown) == (0, base.with_name(base.name + ".md").read_text(encoding="utf-8"))
    code, trace, _ = cli(capsys, "report", "--format", "trace", str(a))
    assert (code, trace) == (0, base.with_name(base.name + ".trace.json").read_text(encoding="utf-8"))
    code, document, _ = cli(capsys, "report", str(a), "--format", "json")
    assert (code, document) == (0, report_json(saved) + "\n")
    assert json.loads(document) == saved

    second = folder / "runs" / name / "b"
    code, _, err = cli(capsys, "run", "--offline", name, "--report-dir", str(second))
    assert code == 0, err
    b = the_report(second)
    later = json.loads(b.read_text(encoding="utf-8"))
    assert_valid_report(later)
    regressed = wall_change(saved, later) > 10
    code, out, err = cli(capsys, "report", "diff", "--threshold", "10", str(a), str(b))
    assert (code, err) == (1 if regressed else 0, "")
    first = out.splitlines()[0]
    assert re.fullmatch(
        rf"{re.escape(saved['workflow']['name'])}: wall time \d+\.\d{{3}} s -> \d+\.\d{{3}} s \([+-]\d+\.\d%\): "
        r"(slower by more than|faster by more than|within) 10%",
        first,
    ), first
