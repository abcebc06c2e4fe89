"""Structured outputs offline (issue 16): the scripted model answers with a value built from the schema or with
its reply (checked like any model's), so ``--offline`` dry runs exercise structured flows end to end; the value
is ``stages.<id>.data`` in templates and in the result; the schema may live in a file beside the workflow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import runner
from tests.conftest import run_cli

pytestmark = pytest.mark.timeout(60)

PLANNER = """\
version: 1
name: planned
models:
  m: {provider: scripted}
agents:
  planner:
    model: m
    output:
      schema:
        type: object
        required: [tasks, mood, level, tag, ok]
        properties:
          tasks:
            type: array
            minItems: 2
            items: {type: object, required: [title], properties: {title: {type: string, examples: [write]}}}
          mood: {enum: [calm, busy]}
          level: {type: integer, minimum: 3}
          tag: {const: v1}
          ok: {type: boolean, default: true}
  worker: {model: m, sys_prompt: "You do {{ vars.task.title }}."}
stages:
  - {id: plan, agent: planner, input: "Plan it."}
  - id: work
    fanout: {for_each: "{{ stages.plan.data.tasks }}", as: task, agent: worker}
    input: "Do {{ vars.task.title }} at level {{ stages.plan.data.level }}."
"""
BUILT = {"tasks": [{"title": "write"}, {"title": "write"}], "mood": "calm", "level": 3, "tag": "v1", "ok": True}


def test_a_scripted_model_without_reply_answers_with_a_value_built_from_the_schema() -> None:
    result = runner.run(PLANNER)
    assert result.status == "ok", result.error
    assert result.stages["plan"].data == BUILT
    assert json.loads(result.stages["plan"].content) == BUILT
    assert [out.content for out in result.stages["work"]] == ["Do write at level 3."] * 2
    assert [out.data for out in result.stages["work"]] == [None, None]  # the worker has no output schema


def test_a_scripted_reply_template_is_parsed_and_checked() -> None:
    text = PLANNER.replace(
        "  m: {provider: scripted}",
        """  m: {provider: scripted}
  canned:
    provider: scripted
    reply: '{"tasks": [{"title": "{{ input | lower }}"}, {"title": "b"}], "mood": "busy", "level": 4, "tag": "v1",
      "ok": false}'""",
    ).replace("    model: m\n    output:", "    model: canned\n    output:")
    result = runner.run(text)
    assert result.status == "ok", result.error
    assert result.stages["plan"].data["tasks"] == [{"title": "plan it."}, {"title": "b"}]
    assert [out.content for out in result.stages["work"]] == ["Do plan it. at level 4.", "Do b at level 4."]


def test_a_scripted_reply_that_never_fits_fails_after_its_repair_turn() -> None:
    reply = "  m: {provider: scripted, reply: '{{ {\"mood\": input} | tojson }}'}"
    text = PLANNER.replace("  m: {provider: scripted}", reply)
    result = runner.run(text)
    assert result.status == "failed"
    assert str(result.error) == (
        "agent 'planner' (node plan) gave no valid structured output (1 repair turn, output.max_repairs=1): the "
        "value does not match the schema at $: missing required field 'tasks', 'level', 'tag', 'ok'; at $.mood: "
        'expected one of "calm", "busy", got "Plan it."; the reply began: \'{"mood": "Plan it."}\''
    )
    (node, *_) = result.report["nodes"]
    assert node["repairs"] == 1 and result.report["totals"]["repairs"] == 1


def test_the_stage_output_wins_over_the_agents_and_a_fanout_agent_gives_each_item_data() -> None:
    text = """\
version: 1
name: outputs
models:
  m: {provider: scripted}
agents:
  voter:
    model: m
    output: {schema: {type: object, required: [vote], properties: {vote: {enum: [approve, reject]}}}}
stages:
  - id: votes
    fanout: {for_each: [1, 2, 3], agent: voter}
  - id: tally
    agent: voter
    output: {schema: {type: object, required: [count], properties: {count: {type: integer, examples: [3]}}}}
    input: "{{ stages.votes | map(attribute='data') | map(attribute='vote') | join(',') }}"
"""
    result = runner.run(text)
    assert result.status == "ok", result.error
    assert [out.data for out in result.stages["votes"]] == [{"vote": "approve"}] * 3
    assert result.stages["tally"].data == {"count": 3}
    assert result.output.data == {"count": 3}


