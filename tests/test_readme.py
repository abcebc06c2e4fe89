"""Every fenced block of the README is run or checked here, so the README cannot drift from the code again
(its example workflow once did not validate: issue 14).

Each block is classified and handed to a check; a block that no check knows fails
``test_every_block_of_the_readme_is_checked``, so a new example comes with its check.

* YAML: a workflow is ``workflows/quickstart.yaml`` as it is, validates and runs offline; a ``models:``
  fragment validates and runs once put in that workflow; the GitHub Actions job's ``runner`` commands parse
  and pass on this repository's workflows (the SARIF one writes valid SARIF); the pre-commit config names a
  hook of ``.pre-commit-hooks.yaml`` and that hook passes on the files its pattern selects.
* Shell: each command is run or checked. ``runner ...`` commands run for real. The install steps are not
  re-run (a venv and a ``pip install`` per test run would reinstall the world): ``pip install .`` is
  checked to give the ``runner`` command the next step runs, ``pip install -e '.[test]' && pytest`` to be
  the command ``.ci/run`` runs in a fresh environment, its ``test`` extra to hold pytest, and ``pytest`` to
  find this suite; ``python3 -m venv .venv`` to make a folder git ignores; ``. .venv/bin/activate`` only
  changes the shell's environment.
* Text that shows output is compared with what runner prints, numbers masked where they are timings.
* Python (the "From Python" section) runs as a user would run it, in a copy of the checkout's ``workflows/``:
  each block on its own, offline, its own ``assert`` statements checked, nothing left running.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner.cli import build_parser, main
from runner.engine.session import run_plan
from runner.plan.compile import compile_workflow
from runner.validate.check import check_file, load_workflow
from runner.workflow.inputs import resolve_inputs
from tests.conftest import ROOT, SHARED_DATA, assert_valid_report, run_cli

README = (ROOT / "README.md").read_text(encoding="utf-8")
QUICKSTART = ROOT / "workflows" / "quickstart.yaml"
SHELLS = ("bash", "sh", "shell", "console")


@dataclass(frozen=True)
class Block:
    lang: str
    text: str
    line: int  # of the opening fence, 1-based

    def __str__(self) -> str:
        return f"README.md:{self.line} ({self.lang or 'no language'})"


def readme_blocks() -> list[Block]:
    found = []
    for match in re.finditer(r"^```([\w-]*)\n(.*?)^```$", README, re.S | re.M):
        found.append(Block(match.group(1), match.group(2), README.count("\n", 0, match.start()) + 1))
    return found


BLOCKS = readme_blocks()


@dataclass(frozen=True)
class Context:
    tmp_path: Path
    capsys: pytest.CaptureFixture[str]
    monkeypatch: pytest.MonkeyPatch


# -- what each block is -------------------------------------------------------------------------------------------


def kind_of(block: Block) -> str:
    if block.lang in SHELLS:
        return "shell"
    if block.lang in ("yaml", "yml"):
        data = yaml.safe_load(block.text)
        if isinstance(data, dict) and "version" in data and "stages" in data:
            return "workflow" if block.text == QUICKSTART.read_text(encoding="utf-8") else "example"
        if isinstance(data, dict) and set(data) == {"models"}:
            return "models"
        if isinstance(data, dict) and "jobs" in data:
            return "actions"
        if isinstance(data, dict) and "repos" in data:
            return "pre-commit"
    if block.lang == "python":
        return "python"
    if block.lang == "json" and "mcpServers" in json.loads(block.text):
        return "mcp-client"
    if block.lang == "csv":
        return "dataset"
    if block.lang == "text":
        if block.text.startswith("calls to `"):
            return "bottleneck"
        if re.match(r"^\S+\.ya?ml:\d+:\d+: (error|warning): ", block.text):
            return "diagnostic"
    return "unknown"


def test_every_block_of_the_readme_is_checked() -> None:
    unknown = [str(b) for b in BLOCKS if kind_of(b) == "unknown"]
    assert unknown == [], f"teach tests/test_readme.py to check these blocks: {unknown}"
    kinds = [kind_of(b) for b in BLOCKS]
    assert sorted(set(kinds)) == sorted(CHECKS)  # and every check has its block


def test_the_readme_opens_with_exactly_two_copy_paste_commands() -> None:
    head = README[: README.index("\n## ")]
    title, rest = head.split("\n", 1)
    assert title == "# runner"
    first, second = BLOCKS[0], BLOCKS[1]
    assert rest.startswith(f"\n```{first.lang}\n{first.text}```\n```{second.lang}\n{second.text}```\n")
    for block in (first, second):
        assert block.lang == "bash"
        assert block.text.count("\n") == 1  # one line: copied and pasted at once
    assert [kind_of(b) for b in BLOCKS if README.index(b.text) < len(head)] == ["shell", "shell"]


# -- shell --------------------------------------------------------------------------------------------------------


def shell_commands(block: Block) -> list[str]:
    """The commands of a shell block, split at ``&&`` and line ends (``$ `` prompts of console blocks)."""
    lines = block.text.splitlines()
    if block.lang == "console":
        lines = [line[2:] for line in lines if line.startswith("$ ")]
    return [part.strip() for line in lines for part in line.split("&&") if part.strip()]


def check_shell(block: Block, ctx: Context) -> None:
    for command in shell_commands(block):
        argv = shlex.split(command)
        check = SHELL_COMMANDS.get(argv[0])
        assert check is not None, f"{block}: teach tests/test_readme.py to run or check {command!r}"
        check(argv, ctx.tmp_path)


def _venv(argv: list[str], tmp_path: Path) -> None:
    assert argv == ["python3", "-m", "venv", ".venv"]
    assert ".venv/" in (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()  # the checkout stays clean


def _activate(argv: list[str], tmp_path: Path) -> None:
    assert argv == [".", ".venv/bin/activate"]  # where the venv above puts it; it only sets the environment


def _pip(argv: list[str], tmp_path: Path) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["scripts"]["runner"] == "runner.cli:main"  # what `runner ...` then runs
    if argv == ["pip", "install", "."]:
        return
    assert argv == ["pip", "install", "-e", ".[test]"]
    assert any(dep.startswith("pytest") for dep in project["project"]["optional-dependencies"]["test"])
    # the fresh-environment check of this command is CI's: .ci/run runs it as written, then the suite
    assert "pip install -e '.[test]' && pytest" in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()


def _pytest(argv: list[str], tmp_path: Path) -> None:
    # bare `pytest` in the checkout runs this very suite (running it again from here would recurse)
    assert argv == ["pytest"]
    options = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["pytest"]["ini_options"]
    assert options["testpaths"] == ["tests"]
    assert Path(__file__).parent == ROOT / "tests"


def _runner(argv: list[str], tmp_path: Path) -> None:
    """Run it for real, from a copy of the checkout's workflows (reports land in the copy)."""
    shutil.copytree(
        ROOT / "workflows",
        tmp_path / "workflows",
        ignore=shutil.ignore_patterns(".runner", "reports"),
        dirs_exist_ok=True,  # a block of several commands
    )
    proc = run_cli(*argv[1:], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    if argv[1:] == ["run", "workflows/quickstart.yaml"]:  # what the README says it does
        assert proc.stdout.splitlines()[-1].startswith("[digest editor] Digest of 3 notes")
        assert re.search(r"^report: reports/quickstart-\S+Z\.json$", proc.stderr, re.M)


SHELL_COMMANDS: dict[str, Callable[[list[str], Path], None]] = {
    "python3": _venv,
    ".": _activate,
    "pip": _pip,
    "pytest": _pytest,
    "runner": _runner,
}


# -- YAML ---------------------------------------------------------------------------------------------------------


def check_workflow(block: Block, ctx: Context) -> None:
    # the README shows an example of workflows/ as it is (the quickstart: the file the first command runs)
    shown = [p for p in sorted((ROOT / "workflows").glob("*.yaml")) if p.read_text(encoding="utf-8") == block.text]
    assert shown, f"{block} is not a file of workflows/ as it is"
    first = next(b for b in BLOCKS if kind_of(b) == "workflow")
    assert first.text == QUICKSTART.read_text(encoding="utf-8")  # "A workflow" opens with the quickstart
    path = ctx.tmp_path / "workflows" / "readme.yaml"
    path.parent.mkdir()
    path.write_text(block.text, encoding="utf-8")
    assert check_file(path)[1] == []
    run_offline(path)


def check_example(block: Block, ctx: Context) -> None:
    """A workflow shown as an example (not the quickstart): it validates clean and runs offline, beside a copy of
    ``workflows/`` (the sub-workflows an example runs are there)."""
    shutil.copytree(ROOT / "workflows", ctx.tmp_path / "workflows", ignore=shutil.ignore_patterns(".runner", "reports"))
    path = ctx.tmp_path / "workflows" / "example.yaml"
    path.write_text(block.text, encoding="utf-8")
    assert check_file(path)[1] == []
    run_offline(path)


def run_offline(path: Path) -> dict[str, Any]:
    from runner.workflow.offline import offline_workflow

    wf = offline_workflow(load_workflow(path))
    outcome = run_plan(compile_workflow(wf), resolve_inputs(wf, []), run_dir=path.parent / "run")
    assert outcome.status == "ok", outcome.error
    report = outcome.report()
    assert_valid_report(report)
    return report


def check_models(block: Block, ctx: Context) -> None:
    """A model to add under ``models:``: the quickstart with its agents on it validates and dry-runs."""
    fragment = yaml.safe_load(block.text)["models"]
    workflow = yaml.safe_load(QUICKSTART.read_text(encoding="utf-8"))
    workflow["models"] = fragment
    (name,) = fragment
    for agent in workflow["agents"].values():
        agent["model"] = name
    path = ctx.tmp_path / "remote.yaml"
    path.write_text(yaml.safe_dump(workflow, sort_keys=False), encoding="utf-8")
    assert check_file(path)[1] == []
    report = run_offline(path)
    assert report["models"][name]["provider"] == "scripted"  # replaced: no network, no key


def check_actions(block: Block, ctx: Context) -> None:
    job = yaml.safe_load(block.text)
    steps = [step for job in job["jobs"].values() for step in job["steps"]]
    assert all("@" in step["uses"] for step in steps if "uses" in step)  # actions pinned to a version
    commands = [step["run"] for step in steps if "run" in step]
    assert commands[0] == "pip install ."
    ctx.monkeypatch.chdir(ROOT)  # CI runs them at the repository's root
    for command in commands[1:]:
        line, _, redirect = command.partition(">")
        argv = shlex.split(line)
        assert argv[0] == "runner", command
        build_parser().parse_args(argv[1:])  # a valid invocation (exit 2 otherwise)
        assert main(argv[1:]) == 0, command  # and this repository's workflows pass it
        out = ctx.capsys.readouterr().out
        if "--format" in argv and argv[argv.index("--format") + 1] == "sarif":
            assert redirect.strip() == "runner.sarif"
            check_sarif(json.loads(out))


def check_sarif(document: dict[str, Any]) -> None:
    schema_path = SHARED_DATA / "sarif-schema-2.1.0.json"
    if schema_path.exists():
        from jsonschema.validators import validator_for

        schema = json.loads(schema_path.read_text(encoding="utf-8"))
        errors = list(validator_for(schema)(schema).iter_errors(document))
        assert errors == [], [e.message for e in errors[:3]]
    assert document["version"] == "2.1.0"


def project_files() -> list[str]:
    """The files pre-commit would look at: git's tracked files (every file outside hidden folders when the
    tests run from a copy that is no git checkout, such as an sdist)."""
    try:
        listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    except OSError:
        listed = None
    if listed is not None and listed.returncode == 0:
        return listed.stdout.splitlines()
    return sorted(
        str(p.relative_to(ROOT))
        for p in ROOT.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(ROOT).parts)
    )


