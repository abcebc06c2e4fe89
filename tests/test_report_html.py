"""The HTML report (issue 15, item 5): ``report: {formats: [html]}`` and ``runner report FILE --format html``.

Pure-Python checks of the writer (the report embedded whole and escaped, hostile text inert, nothing from outside,
one list of formats), then the pages of real runs opened in headless Chromium driven by Playwright: no console
error, no request but the file itself, one bar per node, the critical path marked, the advice and the model table
shown, details on hover, click and keyboard, filtering and zoom, light and dark, 1,000 nodes, and a screenshot.

The browser is Debian's ``chromium`` (``.ci/run`` installs it): Playwright's own browser download cannot be reached
here, so it launches the system browser. Without it these tests fail, saying how to install it; they never skip.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import importlib.util
import json
import os
import re
import shutil
import signal
import struct
import sys
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from runner.commands.report import REPORT_FORMATS
from runner.engine.session import run_plan
from runner.events import Recorder
from runner.plan.compile import compile_workflow
from runner.report.critical_path import CATEGORIES
from runner.report.document import build_report
from runner.report.files import write_outputs
from runner.report.formats import EVAL_FORMATS, RUN_FORMATS
from runner.report.html import CATEGORY_FILLS, KIND_LABELS, STATUS_LABELS, embed_json, to_html
from runner.secrets import redact
from runner.validate.check import load_workflow
from runner.workflow.inputs import resolve_inputs
from tests.conftest import ROOT, assert_valid_report, run_cli
from tests.oai_server import OAIServer, Plan
from tests.report_docs import REPORT_SCHEMA, random_report
from tests.test_report_analysis import FAN_THEN_AGENT, info

CHROMIUM = os.environ.get("RUNNER_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# What this machine's Chromium needs: no sandbox as root, and none of the background connections that a closed
# network refuses (/work/.library/env/machines/python.md). Playwright gives each launch a fresh profile.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

HOSTILE = '</script><script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">\'"&amp;<!--'

TOOLS = (
    """\
import asyncio
import time


def split(input: str) -> list[str]:
    time.sleep(0.02)  # a python stage with time of its own on the critical path
    return input.split()


def check(input: str) -> str:
    if input == "bad":
        raise ValueError("bad item """
    + HOSTILE.replace("\\", "\\\\").replace('"', '\\"')
    + '''")
    return input


async def pause(input: str) -> str:
    await asyncio.sleep(0.02)
    return input


def count(text: str) -> int:
    """Count the words of a text.

    Args:
        text: the text
    """
    return len(text.split())
'''
)

# Every node kind, python stages first and last on the critical path, a failure kept by `on_error: collect`,
# stages skipped by `when:`, a tool call, listed branches.
KINDS = """\
version: 1
name: kinds
models:
  m: {provider: scripted, reply: "ok {{ input | length }}", latency: {first_token_ms: 5, tokens_per_second: 400}}
  instant: {provider: scripted, reply: "done"}
  tooled:
    provider: scripted
    turns:
      - tool_calls:
          - {name: count, arguments: {text: "{{ input }}"}}
    reply: "{{ tool_results[0] }} words"
tools:
  count: {function: "html_report_tools:count", timeout: 5}
agents:
  a: {model: m}
  quick: {model: instant}
  user: {model: tooled, tools: [count]}
stages:
  - {id: split, python: "html_report_tools:split", input: "one bad three four"}
  - id: each
    fanout:
      for_each: "{{ stages.split }}"
      as: item
      max_concurrency: 2
      on_error: collect
      stages:
        - {id: check, python: "html_report_tools:check", input: "{{ vars.item }}"}
        - {id: note, agent: a}
  - id: both
    fanout:
      branches:
        - [{id: left, agent: quick}]
        - [{id: right, python: "html_report_tools:pause", input: "r"}]
  - {id: maybe, agent: a, when: "{{ false }}"}
  - {id: maybe_py, python: "html_report_tools:pause", when: "{{ false }}"}
  - {id: tools, agent: user, input: "a b c"}
  - id: again
    loop: {max_iterations: 2, stages: [{id: once, agent: quick}]}
  - id: route
    switch: {on: "x", cases: {x: [{id: routed, agent: quick}]}}
  - {id: sub, workflow: kinds_child.yaml}
  - {id: last, python: "html_report_tools:split", input: "x y"}
"""

# The child workflow KINDS runs (a sub-workflow stage: issue 22).
KINDS_CHILD = """\
version: 1
name: kinds-child
models:
  instant: {provider: scripted, reply: "child done"}
agents:
  quick: {model: instant}
stages:
  - {id: inner, agent: quick, input: "in the child"}
"""