def test_offline_dry_run_builds_values_for_remote_models_and_streams_them(tmp_path: Path) -> None:
    text = PLANNER.replace(
        "  m: {provider: scripted}",
        '  m: {provider: openai, base_url: "http://127.0.0.1:9/v1", model: x, api_key_env: NO_SUCH_KEY_SET}',
    )
    wf = tmp_path / "wf.yaml"
    wf.write_text(text)
    proc = run_cli("run", str(wf), "--offline", "--report-dir", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"[plan planner] {json.dumps(BUILT)}"
    assert sorted(lines[1:]) == [
        "[work[0] worker] [offline reply of worker to: Do write at level 3.]",
        "[work[1] worker] [offline reply of worker to: Do write at level 3.]",
    ]


def test_a_streamed_structured_reply_streams_its_tokens_and_is_parsed_at_the_end() -> None:
    text = PLANNER.replace("  m: {provider: scripted}", "  m: {provider: scripted, latency: {tokens_per_second: 2000}}")
    tokens: list[str] = []

    def on_event(event: object) -> None:
        if isinstance(event, runner.Token) and event.node == "plan":
            tokens.append(event.text)

    result = runner.run(text, on_event=on_event)
    assert result.status == "ok", result.error
    assert result.stages["plan"].data == BUILT
    assert len(tokens) > 1 and "".join(tokens) == json.dumps(BUILT)


@pytest.mark.parametrize("suffix", ["json", "yaml"])
def test_a_schema_file_is_read_relative_to_the_workflows_folder(tmp_path: Path, suffix: str) -> None:
    folder = tmp_path / "flows"
    (folder / "schemas").mkdir(parents=True)
    answer = {"type": "string", "examples": ["42"]}
    schema = {"type": "object", "required": ["answer"], "properties": {"answer": answer}}
    if suffix == "json":
        (folder / "schemas" / "answer.json").write_text(json.dumps(schema))
    else:
        (folder / "schemas" / "answer.yaml").write_text(
            "type: object\nrequired: [answer]\nproperties:\n  answer: {type: string, examples: ['42']}\n"
        )
    (folder / "wf.yaml").write_text(
        f"""\
version: 1
name: filed
models:
  m: {{provider: scripted}}
agents:
  a: {{model: m, output: {{schema: schemas/answer.{suffix}}}}}
stages:
  - {{id: ask, agent: a, input: "?"}}
  - {{id: tell, agent: a, input: "{{{{ stages.ask.data.answer }}}}"}}
"""
    )
    proc = run_cli("run", str(folder / "wf.yaml"), "--report-dir", str(tmp_path / "r"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ['[ask a] {"answer": "42"}', '[tell a] {"answer": "42"}']
    (folder / "wf.yaml").write_text((folder / "wf.yaml").read_text().replace("answer }}", "anwser }}"))
    proc = run_cli("validate", str(folder / "wf.yaml"), cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[0] == (
        f"{folder / 'wf.yaml'}:9:37: error: stages.ask.data.anwser: no field 'anwser' in stages.ask.data (the output "
        "schema of stage 'ask') [data-field]"
    )


def test_a_scripted_tool_agent_calls_its_tools_then_answers_with_a_built_value() -> None:
    text = """\
version: 1
name: tooled
tools:
  nap: {function: "tests.toolbox:slow_sync"}
models:
  m:
    provider: scripted
    turns:
      - tool_calls: [{name: nap, arguments: {seconds: 0}}]
agents:
  doer:
    model: m
    tools: [nap]
    output: {schema: {type: object, required: [done], properties: {done: {const: true}}}}
stages:
  - {id: do, agent: doer, input: "Nap, then report."}
"""
    result = runner.run(text)
    assert result.status == "ok", result.error
    assert result.stages["do"].data == {"done": True}
    tools = [n for n in result.report["nodes"] if n["kind"] == "tool"]
    assert [(n["tool"], n["status"]) for n in tools] == [("nap", "ok")]
