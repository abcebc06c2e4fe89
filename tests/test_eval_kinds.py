"""Each assertion kind on given outputs (issue 24), in process: pass, fail and error, with the exact reasons."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from runner.calls import Usage
from runner.evals.evaluate import Evaluator, Outcome, weighted_score
from runner.stages.base import Output
from runner.validate.check import check_file

pytestmark = pytest.mark.timeout(30)

CHECKS = """\
import asyncio


def yes(output):
    return True


def half(output):
    return 0.5


async def later(output, row):
    await asyncio.sleep(0)
    return {"pass": output == row["want"], "score": 0.75, "reason": "compared"}


def weird(output):
    return "yes"


def broken(**kwargs):
    raise ValueError("no " + str(sorted(kwargs)))
"""


def verdicts(tmp_path: Path, items: list[str], output: Any, row: dict[str, Any] | None = None, **kw: Any) -> list[Any]:
    (tmp_path / "eval_kind_checks.py").write_text(CHECKS)
    path = tmp_path / "wf.yaml"
    path.write_text(
        "version: 1\nname: k\ninputs: {q: {type: string, default: x}}\nmodels: {m: {provider: scripted}}\n"
        "agents: {a: {model: m}}\nstages: [{id: s, agent: a}]\nassert:\n" + "".join(f"  - {i}\n" for i in items)
    )
    wf, problems = check_file(path)
    assert wf is not None, [p.format_line() for p in problems]
    evaluator = Evaluator(wf, {})
    got = asyncio.run(
        evaluator.check(
            Outcome(
                kw.get("ok", True),
                kw.get("error"),
                output,
                {"s": output},
                {"q": "x"},
                row or {},
                kw.get("latency", 0.5),
                kw.get("tokens", 100),
                kw.get("cost", 0.01),
            )
        )
    )
    return [(v.status, v.score, v.reason) for v in got]


def reply(text: str, data: Any = None) -> Output:
    return Output(text, "a", "s", Usage(1, 1), None, data)


def test_text_kinds(tmp_path: Path) -> None:
    out = reply("Hello World")
    assert verdicts(
        tmp_path,
        [
            "{type: contains, value: World}",
            "{type: contains, value: world}",
            "{type: icontains, value: world}",
            "{type: starts_with, value: Hello}",
            "{type: regex, value: '^H\\w+ W'}",
            "{type: regex, value: '\\d'}",
            "{type: equals, value: Hello World}",
            "{type: equals, value: Hello World, not: true}",
        ],
        out,
    ) == [
        ("pass", 1.0, "'Hello World' contains 'World'"),
        ("fail", 0.0, "'Hello World' does not contain 'world'"),
        ("pass", 1.0, "'Hello World' contains 'world'"),
        ("pass", 1.0, "'Hello World' starts with 'Hello'"),
        ("pass", 1.0, "'Hello World' matches '^H\\\\w+ W'"),
        ("fail", 0.0, "'Hello World' does not match '\\\\d'"),
        ("pass", 1.0, "'Hello World' == 'Hello World'"),
        ("fail", 0.0, "not: 'Hello World' == 'Hello World'"),
    ]


def test_fields_of_structured_outputs_against_row_columns(tmp_path: Path) -> None:
    out = reply('{"label": "bug", "n": 3}', {"label": "bug", "n": 3, "items": [{"t": "a"}]})
    row = {"label": "bug", "n": "3", "x": "3.2", "labels": "bug"}
    assert verdicts(
        tmp_path,
        [
            "{type: equals, path: data.label, value: '{{ row.label }}'}",
            "{type: equals, path: data.n, value: '{{ row.n }}'}",  # CSV text "3" is the number 3
            "{type: close, path: data.n, value: '{{ row.x }}', tolerance: 0.25}",
            "{type: close, path: data.n, value: 3.5, tolerance: 0.25}",
            "{type: one_of, path: data.label, value: [feature, '{{ row.labels }}']}",
            "{type: equals, path: 'data.items[0].t', value: a}",
            "{type: equals, path: data.nope, value: a}",
            "{type: equals, path: 'data.items[3]', value: a}",
            "{type: is-json}",
            "{type: json_schema, value: {type: object, required: [label, why]}}",
        ],
        out,
        row,
    ) == [
        ("pass", 1.0, "'bug' == 'bug'"),
        ("pass", 1.0, "3 == '3'"),
        ("pass", 1.0, "|3 - 3.2| <= 0.25"),
        ("fail", 0.0, "|3 - 3.5| > 0.25"),
        ("pass", 1.0, '\'bug\' is one of ["feature", "bug"]'),
        ("pass", 1.0, "'a' == 'a'"),
        (
            "error",
            0.0,
            'output.data.nope: no such field (the value is {"label": "bug", "n": 3, "items": [{"t": "a"}]})',
        ),
        ("error", 0.0, 'output.data.items[3]: no such item (the value is [{"t": "a"}])'),
        ("pass", 1.0, "valid JSON"),
        ("fail", 0.0, "at $: missing required field 'why'"),
    ]


def test_python_assertions_return_bools_scores_or_verdicts(tmp_path: Path) -> None:
    got = verdicts(
        tmp_path,
        [
            "{type: python, value: 'eval_kind_checks:yes'}",
            "{type: python, value: 'eval_kind_checks:half'}",
            "{type: python, value: 'eval_kind_checks:half', threshold: 0.6}",
            "{type: python, value: 'eval_kind_checks:later'}",
            "{type: python, value: 'eval_kind_checks:weird'}",
            "{type: python, value: 'eval_kind_checks:broken'}",
        ],
        reply("ok"),
        {"want": "ok"},
    )
    assert got == [
        ("pass", 1.0, "eval_kind_checks:yes gave score 1"),
        ("pass", 0.5, "eval_kind_checks:half gave score 0.5"),
        ("fail", 0.5, "eval_kind_checks:half gave score 0.5"),
        ("pass", 0.75, "compared"),
        (
            "error",
            0.0,
            "eval_kind_checks:weird returned 'yes': expected a bool, a score in [0, 1] or {pass, score, reason}",
        ),
        ("error", 0.0, "ValueError: no ['inputs', 'output', 'row', 'stages'] (at eval_kind_checks.py:22 in broken)"),
    ]


def test_row_limits_and_a_failed_row(tmp_path: Path) -> None:
    items = ["{type: latency, max: 1}", "{type: tokens, max: 50}", "{type: cost, max: 0.02}"]
    assert verdicts(tmp_path, items, reply("x"), latency=1.5) == [
        ("fail", 0.0, "latency 1.5 > max 1"),
        ("fail", 0.0, "tokens 100 > max 50"),
        ("pass", 1.0, "cost 0.01 <= max 0.02"),
    ]
    assert verdicts(tmp_path, items[:1], None, ok=False, error="boom") == [
        ("error", 0.0, "the row failed before its output could be checked: boom"),
    ]


def test_a_template_error_is_located(tmp_path: Path) -> None:
    assert verdicts(tmp_path, ["{type: equals, value: '{{ row.missing }}'}"], reply("x")) == [
        ("error", 0.0, f"{tmp_path / 'wf.yaml'}:8:28: template error: 'dict object' has no attribute 'missing'"),
    ]


def test_weights_make_the_row_score(tmp_path: Path) -> None:
    from runner.evals.evaluate import Verdict

    got = [
        Verdict("a", "equals", "assert", "pass", 1.0, "", 3.0),
        Verdict("b", "equals", "assert", "fail", 0.0, "", 1.0),
    ]
    assert weighted_score(got) == 0.75