# A failed run: stages stopped by their timeout (kept by `collect`), then a branch that raises under fail_fast
# with a hostile message, its siblings cancelled, one of them while it waited for a slot.
FAILING = """\
version: 1
name: failing
inputs:
  note: {type: string, default: "HOSTILE_INPUT"}
models:
  slow: {provider: scripted, reply: "late", latency: {first_token_ms: 5000}}
agents:
  s: {model: slow}
stages:
  - id: tries
    fanout:
      for_each: [1, 2]
      on_error: collect
      stages:
        - {id: slow, agent: s, timeout: 0.05}
  - id: fan
    fanout:
      for_each: [ok, bad, ok, ok, ok]
      as: item
      max_concurrency: 3
      stages:
        - {id: check, python: "html_report_tools:check", input: "{{ vars.item }}"}
        - {id: wait, agent: s}
""".replace("HOSTILE_INPUT", HOSTILE.replace("\\", "\\\\").replace('"', '\\"'))

# Interrupted (Ctrl-C) while two calls ran and four waited for a slot.
SLOW_FAN = """\
version: 1
name: interrupted
models:
  slow: {provider: scripted, reply: "late", latency: {first_token_ms: 5000}}
agents:
  s: {model: slow}
stages:
  - id: fan
    fanout: {for_each: [1, 2, 3, 4, 5, 6], agent: s, max_concurrency: 2}
"""

# Against the loopback server: streamed answers, a pool of 2 for 6 branches, a rate limit, retried 500 and 429.
RETRIES = """\
version: 1
name: retries
models:
  main:
    provider: openai
    base_url: {url}
    model: test-model
    stream: true
    pool: {{max_connections: 2}}
    retry: {{max_attempts: 3, initial_delay: 0.05, jitter: none}}
    rate_limit: {{requests_per_minute: 420}}
agents:
  a: {{model: main}}
stages:
  - id: fan
    input: "item {{{{ vars.item }}}}"
    fanout: {{for_each: [0, 1, 2, 3, 4, 5], agent: a}}
  - {{id: digest, agent: a, input: "{{{{ stages.fan | length }}}}"}}
"""

WIDE = """\
version: 1
name: wide
models:
  m: {provider: scripted, reply: "ok", latency: {first_token_ms: 20, tokens_per_second: 500}}
agents:
  a: {model: m}
stages:
  - id: fan
    fanout: {for_each: "{{ range(1000) | list }}", agent: a, max_concurrency: 250}
  - {id: digest, agent: a}
"""


def run_report(folder: Path, name: str, text: str, watch: Any = None) -> dict[str, Any]:
    (folder / "html_report_tools.py").write_text(TOOLS, encoding="utf-8")
    path = folder / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    wf = load_workflow(path)
    outcome = run_plan(compile_workflow(wf), resolve_inputs(wf, []), run_dir=folder / "run", watch=watch)
    report = outcome.report()
    assert_valid_report(report)
    return report


GATED = """\
version: 1
name: gated
stages:
  - id: pick
    ask: {question: "Which?", schema: {type: object, properties: {n: {type: integer}}, required: [n]}}
  - {id: review, approve: {message: "Go on with {{ stages.pick.data.n }}?"}}
"""


def gated_report(folder: Path) -> dict[str, Any]:
    """A run through an ask and an approve gate (issue 23), their decisions given beforehand."""
    from runner.engine.gates import GateAnswers, Gates
    from runner.engine.session import Session, run_session

    path = folder / "gated.yaml"
    path.write_text(GATED, encoding="utf-8")
    wf = load_workflow(path)
    gates = Gates(GateAnswers(frozenset({"review"}), {"pick": {"n": 3}}))
    session = Session(compile_workflow(wf), resolve_inputs(wf, []), run_dir=folder / "run", gatekeeper=gates)
    report = run_session(session).report()
    assert_valid_report(report)
    return report


def interrupt_after(started: int) -> Callable[[Recorder, Any], Any]:
    """A watcher that presses Ctrl-C once ``started`` agent calls have started: bounded by events, not time."""

    async def watch(recorder: Recorder, _info: Any) -> None:
        # the recorder is a list to tail, as the progress line tails it: a turn of the loop per look
        while sum(1 for e in recorder.events if e[1] == "started" and "[" in e[2]) < started:  # noqa: ASYNC110
            await asyncio.sleep(0.002)
        os.kill(os.getpid(), signal.SIGINT)

    return watch


def unfinished_report() -> dict[str, Any]:
    """A run that failed while a call was in flight: its node is `unfinished` (no cancellation was recorded)."""
    rec = Recorder()
    rec.emit("started", "notes", {"kind": "fanout"}, at=0.001)
    rec.emit("queued", "notes[0]", at=0.002)
    rec.emit("started", "notes[0]", {"kind": "agent", "agent": "a", "model": "m"}, at=0.003)
    rec.emit("started", "digest", {"kind": "agent", "agent": "e", "model": "m"}, at=0.1)
    return build_report(info(FAN_THEN_AGENT), rec, status="failed", end=1.0, error="boom")


