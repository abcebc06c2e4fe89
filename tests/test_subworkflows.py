"""Sub-workflows (issue 22 item 3): a stage or a fan-out runs another workflow file.

Through the CLI as users run it (validate, run --offline, graph, report, dataset runs, cassettes) and through
the public API; the providers a parent and a child share are checked against the real HTTP server.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import runner
from runner.engine.family import Family
from runner.plan.compile import compile_workflow
from tests.conftest import assert_valid_report, run_cli
from tests.oai_server import OAIServer, Plan

KEY_ENV = "SUBWF_TEST_KEY"


def remote(url: str = "http://127.0.0.1:9/v1") -> str:
    """A remote model's settings (one line): --offline replaces it, a real run calls ``url``."""
    return (
        f'{{provider: openai, base_url: "{url}", model: m1, api_key_env: {KEY_ENV}, stream: false, '
        "retry: {max_attempts: 1}}"
    )


def child_text(model: str) -> str:
    return f"""\
version: 1
name: summarize
inputs:
  text: {{type: string}}
  style: {{type: string, default: short}}
models:
  small: {model}
agents:
  summarizer: {{model: small}}
stages:
  - id: draft
    agent: summarizer
    input: "{{{{ inputs.style }}}}: {{{{ inputs.text }}}}"
  - id: polish
    agent: summarizer
"""


def parent_text(model: str, n: int = 100) -> str:
    return f"""\
version: 1
name: digest
inputs:
  docs: {{type: array, items: string, default: {json.dumps([f"doc {i}" for i in range(n)])}}}
models:
  main: {model}
agents:
  writer: {{model: main}}
stages:
  - id: each
    fanout:
      for_each: "{{{{ inputs.docs }}}}"
      as: doc
      workflow: sub/summarize.yaml
      inputs: {{text: "{{{{ vars.doc }}}}"}}
  - id: one
    workflow: sub/summarize.yaml
    inputs: {{text: alone, style: long}}
  - id: final
    agent: writer
    input: "{{{{ stages.one.stages.draft.content }}}} | {{{{ stages.each | length }}}}"
"""


def write_pair(
    tmp_path: Path, *, parent_model: str | None = None, child_model: str | None = None, n: int = 100
) -> Path:
    (tmp_path / "sub").mkdir(parents=True, exist_ok=True)
    (tmp_path / "sub" / "summarize.yaml").write_text(child_text(child_model or remote()), encoding="utf-8")
    parent = tmp_path / "digest.yaml"
    parent.write_text(parent_text(parent_model or remote(), n), encoding="utf-8")
    return parent


def report_of(folder: Path) -> dict[str, Any]:
    (path,) = folder.glob("*.json")
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


# -- running --------------------------------------------------------------------------------------------------


