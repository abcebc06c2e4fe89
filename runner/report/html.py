"""The HTML report (``.html``): one self-contained page that draws the timing report as a waterfall.

The page is a pure function of the JSON report document: the document is embedded, whole, as JSON in a
``<script type="application/json">`` tag, and the page's own script (``html_assets/report.js``) draws from it the
summary (status, wall time, the split of the critical path, the bottlenecks with the setting to change, the
per-model table) and a waterfall of every node with virtualised rows, so a 10,000-node report opens as fast as a
small one (``bench/html_report.py``). Nothing else goes in: no time of writing, nothing from the environment.

It loads nothing (no CDN, no font, no image): CSS and JS are inline, and a Content-Security-Policy allows no
network at all and only the page's own script and style, by hash. Text from the report (node ids, errors, model
names, advice) reaches the page only as escaped JSON: ``<``, ``>`` and ``&`` are written as ``\\u003c``,
``\\u003e`` and ``\\u0026``, so no string can close the tag; the script puts text into the page as text nodes,
never as markup. The JSON escapes are forms that :func:`runner.secrets.redact` recognises, so the page is
redacted as the JSON report is.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

from runner.report.critical_path import CATEGORY_LABELS

__all__ = ["CATEGORY_FILLS", "KIND_LABELS", "SEGMENT_LABELS", "STATUS_LABELS", "embed_json", "to_html"]

# The words the page uses, pinned to the report schema's enums by the tests. A node's status as a reader says it
# (runner.report.nodes.node_status): `timed out` is a failed node that its stage's `timeout` stopped.
STATUS_LABELS = {
    "ok": "finished",
    "failed": "it raised an error, or its call failed",
    "timed out": "stopped by its stage's `timeout`",
    "cancelled": "cancelled: the run was interrupted, or a failing sibling cancelled it",
    "skipped": "skipped (`when:` was false, or the stage before it failed)",
    "unfinished": "still running when the run stopped",
}
KIND_LABELS = {
    "agent": "agent call",
    "fanout": "fan-out",
    "branch": "fan-out branch",
    "python": "python stage",
    "tool": "tool call",
    "loop": "loop",
    "iteration": "loop iteration",
    "switch": "switch",
    "approve": "approve gate",
    "ask": "ask gate",
    "workflow": "sub-workflow",
}
# The parts of a bar, in the order the legend shows them.
SEGMENT_LABELS = {
    "queue": "waiting for a fan-out slot (`max_concurrency`)",
    "pool": "waiting for a pool connection",
    "rate": "waiting for the rate limiter",
    "ttft": "waiting for the first token",
    "model": "streaming, or the model's whole answer",
    "tool": "tool call",
    "python": "python stage",
    "gate": "waiting for a person (approve, ask)",
    "group": "fan-out or branch (its span)",
    "attempt": "failed attempt",
    "backoff": "back-off before a retry",
}
# The colour of each cause of the critical path's time: the colour of the part of a bar it stands for.
CATEGORY_FILLS = {
    "model": "model",
    "pool": "pool",
    "rate_limit": "rate",
    "concurrency": "queue",
    "retries": "backoff",
    "tools": "tool",
    "python": "python",
    "gates": "gate",
    "overhead": "overhead",
}

_PLACE = re.compile(r"\{(policy|style|script|vocabulary)\}")
_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def embed_json(value: Any) -> str:
    """``value`` as JSON to put between ``<script type="application/json">`` and ``</script>``: no ``<``, ``>``
    or ``&`` left (escaped inside strings; JSON has none outside them), so no text can end the tag or open a
    comment, whatever it holds. Infinite and NaN numbers, which JSON cannot say, become null."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=str)
    except ValueError:  # a NaN or an infinity somewhere (a report edited by hand): the rest stays as it is
        text = json.dumps(_finite(value), ensure_ascii=False, separators=(",", ":"), default=str)
    return text.translate(_ESCAPES)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


@cache
def _asset(name: str) -> str:
    return resources.files("runner.report").joinpath("html_assets", name).read_text(encoding="utf-8")


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


@cache
def _page() -> tuple[str, str]:
    """The page before and after the embedded report, with the policy that allows only its own script and style."""
    style, script = _asset("report.css"), _asset("report.js")
    policy = (
        "default-src 'none'; "
        f"script-src '{_sha256(script)}'; style-src '{_sha256(style)}'; "
        "img-src data:; base-uri 'none'; form-action 'none'"
    )
    vocabulary = embed_json(
        {
            "categories": CATEGORY_LABELS,
            "fills": CATEGORY_FILLS,
            "statuses": STATUS_LABELS,
            "kinds": KIND_LABELS,
            "segments": SEGMENT_LABELS,
        }
    )
    fill = {"policy": policy, "style": style, "script": script, "vocabulary": vocabulary}
    head, found, tail = _asset("report.html").partition("{report}")
    assert found, "the page has a place for the report"

    def filled(part: str) -> str:  # one pass over the shell: what is put in is never searched again
        return _PLACE.sub(lambda m: fill[m.group(1)], part)

    return filled(head), filled(tail)


def to_html(report: Mapping[str, Any]) -> str:
    """The report as one self-contained HTML page."""
    head, tail = _page()
    return head + embed_json(report) + tail
