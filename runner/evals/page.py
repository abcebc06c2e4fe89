"""The eval page (issue 24): ``evals.html`` in a batch's run folder, one self-contained page of the verdicts: a row
per dataset row, failures first (then errors, then passes), a column per assertion, each cell opening the row's
output and the assertion's status, score and reason.

Built as the timing report's page is (``runner/report/html.py``): the data embedded as escaped JSON, CSS and JS
inline (``page_assets/``), a Content-Security-Policy that allows no network and only the page's own script and
style, by hash; the script puts text into the page as text, never as markup. A page lists at most
:data:`MAX_ROWS` rows: the rows that did not pass first, so what is left out is passing rows, and it says so.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from typing import Any

MAX_ROWS = 5000
MAX_OUTPUT = 4000  # characters of a row's output shown (results.jsonl holds it whole)
_ORDER = {"fail": 0, "error": 1, "pass": 2}


@cache
def _asset(name: str) -> str:
    return resources.files("runner.evals").joinpath("page_assets", name).read_text(encoding="utf-8")


@cache
def _shell() -> str:
    style, script = _asset("evals.css"), _asset("evals.js")
    policy = (
        "default-src 'none'; "
        f"script-src '{_sha256(script)}'; style-src '{_sha256(style)}'; "
        "img-src data:; base-uri 'none'; form-action 'none'"
    )
    page = _asset("evals.html")
    for name, value in (("{policy}", policy), ("{style}", style), ("{script}", script)):
        head, found, tail = page.partition(name)
        assert found, name
        page = head + value + tail
    return page


def to_page(workflow: str, totals: Mapping[str, Any], lines: Sequence[Mapping[str, Any]]) -> str:
    """The page of a batch's verdicts: ``totals`` (report.json's ``evals``), ``lines`` (results.jsonl's)."""
    names = [a["name"] for a in totals["assertions"]]
    column = {name: i for i, name in enumerate(names)}
    ordered = sorted(lines, key=lambda line: (_ORDER.get(str(line.get("verdict")), 3), line["index"]))
    rows = []
    for line in ordered[:MAX_ROWS]:
        cells: list[dict[str, Any] | None] = [None] * len(names)
        for v in line.get("assertions") or ():
            if v["name"] in column:
                cells[column[v["name"]]] = {"status": v["status"], "score": v["score"], "reason": v["reason"]}
        output = line.get("output")
        text = output if isinstance(output, str) else "" if output is None else _json(output)
        rows.append(
            {
                "key": str(line.get("key", line["index"])),
                "verdict": line.get("verdict", "error"),
                "output": text if len(text) <= MAX_OUTPUT else text[:MAX_OUTPUT] + " [...]",
                "error": line.get("error"),
                "cells": cells,
            }
        )
    data = {
        "workflow": workflow,
        "totals": {k: totals[k] for k in ("rows", "passed", "failed", "errors", "pass_rate", "met", "worst")},
        "assertions": names,
        "rows": rows,
        "not_shown": max(len(ordered) - MAX_ROWS, 0),
    }
    head, found, tail = _shell().partition("{data}")
    assert found
    return head + _embedded(data) + tail


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, default=str)


# As the timing page embeds its report (runner.report.html.embed_json, not imported here: 0.1 s of imports at the
# end of every eval): no <, > or & left, so no text can end the script tag or open a comment.
_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def _embedded(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str).translate(_ESCAPES)


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")
