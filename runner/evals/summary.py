"""The verdicts of every row added up (issue 24): pass rates per assertion and per ``assert:`` list, errors
counted apart from failures, the thresholds that set the exit code, and the three ways they are shown: the
``evals`` section of the batch report (JSON, ``schemas/batch-report.schema.json``), Markdown for a pull
request, and JUnit XML for CI test tabs (one test case per row; a failed assertion is a ``failure``, one that
could not be checked an ``error``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from runner.evals.evaluate import ERROR, FAIL, PASS, row_status_of
from runner.workflow.asserts import AssertList


@dataclass
class _Count:
    kind: str
    scope: str
    passed: int = 0
    failed: int = 0
    errors: int = 0
    score: float = 0.0
    flaky: int = 0  # rows where its status was not the same in every run (repeat: N)

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.errors


@dataclass
class EvalStats:
    """The running totals of a batch's verdicts, in the order the file lists the assertions."""

    lists: Sequence[AssertList]
    assertions: dict[str, _Count] = field(default_factory=dict)
    list_rows: dict[str, list[int]] = field(default_factory=dict)  # scope -> [rows passed, rows counted]
    rows: int = 0
    rows_passed: int = 0
    rows_failed: int = 0
    rows_errors: int = 0
    judge_tokens: int = 0
    score: float = 0.0  # the rows' weighted scores, summed
    repeat: int = 0  # repeat: N: the runs per row (0: one run, no repeats section)
    repeat_rows: int = 0
    at_k: int = 0  # rows where at least one run passed every assertion
    all_k: int = 0  # rows where every run did
    flaky_rows: int = 0  # rows whose runs' verdicts were not all the same
    agreement: float = 0.0  # the rows' agreement (the share of runs with the row's verdict), summed

    def __post_init__(self) -> None:
        for lst in self.lists:
            self.list_rows[lst.scope] = [0, 0]
            for spec in lst.items:
                self.assertions[spec.name] = _Count(spec.kind, lst.scope)

    def add(self, verdicts: Sequence[dict[str, Any]], repeats: dict[str, Any] | None = None) -> str:
        """Count one row's verdicts (and its ``repeats`` summary, with repeat: N); the row's status: pass (every
        assertion passed), fail, or error (one could not be checked, and none failed)."""
        self.rows += 1
        if repeats is not None:
            self.repeat = max(self.repeat, int(repeats["n"]))
            self.repeat_rows += 1
            self.at_k += bool(repeats["pass_at_k"])
            self.all_k += repeats["passed"] == repeats["n"]
            self.flaky_rows += len(set(repeats["verdicts"])) > 1
            self.agreement += float(repeats["agreement"])
        # one pass over the row's verdicts: each assertion's counts, the row's weighted score, each list's
        # verdict and the row's status (a row is added as it ends, on the run's loop: this is kept lean)
        total = weighted = 0.0
        failed = broken = False
        scopes: dict[str, bool] = {}  # scope -> every assertion of it passed
        assertions = self.assertions
        for v in verdicts:
            weight = float(v.get("weight", 1.0))
            score = v["score"]
            total += weight
            weighted += score * weight
            status = v["status"]
            if status == FAIL:
                failed = True
            elif status != PASS:
                broken = True
            count = assertions.get(v["name"])
            if count is None:
                continue  # a line from before the workflow changed (a resume with --force)
            count.score += score
            if "repeats" in v:
                count.flaky += len(set(v["repeats"] or ())) > 1
            if status == PASS:
                count.passed += 1
                scopes.setdefault(count.scope, True)
            else:
                if status == FAIL:
                    count.failed += 1
                else:
                    count.errors += 1
                scopes[count.scope] = False
        self.score += weighted / total if total > 0 else 1.0
        for scope, passed in scopes.items():
            counts = self.list_rows[scope]
            counts[1] += 1
            counts[0] += passed
        if failed:
            self.rows_failed += 1
            return FAIL
        if broken:
            self.rows_errors += 1
            return ERROR
        self.rows_passed += 1
        return PASS

    def document(self) -> dict[str, Any]:
        lists = []
        for lst in self.lists:
            passed, counted = self.list_rows[lst.scope]
            rate = passed / counted if counted else 1.0
            lists.append(
                {
                    "scope": lst.scope,
                    "threshold": lst.threshold,
                    "rows": counted,
                    "passed": passed,
                    "pass_rate": round(rate, 6),
                    "met": rate >= lst.threshold,
                }
            )
        assertions: list[dict[str, Any]] = []
        for name, c in self.assertions.items():
            assertions.append(
                {
                    "name": name,
                    "type": c.kind,
                    "scope": c.scope,
                    "passed": c.passed,
                    "failed": c.failed,
                    "errors": c.errors,
                    "pass_rate": round(c.passed / c.total, 6) if c.total else 1.0,
                    "mean_score": round(c.score / c.total, 6) if c.total else 0.0,
                }
            )
            if self.repeat:
                assertions[-1]["flaky"] = c.flaky
        worst, lowest = None, 2.0  # the lowest pass rate; among equals, the first in the file
        for name, c in self.assertions.items():
            if c.passed < c.total and c.passed / c.total < lowest:
                worst, lowest = name, c.passed / c.total
        out: dict[str, Any] = {
            "rows": self.rows,
            "passed": self.rows_passed,
            "failed": self.rows_failed,
            "errors": self.rows_errors,
            "pass_rate": round(self.rows_passed / self.rows, 6) if self.rows else 1.0,
            "mean_score": round(self.score / self.rows, 6) if self.rows else 0.0,
            "met": all(item["met"] for item in lists),
            "worst": worst,
            "judge_tokens": self.judge_tokens,
            "lists": lists,
            "assertions": assertions,
        }
        if self.repeat:
            n = self.repeat_rows
            out["repeats"] = {
                "n": self.repeat,
                "rows": n,
                "pass_at_k": self.at_k,
                "pass_at_k_rate": round(self.at_k / n, 6) if n else 1.0,
                "all_passed": self.all_k,
                "flaky_rows": self.flaky_rows,
                "mean_agreement": round(self.agreement / n, 6) if n else 1.0,
            }
        return out