MCP_TIME = """\
version: 1
name: clock
mcp_servers:
  time: {command: mcp-server-time, args: [--local-timezone, UTC]}
agents:
  a: {model: m, tools: [mcp.time.convert_time, mcp.time.get_current_time]}
models:
  m:
    provider: scripted
    turns:
      - tool_calls:
          - {name: convert_time, arguments: {source_timezone: UTC, time: '12:00', target_timezone: Asia/Tokyo}}
          - {name: get_current_time, arguments: {timezone: Nowhere/Bad}}
    reply: "{{ tool_results | join(' || ') }}"
stages:
  - {id: s, agent: a, input: go}
"""
# (the venv's programs reach PATH by a session fixture, after this module is read: so its folder is searched too)
_PROGRAMS = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
HAS_MCP_TIME = (
    importlib.util.find_spec("mcp") is not None and shutil.which("mcp-server-time", path=_PROGRAMS) is not None
)


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    folder = tmp_path_factory.mktemp("runs")
    (folder / "kinds_child.yaml").write_text(KINDS_CHILD, encoding="utf-8")
    out = {
        "kinds": run_report(folder, "kinds", KINDS),
        "failing": run_report(folder, "failing", FAILING),
        "interrupted": run_report(folder, "interrupted", SLOW_FAN, watch=interrupt_after(2)),
        "unfinished": unfinished_report(),
        "gated": gated_report(folder),
    }
    with OAIServer(latency=0.05) as server:
        server.plan(Plan(status=500))
        server.plan(Plan(status=429, headers={"Retry-After": "0"}))
        out["retries"] = run_report(folder, "retries", RETRIES.format(url=server.url))
    if HAS_MCP_TIME:  # a real MCP server (PyPI's mcp-server-time, in the test extra): one call that works, one not
        out["mcp"] = run_report(folder, "mcp", MCP_TIME)
    return out


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return run_report(tmp_path_factory.mktemp("wide"), "wide", WIDE)


def embedded(page: str, tag: str = "report-data") -> str:
    m = re.search(rf'<script type="application/json" id="{tag}">(.*?)</script>', page, re.S)
    assert m, tag
    return m.group(1)


# -- the writer, without a browser -----------------------------------------------------------------------------------


def test_one_list_of_formats_for_the_schema_the_run_and_runner_report() -> None:
    schema = json.loads((ROOT / "schemas" / "workflow.schema.json").read_text(encoding="utf-8"))
    assert schema["properties"]["report"]["properties"]["formats"]["items"]["enum"] == [*RUN_FORMATS, *EVAL_FORMATS]
    assert "html" in RUN_FORMATS
    assert REPORT_FORMATS[0] == "text" and sorted(REPORT_FORMATS[1:]) == sorted(RUN_FORMATS)


def test_the_words_of_the_page_cover_the_schemas_statuses_and_kinds() -> None:
    node = REPORT_SCHEMA["properties"]["nodes"]["items"]["properties"]
    assert set(STATUS_LABELS) == set(node["status"]["enum"]) | {"timed out"}
    assert set(KIND_LABELS) == set(node["kind"]["enum"])
    vocabulary = json.loads(embedded(to_html(random_report(0)), "report-vocabulary"))
    assert list(vocabulary["categories"]) == list(CATEGORIES)
    assert vocabulary["statuses"] == STATUS_LABELS and vocabulary["kinds"] == KIND_LABELS
    css = (ROOT / "runner" / "report" / "html_assets" / "report.css").read_text(encoding="utf-8")
    fills = vocabulary["fills"]
    assert fills == CATEGORY_FILLS and set(fills) == set(CATEGORIES)
    for fill in [*fills.values(), *vocabulary["segments"]]:  # every colour the page names is defined
        assert f".f-{fill} {{" in css, fill


def script() -> str:
    return (ROOT / "runner" / "report" / "html_assets" / "report.js").read_text(encoding="utf-8")


def test_the_reports_of_the_runs_cover_every_node_kind_and_status(reports) -> None:
    node = REPORT_SCHEMA["properties"]["nodes"]["items"]["properties"]
    seen = [(n["kind"], n["status"], n.get("timeout_s")) for r in reports.values() for n in r["nodes"]]
    assert {k for k, _, _ in seen} == set(node["kind"]["enum"])
    assert {s for _, s, _ in seen} == set(node["status"]["enum"])
    assert any(s == "failed" and t is not None for _, s, t in seen), "a node that timed out"
    assert {r["run"]["status"] for r in reports.values()} == {"ok", "failed", "interrupted"}
    retried = [n for n in reports["retries"]["nodes"] if n.get("retries")]
    assert len(retried) == 2 and reports["retries"]["models"]["main"]["pool_wait"]["count"] > 0
    assert reports["retries"]["models"]["main"]["rate_wait"]["count"] > 0
    for report in reports.values():  # the page carries the document whole
        assert json.loads(embedded(to_html(report))) == json.loads(json.dumps(report))