def test_a_sub_workflow_in_a_fanout_of_100_runs_offline_through_the_cli(tmp_path: Path) -> None:
    parent = write_pair(tmp_path)
    proc = run_cli("run", str(parent), "--offline", "-q", "--report-dir", str(tmp_path / "r"), cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    offline = "[offline reply of summarizer to: {}]"
    draft_alone = offline.format("long: alone")
    assert proc.stdout == offline.replace("summarizer", "writer").format(f"{draft_alone} | 100") + "\n"
    report = report_of(tmp_path / "r")
    nodes = {node["id"]: node for node in report["nodes"]}
    assert nodes["one"]["kind"] == "workflow" and nodes["one"]["status"] == "ok"
    assert nodes["one.draft"]["agent"] == "summarizer" and nodes["one.polish"]["status"] == "ok"
    assert all(nodes[f"each[{i}].polish"]["status"] == "ok" for i in range(100))
    assert nodes["each[99]"]["kind"] == "branch"
    path = [step["node"] for step in report["critical_path"]["steps"]]
    assert path[-4:] == ["one", "one.draft", "one.polish", "final"]
    assert path[1].startswith("each[") and path[2:4] == [f"{path[1]}.draft", f"{path[1]}.polish"]
    assert report["models"]["main"]["calls"] + report["models"]["small"]["calls"] == 203


def test_the_python_api_runs_a_sub_workflow_and_reaches_its_stages(tmp_path: Path) -> None:
    parent = write_pair(tmp_path, n=3)
    wf = runner.load(parent, offline=True)
    result = runner.run(wf, run_dir=tmp_path / "files")
    assert result.status == "ok", result.error
    one = result.stages["one"]
    assert one.stages["draft"].content == "[offline reply of summarizer to: long: alone]"
    assert str(one) == one.content == one.output.content == f"[offline reply of summarizer to: {one.stages['draft']}]"
    assert [str(b.stages["draft"]) for b in result.stages["each"]] == [
        f"[offline reply of summarizer to: short: doc {i}]" for i in range(3)
    ]


def test_a_child_file_is_compiled_once_per_run(tmp_path: Path) -> None:
    plan = compile_workflow(runner.load(write_pair(tmp_path, n=2), offline=True))
    each, one = plan.stages[0], plan.stages[1]
    assert each.include.child is one.include.child  # type: ignore[attr-defined]


def test_a_childs_input_of_the_wrong_type_at_run_time_is_located_at_the_include(tmp_path: Path) -> None:
    (tmp_path / "child.yaml").write_text(
        "version: 1\nname: c\ninputs:\n  n: {type: integer}\nstages:\n  - id: p\n    python: m:f\n", encoding="utf-8"
    )
    (tmp_path / "m.py").write_text("def f(inputs):\n    return str(inputs['n'] * 2)\n", encoding="utf-8")
    parent = tmp_path / "p.yaml"
    parent.write_text(
        "version: 1\nname: p\ninputs:\n  xs: {type: array, default: [1, two]}\nstages:\n"
        "  - id: f\n    fanout:\n      for_each: '{{ inputs.xs }}'\n      workflow: child.yaml\n"
        "      inputs: {n: '{{ vars.item }}'}\n",
        encoding="utf-8",
    )
    assert runner.check(parent) == []  # the items' types are the run's to know
    result = runner.run(parent, run_dir=tmp_path / "files")
    assert result.status == "failed"
    assert (
        str(result.error)
        == f"{parent}:9:17: the inputs of workflow {tmp_path / 'child.yaml'}: input n: expected integer, got str"
    )


# -- sharing and budgets --------------------------------------------------------------------------------------


def test_models_defined_identically_share_one_client_and_others_do_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "k")
    with OAIServer(api_key="k") as server:
        server.default = Plan(content="ok")
        # every call one after another (a fan-out of one): one client keeps one connection for all five
        shared = write_pair(tmp_path / "a", parent_model=remote(server.url), child_model=remote(server.url), n=1)
        result = runner.run(shared, run_dir=tmp_path / "files")
        assert result.status == "ok", result.error
        assert len(server.requests) == 5 and server.connections == 1
        server.reset()
        server.default = Plan(content="ok")
        server.api_key = "k"
        # the same server under another name: another model, so another client
        apart = write_pair(
            tmp_path / "b",
            parent_model=remote(server.url),
            child_model=remote(server.url.replace("127.0.0.1", "localhost")),
            n=1,
        )
        result = runner.run(apart, run_dir=tmp_path / "files")
        assert result.status == "ok", result.error
        assert len(server.requests) == 5 and server.connections == 2
    family = Family(compile_workflow(runner.load(apart)))
    family.open({"main": object()}, None, tmp_path)  # type: ignore[dict-item]
    assert list(family.owned) == [f"{tmp_path / 'b' / 'sub' / 'summarize.yaml'}:small"]


