"""docs/rules.md: every rule id has a section with a bad and a fixed example, and the examples are true.

Fences are ```` ```yaml bad ```` and ```` ```yaml fixed ````; a word after ``bad`` says how to write the file:
``latin-1`` (encode so), ``padded`` (comment lines past the size limit), ``folder`` (a folder, not a file);
``set NAME=VALUE`` checks the example with ``runner validate --set NAME=VALUE``. A ```` ```python NAME.py ````
fence in a section is a module written beside both examples (for python stages and tools); a ```` ```yaml
NAME.yaml ```` fence a workflow file written beside them (a child workflow, for the sub-workflow rules).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from runner.commands.validate import check_paths
from runner.diagnostics import Diagnostic
from runner.validate.check import check_file
from runner.validate.rules.catalog import RULES
from runner.workflow.limits import MAX_FILE_BYTES
from tests.conftest import ROOT

DOC = (ROOT / "docs" / "rules.md").read_text(encoding="utf-8")
SECTION = re.compile(r"^## (\S+)\n(.*?)(?=^## |\Z)", re.S | re.M)
FENCE = re.compile(r"^```yaml (bad|fixed)( [^\n]+)?\n(.*?)^```$", re.S | re.M)
MODULE = re.compile(r"^```python (\w+\.py)\n(.*?)^```$", re.S | re.M)
CHILD = re.compile(r"^```yaml ([\w-]+\.yaml)\n(.*?)^```$", re.S | re.M)


def sections() -> dict[str, list[tuple[str, str, str]]]:
    out: dict[str, list[tuple[str, str, str]]] = {}
    for match in SECTION.finditer(DOC):
        out[match.group(1)] = [(kind, (how or "").strip(), body) for kind, how, body in FENCE.findall(match.group(2))]
    return out


SECTIONS = sections()
MODULES = {
    match.group(1): MODULE.findall(match.group(2)) + CHILD.findall(match.group(2)) for match in SECTION.finditer(DOC)
}


def problems_of(tmp_path: Path, body: str, how: str, rule: str = "") -> list[Diagnostic]:
    for name, source in MODULES.get(rule, []):
        (tmp_path / name).write_text(source, encoding="utf-8")
    if how.startswith("set "):
        return check_paths([str(write(tmp_path, body, ""))], sets=how.split()[1:])[0]
    return check_file(write(tmp_path, body, how))[1]


def write(tmp_path: Path, body: str, how: str) -> Path:
    path = tmp_path / "example.yaml"
    if how == "folder":
        path.mkdir()
    elif how == "latin-1":
        path.write_bytes(body.encode("latin-1"))
    elif how == "padded":
        padding = "# padding\n" * (MAX_FILE_BYTES // 10 + 1)
        path.write_text(body + padding, encoding="utf-8")
    else:
        assert how == "", f"unknown fence modifier {how!r}"
        path.write_text(body, encoding="utf-8")
    return path


def test_every_rule_has_a_section_in_catalog_order() -> None:
    assert list(SECTIONS) == list(RULES)


def test_the_table_lists_every_rule_with_its_severity() -> None:
    rows = re.findall(r"^\| \[`([a-z-]+)`\]\(#\1\) \| (error|warning) \|", DOC, re.M)
    assert rows == [(rule.id, rule.severity) for rule in RULES.values()]


@pytest.mark.parametrize("rule", list(RULES))
def test_each_section_has_one_bad_and_one_fixed_example(rule: str) -> None:
    assert [kind for kind, _, _ in SECTIONS[rule]] == ["bad", "fixed"]


@pytest.mark.parametrize("rule", list(RULES))
def test_the_bad_example_reports_exactly_its_rule(rule: str, tmp_path: Path) -> None:
    (_, how, body), _ = SECTIONS[rule]
    problems = problems_of(tmp_path, body, how, rule)
    assert problems, f"the bad example of {rule} is clean"
    assert {p.rule for p in problems} == {rule}, [p.format_line() for p in problems]


@pytest.mark.parametrize("rule", list(RULES))
def test_the_fixed_example_is_clean(rule: str, tmp_path: Path) -> None:
    _, (_, how, body) = SECTIONS[rule]
    problems = problems_of(tmp_path, body, how, rule)
    assert [p.format_line() for p in problems] == []
