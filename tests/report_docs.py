"""Checks and makers of report documents shared by the hardening tests: every writer over one report, and
reports made at random from ``schemas/report.schema.json`` (anything `runner report FILE` accepts)."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

from runner.report.document import report_json
from runner.report.markdown import to_markdown
from runner.report.summary import format_summary, format_table
from runner.report.trace import to_trace
from tests.conftest import ROOT, assert_valid_report
from tests.trace_check import assert_valid_trace

REPORT_SCHEMA: dict[str, Any] = json.loads((ROOT / "schemas" / "report.schema.json").read_text(encoding="utf-8"))

_UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")


def assert_tables_well_formed(markdown: str) -> None:
    """Every row of every Markdown table has as many cells as its header (an unescaped ``|`` in a cell, or a
    line break, would shift the columns)."""
    cells = None
    for line in markdown.splitlines():
        if not line.startswith("|"):
            cells = None
            continue
        count = len(_UNESCAPED_PIPE.findall(line))
        if cells is None:
            cells = count
        assert count == cells, f"a row with {count - 1} cells in a table of {cells - 1}: {line!r}"


def writer_outputs(report: dict[str, Any]) -> dict[str, str]:
    """What each writer makes of ``report``, each checked for its format: the terminal table and summary,
    Markdown (tables whole), the trace (valid and well nested), the JSON document (the same data)."""
    assert_valid_report(report)
    table, summary = format_table(report), format_summary(report)
    assert summary.startswith(table)
    markdown = to_markdown(report)
    run = report["run"]
    assert markdown.startswith(f"# Run `{report['workflow']['name']}`: {run['status']} in {run['wall_s']:.3f} s\n")
    assert_tables_well_formed(markdown)
    trace = to_trace(report)
    assert_valid_trace(trace)
    document = report_json(report)
    assert json.loads(document) == json.loads(json.dumps(report))
    for text in (summary, markdown):  # a missing figure is said, never printed as Python's None
        assert "None" not in text and "nan" not in text, text
    return {"text": summary, "markdown": markdown, "trace": json.dumps(trace), "json": document}


def assert_every_node_is_shown(report: dict[str, Any], outputs: dict[str, str]) -> None:
    """Each node that was queued or started has a span in the trace (tools inside their caller's), and the
    Markdown names every node or the fan-out group holding it."""
    from runner.report.nodes import stage_key

    trace = json.loads(outputs["trace"])
    spans = {e["name"] for e in trace["traceEvents"] if e["ph"] == "X"}
    ids = {n["id"] for n in report["nodes"]}
    for node in report["nodes"]:
        if node["queued_s"] is None and node["start_s"] is None:
            continue
        name = f"tool {node['tool']}" if node["kind"] == "tool" and node.get("parent") in ids else node["id"]
        assert name in spans, (name, sorted(spans))
        assert f"`{node['id']}`" in outputs["markdown"] or f"`{stage_key(node['id'])}` x" in outputs["markdown"]


# -- reports at random, from the schema ------------------------------------------------------------------------

_STRINGS = ["", "a", "notes[0]", "fan[1].inner", "x|y", "`tick`", "ünï", "digest.tool[0.1]", "[3]", "a" * 90]


def random_instance(schema: dict[str, Any], rnd: random.Random) -> Any:
    """A value the schema accepts, drawn at random: each optional key present or not, nullable values null
    or not, numbers at their bounds, tiny (1e-7) or large, strings with Markdown's and ids' special
    characters. Enough of JSON Schema for the report's schema (type, enum, const, properties, required,
    additionalProperties, items, maxItems, minimum, pattern)."""
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return rnd.choice(schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = rnd.choice(kind)
    if kind is None:
        return rnd.choice([None, 1, 2.5, "x", True])
    if kind == "null":
        return None
    if kind == "boolean":
        return rnd.random() < 0.5
    if kind == "integer":
        low = schema.get("minimum", 0)
        return rnd.choice([low, low + 1, low + rnd.randint(0, 10_000)])
    if kind == "number":
        low = schema.get("minimum", -1)
        spreads = (0.0, 1e-7, 3.0, 1e5)  # at the bound, tiny (a near-zero duration), ordinary, huge
        return max(low, 0) if rnd.random() < 0.2 else low + rnd.random() * rnd.choice(spreads)
    if kind == "string":
        if "pattern" in schema:  # the one pattern is the sha256's
            return "".join(rnd.choice("0123456789abcdef") for _ in range(64))
        return rnd.choice(_STRINGS)
    if kind == "array":
        count = rnd.randint(0, min(schema.get("maxItems", 6), 6))
        return [random_instance(schema.get("items", {}), rnd) for _ in range(count)]
    if kind == "object":
        out: dict[str, Any] = {}
        properties = schema.get("properties", {})
        required = set(schema.get("required", ()))
        for key, sub in properties.items():
            if key in required or rnd.random() < 0.5:
                out[key] = random_instance(sub, rnd)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for _ in range(rnd.randint(0, 3)):
                out[rnd.choice(_STRINGS[:8]) + str(rnd.randint(0, 3))] = random_instance(extra, rnd)
        elif extra is None and not properties:
            for _ in range(rnd.randint(0, 2)):
                out[rnd.choice(_STRINGS)] = rnd.choice([1, "v", None, [1]])
        return out
    raise AssertionError(f"the report schema uses type {kind!r}: teach random_instance about it")


def random_report(seed: int) -> dict[str, Any]:
    report: dict[str, Any] = random_instance(REPORT_SCHEMA, random.Random(seed))
    return report


def save(report: dict[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(report), encoding="utf-8")
    return path