def test_the_parents_limits_count_the_childs_calls(tmp_path: Path) -> None:
    parent = write_pair(tmp_path, n=3)
    text = parent.read_text(encoding="utf-8").replace("models:", "limits: {max_model_calls: 4}\nmodels:")
    parent.write_text(text, encoding="utf-8")
    proc = run_cli("run", str(parent), "--offline", "-q", "--report-dir", str(tmp_path / "r"), cwd=tmp_path)
    assert proc.returncode == 1
    assert "run stopped by limits.max_model_calls = 4" in proc.stderr
    report = report_of(tmp_path / "r")
    # the parent's own agents have not run yet: the four calls are the children's
    assert report["run"]["limits"]["stopped_by"] == {"limit": "max_model_calls", "setting": 4, "reached": 4}
    assert {node["id"] for node in report["nodes"] if node["kind"] == "agent"} <= {
        f"each[{i}].{stage}" for i in range(3) for stage in ("draft", "polish")
    }


# -- validate, graph ------------------------------------------------------------------------------------------


def test_validate_locates_a_type_mismatch_a_missing_input_and_an_unknown_one_in_the_parent(tmp_path: Path) -> None:
    write_pair(tmp_path, n=1)
    parent = tmp_path / "p.yaml"
    parent.write_text(
        """\
version: 1
name: p
inputs:
  n: {type: integer, default: 3}
stages:
  - id: one
    workflow: sub/summarize.yaml
    inputs: {text: "{{ inputs.n }}", txt: 4}
  - id: two
    fanout:
      for_each: [a, b]
      workflow: sub/summarize.yaml
      inputs:
        style: [1]
""",
        encoding="utf-8",
    )
    proc = run_cli("validate", str(parent), cwd=tmp_path)
    assert proc.returncode == 1
    lines = [line for line in proc.stdout.splitlines() if ": error: " in line]
    assert lines == [
        f"{parent}:8:20: error: input 'text' of workflow sub/summarize.yaml is a string (sub/summarize.yaml:4:3), "
        "and this gives an integer (a template) [workflow-inputs]",
        f"{parent}:8:38: error: workflow sub/summarize.yaml has no input 'txt' [workflow-inputs]",
        f"{parent}:12:17: error: workflow sub/summarize.yaml needs input 'text' (a string, sub/summarize.yaml:4:3) "
        "[workflow-inputs]",
        f"{parent}:14:16: error: input 'style' of workflow sub/summarize.yaml is a string (sub/summarize.yaml:5:3), "
        "and this gives a list ([1]) [workflow-inputs]",
    ]


