"""Working and long-term memory inside runs: budget held, full history on disk, recall across runs, cache hits."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from runner.engine.session import run_plan
from runner.plan.compile import compile_workflow
from runner.validate.check import load_workflow
from runner.workflow.inputs import resolve_inputs
from tests.conftest import ROOT


def run(path: Path, run_dir: Path, sets=()):
    wf = load_workflow(path)
    outcome = run_plan(compile_workflow(wf), resolve_inputs(wf, list(sets)), run_dir=run_dir)
    assert outcome.status == "ok", outcome.error
    return outcome, outcome.recorder.events


def test_working_memory_holds_the_budget_and_keeps_the_full_history(tmp_path) -> None:
    shutil.copy(ROOT / "workflows" / "long-conversation.yaml", tmp_path / "wf.yaml")
    shutil.copy(ROOT / "workflows" / "example_tools.py", tmp_path / "example_tools.py")
    outcome, events = run(tmp_path / "wf.yaml", tmp_path / "run")
    assert outcome.output.content == "Read all twelve chapters; the common thread is bounded concurrency."
    (stats,) = [data for _, kind, node, data in events if kind == "memory_stats" and node == "read"]
    assert stats["max_tokens_after"] <= 3000
    assert stats["compactions"] > 0 and stats["summaries"] > 0
    history = [json.loads(line) for line in (tmp_path / "run" / "memory" / "read.jsonl").read_text().splitlines()]
    roles = [m["role"] for m in history]
    # system, user, then 12 x (assistant tool call, tool result), then the final answer: nothing dropped
    assert roles == ["system", "user"] + ["assistant", "tool"] * 12 + ["assistant"]
    assert history[3]["content"].startswith("Chapter 1: findings")
    assert len(history[3]["content"]) > 4000  # stored whole in the history, compacted only in context
    assert history[-1]["content"] == outcome.output.content


RECALL = """\
version: 1
name: recall
inputs:
  q: {type: string}
models:
  m:
    provider: scripted
    turns:
      - tool_calls: [{name: recall, arguments: {query: "{{ input }}"}}]
    reply: "{{ tool_results[0] | replace('\\n', ' / ') }}"
embeddings:
  e: {provider: hashing, dimensions: 128, cache: {dir: cache, max_file_number: 100}}
memory:
  lt: {long_term: {embedding: e, store: store, top_k: 2, retrieval: tool}}
agents:
  a: {model: m, memory: lt}
stages:
  - {id: s, agent: a, input: "{{ inputs.q }}"}
"""


def test_long_term_memory_recalls_across_runs_and_hits_the_cache(tmp_path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(RECALL)
    first, events = run(path, tmp_path / "r1", ["q=pool sizing for fan-outs"])
    assert first.output.content == "Nothing relevant in long-term memory."
    (cache,) = [data for _, kind, name, data in events if kind == "cache_stats" and name == "e"]
    assert (cache["hits"], cache["misses"]) == (0, 1)  # an empty store is not searched; the turn is recorded
    second, _ = run(path, tmp_path / "r2", ["q=pool sizing for fan-outs"])
    assert second.output.content.startswith("From long-term memory, most similar first: / 1. (")
    assert "pool sizing for fan-outs\n-> Nothing relevant in long-term memory." not in second.output.content
    assert "pool sizing for fan-outs -> Nothing relevant in long-term memory." in second.output.content.replace(
        " / -> ", " -> "
    )
    _, events = run(path, tmp_path / "r3", ["q=pool sizing for fan-outs"])
    (cache,) = [data for _, kind, name, data in events if kind == "cache_stats" and name == "e"]
    assert cache["hits"] >= 1  # the query was embedded by the second run: now served from the file cache
    assert (tmp_path / "store" / "manifest.json").exists()