def check_pre_commit(block: Block, ctx: Context) -> None:
    """Each hook is one of ``.pre-commit-hooks.yaml``, and passes on the files pre-commit would give it here:
    the tracked files its ``files`` pattern (the config's, else the hook's) and ``types`` select."""
    config = yaml.safe_load(block.text)
    defined = {h["id"]: h for h in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))}
    tracked = project_files()
    for repo in config["repos"]:
        for hook in repo["hooks"]:
            assert hook["id"] in defined, f"{hook['id']} is not a hook of .pre-commit-hooks.yaml"
            definition = defined[hook["id"]]
            pattern = re.compile(hook.get("files", definition.get("files", "")))
            assert definition["types"] == ["yaml"]
            selected = [f for f in tracked if pattern.search(f) and f.endswith((".yaml", ".yml"))]
            assert "workflows/quickstart.yaml" in selected
            command, *args = shlex.split(definition["entry"])
            assert command == "runner"
            assert main([*args, *(str(ROOT / f) for f in selected)]) == 0  # pre-commit appends the files
            assert ctx.capsys.readouterr().out == f"{len(selected)} file(s) valid\n"


# -- text ---------------------------------------------------------------------------------------------------------


def _masked(text: str) -> str:
    return re.sub(r"\d+\.\d+", "N.NN", text)