def row_status(verdicts: Sequence[dict[str, Any]]) -> str:
    """A row's status from its verdicts' lines: fail when one failed, else error when one could not be checked."""
    return row_status_of(v["status"] for v in verdicts)


def unmet(doc: dict[str, Any]) -> list[str]:
    """One line per ``assert:`` list whose pass rate is below its threshold, naming the worst assertion."""
    out = []
    for item in doc["lists"]:
        if not item["met"]:
            out.append(
                f"{item['scope']}: {item['passed']} of {item['rows']} rows passed ({_pct(item['pass_rate'])}), "
                f"below the threshold {_pct(item['threshold'])}"
            )
    if out and doc["worst"] is not None:
        worst = next(a for a in doc["assertions"] if a["name"] == doc["worst"])
        out.append(
            f"worst assertion: {worst['name']} ({_pct(worst['pass_rate'])} passed, {worst['failed']} failed, "
            f"{worst['errors']} errors)"
        )
    return out


def markdown(doc: dict[str, Any]) -> str:
    """The ``## Assertions`` section of the batch report's Markdown."""
    verdict = "met" if doc["met"] else "NOT met"
    lines = [
        "## Assertions",
        "",
        f"Thresholds {verdict}: {doc['passed']} of {doc['rows']} rows passed every assertion "
        f"({_pct(doc['pass_rate'])}); {doc['failed']} failed, {doc['errors']} had errors.",
        "",
    ]
    if doc["worst"] is not None:
        lines += [f"Worst assertion: `{doc['worst']}`.", ""]
    rep = doc.get("repeats")
    if rep is not None:
        lines += [
            f"Repeats: each row ran {rep['n']} times; verdicts by majority. pass@{rep['n']}: {rep['pass_at_k']} of "
            f"{rep['rows']} rows ({_pct(rep['pass_at_k_rate'])}); every run passed: {rep['all_passed']}; the verdict "
            f"changed across runs in {rep['flaky_rows']} rows (mean agreement {_pct(rep['mean_agreement'])}).",
            "",
        ]
        varying = [f"`{a['name']}` in {a['flaky']}" for a in doc["assertions"] if a.get("flaky")]
        if varying:
            lines += [f"Varying across runs: {', '.join(varying)} rows.", ""]
    lines += ["| list | threshold | rows passed | pass rate | met |", "|---|---:|---:|---:|---|"]
    for item in doc["lists"]:
        lines.append(
            f"| `{item['scope']}` | {_pct(item['threshold'])} | {item['passed']} / {item['rows']} | "
            f"{_pct(item['pass_rate'])} | {'yes' if item['met'] else '**no**'} |"
        )
    lines += ["", "| assertion | passed | failed | errors | pass rate | mean score |", "|---|---:|---:|---:|---:|---:|"]
    for a in sorted(doc["assertions"], key=lambda a: a["pass_rate"]):
        lines.append(
            f"| `{a['name']}` | {a['passed']} | {a['failed']} | {a['errors']} | {_pct(a['pass_rate'])} | "
            f"{a['mean_score']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def junit(name: str, rows: Sequence[tuple[str, float, Sequence[dict[str, Any]]]], wall_s: float) -> bytes:
    """JUnit XML: a ``testsuite`` named after the workflow, a ``testcase`` per row (its key), with a ``failure``
    listing the assertions that failed, else an ``error`` listing those that could not be checked."""
    return junit_document(name, [junit_case(name, key, latency, verdicts) for key, latency, verdicts in rows], wall_s)


def junit_case(suite: str, key: str, latency: float, verdicts: Sequence[dict[str, Any]]) -> tuple[str, str]:
    """One row's ``testcase`` element, as text (made as the row ends, so the end of a batch only joins them),
    and its status: pass, fail or error."""
    return _testcase(suite, f"row {key}", f"{latency:.3f}", verdicts)


def junit_run(name: str, verdicts: Sequence[dict[str, Any]], wall_s: float) -> bytes:
    """JUnit XML of one run's assertions (``runner run WF`` with ``junit`` in ``report.formats``): a ``testcase``
    per assertion, named after it, with a ``failure`` when it failed and an ``error`` when it could not be checked."""
    return junit_document(name, [_testcase(name, str(v["name"]), "0.000", [v]) for v in verdicts], wall_s)


def _testcase(classname: str, name: str, time: str, verdicts: Sequence[dict[str, Any]]) -> tuple[str, str]:
    """A ``testcase`` for ``verdicts``: a ``failure`` listing those that failed (and those that could not be
    checked), else an ``error`` listing those that could not be checked; and its status."""
    head = f'<testcase classname="{_attr(classname)}" name="{_attr(name)}" time="{time}"'
    failed = [v for v in verdicts if v["status"] == FAIL]
    broken = [v for v in verdicts if v["status"] == ERROR]
    if failed:
        text = _text("\n".join(f"{v['name']}: {v['reason']}" for v in failed + broken))
        element = f'<failure message="{_attr(_junit_message(failed))}" type="AssertionFailed">{text}</failure>'
        return f"{head}>{element}</testcase>", FAIL
    if broken:
        text = _text("\n".join(f"{v['name']}: {v['reason']}" for v in broken))
        element = f'<error message="{_attr(_junit_message(broken))}" type="AssertionError">{text}</error>'
        return f"{head}>{element}</testcase>", ERROR
    return f"{head} />", PASS


def junit_document(name: str, cases: Sequence[tuple[str, str]], wall_s: float) -> bytes:
    """The JUnit XML of a batch from its rows' :func:`junit_case`, in the dataset's order."""
    failures = sum(status == FAIL for _, status in cases)
    errors = sum(status == ERROR for _, status in cases)
    # the common JUnit XSD allows milliseconds at most
    counts = f'tests="{len(cases)}" failures="{failures}" errors="{errors}" time="{wall_s:.3f}"'
    label = _attr(name)
    body = "".join(case for case, _ in cases)
    return (
        "<?xml version='1.0' encoding='utf-8'?>\n"
        f'<testsuites name="{label}" {counts}><testsuite name="{label}" {counts} skipped="0">{body}</testsuite>'
        "</testsuites>\n"
    ).encode()


def _attr(text: str) -> str:
    """``text`` as an XML attribute's value (quoted with double quotes), as ElementTree writes it."""
    if _PLAIN.fullmatch(text):  # most keys and names: nothing to replace
        return text
    text = _xml(text)
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    if '"' in text:
        text = text.replace('"', "&quot;")
    if "\n" in text or "\r" in text or "\t" in text:
        text = text.replace("\r", "&#13;").replace("\n", "&#10;").replace("\t", "&#09;")
    return text


def _text(text: str) -> str:
    """``text`` as an XML element's content."""
    return _xml(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _junit_message(verdicts: Sequence[dict[str, Any]]) -> str:
    first = verdicts[0]
    more = f" (and {len(verdicts) - 1} more)" if len(verdicts) > 1 else ""
    return f"{first['name']}: {first['reason']}"[:500] + more


# What XML 1.0 cannot hold, even escaped (a terminal's colour codes in an exception's message, a NUL): U+FFFD.
_PLAIN = re.compile(r"[\w .:/@+=,;()\[\]{}-]*", re.ASCII)
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def github_annotations(
    doc: dict[str, Any],
    lists: Sequence[AssertList],
    examples: dict[str, list[tuple[str, str, str]]],
    variant: str | None = None,
) -> str:
    """GitHub Actions workflow commands: an annotation at each ``assert:`` list whose threshold was not met, and at
    each assertion that did not pass on every row (an error when its list's threshold was not met, else a
    warning), naming its first rows that did not pass and why."""
    by_name = {a["name"]: a for a in doc["assertions"]}
    by_scope = {item["scope"]: item for item in doc["lists"]}
    prefix = f"variant {variant}: " if variant else ""
    out = []
    for lst in lists:
        item = by_scope[lst.scope]
        if not item["met"]:
            out.append(
                _command(
                    "error",
                    lst.loc,
                    f"{prefix}{lst.scope} threshold",
                    f"{item['passed']} of {item['rows']} rows passed ({_pct(item['pass_rate'])}), below the "
                    f"threshold {_pct(item['threshold'])}",
                )
            )
        for spec in lst.items:
            a = by_name.get(spec.name)
            if a is None or a["failed"] + a["errors"] == 0:
                continue
            rows = a["passed"] + a["failed"] + a["errors"]
            lines = [
                f"{a['failed']} of {rows} rows failed, {a['errors']} could not be checked ({_pct(a['pass_rate'])} "
                "passed)"
            ]
            lines += [f"row {key}: {status}: {reason}" for key, status, reason in examples.get(spec.name, ())]
            level = "warning" if item["met"] else "error"
            out.append(_command(level, spec.loc, prefix + spec.name, "\n".join(lines)))
    return "".join(line + "\n" for line in out)


def _command(level: str, loc: Any, title: str, message: str) -> str:
    props = f"file={_property(loc.file)},line={loc.line},col={loc.column},title={_property(title)}"
    return f"::{level} {props}::{_data(message)}"


def _data(text: str) -> str:
    # as GitHub's toolkit escapes a command's data (actions/toolkit, packages/core/src/command.ts)
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _property(text: str) -> str:
    return _data(text).replace(":", "%3A").replace(",", "%2C")