def test_no_text_of_the_report_can_leave_its_tag_or_become_markup(reports) -> None:
    report = hostile(reports["failing"])
    page = to_html(report)
    data = embedded(page)
    assert json.loads(data) == report
    assert not re.search(r"[<>&]", data)
    assert "\u2028" not in data
    # the page's own tags and nothing else: every hostile string is inside the escaped JSON
    assert page.count("</script>") == 3 and page.count("<script") == 3
    assert "<img" not in page and "onerror=" not in page.replace('onerror=\\"', "")
    assert HOSTILE not in page
    assert embed_json({"a": "</script>\u2029<!--&"}) == '{"a":"\\u003c/script\\u003e\\u2029\\u003c!--\\u0026"}'


def hostile(report: dict[str, Any]) -> dict[str, Any]:
    """The report with hostile text wherever text is shown: node ids (and the path through them), errors, a
    model's name, agent and remote model, the advice and its setting, the workflow's name and file, the inputs."""
    report = copy.deepcopy(report)
    renames = {n["id"]: f"{n['id']}{HOSTILE}" for n in report["nodes"][:3]}
    for n in report["nodes"]:
        n["id"] = renames.get(n["id"], n["id"])
        if n["kind"] == "agent":
            n["agent"], n["model"] = HOSTILE, HOSTILE
        if n["status"] == "failed":
            n["error"] = f"{n.get('error', '')} {HOSTILE}"
    path = report["critical_path"]
    path["nodes"] = [renames.get(i, i) for i in path["nodes"]] + [HOSTILE]
    report["models"] = {HOSTILE: {**next(iter(report["models"].values())), "model": HOSTILE}}
    report["bottlenecks"] = [
        {
            "cause": "model",
            "subject": HOSTILE,
            "seconds": 0.5,
            "share": 0.5,
            "setting": f"models.{HOSTILE}.params.max_tokens",
            "value": HOSTILE,
            "message": f"model `{HOSTILE}` took 0.50 s {HOSTILE}",
        }
    ]
    report["workflow"]["name"] = report["workflow"]["file"] = HOSTILE
    report["run"]["error"] = HOSTILE
    report["run"]["inputs"] = {HOSTILE: HOSTILE}
    report["memory"] = {HOSTILE: {"tokens_before": 1, "tokens_after": 1, "summaries": 0, HOSTILE: HOSTILE}}
    assert_valid_report(report)
    return report


def test_the_page_loads_nothing_and_allows_only_its_own_script_and_style(reports) -> None:
    page = to_html(reports["kinds"])
    policy = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', page).group(1)
    style = re.search(r"<style>(.*?)</style>", page, re.S).group(1)
    code = re.search(r"<script>(.*?)</script>", page, re.S).group(1)
    assert code == script()

    def digest(text: str) -> str:
        return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()

    assert policy == (
        f"default-src 'none'; script-src '{digest(code)}'; style-src '{digest(style)}'; img-src data:; "
        "base-uri 'none'; form-action 'none'"
    )
    without_data = page.replace(embedded(page), "")
    assert not re.search(r"https?:|//[a-z]|\bsrc=|\bhref=|url\(|@import|fetch\(|XMLHttpRequest|WebSocket", without_data)
    assert ".innerHTML" not in code and "insertAdjacentHTML" not in code and "document.write" not in code


def test_the_page_is_a_function_of_the_report_alone(reports, monkeypatch) -> None:
    report = reports["kinds"]
    first = to_html(report)
    monkeypatch.setenv("RUNNER_HTML_MARKER", "env-marker-8d1f")
    monkeypatch.chdir(ROOT / "docs")
    assert to_html(copy.deepcopy(report)) == first
    assert "env-marker-8d1f" not in first and str(Path.home()) not in first.replace(report["workflow"]["file"], "")
    assert redact(first) == first  # the redactor leaves the page's own script and style alone (their hashes hold)


def test_a_secret_is_redacted_from_the_page_in_the_form_the_page_writes_it(reports, tmp_path) -> None:
    """The page escapes ``<``, ``>`` and ``&`` as JSON's ``\\u003c`` forms, which the JSON report does not: a
    secret holding them (a report of an older runner, a key echoed in an error) is redacted in that form too."""
    from runner.secrets import SECRETS
    from tests.secret_scan import SecretScan

    secret = "sk-<html&key>\"quoted'9f3a"
    saved = SECRETS.snapshot()
    try:
        SECRETS.add(secret)
        report = copy.deepcopy(reports["failing"])
        report["run"]["error"] = f"the server said: {secret}"
        next(n for n in report["nodes"] if n["status"] == "failed")["error"] = secret
        (page,) = write_outputs(report, tmp_path / "r.json", ("html",))[1:]
    finally:
        SECRETS.restore(saved)
    text = page.read_text(encoding="utf-8")
    data = json.loads(embedded(text))
    assert data["run"]["error"] == "the server said: [redacted]"
    assert secret not in json.dumps(data, ensure_ascii=False)
    scan = SecretScan()
    scan.add_secret(secret)
    scan.add_text(str(page), text)
    assert scan.leaks() == []
    assert re.search(r"<script>(.*?)</script>", text, re.S).group(1) == script()  # its hash still holds


