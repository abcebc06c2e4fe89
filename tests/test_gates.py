"""Human gates (issue 23, item 2): `approve` and `ask` stages, their decisions given on the command line
(--approve, --answer), by a Python callback (on_gate) or nobody (the run waits: exit 75, a valid partial report
and how to continue). The terminal prompt is tested under tmux in tests/test_gates_terminal.py."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

import runner
from runner.cli import main
from runner.engine.gates import EXIT_WAITING, GateAnswers, Gates, gate_answers, workflow_gates
from runner.stages.gating import GateRequest, read_answer
from tests.conftest import assert_valid_report, run_cli

GATED = """\
version: 1
name: gated
models:
  m: {provider: scripted, reply: "<{{ input }}>"}
agents:
  writer: {model: m}
stages:
  - {id: draft, agent: writer, input: "uvloop"}
  - id: review
    approve:
      message: "Publish {{ stages.draft.content }}?"
      show: [draft]
  - id: pick
    ask:
      question: "Which channel?"
      schema:
        type: object
        properties: {channel: {enum: [blog, mail]}, copies: {type: integer, minimum: 1}}
        required: [channel]
  - {id: publish, agent: writer, input: "{{ stages.pick.data.channel }} {{ stages.review.content }}"}
"""


def reports_in(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))]


# -- the command line --------------------------------------------------------------------------------------------


def test_without_a_terminal_the_run_waits_at_the_gate_exits_75_and_says_how_to_continue(write_wf, tmp_path) -> None:
    wf = write_wf(GATED)
    reports = tmp_path / "reports"
    proc = run_cli("run", str(wf), "--report-dir", str(reports), "-q", stdin=subprocess_devnull())
    assert proc.returncode == EXIT_WAITING == 75, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0] == (
        "runner: approve gate 'review' is waiting for a decision: no terminal to ask on, and no --approve review given"
    )
    resume = re.fullmatch(r"runner: to continue: runner run --resume (\S+) --approve review", lines[1])
    assert resume is not None, lines
    assert Path(resume.group(1)).is_dir() and Path(resume.group(1)).parent == reports / "runs"
    assert lines[2] == f"runner: or run it again from the start: runner run {wf} --approve review"
    assert proc.stdout == ""  # -q prints the output only of a run that ended ok
    (report,) = reports_in(reports)
    assert_valid_report(report)
    assert report["run"]["status"] == "waiting"
    assert report["run"]["error"] == lines[0].removeprefix("runner: ")
    assert report["run"]["gates"] == [
        {"stage": "review", "kind": "approve", "decision": "waiting", "by": None, "reason": None}
    ]
    status = {n["id"]: n["status"] for n in report["nodes"]}
    assert status == {"draft": "ok", "review": "unfinished"}  # nothing after the gate ran


def test_approve_and_answer_given_beforehand_complete_a_fresh_run(write_wf, tmp_path, capsys) -> None:
    wf = write_wf(GATED)
    (tmp_path / "answer.json").write_text('{"channel": "mail", "copies": 2}', encoding="utf-8")
    reports = tmp_path / "reports"
    proc = run_cli(
        "run", str(wf), "--report-dir", str(reports), "-q", "--approve", "review", "--answer", "pick=@answer.json",
        cwd=tmp_path, stdin=subprocess_devnull(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "<mail <uvloop>>\n"  # the approve gate passed the draft through
    (report,) = reports_in(reports)
    assert_valid_report(report)
    assert report["run"]["status"] == "ok"
    assert report["run"]["gates"] == [
        {"stage": "review", "kind": "approve", "decision": "approved", "by": "command line", "reason": None},
        {"stage": "pick", "kind": "ask", "decision": "answered", "by": "command line", "reason": None},
    ]

    # the rest in-process, through what the `runner` script calls (a process each is slow under load)
    def cli(*args: str) -> tuple[int, str, str]:
        code = main(["run", str(wf), "--report-dir", str(reports), "-q", *args])
        out, err = capsys.readouterr()
        return code, out, err

    # approved but not answered: the run waits at the ask, and the fresh-run command repeats the --approve
    code, _, err = cli("--approve", "review")
    assert code == 75
    lines = err.splitlines()
    assert lines[0] == (
        "runner: ask gate 'pick' is waiting for a decision: no terminal to ask on, and no --answer pick given"
    )
    assert re.fullmatch(r"runner: to continue: runner run --resume \S+ --answer pick=@answer.json", lines[1])
    assert lines[2] == (
        f"runner: or run it again from the start: runner run {wf} --approve review --answer pick=@answer.json"
    )
    # a plain value where the schema's one required field takes one; inline JSON otherwise
    for answer in ("pick=blog", 'pick={"channel": "blog", "copies": 3}'):
        code, out, err = cli("--approve", "review", "--answer", answer)
        assert (code, out) == (0, "<blog <uvloop>>\n"), err


def test_answers_and_stages_that_do_not_fit_are_refused_before_the_run(write_wf, tmp_path, capsys, monkeypatch) -> None:
    wf = write_wf(GATED)
    reports = tmp_path / "reports"
    cases = {
        ("--answer", 'pick={"channel": "fax", "copies": 0}'): (
            'runner: error: --answer pick={"channel": "fax", "copies": 0}: the answer does not match the schema of '
            "ask 'pick': at $.copies: 0 is less than the minimum of 1; at $.channel: expected one of \"blog\", "
            '"mail", got "fax"'
        ),
        ("--answer", "pick=@missing.json"): (
            f"runner: error: --answer pick=@missing.json: cannot read {Path('missing.json')}: No such file or directory"
        ),
        ("--answer", "pick"): "runner: error: --answer pick: expected STAGE=@answer.json or STAGE=VALUE (JSON)",
        ("--approve", "pick"): "runner: error: --approve pick: 'pick' is an ask stage (its approve stages: review)",
        ("--approve", "nope"): "runner: error: --approve nope: 'nope' is no stage of the workflow "
        "(its approve stages: review)",
        ("--answer", "review=1"): "runner: error: --answer review=...: 'review' is an approve stage "
        "(its ask stages: pick)",
    }
    monkeypatch.chdir(tmp_path)
    for args, message in cases.items():  # in-process, through what the `runner` script calls
        code = main(["run", str(wf), "--report-dir", str(reports), *args])
        err = capsys.readouterr().err
        assert code == 1, (args, err)
        assert err.splitlines()[0] == message, args
    assert not reports.exists()  # refused before anything ran


def test_gate_flags_are_for_a_single_run(write_wf, tmp_path) -> None:
    wf = write_wf(GATED)
    (tmp_path / "rows.csv").write_text("x\n1\n", encoding="utf-8")
    proc = run_cli("run", str(wf), "--dataset", str(tmp_path / "rows.csv"), "--approve", "review")
    assert proc.returncode == 2
    assert (
        proc.stderr == "runner: error: --approve is for a single run, not with --dataset: runner run WF --approve ...\n"
    )


def test_the_help_and_the_exit_codes_name_the_waiting_code() -> None:
    proc = run_cli("run", "--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    assert "75 waiting at a human gate (continue with --approve or --answer)" in text
    assert "--approve STAGE" in text and "--answer STAGE=@FILE" in text


# -- from Python ----------------------------------------------------------------------------------------------------


def test_on_gate_decides_and_answers_and_later_stages_read_the_typed_answer(tmp_path) -> None:
    asked: list[GateRequest] = []

    async def on_gate(request: GateRequest) -> Any:
        asked.append(request)
        await asyncio.sleep(0)  # an async callback is awaited
        return True if request.kind == "approve" else {"channel": "blog"}

    result = runner.run(GATED, run_dir=tmp_path / "run", on_gate=on_gate)
    assert result.status == "ok", result.error
    assert result.output.content == "<blog <uvloop>>"
    assert result.stages["pick"].data == {"channel": "blog"}
    assert result.stages["pick"].content == '{"channel": "blog"}'
    review, pick = asked
    assert (review.stage, review.kind, review.text, dict(review.shown)) == (
        "review",
        "approve",
        "Publish <uvloop>?",
        {"draft": "<uvloop>"},
    )
    assert (review.timeout, review.on_timeout) == (None, "reject")
    assert (pick.stage, pick.kind, pick.text) == ("pick", "ask", "Which channel?")
    assert pick.schema["required"] == ["channel"]
    assert [g["by"] for g in result.report["run"]["gates"]] == ["on_gate", "on_gate"]


def test_a_rejection_ends_the_run_as_rejected_with_a_valid_report(tmp_path) -> None:
    def on_gate(request: GateRequest) -> Any:  # a plain function will do too
        return runner.Decision(False, "the draft is too short")

    result = runner.run(GATED, run_dir=tmp_path / "run", on_gate=on_gate)
    assert result.status == "rejected"
    assert isinstance(result.error, runner.GateRejected)
    assert (result.error.stage, result.error.reason, result.error.by) == ("review", "the draft is too short", "on_gate")
    message = "approve gate 'review' was rejected (on_gate): the draft is too short"
    assert str(result.error) == message
    assert_valid_report(result.report)
    assert result.report["run"]["status"] == "rejected" and result.report["run"]["error"] == message
    assert result.report["run"]["gates"] == [
        {
            "stage": "review",
            "kind": "approve",
            "decision": "rejected",
            "by": "on_gate",
            "reason": "the draft is too short",
        }
    ]
    assert {n["id"]: n["status"] for n in result.report["nodes"]} == {"draft": "ok", "review": "failed"}
    with pytest.raises(runner.GateRejected):
        result.raise_for_status()
    from runner.report.markdown import to_markdown

    markdown = to_markdown(result.report)
    assert markdown.startswith("# Run `gated`: rejected in ")
    assert "| error | approve gate 'review' was rejected (on_gate): the draft is too short |" in markdown
    assert (
        "## Human gates\n\n| gate | kind | decision | by | reason |\n| --- | --- | --- | --- | --- |\n"
        "| `review` | approve | rejected | on_gate | the draft is too short |\n"
    ) in markdown


def test_without_on_gate_the_result_is_waiting_and_names_the_gate(tmp_path) -> None:
    result = runner.run(GATED, run_dir=tmp_path / "run")
    assert result.status == "waiting"
    assert isinstance(result.error, runner.GateWaiting)
    assert (result.error.stage, result.error.kind) == ("review", "approve")
    assert str(result.error) == "approve gate 'review' is waiting for a decision: no on_gate to ask"
    assert_valid_report(result.report)


def test_an_answer_from_on_gate_that_does_not_match_fails_the_run_saying_where(tmp_path) -> None:
    def on_gate(request: GateRequest) -> Any:
        return True if request.kind == "approve" else {"channel": "blog", "copies": "two"}

    result = runner.run(GATED, run_dir=tmp_path / "run", on_gate=on_gate)
    assert result.status == "failed"
    assert str(result.error) == (
        "the answer to ask gate 'pick' (on_gate) does not match its schema: at $.copies: expected integer, got string"
    )


TIMED = """\
version: 1
name: timed
models:
  m: {provider: scripted, reply: "<{{ input }}>"}