def check_bottleneck(block: Block, ctx: Context) -> None:
    """A saturated pool, as the README's example: 6 calls through 2 connections."""
    from tests.oai_server import OAIServer
    from tests.test_report_runs import oai_workflow

    with OAIServer(latency=0.1) as server:
        path = ctx.tmp_path / "pool.yaml"
        path.write_text(oai_workflow(server.url, pool=2), encoding="utf-8")
        wf = load_workflow(path)
        outcome = run_plan(compile_workflow(wf), resolve_inputs(wf, []))
    messages = [b["message"] for b in outcome.report()["bottlenecks"] if b["cause"] == "pool"]
    assert [_masked(m) for m in messages] == [_masked(block.text.strip())]


def check_diagnostic(block: Block, ctx: Context) -> None:
    """The validate example, for the file it names (``tests/test_validate_ci.py``'s DIGEST)."""
    from tests.test_validate_ci import DIGEST

    file = block.text.split(":", 1)[0]
    (ctx.tmp_path / file).parent.mkdir(parents=True, exist_ok=True)
    (ctx.tmp_path / file).write_text(DIGEST, encoding="utf-8")
    ctx.monkeypatch.chdir(ctx.tmp_path)
    assert main(["validate", file]) == 1
    assert ctx.capsys.readouterr().out.startswith(block.text)