def test_numbers_json_cannot_say_become_null() -> None:
    report = random_report(3)
    report["run"]["wall_s"] = float("nan")
    report["concurrency"]["mean"] = float("inf")
    data = json.loads(embedded(to_html(report)))
    assert data["run"]["wall_s"] is None and data["concurrency"]["mean"] is None


def test_a_run_writes_the_page_and_runner_report_prints_the_same(tmp_path, write_wf) -> None:
    path = write_wf(
        """\
        version: 1
        name: page
        models:
          m: {provider: scripted, reply: "hello", latency: {first_token_ms: 20}}
        agents:
          a: {model: m}
        stages:
          - id: fan
            fanout: {for_each: [1, 2, 3], agent: a, max_concurrency: 2}
          - {id: last, agent: a}
        report: {formats: [html]}
        """
    )
    proc = run_cli("run", str(path), "--report-dir", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    (json_path,) = sorted((tmp_path / "r").glob("*Z.json"))
    page = json_path.with_suffix(".html")
    # and the run folders (its checkpoint: issue 23)
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == sorted([json_path.name, page.name, "runs"])
    assert proc.stderr.splitlines()[-2:] == [f"waterfall: {page}", f"report: {json_path}"]
    report = json.loads(json_path.read_text(encoding="utf-8"))
    assert page.read_text(encoding="utf-8") == to_html(report)
    printed = run_cli("report", str(json_path), "--format", "html")
    assert (printed.returncode, printed.stderr) == (0, "")
    assert printed.stdout == page.read_text(encoding="utf-8")


# -- in the browser --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(reports, wide) -> Iterator[Any]:
    # The runs come first: Playwright's synchronous API keeps an event loop running on this thread while the
    # browser is open, and a run starts a loop of its own.
    if not Path(CHROMIUM).is_file():
        pytest.fail(
            f"the HTML report's tests need Chromium at {CHROMIUM}: install Debian's package with "
            "`apt-get install -y --no-install-recommends chromium` (.ci/run does), or set RUNNER_CHROMIUM to a "
            "Chromium binary"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the HTML report's tests need Playwright: pip install -e '.[test]'")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, timeout=30_000)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Opened:
    page: Any
    url: str
    problems: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        """No console error or warning, no uncaught exception, and no request but the file itself."""
        assert self.problems == []
        assert self.requests == [self.url]


@pytest.fixture
def open_page(browser, tmp_path) -> Iterator[Callable[..., Opened]]:
    contexts = []

    def open_(report: dict[str, Any], name: str = "report", *, dark: bool = False, height: int = 900) -> Opened:
        path = tmp_path / f"{name}.json"
        (written,) = write_outputs(report, path, ("html",))[1:]
        scheme = "dark" if dark else "light"
        context = browser.new_context(viewport={"width": 1400, "height": height}, color_scheme=scheme)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        opened = Opened(page, written.as_uri())
        page.on("console", lambda m: m.type in ("error", "warning") and opened.problems.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: opened.problems.append(f"page error: {e}"))
        page.on("request", lambda r: opened.requests.append(r.url))
        page.goto(opened.url)
        page.wait_for_selector("html[data-drawn]")
        return opened

    yield open_
    for context in contexts:
        context.close()


# Scroll the waterfall from top to bottom, a screen at a time, and collect what each screen drew.
COLLECT = """async () => {
  const wf = document.getElementById("wf");
  const frame = () => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
  const bars = new Map(), critical = new Set(), statuses = new Map();
  let most = 0;
  for (let top = 0; ; top += Math.max(22, wf.clientHeight - 24 - 22)) {
    wf.scrollTop = top;
    await frame();
    for (const row of wf.querySelectorAll(".row")) {
      const bar = row.querySelectorAll(".bar");
      if (bar.length !== 1) throw new Error("a row without its one bar: " + row.dataset.node);
      bars.set(row.dataset.index, bar[0].dataset.node);
      statuses.set(row.dataset.index, bar[0].dataset.status);
      if (row.dataset.critical === "true") critical.add(row.dataset.node);
    }
    most = Math.max(most, wf.querySelectorAll(".row").length);
    if (top + wf.clientHeight >= wf.scrollHeight) break;
  }
  wf.scrollTop = 0;
  await frame();
  return {bars: [...bars.values()], indices: [...bars.keys()].map(Number), critical: [...critical],
          statuses: Object.fromEntries(statuses), most};
}"""


def assert_png(path: Path, *, min_bytes: int = 20_000) -> None:
    """A real screenshot: a PNG of a sensible size whose pixels are not all one colour."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 800 and height >= 600, (width, height)
    assert len(data) >= min_bytes, len(data)
    chunks, pos = [], 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"IDAT":
            chunks.append(data[pos + 8 : pos + 8 + length])
        pos += 12 + length
    pixels = zlib.decompress(b"".join(chunks))
    assert len(set(pixels[: width * 4 * 50])) > 1 or len(set(pixels)) > 20  # not one flat colour


@pytest.mark.parametrize("name", ["kinds", "failing", "interrupted", "retries", "unfinished"])
def test_the_page_of_a_real_run_draws_every_node_and_the_critical_path(name, reports, open_page, tmp_path) -> None:
    report = reports[name]
    opened = open_page(report, name)
    page = opened.page
    run = report["run"]
    assert page.inner_text("h1") == f"Run {report['workflow']['name']} {run['status']} in {run['wall_s']:.3f} s"
    got = page.evaluate(COLLECT)
    ids = [n["id"] for n in report["nodes"]]
    assert len(got["bars"]) == len(ids) and sorted(got["indices"]) == list(range(len(ids)))
    assert sorted(got["bars"]) == sorted(ids)
    for n in report["nodes"]:  # each bar says its node's status as a reader would
        expected = "timed out" if n["status"] == "failed" and n.get("timeout_s") is not None else n["status"]
        assert got["statuses"][str(ids.index(n["id"]))] == expected, n["id"]
    assert sorted(got["critical"]) == sorted(report["critical_path"]["nodes"])
    advice = page.locator("#advice-list .message").all_inner_texts()
    assert advice == [b["message"].replace("`", "") for b in report["bottlenecks"]]
    assert page.locator("#models-table tbody tr").count() == len(report["models"])
    assert page.inner_text("#shown") == f"{len(ids)} node{'s' if len(ids) != 1 else ''}"
    if run["error"]:
        assert page.inner_text("#run-error") == run["error"]
    shot = tmp_path / f"{name}.png"
    page.screenshot(path=str(shot), full_page=True)
    assert_png(shot)
    opened.assert_clean()


def test_the_models_table_and_the_split_say_the_reports_figures(reports, open_page) -> None:
    report = reports["retries"]
    page = open_page(report).page
    m = report["models"]["main"]
    cells = page.locator("#models-table tbody tr").first.locator("th, td").all_inner_texts()
    lat, ttft = m["latency_s"], m["ttft_s"]
    fixed = js_fixed
    assert cells == [
        "main (test-model)",
        str(m["calls"]),
        str(m["requests"]),
        f"{fixed(lat['p50'], 3)} / {fixed(lat['p95'], 3)} / {fixed(lat['max'], 3)}",
        f"{fixed(ttft['p50'], 3)} / {fixed(ttft['p95'], 3)}",
        fixed(m["tokens_per_s"], 0) if m["tokens_per_s"] is not None else "–",
        f"{m['tokens_in']} / {m['tokens_out']}",
        ", ".join(f"{c} ×{n}" for c, n in m["retries"].items()),
        f"{fixed(m['pool_wait']['total_s'], 3)} over {m['pool_wait']['count']}",
        f"{fixed(m['rate_wait']['total_s'], 3)} over {m['rate_wait']['count']}",
    ]
    split = report["critical_path"]
    rows = page.locator("#split-table tbody tr")
    shown = [c for c in CATEGORIES if split["time_s"][c] > 0]
    assert [rows.nth(i).get_attribute("data-category") for i in range(rows.count())] == shown
    for i, c in enumerate(shown):
        assert rows.nth(i).locator("td").all_inner_texts()[1:] == [
            js_fixed(split["time_s"][c], 3),
            f"{js_fixed(split['share'][c] * 100, 1)}%",
        ]
    chips = page.locator("#path .chip").all_inner_texts()
    assert chips == split["nodes"]


def test_details_on_hover_click_and_keyboard_and_the_segments_of_a_retried_call(reports, open_page) -> None:
    from playwright.sync_api import expect

    report = reports["retries"]
    opened = open_page(report)
    page = opened.page
    retried = next(n for n in report["nodes"] if n.get("retries"))
    bar = page.locator(f'.bar[data-node="{retried["id"]}"]')
    bar.hover()
    tip = page.locator("#tooltip")
    expect(tip).to_be_visible()  # expect waits for the page's update, which a loaded machine may delay
    expect(tip.locator("h3")).to_have_text(retried["id"])
    event = retried["retry_events"][0]
    assert tip.locator('dd[data-key="1 retry"]').inner_text() == (
        f"failed at {event['at_s']:.3f} s ({event['cause']}), back-off {event['delay_s']:.3f} s"
    )
    assert bar.locator(".seg.f-attempt").count() == 1 and bar.locator(".seg.f-backoff").count() == 1
    assert bar.locator(".mark.retry").count() == 1 and bar.locator(".mark.first-token").count() == 1
    assert bar.locator(".seg.f-ttft").count() == 1
    pooled = [n["id"] for n in report["nodes"] if n.get("pool_waits")]
    rated = [n["id"] for n in report["nodes"] if n.get("rate_waits")]
    assert pooled and rated
    assert page.locator(".bar:has(.seg.f-pool)").count() >= 1
    assert page.locator(".bar:has(.seg.f-rate)").count() >= 1
    bar.click()
    details = page.locator("#details")
    expect(details).to_be_visible()
    expect(details.locator("h3")).to_have_text(retried["id"])
    assert details.locator('dd[data-key="attempts"]').inner_text() == str(retried["attempts"])
    # the keyboard: the first row, the next, its details; Escape closes them
    page.locator("#wf").focus()
    page.keyboard.press("Home")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    second = page.locator(".row").nth(1).get_attribute("data-node")
    assert second is not None
    expect(details.locator("h3")).to_have_text(second)
    active = page.locator("#wf").get_attribute("aria-activedescendant")
    assert page.locator(f"#{active}").get_attribute("data-node") == second
    page.keyboard.press("End")
    page.wait_for_function(  # the active row (the last) and the details it opened, once the page has drawn them
        "() => { const r = document.querySelector('.row.active'), h = document.querySelector('#details h3');"
        " return r !== null && h !== null && r.dataset.node !== '' && h.textContent === r.dataset.node; }"
    )
    page.keyboard.press("Escape")
    expect(details).to_be_hidden()
    opened.assert_clean()


def test_filtering_and_zoom(reports, open_page) -> None:
    report = reports["failing"]
    opened = open_page(report)
    page = opened.page
    total = len(report["nodes"])
    page.keyboard.press("/")
    page.keyboard.type("check")
    fields = ("id", "agent", "model", "tool", "function", "error")  # what the filter reads
    checks = sorted(n["id"] for n in report["nodes"] if any("check" in str(n.get(f, "")).lower() for f in fields))
    assert any("check" not in i for i in checks), "an error that names the stage matches too"
    page.wait_for_function(f"() => document.getElementById('shown').textContent === '{len(checks)} of {total} nodes'")
    assert sorted(page.locator(".row").evaluate_all("rs => rs.map(r => r.dataset.node)")) == checks
    page.fill("#filter", "")
    page.select_option("#status-filter", "timed out")
    timed_out = sorted(n["id"] for n in report["nodes"] if n["status"] == "failed" and n.get("timeout_s"))
    assert len(timed_out) == 2
    assert sorted(page.locator(".row").evaluate_all("rs => rs.map(r => r.dataset.node)")) == timed_out
    page.select_option("#status-filter", "")
    page.check("#critical-only")
    shown = page.locator(".row").evaluate_all("rs => rs.map(r => r.dataset.node)")
    assert sorted(shown) == sorted(report["critical_path"]["nodes"])
    page.uncheck("#critical-only")
    # zoom: the track and every bar twice as wide, and back
    first = report["critical_path"]["nodes"][0]
    width = page.locator(f'.bar[data-node="{first}"]').evaluate("b => b.getBoundingClientRect().width")
    page.click("#zoom-in")
    # the page redraws on its next frames: wait for the zoom to show, not for a time
    page.wait_for_function("() => document.getElementById('zoom-fit').textContent === 'fit (2×)'")
    page.wait_for_function(
        f"() => Math.abs(document.querySelector('.bar[data-node=\"{first}\"]')?.getBoundingClientRect().width"
        f" - {2 * width}) <= {0.02 * 2 * width}"
    )
    page.locator("#wf").focus()
    page.keyboard.press("0")
    page.wait_for_function(
        f"() => Math.abs(document.querySelector('.bar[data-node=\"{first}\"]')?.getBoundingClientRect().width"
        f" - {width}) <= {0.02 * width}"
    )
    assert page.inner_text("#zoom-fit") != "fit (2×)"
    opened.assert_clean()


def test_hostile_text_shows_as_text_and_runs_nothing(reports, open_page) -> None:
    report = hostile(reports["failing"])
    opened = open_page(report, "hostile")
    page = opened.page
    assert page.evaluate("window.__pwned") is None
    assert page.locator("img").count() == 0 and page.locator("script").count() == 3
    assert page.inner_text("#run-error") == HOSTILE
    assert page.inner_text("h1") == f"Run {HOSTILE} failed in {report['run']['wall_s']:.3f} s"
    assert page.locator("#advice-list .message").inner_text() == f"model {HOSTILE} took 0.50 s {HOSTILE}"
    assert page.locator("#models-table tbody th").inner_text() == f"{HOSTILE} ({HOSTILE})"
    renamed = report["nodes"][0]["id"]
    assert renamed.endswith(HOSTILE)
    page.locator(".bar").first.click()
    assert page.locator("#details h3").inner_text() == renamed
    failed = next(n for n in report["nodes"] if n["status"] == "failed" and "check" in n["id"])
    page.fill("#filter", failed["id"])
    page.wait_for_function("() => !document.getElementById('shown').textContent.startsWith('16 ')")
    page.locator(f'.bar[data-node="{failed["id"]}"]').click()
    assert page.locator('#details dd[data-key="error"]').inner_text() == failed["error"]
    assert page.evaluate("window.__pwned") is None
    opened.assert_clean()


def test_dark_mode_is_dark_and_readable(reports, open_page, tmp_path) -> None:
    opened = open_page(reports["kinds"], dark=True)
    page = opened.page
    colors = page.evaluate(
        "() => [getComputedStyle(document.body).backgroundColor, getComputedStyle(document.body).color]"
    )

    def luminance(css: str) -> float:
        r, g, b = (int(v) for v in re.findall(r"\d+", css)[:3])
        return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255

    background, text = (luminance(c) for c in colors)
    assert background < 0.15 and text > 0.8
    shot = tmp_path / "dark.png"
    page.screenshot(path=str(shot), full_page=True)
    assert_png(shot)
    opened.assert_clean()


def test_a_thousand_nodes_keep_few_rows_in_the_page_and_every_one_reachable(wide, open_page) -> None:
    opened = open_page(wide, "wide", height=800)
    page = opened.page
    assert len(wide["nodes"]) == 1002
    assert page.locator(".row").count() < 80  # only the rows in view, and a few around them
    page.locator("#wf").focus()
    page.keyboard.press("End")
    last = page.locator(".row.active")
    assert last.get_attribute("data-node") == "digest"  # in tree order: the fan-out and its branches, then digest
    page.keyboard.press("PageUp")
    assert page.locator(".row.active").get_attribute("data-node").startswith("fan[")
    page.fill("#filter", "fan[999]")
    page.wait_for_function("() => document.getElementById('shown').textContent === '1 of 1002 nodes'")
    assert page.locator(".row").evaluate_all("rs => rs.map(r => r.dataset.node)") == ["fan[999]"]
    got = page.evaluate(COLLECT)
    assert got["bars"] == ["fan[999]"]
    opened.assert_clean()


@pytest.mark.parametrize("seed", range(8))
def test_any_report_the_schema_accepts_opens_without_an_error(seed, open_page) -> None:
    report = random_report(seed)
    opened = open_page(report, f"random{seed}")
    got = opened.page.evaluate(COLLECT)
    assert sorted(got["indices"]) == list(range(len(report["nodes"])))
    opened.assert_clean()


def js_fixed(value: float, digits: int) -> str:
    """``value.toFixed(digits)`` as the page's JavaScript writes it: the exact binary value rounded half up (Python's
    format rounds half to even, so 0.0625 is 0.062 here and 0.063 on the page)."""
    from decimal import ROUND_HALF_UP, Decimal

    return str(Decimal(value).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))


@pytest.mark.skipif(not HAS_MCP_TIME, reason="the mcp extra (mcp-server-time) is not installed")
def test_the_mcp_servers_table_in_the_page_and_the_markdown(reports, open_page) -> None:
    """Issue 22's MCP servers in both human reports: how each was started and the tool calls sent to it."""
    from runner.report.markdown import to_markdown

    report = reports["mcp"]
    server = report["mcp_servers"]["time"]
    calls = [n for n in report["nodes"] if n["kind"] == "tool"]
    assert [(n["server"], n["status"]) for n in calls] == [("time", "ok"), ("time", "failed")]
    took = sorted(n["end_s"] - n["start_s"] for n in calls)
    cells = ["stdio", "2", js_fixed(server["startup_s"], 3), "0", "2", "1"]
    cells.append(f"{js_fixed((took[0] + took[1]) / 2, 3)} / {js_fixed(took[1], 3)}")
    page = open_page(report).page
    row = page.locator('table[data-section="mcp_servers"] tbody tr')
    assert row.count() == 1 and row.get_attribute("data-server") == "time"
    assert row.locator("th, td").all_inner_texts() == ["time", *cells]
    assert "MCP servers" in page.locator("#extras h2").all_inner_texts()
    markdown = to_markdown(report)
    section = markdown.split("## MCP servers\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert section[0] == "| server | transport | tools | started in s | restarts | calls | failed | call p50 / max s |"
    assert section[2] == "| `time` | " + " | ".join(cells) + " |"
