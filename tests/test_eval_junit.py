"""runner eval's JUnit XML (issue 24) as CI reads it: parsed by junitparser (a real JUnit XML library) and validated
against the common JUnit XSD (the Jenkins xUnit plugin's ``junit-10.xsd``, vendored in tests/data with its source
and licence) by xmlschema; the counts and each case's failure or error match the rows' verdicts; text that XML
cannot hold (control characters from an assertion's message) still gives a valid document."""

from __future__ import annotations

from pathlib import Path

import pytest
import xmlschema
from junitparser import Error, Failure, JUnitXml

from runner.evals.summary import junit
from tests.oai_server import OAIServer
from tests.test_eval_runs import ROWS, cli, folder_of, responder, results, setup

pytestmark = pytest.mark.timeout(60)

XSD = Path(__file__).parent / "data" / "junit-10.xsd"


def test_junit_xml_is_valid_and_matches_the_verdicts(tmp_path: Path) -> None:
    with OAIServer() as server:
        server.responder = responder
        wf, data = setup(tmp_path, server.url, "jsonl", label_threshold=0.1, top_threshold=0.1)
        proc = cli("eval", str(wf), "--dataset", str(data), "--key", "id", "--report-dir", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    folder = folder_of(tmp_path / "r")
    xml = folder / "junit.xml"
    xmlschema.XMLSchema(str(XSD)).validate(str(xml))
    lines = results(folder)
    doc = JUnitXml.fromfile(str(xml))
    (suite,) = list(doc)
    assert suite.name == "evals"
    verdicts = [line["verdict"] for line in lines]
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (
        len(ROWS),
        verdicts.count("fail"),
        verdicts.count("error"),
        0,
    )
    cases = list(suite)
    assert [case.name for case in cases] == [f"row {row['id']}" for row in ROWS]
    for case, line in zip(cases, lines, strict=True):
        bad = [v for v in line["assertions"] if v["status"] != "pass"]
        if line["verdict"] == "pass":
            assert case.is_passed
            continue
        (result,) = case.result
        assert isinstance(result, Failure if line["verdict"] == "fail" else Error)
        first = next(v for v in bad if v["status"] == line["verdict"])
        assert result.message.startswith(f"{first['name']}: {first['reason']}"[:500])
        assert case.time == pytest.approx(line["latency_s"], abs=1e-3)


def test_text_that_xml_cannot_hold_is_replaced() -> None:
    reason = "colour \x1b[31mred\x1b[0m, a NUL \x00 and a form feed \x0c; kept: tab\t, newline\n, é, 🙂"
    verdicts = [{"name": "a\x01", "status": "fail", "reason": reason}]
    body = junit("wf\x02", [("k\x03", 0.1234567, verdicts)], 2.5)
    path = Path(__file__).parent / "data" / "junit-10.xsd"
    schema = xmlschema.XMLSchema(str(path))
    schema.validate(body.decode("utf-8"))
    (suite,) = list(JUnitXml.fromstring(body.decode("utf-8")))
    (case,) = list(suite)
    (failure,) = case.result
    assert failure.text == "a\ufffd: " + reason.replace("\x1b", "\ufffd").replace("\x00", "\ufffd").replace(
        "\x0c", "\ufffd"
    )
    assert (suite.name, case.name, case.time, suite.time) == ("wf\ufffd", "row k\ufffd", 0.123, 2.5)
    assert failure.message == failure.text  # the attribute too: its newline kept as a character reference


def test_markup_and_quotes_round_trip_through_an_xml_parser() -> None:
    """The JUnit text is written by hand, a case at a time as rows end (no ElementTree at the end of a batch):
    every character XML escapes, in every place a value goes, reads back as it was."""
    import xml.etree.ElementTree as ET

    nasty = "a & b < c > d \"quoted\" 'single' \r\n\ttab ]]> <!-- --> &amp; é"
    rows = [
        (nasty, 0.5, [{"name": "n<1>", "status": "fail", "reason": nasty}]),
        ("plain-key_1 (x)", 0.25, [{"name": "ok", "status": "pass", "reason": nasty}]),
        ("e", 1.0, [{"name": "x", "status": "error", "reason": "boom & <bust>"}]),
    ]
    root = ET.fromstring(junit(nasty, rows, 3.0))
    suite = root.find("testsuite")
    assert suite is not None
    assert (root.get("name"), suite.get("name")) == (nasty, nasty)
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "1", "1")
    cases = suite.findall("testcase")
    assert [(c.get("classname"), c.get("name")) for c in cases] == [
        (nasty, f"row {nasty}"),
        (nasty, "row plain-key_1 (x)"),
        (nasty, "row e"),
    ]
    failure = cases[0].find("failure")
    assert failure is not None
    # an XML parser reads a lone CR in text as a newline (XML's line-end rule); the attribute keeps it, escaped
    assert failure.get("message") == f"n<1>: {nasty}"
    assert failure.text == f"n<1>: {nasty}".replace("\r\n", "\n")
    assert list(cases[1]) == []
    error = cases[2].find("error")
    assert error is not None and error.text == "x: boom & <bust>"