def test_validate_reports_an_include_cycle_at_the_line_that_closes_it(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("version: 1\nname: a\nstages:\n  - id: b\n    workflow: b.yaml\n")
    (tmp_path / "b.yaml").write_text(
        "version: 1\nname: b\nstages:\n  - id: x\n    python: m:f\n  - id: a\n    workflow: ./a.yaml\n"
    )
    (tmp_path / "m.py").write_text("def f():\n    return 'x'\n")
    proc = run_cli("validate", "a.yaml", cwd=tmp_path)
    assert proc.returncode == 1
    assert (
        proc.stdout.splitlines()[0] == "b.yaml:7:15: error: include cycle: a.yaml -> b.yaml -> a.yaml [include-cycle]"
    )
    assert runner.check(tmp_path / "b.yaml")[0].format_line() == (
        f"{tmp_path / 'a.yaml'}:5:15: error: include cycle: {tmp_path / 'b.yaml'} -> {tmp_path / 'a.yaml'} -> "
        f"{tmp_path / 'b.yaml'} [include-cycle]"
    )
    self_loop = tmp_path / "self.yaml"
    self_loop.write_text("version: 1\nname: s\nstages:\n  - id: again\n    workflow: self.yaml\n")
    (problem,) = runner.check(self_loop)
    assert (
        problem.format_line() == f"{self_loop}:5:15: error: include cycle: {self_loop} -> {self_loop} [include-cycle]"
    )


def test_a_missing_child_and_a_childs_own_problems_are_located_where_they_are(tmp_path: Path) -> None:
    (tmp_path / "child.yaml").write_text("version: 1\nname: c\nstages:\n  - id: x\n    agent: nobody\n")
    parent = tmp_path / "p.yaml"
    parent.write_text(
        "version: 1\nname: p\nstages:\n  - id: a\n    workflow: child.yaml\n  - id: b\n    workflow: chlid.yaml\n"
    )
    proc = run_cli("validate", "p.yaml", cwd=tmp_path)
    assert proc.returncode == 1
    errors = [line for line in proc.stdout.splitlines() if ": error: " in line]
    assert errors[0].startswith("child.yaml:5:12: error: ") and errors[0].endswith("[unknown-agent]")
    assert errors[1:] == [
        "p.yaml:7:15: error: workflow file chlid.yaml not found (paths are relative to the file that names them) "
        "[unknown-workflow]"
    ]
    assert "hint: did you mean 'child.yaml'?" in proc.stdout
    run = run_cli("run", "p.yaml", cwd=tmp_path)
    assert run.returncode == 1 and "chlid.yaml not found" in run.stderr and "Traceback" not in run.stderr


def test_runner_graph_draws_the_child_nested(tmp_path: Path) -> None:
    parent = write_pair(tmp_path, n=2)
    proc = run_cli("graph", str(parent), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1:8] == [
        "  1. each: fanout for each doc in {{ inputs.docs }}",
        "     each: workflow sub/summarize.yaml (inputs text):",
        "       1. draft: agent summarizer (model small, openai)",
        "       2. polish: agent summarizer (model small, openai)",
        "  2. one: workflow sub/summarize.yaml (inputs text, style)",
        "     summarize:",
        "       1. draft: agent summarizer (model small, openai)",
    ]


# -- dataset runs and cassettes -------------------------------------------------------------------------------


def test_a_dataset_run_runs_the_child_for_every_row(tmp_path: Path) -> None:
    parent = write_pair(tmp_path, n=2)
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"docs": [f"r{r}a", f"r{r}b"]}) + "\n" for r in range(3)))
    proc = run_cli(
        "run",
        str(parent),
        "--dataset",
        str(rows),
        "--offline",
        "--keep",
        "one,each",
        "--report-dir",
        str(tmp_path / "r"),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    (results,) = (tmp_path / "r").rglob("results.jsonl")
    lines = sorted((json.loads(line) for line in results.read_text().splitlines()), key=lambda line: line["index"])
    offline = "[offline reply of summarizer to: {}]"
    assert [line["status"] for line in lines] == ["ok"] * 3
    # a sub-workflow's output is its last stage's: text, one per branch of a fan-out over it
    assert lines[2]["stages"] == {
        "one": offline.format(offline.format("long: alone")),
        "each": [offline.format(offline.format(f"short: r2{c}")) for c in "ab"],
    }


def test_a_recorded_run_through_a_child_replays_without_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "k")
    with OAIServer(api_key="k") as server:
        server.responder = lambda body: Plan(content="re: " + body["messages"][-1]["content"][:20])
        parent = write_pair(tmp_path, parent_model=remote(server.url), child_model=remote(server.url), n=2)
        rec = run_cli(
            "run", str(parent), "--record", "tape", "-q", "--report-dir", "rec", cwd=tmp_path, env_extra={KEY_ENV: "k"}
        )
        assert rec.returncode == 0, rec.stderr
        assert len(server.requests) == 7
    rep = run_cli(
        "run",
        str(parent),
        "--replay",
        "tape",
        "--strict",
        "-q",
        "--report-dir",
        "rep",
        cwd=tmp_path,
        env_extra={KEY_ENV: "k"},
    )
    assert rep.returncode == 0, rep.stderr
    assert rep.stdout == rec.stdout


