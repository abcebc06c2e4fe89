"""The eval's outputs for people (issue 24): GitHub annotations (``runner eval --annotations``) at each assertion and
list that did not pass, said exactly; and ``evals.html``, the page of verdicts, opened in headless Chromium: rows
by assertions, failures first, then errors, then passes; a cell opens the row's output and the assertion's reason;
no request but the file, no console error, hostile text inert."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.evals.page import MAX_ROWS, to_page
from tests.test_eval_runs import cli
from tests.test_report_html import CHROMIUM, CHROMIUM_FLAGS, HOSTILE

pytestmark = pytest.mark.timeout(90)

WORKFLOW = """\
version: 1
name: page
inputs:
  text: {type: string}
models:
  m: {provider: scripted, reply: "answer to {{ input }}"}
agents:
  a: {model: m}
stages:
  - id: s
    agent: a
    input: "{{ inputs.text }}"
assert:
  - {type: contains, value: "{{ row.want }}", metric: wanted}
  - {type: python, value: "page_checks:fussy", metric: fussy}
threshold: 0.5
report: {formats: [json, html]}
"""

CHECKS = """\
def fussy(output, row):
    if row["id"] == "crash":
        raise KeyError("no such thing")
    return True
"""

ROWS = [
    {"id": "ok-1", "text": "one", "want": "one"},
    {"id": "bad", "text": "two " + HOSTILE, "want": "three"},
    {"id": "crash", "text": "four", "want": "four"},
    {"id": "ok-2", "text": "five", "want": "five"},
]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    tmp = tmp_path_factory.mktemp("page")
    (tmp / "wf.yaml").write_text(WORKFLOW)
    (tmp / "page_checks.py").write_text(CHECKS)
    (tmp / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    proc = cli(
        "eval", str(tmp / "wf.yaml"), "--dataset", str(tmp / "rows.jsonl"), "--key", "id",
        "--report-dir", str(tmp / "r"), "--annotations", "--quiet",
    )  # fmt: skip
    (folder,) = (tmp / "r" / "runs").iterdir()
    return folder, proc


def test_github_annotations_name_each_assertion_that_did_not_pass(evaluated: tuple[Path, Any]) -> None:
    folder, proc = evaluated
    assert proc.returncode == 0, proc.stderr  # 2 of 4 rows pass: the threshold 0.5 is met
    wf = folder.parent.parent.parent / "wf.yaml"
    file = str(wf).replace(":", "%3A").replace(",", "%2C")
    lines = {json.loads(x)["key"]: json.loads(x) for x in (folder / "results.jsonl").read_text().splitlines()}
    reason = next(v["reason"] for v in lines["bad"]["assertions"] if v["name"] == "wanted")
    assert reason.startswith("'answer to two </script>") and reason.endswith("... does not contain 'three'")
    assert proc.stdout.splitlines() == [
        f"::warning file={file},line=14,col=5,title=wanted::1 of 4 rows failed, 0 could not be checked (75.0%25 "
        f"passed)%0Arow bad: fail: {reason.replace('%', '%25')}",
        f"::warning file={file},line=15,col=5,title=fussy::0 of 4 rows failed, 1 could not be checked (75.0%25 "
        "passed)%0Arow crash: error: KeyError: 'no such thing' (at page_checks.py:3 in fussy)",
    ]
    wf.write_text(WORKFLOW.replace("threshold: 0.5", "threshold: 0.9"))
    again = cli(
        "eval", str(wf), "--dataset", str(wf.parent / "rows.jsonl"), "--report-dir", str(wf.parent / "again"),
        "--annotations", "--quiet",
    )  # fmt: skip
    wf.write_text(WORKFLOW)
    assert again.returncode == 1
    lines = again.stdout.splitlines()
    assert lines[0] == (
        f"::error file={file},line=13,col=1,title=assert threshold::2 of 4 rows passed (50.0%25), below the "
        "threshold 90.0%25"
    )
    assert [line.split(" ", 1)[0] for line in lines] == ["::error", "::error", "::error"]


def test_the_page_caps_its_rows_at_passing_ones() -> None:
    totals = {"rows": 2, "passed": 1, "failed": 1, "errors": 0, "pass_rate": 0.5, "met": False, "worst": "a"}
    totals["assertions"] = [{"name": "a"}]
    lines = [
        {"index": i, "key": str(i), "verdict": "pass" if i else "fail", "output": "x", "assertions": []}
        for i in range(MAX_ROWS + 3)
    ]
    page = to_page("w", totals, lines)
    data = json.loads(page.split('<script type="application/json" id="data">')[1].split("</script>")[0])
    assert data["not_shown"] == 3
    assert len(data["rows"]) == MAX_ROWS
    assert data["rows"][0]["key"] == "0"  # the failure first


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).is_file():
        pytest.fail(
            f"the eval page's tests need Chromium at {CHROMIUM}: `apt-get install -y --no-install-recommends "
            "chromium` (.ci/run does), or set RUNNER_CHROMIUM"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, timeout=30_000)
        try:
            yield browser
        finally:
            browser.close()


def test_the_page_in_chromium(evaluated: tuple[Path, Any], browser: Any) -> None:
    from playwright.sync_api import expect

    folder, _ = evaluated
    page_file = folder / "evals.html"
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        problems: list[str] = []
        requests: list[str] = []
        page.on("console", lambda m: m.type in ("error", "warning") and problems.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(page_file.as_uri())
        page.wait_for_selector("html[data-drawn]")
        # rows by assertions, failures first, then errors, then passes (in the dataset's order within each)
        keys = page.eval_on_selector_all("#grid tbody tr", "rows => rows.map(r => [r.dataset.key, r.dataset.verdict])")
        assert keys == [["bad", "fail"], ["crash", "error"], ["ok-1", "pass"], ["ok-2", "pass"]]
        heads = page.eval_on_selector_all("#grid thead th", "cells => cells.map(c => c.textContent)")
        assert heads == ["row", "verdict", "wanted", "fussy"]
        summary = page.locator("#summary").inner_text()
        assert "2 of 4 rows passed every assertion (50.0%); 1 failed, 1 had errors." in summary
        # a failing cell opens the row's output and the reason
        page.click("#grid tbody tr[data-key=bad] button.cell.fail")
        dialog = page.locator("#detail")
        expect(dialog).to_be_visible()
        assert page.locator("#detail-title").inner_text() == "row bad: wanted"
        assert page.locator("#detail-status").inner_text() == "fail"
        assert page.locator("#detail-output").inner_text() == "answer to two " + HOSTILE
        assert page.locator("#detail-reason").inner_text().endswith("does not contain 'three'")
        page.keyboard.press("Escape")
        expect(dialog).to_be_hidden()
        # the error cell: the traceback's summary
        page.click("#grid tbody tr[data-key=crash] button.cell.error")
        assert page.locator("#detail-reason").inner_text() == "KeyError: 'no such thing' (at page_checks.py:3 in fussy)"
        page.click("#close")
        expect(dialog).to_be_hidden()
        assert page.evaluate("window.__pwned") is None
        assert problems == []
        assert requests == [page_file.as_uri()]
    finally:
        context.close()