def test_junit_and_the_page_are_written_when_the_formats_ask_for_them(tmp_path: Path) -> None:
    """``report: {formats: [..., junit, html]}`` (issue 24: "junit in report formats", "a page in the HTML report"):
    without them an eval writes its verdicts, totals and Markdown only; ``--junit FILE`` asks for the XML too."""
    with OAIServer() as server:
        server.responder = responder
        wf, data = setup(tmp_path, server.url, "jsonl", label_threshold=0.1, top_threshold=0.1)
        wf.write_text(wf.read_text().replace("report: {formats: [json, junit, html]}\n", ""))
        plain = cli("eval", str(wf), "--dataset", str(data), "--key", "id", "--report-dir", str(tmp_path / "a"))
        ci = tmp_path / "ci.xml"
        flagged = cli("eval", str(wf), "--dataset", str(data), "--report-dir", str(tmp_path / "b"), "--junit", str(ci))
    assert (plain.returncode, flagged.returncode) == (0, 0), plain.stderr + flagged.stderr
    assert sorted(p.name for p in folder_of(tmp_path / "a").iterdir() if not p.name.startswith(".")) == [
        "ledger.sqlite",
        "report.json",
        "report.md",
        "results.jsonl",
    ]
    folder = folder_of(tmp_path / "b")
    assert (folder / "junit.xml").read_bytes() == ci.read_bytes() and not (folder / "evals.html").exists()
    xmlschema.XMLSchema(str(XSD)).validate(str(ci))


SINGLE = """\
version: 1
name: single
report: {formats: [json, junit]}
models:
  m: {provider: scripted, reply: "the answer is 42"}
agents:
  a: {model: m}
stages:
  - {id: s, agent: a, input: "?"}
assert:
  - {type: contains, value: "42", metric: has-42}
  - {type: contains, value: "43", metric: has-43}
  - {type: python, value: "single_checks:broken", metric: broken}
"""


def test_a_single_run_writes_its_verdicts_as_junit_beside_its_report(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(SINGLE)
    (tmp_path / "single_checks.py").write_text("def broken(output):\n    raise ValueError('no')\n")
    proc = cli("run", str(tmp_path / "wf.yaml"), "--report-dir", str(tmp_path / "r"))
    assert proc.returncode == 1  # one assertion failed, one could not be checked
    (report,) = (tmp_path / "r").glob("*Z.json")
    xml = report.with_name(report.name.removesuffix(".json") + ".junit.xml")
    assert f"junit: {xml}" in proc.stderr.splitlines()
    xmlschema.XMLSchema(str(XSD)).validate(str(xml))
    (suite,) = list(JUnitXml.fromfile(str(xml)))
    assert (suite.name, suite.tests, suite.failures, suite.errors) == ("single", 3, 1, 1)
    cases = {case.name: case for case in suite}
    assert list(cases) == ["has-42", "has-43", "broken"]
    assert cases["has-42"].result == []
    (failed,) = cases["has-43"].result
    assert isinstance(failed, Failure) and failed.message.startswith("has-43: 'the answer is 42' does not contain")
    (broken,) = cases["broken"].result
    assert isinstance(broken, Error) and "ValueError: no" in broken.message