agents:
  echo: {model: m}
stages:
  - {id: first, agent: echo, input: "x"}
  - id: review
    approve: {message: "Go?", timeout: 0.05, on_timeout: %s}
  - {id: after, agent: echo}
"""


@pytest.mark.parametrize(("on_timeout", "status"), [("approve", "ok"), ("reject", "rejected")])
def test_a_gate_timeout_lets_on_timeout_decide(tmp_path, on_timeout: str, status: str) -> None:
    never = asyncio.Event()  # nobody answers: the gate's own timeout ends the wait

    async def on_gate(request: GateRequest) -> Any:
        await never.wait()

    result = runner.run(TIMED % on_timeout, run_dir=tmp_path / "run", on_gate=on_gate)
    assert result.status == status
    (gate,) = result.report["run"]["gates"]
    decision = "approved" if on_timeout == "approve" else "rejected"
    assert gate == {
        "stage": "review",
        "kind": "approve",
        "decision": decision,
        "by": "timeout",
        "reason": "no decision within 0.05 s",
    }
    if status == "ok":
        assert result.output.content == "<<x>>"  # the gate passed its input through
    else:
        assert str(result.error) == "approve gate 'review' was rejected (on_timeout): no decision within 0.05 s"


ASK_TIMED = """\
version: 1
name: asked
models:
  m: {provider: scripted, reply: "<{{ input }}>"}