def test_the_typed_data_flow_reaches_into_the_child(tmp_path: Path) -> None:
    (tmp_path / "label.yaml").write_text(
        """\
version: 1
name: label
models:
  m: {provider: scripted}
agents:
  labeler:
    model: m
    output:
      schema: {type: object, required: [label], properties: {label: {type: string}, score: {type: number}}}
stages:
  - {id: label, agent: labeler}
""",
        encoding="utf-8",
    )
    parent = tmp_path / "p.yaml"
    parent.write_text(
        """\
version: 1
name: p
models:
  m: {provider: scripted}
agents:
  w: {model: m}
stages:
  - {id: one, workflow: label.yaml}
  - {id: many, fanout: {for_each: [a, b], workflow: label.yaml}}
  - id: use
    agent: w
    input: "{{ stages.one.stages.label.data.lable }} {{ stages.one.stages.lbl }} {{ stages.one.data.label }}"
  - id: each
    agent: w
    input: "{% for c in stages.many %}{{ c.stages.label.data.x }}{% endfor %}"
""",
        encoding="utf-8",
    )
    assert [p.format_line() for p in runner.check(parent)] == [
        f"{parent}:12:16: error: stages.one.stages.label.data.lable: no field 'lable' in "
        "stages.one.stages.label.data (the output schema of stage 'label') [data-field]",
        f"{parent}:12:57: error: stages.one.stages.lbl: workflow {tmp_path / 'label.yaml'} has no stage 'lbl' "
        "[unknown-stage]",
        f"{parent}:15:42: error: c.stages.label.data.x: no field 'x' in c.stages.label.data (the output schema of "
        "stage 'label') [data-field]",
    ]


def test_a_childs_secrets_are_redacted_and_its_models_described_like_the_parents(tmp_path: Path) -> None:
    from runner.logs import secret_env_names
    from runner.report.layout import describe_workflow

    child = remote().replace(KEY_ENV, "SUBWF_CHILD_KEY")
    wf = runner.load(write_pair(tmp_path, child_model=child, n=1))
    assert secret_env_names(wf) == ["SUBWF_CHILD_KEY", KEY_ENV]
    layout = describe_workflow(wf)
    assert sorted(layout.models) == ["main", "small"] and layout.secrets_env == ("SUBWF_CHILD_KEY", KEY_ENV)
    assert [s.id for s in layout.stages[1].stages] == ["draft", "polish"]
    assert layout.stages[1].stages[0].path == f"{tmp_path / 'sub' / 'summarize.yaml'}: stages[0]"


def test_a_sub_workflow_stages_assertions_check_its_last_output(tmp_path: Path) -> None:
    write_pair(tmp_path, n=1)
    wf = tmp_path / "checked.yaml"
    wf.write_text(
        "version: 1\nname: checked\nstages:\n  - id: one\n    workflow: sub/summarize.yaml\n    inputs: {text: hi}\n"
        "    assert:\n      - {type: contains, value: 'short: hi'}\n      - {type: contains, value: nope}\n",
        encoding="utf-8",
    )
    proc = run_cli("run", str(wf), "--offline", "-q", "--report-dir", str(tmp_path / "r"), cwd=tmp_path)
    assert proc.returncode == 1
    shown = "[offline reply of summarizer to: [offline reply of summarizer to: short: hi]]"
    assert proc.stderr.splitlines()[-3:] == [
        f"runner: stages.one.assert[0] contains: pass ({shown!r} contains 'short: hi')",
        f"runner: stages.one.assert[1] contains: FAIL ({shown!r} does not contain 'nope')",
        "runner: assertions: 1 of 2 passed, 1 failed, 0 errors",
    ]


