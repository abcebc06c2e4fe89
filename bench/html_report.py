"""The HTML report at scale: the page of a real 10,000-branch fan-out (and of 1,000, for comparison) opened in
headless Chromium, the time from navigation to the first complete paint of the waterfall, and the file size.

The page sets a performance mark (``runner:drawn``) in the task after the frame that painted the summary and the
rows in view; its ``startTime`` is milliseconds since navigation began, read through ``page.evaluate``. Each
opening is a fresh browser context (no cache); the table gives the median, best and worst of ``--repeat``
openings, the time Python saw from ``page.goto`` to the drawn page, how long the page takes to filter all its
rows (the "critical path only" box: every row tested, the waterfall laid out again) and to jump to the last row
(End), and how long Python takes to write the page.

Run: ``python bench/html_report.py [--repeat 7] [--sizes 1000,10000]``. Needs Debian's chromium
(``apt-get install chromium``) and Playwright (the test extra). The target: under 2 s at 10,000 nodes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.engine.session import run_plan  # noqa: E402
from runner.plan.compile import compile_workflow  # noqa: E402
from runner.report.files import write_outputs  # noqa: E402
from runner.report.html import to_html  # noqa: E402
from runner.validate.check import load_workflow  # noqa: E402
from tests.test_report_html import CHROMIUM, CHROMIUM_FLAGS  # noqa: E402

# A scripted fan-out as wide as asked, bounded so that branches also wait for a slot, then one more stage.
WORKFLOW = """\
version: 1
name: wide{n}
models:
  m: {{provider: scripted, reply: "ok {{{{ input }}}}", latency: {{first_token_ms: 30, tokens_per_second: 400}}}}
agents:
  a: {{model: m}}
stages:
  - id: fan
    input: "item {{{{ vars.item }}}}"
    fanout: {{for_each: "{{{{ range({n}) | list }}}}", as: item, agent: a, max_concurrency: {slots}}}
  - {{id: digest, agent: a, input: "{{{{ stages.fan | length }}}} notes"}}
"""


def make_report(n: int, folder: Path) -> dict[str, Any]:
    path = folder / f"wide{n}.yaml"
    path.write_text(WORKFLOW.format(n=n, slots=max(1, n // 4)), encoding="utf-8")
    outcome = run_plan(compile_workflow(load_workflow(path)), {})
    assert outcome.status == "ok", outcome.error
    report = outcome.report()
    assert len(report["nodes"]) == n + 2, len(report["nodes"])
    return report


def open_once(browser: Any, url: str) -> dict[str, float]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("console", lambda m: m.type == "error" and problems.append(m.text))
        started = time.perf_counter()
        page.goto(url)
        page.wait_for_selector("html[data-drawn]", timeout=60_000)
        seen = time.perf_counter() - started
        painted = page.evaluate("() => performance.getEntriesByName('runner:drawn')[0].startTime")
        rows = page.evaluate("() => document.querySelectorAll('#wf .row').length")
        # the page's own work, timed inside it: filtering every row, and the End key (a jump to the last row)
        filtered = page.evaluate(
            """() => { const box = document.getElementById('critical-only'); const t = performance.now();
                 box.click(); const ms = performance.now() - t; box.click(); return ms; }"""
        )
        page.locator("#wf").focus()
        jump = page.evaluate(
            """() => { const wf = document.getElementById('wf'); const t = performance.now();
                 wf.dispatchEvent(new KeyboardEvent('keydown', {key: 'End', bubbles: true}));
                 return performance.now() - t; }"""
        )
        last = page.locator(".row.active").get_attribute("data-node")
        assert last == "digest", last
        assert not problems, problems
        return {"painted": painted, "seen": seen * 1000, "filter": filtered, "end": jump, "rows": rows}
    finally:
        context.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--sizes", default="1000,10000", help="fan-out widths, comma-separated")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if not Path(CHROMIUM).is_file():
        print(f"no Chromium at {CHROMIUM}: apt-get install -y --no-install-recommends chromium", file=sys.stderr)
        return 1
    from playwright.sync_api import sync_playwright

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pages = {}
        for n in sizes:  # every run before the browser starts: Playwright keeps a loop running on this thread
            report = make_report(n, folder)
            t = time.perf_counter()
            html = to_html(report)
            writer_ms = (time.perf_counter() - t) * 1000
            paths = write_outputs(report, folder / f"wide{n}.json", ("json", "html"))
            pages[n] = (paths[1], len(report["nodes"]), paths[0].stat().st_size, len(html.encode()), writer_ms)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            try:
                for n in sizes:
                    open_once(browser, pages[n][0].as_uri())  # a first opening warms the browser's own caches
                runs: dict[int, list[dict[str, float]]] = {n: [] for n in sizes}
                for _ in range(args.repeat):  # interleaved, so the machine's drift hits every size alike
                    for n in sizes:
                        runs[n].append(open_once(browser, pages[n][0].as_uri()))
            finally:
                browser.close()
        for n in sizes:
            path, nodes, json_bytes, html_bytes, writer_ms = pages[n]
            painted = [r["painted"] for r in runs[n]]
            rows.append(
                (
                    f"{nodes:,}",
                    f"{json_bytes / 1e6:.2f} MB",
                    f"{html_bytes / 1e6:.2f} MB",
                    f"{writer_ms:.0f} ms",
                    f"{statistics.median(painted):.0f} ms",
                    f"{min(painted):.0f}-{max(painted):.0f} ms",
                    f"{statistics.median(r['seen'] for r in runs[n]):.0f} ms",
                    f"{statistics.median(r['filter'] for r in runs[n]):.1f} ms",
                    f"{statistics.median(r['end'] for r in runs[n]):.1f} ms",
                    f"{max(r['rows'] for r in runs[n]):.0f}",
                )
            )
    header = (
        "nodes",
        "JSON report",
        "HTML page",
        "to_html",
        "first paint (median)",
        "best-worst",
        "goto to drawn",
        "filter all rows",
        "End key",
        "rows in page",
    )
    print(f"HTML report in headless Chromium, {args.repeat} openings each (after one to warm up)")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