agents:
  echo: {model: m}
stages:
  - id: pick
    ask:
      question: "How many copies?"
      schema: {type: object, required: [copies], properties: {copies: {type: integer}}}
      timeout: 0.05
%s  - {id: after, agent: echo, input: "{{ stages.pick.data.copies }} copies"}
"""


@pytest.mark.parametrize("default", [True, False])
def test_an_ask_timeout_answers_its_default_or_fails_the_stage(tmp_path, default: bool) -> None:
    never = asyncio.Event()  # nobody answers: the ask's own timeout ends the wait
    seen: list[GateRequest] = []

    async def on_gate(request: GateRequest) -> Any:
        seen.append(request)
        await never.wait()

    text = ASK_TIMED % ("      default: {copies: 2}\n" if default else "")
    result = runner.run(text, run_dir=tmp_path / "run", on_gate=on_gate)
    (request,) = seen
    assert (request.timeout, request.on_timeout) == (0.05, "answer" if default else "fail")
    assert request.default == ({"copies": 2} if default else None)
    if default:
        assert result.status == "ok"
        assert result.output.content == "<2 copies>"
        (gate,) = result.report["run"]["gates"]
        assert gate == {"stage": "pick", "kind": "ask", "decision": "answered", "by": "timeout", "reason": None}
    else:
        assert result.status == "failed"
        assert str(result.error) == (
            "ask gate 'pick' had no answer within 0.05 s; give it a `default:` to go on with when nobody answers, "
            "or a longer `timeout:`"
        )
        assert [n["status"] for n in result.report["nodes"] if n["id"] == "pick"] == ["failed"]


FANNED = """\
version: 1
name: fanned
models:
  m: {provider: scripted, reply: "<{{ input }}>"}