def test_editing_a_child_workflow_is_refused_on_resume_by_the_stages_that_run_it(tmp_path: Path) -> None:
    """A sub-workflow stage's output (and each fan-out branch's) is kept in the checkpoint, and the stages hash the
    sub-workflows they run: a resume after the child file changed names the parent's stages that include it (their
    kept outputs may not be the child's as it is now), and --force goes on with what was kept."""
    scripted = '{provider: scripted, reply: "ok {{ input }}"}'
    parent = write_pair(tmp_path, parent_model=scripted, child_model=scripted, n=3)
    (tmp_path / "boom.py").write_text("def boom(input):\n    raise RuntimeError('boom')\n", encoding="utf-8")
    text = parent.read_text(encoding="utf-8")
    parent.write_text(text.replace("    agent: writer\n", '    python: "boom:boom"\n'), encoding="utf-8")
    first = runner.run(str(parent), run_dir=tmp_path / "run", checkpoint=True)
    assert first.status == "failed"
    parent.write_text(text, encoding="utf-8")  # the last stage fixed: not a change of a stage that finished
    child = tmp_path / "sub" / "summarize.yaml"
    child.write_text(
        child.read_text(encoding="utf-8").replace(
            "summarizer: {model: small}", 'summarizer: {model: small, sys_prompt: "Terse."}'
        )
    )
    with pytest.raises(runner.RunnerError, match=r"\(stages 'each' changed, 'one' changed, 'final' changed\)"):
        runner.run(str(parent), resume=tmp_path / "run")
    resumed = runner.run(str(parent), resume=tmp_path / "run", force=True)
    assert resumed.status == "ok", resumed.error
    restored = [n["id"] for n in resumed.report["nodes"] if n.get("from_checkpoint")]
    assert restored == ["each", "one"]
    # the children's outputs came back whole: the last stage reads one's draft and the fan-out's length
    assert str(resumed.output) == "ok ok long: alone | 3"
    assert sum(m["calls"] for m in resumed.report["models"].values()) == 1  # only the last stage asked a model
    assert_valid_report(resumed.report)


def test_a_child_models_response_cache_answers_again_beside_the_child(tmp_path: Path) -> None:
    """A child's own ``cache.responses`` (its folder relative to the child's file): the second run's child calls
    come from it, and the report's cache section shows it under the child's file name. A parent model of the same
    name with its own cache does not catch the child's calls (the names are each file's own)."""
    with OAIServer() as server:
        server.responder = lambda body: Plan(content=f"sum of {body['messages'][-1]['content']}")
        cached = remote(server.url).replace("retry:", "cache: {responses: {dir: answers}}, retry:")
        parent = write_pair(tmp_path, parent_model='{provider: scripted, reply: "done"}', child_model=cached, n=2)
        # the parent's own model named like the child's, cached in a folder of its own, used by its last stage
        text = parent.read_text(encoding="utf-8")
        text = text.replace("  main: ", f"  small: {cached.replace('dir: answers', 'dir: parent-answers')}\n  main: ")
        parent.write_text(text.replace("writer: {model: main}", "writer: {model: small}"), encoding="utf-8")
        figures, sent = [], []
        for name in ("one", "two"):
            proc = run_cli(
                "run", str(parent), "-q", "--report-dir", name, cwd=tmp_path, env_extra={KEY_ENV: "k"}, timeout=60
            )
            assert proc.returncode == 0, proc.stderr
            figures.append(report_of(tmp_path / name)["cache"]["models.small (summarize.yaml)"])
            sent.append(len(server.requests))
    # 3 runs of the child (2 branches and a stage), 2 different calls each, and the parent's last stage; the
    # second run: all from the caches
    assert sent == [7, 7]
    assert (figures[0]["misses"], figures[0]["hits"]) == (6, 0)
    assert (figures[1]["misses"], figures[1]["hits"]) == (0, 6)
    assert figures[1]["dir"] == str(tmp_path / "sub" / "answers")
    assert len(list((tmp_path / "sub" / "answers").glob("*.json"))) == 6
    assert len(list((tmp_path / "parent-answers").glob("*.json"))) == 1  # the parent's call only