# -- Python -------------------------------------------------------------------------------------------------------


def check_python(block: Block, ctx: Context) -> None:
    """Run the block as a script in a folder holding a copy of ``workflows/`` (what it reads and writes is there),
    with its own names; what it prints is checked for what the README says it shows."""
    import threading

    shutil.copytree(ROOT / "workflows", ctx.tmp_path / "workflows", ignore=shutil.ignore_patterns(".runner", "reports"))
    ctx.monkeypatch.chdir(ctx.tmp_path)
    threads = threading.active_count()
    exec(compile(block.text, str(block), "exec"), {"__name__": "__main__"})  # the README's own code
    out = ctx.capsys.readouterr().out
    assert threading.active_count() == threads  # no thread left behind (tools' pools, loggers)
    if "write_report(" in block.text:  # the script: its output, then the files it wrote
        lines = out.splitlines()
        assert lines[0] == "Digest of 3 notes: analyst, analyst, analyst agree that it is worth measuring."
        assert lines[1:4] == [
            f"On {p}: HTTP/2 for model endpoints looks promising; measure it before you switch."
            for p in ("performance", "reliability", "cost")
        ]
        written = sorted(p.name for p in (ctx.tmp_path / "reports").iterdir() if p.is_file())
        assert [Path(name).suffix for name in written] == [".json", ".md"]
        assert_valid_report(json.loads(next((ctx.tmp_path / "reports").glob("*.json")).read_text(encoding="utf-8")))
    if "runner.stream(" in block.text:  # the events: each branch's end, the editor's text, the status
        lines = out.splitlines()
        ends = [re.sub(r"\d+\.\d\d", "N", line) for line in lines[:4]]
        assert sorted(ends[:3]) == [f"N s: notes[{i}] finished after N s" for i in range(3)]  # in any order
        assert ends[3] == "N s: notes finished after N s"  # after its branches
        assert lines[4] == "Digest of 3 notes: analyst, analyst, analyst agree that it is worth measuring."
        assert re.fullmatch(r"ok in \d+\.\d\d s", lines[5]) and len(lines) == 6
    if "runner.each(" in block.text:  # a dataset's rows as they finish: the broken one at once, then the others
        lines = out.splitlines()
        assert lines[0] == "2 row 2: input priority: expected integer, got str"
        assert sorted(lines[1:]) == [
            "0 billing Re: Double charge [billing, P3]: thank you, we are on it.",
            "1 account Re: Cannot log in [account, P1]: thank you, we are on it.",
        ]