agents:
  echo: {model: m}
stages:
  - id: each
    fanout:
      for_each: "{{ [1, 2, 3] }}"
      as: n
      on_error: collect
      stages:
        - {id: check, approve: {message: "item {{ vars.n }}?"}}
        - {id: echo, agent: echo, input: "{{ vars.n }}"}
"""


def test_a_gate_in_a_fanout_is_asked_per_branch_and_a_waiting_one_stops_the_run(tmp_path) -> None:
    texts: list[str] = []

    def on_gate(request: GateRequest) -> bool:
        texts.append(request.text)
        return True

    result = runner.run(FANNED, run_dir=tmp_path / "a", on_gate=on_gate)
    assert result.status == "ok" and sorted(texts) == ["item 1?", "item 2?", "item 3?"]
    assert [o.content for o in result.output] == ["<1>", "<2>", "<3>"]
    # nobody to ask: `on_error: collect` does not keep a waiting gate as a branch's error; the run waits
    result = runner.run(FANNED, run_dir=tmp_path / "b")
    assert result.status == "waiting" and result.error.stage.endswith("].check")
    assert_valid_report(result.report)


# -- the one reading of --approve / --answer (reused by --resume) -----------------------------------------------------


def test_gate_answers_reads_flags_against_the_workflows_gates(tmp_path) -> None:
    wf = runner.load(GATED)
    gates = workflow_gates(wf.stages)
    assert {k: v[0] for k, v in gates.items()} == {"review": "approve", "pick": "ask"}
    (tmp_path / "a.json").write_text('{"channel": "mail"}', encoding="utf-8")
    given = gate_answers(gates, ["review"], ["pick=@a.json"], base=tmp_path)
    assert given == GateAnswers(frozenset({"review"}), {"pick": {"channel": "mail"}})


def test_plain_answers_are_read_by_the_schema() -> None:
    assert read_answer("42", {"type": "integer"}) == 42
    assert read_answer(" yes ", {"type": "string"}) == "yes"
    assert read_answer('"quoted"', {"type": "string"}) == "quoted"
    assert read_answer("blog", {"type": "object", "properties": {"c": {"enum": ["blog"]}}}) == {"c": "blog"}
    assert read_answer('{"a": [1]}', {"type": "object"}) == {"a": [1]}
    with pytest.raises(ValueError, match=r"^the answer is not JSON \(Expecting value at line 1, column 1\)$"):
        read_answer("nope", {"type": "object"})


def test_gates_in_order_given_then_asker_then_waiting() -> None:
    from runner.events import Recorder

    async def asker(request: GateRequest) -> bool:
        return False

    async def main() -> list[Any]:
        rec = Recorder()
        keeper = Gates(GateAnswers(frozenset({"a"})), asker, by="terminal")
        first = await keeper.decide(GateRequest("a", "approve", "?"), rec)
        second = await keeper.decide(GateRequest("x[0].b", "approve", "?"), rec)
        return [first, second, [e[3] for e in rec.events]]

    first, second, events = asyncio.run(main())
    assert (first.approved, first.by, second.approved, second.by) == (True, "command line", False, "terminal")
    assert [e["decision"] for e in events] == ["approved", "rejected"]


def subprocess_devnull() -> Any:
    import subprocess

    return subprocess.DEVNULL
