"""Positions users see are the positions in their file (issues 14 and 21).

Every scalar style maps a template's characters back to the file (plain, quoted with escapes and folded
lines, literal and folded blocks with every chomping and indentation indicator, flow scalars); run-time
template errors in ``for_each`` and ``when`` point inside the file; YAML syntax errors point at the
mistake, not at the end of the stream.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

from runner.spec import check_file
from runner.spec.build import template_src
from runner.spec.records import Loc, TemplateSrc
from runner.spec.yamlpos import load_document
from tests.conftest import run_cli

HEADER = """\
version: 1
name: pos
models:
  m: {provider: scripted, reply: "hi"}
agents:
  a: {model: m}
stages:
"""
MARK = "inputs.BAD"
BAD = "{{ " + MARK + " }}"

# Template lines written in each style: (the lines as the style writes them, the bad token on line k).
# Fillers carry what each style changes between the file and the value: escapes, doubled quotes, runs of
# spaces, tabs, non-ASCII characters, empty lines, more-indented lines.


def _lines(k: int, fillers: list[str], bad_line: str) -> list[str]:
    return [bad_line if i == k else filler for i, filler in enumerate(fillers)]


PLAIN = ["alpha  beta", "gamma é😀 delta", "x#y 'q' \"d\"", "last words"]
SINGLE = ["it''s  here", "two\t tabs", '"dq" and \\', "end ''x''"]
DOUBLE = ['say \\"hi\\"', "tab\\t and \\\\ slash", "hex \\x41\\u00e9\\U0001F600", "nl\\n done"]
BLOCK = ["first  line", "  more indented", "", "last é😀 line"]


def _plain(k: int) -> str:
    lines = _lines(k, PLAIN, f"so {BAD} it is")
    return "    input: " + "\n      ".join(lines) + "\n"


def _plain_blank_lines(k: int) -> str:
    lines = _lines(k, PLAIN, f"so {BAD} it is")
    return "    input: " + "\n\n      ".join(lines) + "\n"


def _single(k: int) -> str:
    lines = _lines(k, SINGLE, f"it''s {BAD} ''ok''")
    return "    input: '" + "\n      ".join(lines) + "'\n"


def _double(k: int) -> str:
    lines = _lines(k, DOUBLE, f'q \\" {BAD} \\t')
    return '    input: "' + "\n      ".join(lines) + '"\n'


def _double_escaped_breaks(k: int) -> str:
    lines = _lines(k, DOUBLE, f"{BAD} \\x41")
    return '    input: "' + "\\\n      ".join(lines) + '"\n'


def _double_blank_lines(k: int) -> str:
    lines = _lines(k, DOUBLE, f"  {BAD}")
    return '    input: "' + "  \n\n   \n      ".join(lines) + '"\n'


def _flow_mapping(k: int) -> str:
    lines = _lines(k, DOUBLE, f"x {BAD}")
    return '  - {id: s, agent: a, input: "' + "\n      ".join(lines) + '"}\n'


def _flow_single(k: int) -> str:
    lines = _lines(k, SINGLE, f"{BAD}")
    return "  - {id: s, agent: a, input: '" + "\n        ".join(lines) + "'}\n"


def _block(header: str, indent: int = 6, anchor: str = ""):  # type: ignore[no-untyped-def]
    def write(k: int) -> str:
        lines = _lines(k, BLOCK, f"so {BAD} it is")
        body = "".join((" " * indent + line if line else "") + "\n" for line in lines)
        return f"    input: {anchor}{header}\n{body}"

    write.__name__ = f"block {anchor}{header} at {indent}"
    return write


STYLES = [
    _plain,
    _plain_blank_lines,
    _single,
    _double,
    _double_escaped_breaks,
    _double_blank_lines,
    _flow_mapping,
    _flow_single,
    *(_block(f"{ind}{chomp}{num}") for ind in "|>" for chomp in ("", "-", "+") for num in ("", "2")),
    _block(">2-", indent=6),
    _block("|3", indent=7),
    _block(">-3", indent=7),
    _block("|+1", indent=5),
    _block(">  # a comment"),
    _block("|-", anchor="&t !!str "),
    _block(">", indent=8),
]


def _style_id(style: object) -> str:
    return str(getattr(style, "__name__", style)).strip("_")


def _expected(text: str) -> tuple[int, int]:
    at = text.index(MARK)
    line = text.count("\n", 0, at) + 1
    return line, at - (text.rfind("\n", 0, at) + 1) + 1


def _stage(body: str) -> str:
    return body if body.startswith("  - {") else "  - id: s\n    agent: a\n" + body


@pytest.mark.parametrize("style", STYLES, ids=_style_id)
@pytest.mark.parametrize("k", range(4))
@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_a_bad_name_on_any_line_of_any_scalar_style_is_reported_where_it_is(
    tmp_path: Path, style, k: int, newline: str
) -> None:
    text = HEADER + _stage(style(k))
    path = tmp_path / "wf.yaml"
    path.write_bytes(text.replace("\n", newline).encode("utf-8"))
    _, problems = check_file(path)
    line, column = _expected(text)
    located = [(p.rule, p.line, p.column, p.end_line, p.end_column) for p in problems]
    assert located == [("unknown-input", line, column, line, column + len(MARK))], text


def test_the_line_past_the_end_bug_of_issue_14_exactly(write_wf, capsys) -> None:
    from runner.cli import main

    path = write_wf(
        HEADER
        + "  - id: s\n    agent: a\n    input: >-\n      first line of text\n      second line here\n"
        + "      third {{ inputs.nope }} line\n"
    )
    assert main(["validate", str(path)]) == 1
    assert capsys.readouterr().out == (
        f"{path}:13:16: error: inputs.nope is not declared [unknown-input]\n"
        "    13 |       third {{ inputs.nope }} line\n"
        "       |                ^^^^^^^^^^^\n"
        "       = hint: define it under 'inputs:'\n"
        "1 error(s), 0 warning(s) in 1 file(s)\n"
    )


# Every character of every style, as PyYAML's own emitter writes them (it folds long lines in quoted and
# folded scalars, escapes what it must): each value character maps to the file character that spells it.
_ALPHABET = "ab c  d\t\n\n'\"\\é😀{}:#-x"


def _random_text(rng: random.Random) -> str:
    size = rng.randrange(1, 60)
    text = "".join(rng.choice(_ALPHABET) for _ in range(size))
    return text


@pytest.mark.parametrize("style", [None, "'", '"', "|", ">"], ids=["plain", "single", "double", "literal", "folded"])
def test_every_character_of_emitted_scalars_maps_to_its_spelling_in_the_file(style: str | None) -> None:
    rng = random.Random(14)
    mapped = 0
    for _ in range(300):
        value = _random_text(rng)
        text = yaml.safe_dump({"k": {"v": value}}, default_style=style, width=12, allow_unicode=True)
        doc = load_document(text, "f.yaml")
        path = ("k", "v")
        value = doc.data["k"]["v"]  # what was loaded (PyYAML's folded style does not always round-trip)
        segments = doc.segments(path)
        if not segments:  # the only scalars left unmapped are those we could not re-read: none expected
            pytest.fail(f"no map for {text!r}")
        src = template_src(doc, path)
        span = doc.values[path]
        written = text[doc.offset(span.line, span.column)]  # the emitter quotes what it must, whatever we ask
        for offset, ch in enumerate(value):
            loc = src.loc_at(offset)
            at = doc.offset(loc.line, loc.column)
            spelled = text[at]
            if ch == "'" and written == "'":
                assert text[at : at + 2] == "''", (text, offset)
            elif ch in " \n" and spelled != ch:  # a folded break or an escaped one stands for it
                assert spelled in "\n\\", (text, offset)
            elif spelled != ch:  # an escape: only double quotes have them
                assert (written, spelled) == ('"', "\\"), (text, offset, loc)
            mapped += 1
    assert mapped > 3000


def test_a_template_made_in_code_keeps_its_start_as_its_position() -> None:
    src = TemplateSrc("one\ntwo {{ x }}", Loc("f.yaml", 3, 5))
    assert src.loc_at(0) == Loc("f.yaml", 3, 5)
    assert src.loc_at(8) == Loc("f.yaml", 4, 9)
    assert src.loc_of_line(2) == Loc("f.yaml", 4, 5)
    assert src.loc_of_line(40) == Loc("f.yaml", 4, 5)  # past the text: its last line, never past the file


def test_run_time_lines_of_a_folded_block_are_its_source_lines(tmp_path: Path) -> None:
    text = "k: >-\n  one\n  two\n\n  three\n    four\n  five\n"
    doc = load_document(text, "f.yaml")
    src = template_src(doc, ("k",))
    assert src.text == "one two\nthree\n  four\nfive"
    # Jinja counts lines in the value: line 2 starts at 'three' (line 5 of the file), line 4 at 'five'.
    assert [src.loc_of_line(n) for n in (1, 2, 3, 4)] == [
        Loc("f.yaml", 2, 3),
        Loc("f.yaml", 5, 3),
        Loc("f.yaml", 6, 3),
        Loc("f.yaml", 7, 3),
    ]


# --- issue 21: run-time errors in for_each and when point inside the file --------------------------------

FOR_EACH = """\
version: 1
name: fe
inputs:
  n: {type: object, default: {k: 1}}