def check_dataset(block: Block, ctx: Context) -> None:
    """A dataset the README shows is a file of workflows/ as it is (the Datasets section runs it)."""
    assert block.text in [p.read_text(encoding="utf-8") for p in (ROOT / "workflows").glob("*.csv")]


def check_mcp_client(block: Block, ctx: Context) -> None:
    """An MCP client's configuration (README "Serving workflows as MCP tools"): the command it names is `runner
    serve --mcp`, and started as the client starts it, over stdio, it serves (it ends when stdin closes)."""
    pytest.importorskip("mcp", reason="runner[mcp] is not installed")
    shutil.copytree(ROOT / "workflows", ctx.tmp_path / "workflows", ignore=shutil.ignore_patterns(".runner", "reports"))
    for server in json.loads(block.text)["mcpServers"].values():
        assert server["command"] == "runner"
        args = build_parser().parse_args(server["args"])
        assert args.command == "serve" and args.mcp
        proc = run_cli(*server["args"], cwd=ctx.tmp_path, stdin=subprocess.DEVNULL)
        assert (proc.returncode, proc.stderr) == (0, "")


CHECKS: dict[str, Callable[[Block, Context], None]] = {
    "dataset": check_dataset,
    "shell": check_shell,
    "workflow": check_workflow,
    "example": check_example,
    "models": check_models,
    "actions": check_actions,
    "pre-commit": check_pre_commit,
    "bottleneck": check_bottleneck,
    "diagnostic": check_diagnostic,
    "python": check_python,
    "mcp-client": check_mcp_client,
}


@pytest.mark.parametrize("block", BLOCKS, ids=str)
def test_the_readme_block_runs(block: Block, tmp_path: Path, capsys, monkeypatch) -> None:
    CHECKS[kind_of(block)](block, Context(tmp_path, capsys, monkeypatch))


# -- prose that names things the code has -----------------------------------------------------------------------


def test_the_examples_the_readme_lists_are_the_files_in_workflows() -> None:
    sentence = README[README.index("Examples, all offline and all run by the tests:") :].split("\n\n")[0]
    named = set(re.findall(r"`([\w-]+\.yaml)`", sentence))
    assert named == {p.name for p in (ROOT / "workflows").glob("*.yaml")}


def test_the_commands_table_names_only_options_the_cli_has() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices  # noqa: SLF001 - argparse's map
    table = README[README.index("## Commands") : README.index("\n## ", README.index("## Commands") + 1)]
    rows = re.findall(r"^\| `runner ([^`]+)` \|", table, re.M)
    assert len(rows) >= 7
    for row in rows:
        words = row.replace("\\|", "|").split()
        sub = commands[words[0]]
        if words[0] == "report" and words[1] == "diff":
            sub = sub.word_commands["diff"]
        options = {s for action in sub._actions for s in action.option_strings}  # noqa: SLF001
        for word in words:
            for option in re.findall(r"--[\w-]+", word):
                assert option in options, f"`runner {row}`: {option} is not an option of runner {words[0]}"
