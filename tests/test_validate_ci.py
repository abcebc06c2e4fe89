"""CI integration: the pre-commit hook definition and the README's "Validate in CI" section stay true."""

from __future__ import annotations

import re
import shlex
import tomllib

import yaml

from runner.cli import build_parser, main
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
SECTION = README[README.index("## Validate in CI\n") : README.index("\n## ", README.index("## Validate in CI\n") + 1)]

DIGEST = """\
version: 1
name: digest
description: Summarise each document, then merge the summaries.

inputs:
  documents: {type: array, items: string, default: [a.txt, b.txt]}

models:
  offline: {provider: scripted}

agents:
  reader: {model: offline, sys_prompt: "Summarise the document you are given."}
  editor: {model: offline, sys_prompt: "Merge the summaries into one page."}

stages:
  - id: docs
    fanout:
      for_each: "{{ inputs.documents }}"
      stages:
        - {id: summary, agent: reader, input: "Summarise {{ vars.item }}."}
  - id: merge
    agent: editor
    input: "{{ stages.summary.content }}"
"""


def blocks(kind: str) -> list[str]:
    return re.findall(rf"^```{kind}\n(.*?)^```$", SECTION, re.S | re.M)


def test_the_pre_commit_hook_runs_runner_validate_on_yaml_files(tmp_path, capsys) -> None:
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    assert [h["id"] for h in hooks] == ["runner-validate"]
    hook = hooks[0]
    assert hook["language"] == "python"
    assert hook["types"] == ["yaml"]
    assert re.search(hook["files"], "workflows/quickstart.yaml")
    assert not re.search(hook["files"], "ci/flow.yml")  # issue 14: by default only YAML in workflows/ folders
    assert not re.search(hook["files"], "README.md")
    command, *args = shlex.split(hook["entry"])
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert scripts[command] == "runner.cli:main"
    # pre-commit appends the matching staged files to the entry
    assert main([*args, str(ROOT / "workflows" / "quickstart.yaml"), str(ROOT / "workflows" / "branches.yaml")]) == 0
    assert capsys.readouterr().out == "2 file(s) valid\n"


def test_the_readme_section_comes_before_development() -> None:
    assert README.index("## Validate in CI") < README.index("## Development")


def test_the_readme_example_output_is_what_runner_prints(tmp_path, monkeypatch, capsys) -> None:
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "digest.yaml").write_text(DIGEST, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert main(["validate", "workflows/"]) == 1
    (example,) = blocks("text")
    assert capsys.readouterr().out == example + "1 error(s), 0 warning(s) in 1 file(s)\n"


def test_the_actions_snippet_is_valid_yaml_and_its_commands_parse() -> None:
    actions, pre_commit = (yaml.safe_load(block) for block in blocks("yaml"))
    steps = actions["jobs"]["validate"]["steps"]
    commands = [step["run"] for step in steps if "run" in step and step["run"].startswith("runner ")]
    assert commands == [
        "runner validate --strict --format github workflows/",
        "runner validate --format sarif workflows/ > runner.sarif",
    ]
    for command in commands:
        argv = shlex.split(command.split(">")[0])[1:]
        args = build_parser().parse_args(argv)
        assert args.command == "validate"
    assert pre_commit["repos"][0]["hooks"] == [{"id": "runner-validate"}]