models:
  m: {provider: scripted, reply: "hi"}
agents:
  a: {model: m}
stages:
  - id: s
    fanout: {for_each: "{{ inputs.n.zz.y }}", as: x, agent: a}
"""


@pytest.mark.parametrize(
    ("field", "text", "where", "error"),
    [
        pytest.param(
            "for_each",
            FOR_EACH,
            "11:25",
            "template error: 'dict object' has no attribute 'zz'",
            id="for_each",
        ),
        pytest.param(
            "for_each in a folded block",
            FOR_EACH.replace(
                '    fanout: {for_each: "{{ inputs.n.zz.y }}", as: x, agent: a}\n',
                "    fanout:\n      as: x\n      agent: a\n      for_each: >-\n        {{ inputs.n.k\n        / 0 }}\n",
            ),
            "15:9",
            "template error: ZeroDivisionError: division by zero",
            id="folded for_each",
        ),
        pytest.param(
            "when",
            FOR_EACH.replace(
                '    fanout: {for_each: "{{ inputs.n.zz.y }}", as: x, agent: a}\n',
                "    agent: a\n    when: |-\n      {{ inputs.n.k\n         and inputs.n.k / 0 }}\n",
            ),
            "13:7",
            "template error: ZeroDivisionError: division by zero",
            id="when",
        ),
    ],
)
def test_run_time_template_errors_in_expressions_point_inside_the_file(
    tmp_path: Path, field: str, text: str, where: str, error: str
) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(text)
    result = run_cli("run", str(path), "--report-dir", str(tmp_path / "r"), "-q", timeout=60)
    assert result.returncode == 1, result.stderr
    assert f"runner: error: {path}:{where}: {error}" in result.stderr.splitlines(), result.stderr
    lines = text.count("\n")
    assert int(where.split(":")[0]) <= lines
