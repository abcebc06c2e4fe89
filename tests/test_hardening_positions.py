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

from runner.config.source import Loc, TemplateSrc
from runner.validate.check import check_file
from runner.workflow.build import template_src
from runner.workflow.document import load_document
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


TOOL_ARGUMENTS = """\
version: 1
name: tc
inputs:
  n: {type: object, default: {}}
tools:
  lookup: {function: "example_tools:lookup"}
models:
  m:
    provider: scripted
    turns:
      - tool_calls:
          - name: lookup
            arguments:
              query: {topic: 'it''s {{ inputs.n.zz.y }}'}
      - reply: done
agents:
  a: {model: m, tools: [lookup]}
stages:
  - {id: s, agent: a, input: go}
"""


def test_run_time_errors_in_scripted_tool_arguments_point_inside_the_file(tmp_path: Path) -> None:
    """They were reported at '<scripted tool arguments>:1:1'."""
    (tmp_path / "example_tools.py").write_text('def lookup(query: dict) -> str:\n    """Look up."""\n    return "x"\n')
    path = tmp_path / "wf.yaml"
    path.write_text(TOOL_ARGUMENTS)
    result = run_cli("run", str(path), "--report-dir", str(tmp_path / "r"), "-q", timeout=60)
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"runner: error: {path}:14:31: template error: 'dict object' has no attribute 'zz'"
    )


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


# --- issue 14: YAML syntax errors point at the mistake, with a hint --------------------------------------

STAGE = HEADER + "  - id: s\n    agent: a\n"  # lines 1-9; the cases below start on line 10
SYNTAX_CASES = [
    pytest.param(
        STAGE + '    input: "unclosed\n  - id: t\n    agent: a\n',
        "10:12",
        'unclosed quote: the text opened with " here never ends',
        'end it with " on this line; a " inside the text is written \\"',
        id="unclosed double quote",
    ),
    pytest.param(
        STAGE + "    input: 'it\n  - id: t\n    agent: a\n",
        "10:12",
        "unclosed quote: the text opened with ' here never ends",
        "end it with ' on this line; a ' inside the text is written ''",
        id="unclosed single quote",
    ),
    pytest.param(
        STAGE + '    input: "one\n  - id: t\n    agent: a\n    input: "two"\n',
        "10:12",
        'unclosed quote: the text opened with " here runs on to line 13, column 12, where the next " ends it',
        """end it with " where the text ends""",
        id="unclosed quote closed by a later one",
    ),
    pytest.param(
        STAGE.replace('reply: "hi"}', 'reply: "hi}\n  n: {provider: scripted, reply: "x"}'),
        "4:34",
        'unclosed quote: the text opened with " here runs on to line 5, column 34, where the next " ends it',
        """end it with " where the text ends""",
        id="unclosed quote in a flow mapping",
    ),
    pytest.param(
        STAGE + "    input hello\n  - id: t\n    agent: a\n",
        "10:5",
        "missing ':' after 'input'",
        "write 'input: value', with a space after the ':'",
        id="missing colon before a list item",
    ),
    pytest.param(
        STAGE.replace("    agent: a\n", "    agent a\n") + "    input: hello\n",
        "9:5",
        "missing ':' after 'agent'",
        "write 'agent: value', with a space after the ':'",
        id="missing colon before a key",
    ),
    pytest.param(
        STAGE.replace('  m: {provider: scripted, reply: "hi"}', '  m {provider: scripted, reply: "hi"}'),
        "4:3",
        "missing ':' after 'm'",
        "write 'm: value', with a space after the ':'",
        id="missing colon before a flow mapping",
    ),
    pytest.param(
        STAGE + "    input: [a, b\n  - id: t\n",
        "10:12",
        "unclosed '[': the list opened here is still open at line 11, column 7",
        "close it with ']'",
        id="unclosed bracket",
    ),
    pytest.param(
        STAGE + "    vars: {a: 1, b: 2\n",
        "10:11",
        "unclosed '{': the mapping opened here is still open at the end of the file",
        "close it with '}'",
        id="unclosed brace at the end",
    ),
    pytest.param(
        STAGE + "    vars: {a: [1, 2}\n",
        "10:20",
        "missing ']': the list opened at column 15 is still open here",
        "separate its items with ', '; quote an item that holds ':', '[' or ']'",
        id="wrong closer",
    ),
    pytest.param(
        STAGE + "    input: [1, 2]]\n",
        "10:18",
        "unexpected ']': nothing is open for it to close",
        "remove it, or quote the value",
        id="extra closer",
    ),
    pytest.param(
        STAGE + "    input: hello\n   timeout: 3\n",
        "11:4",
        "bad indentation: column 4 continues no block above it (line 10 at column 5 and line 8 at column 3)",
        "indent the lines of one block to the same column, with spaces",
        id="bad indentation",
    ),
    pytest.param(
        STAGE + "    input: hello\n      timeout: 3\n",
        "11:7",
        "this line is indented more than the key on line 10 (column 5), so it continues that key's value, "
        "where ':' is not allowed",
        "if it is the next key, indent it to column 5, like line 10",
        id="over-indented key",
    ),
    pytest.param(
        STAGE + "\tinput: hello\n",
        "10:1",
        "a tab character: YAML indents and separates with spaces only",
        "replace the tab with spaces",
        id="tab",
    ),
    pytest.param(
        STAGE + "    input: &x hello\n    vars: &x {}\n",
        "11:11",
        "duplicate anchor '&x' (first defined at line 10, column 12)",
        "give each anchor its own name; an alias (*name) refers to one anchor",
        id="duplicate anchor",
    ),
    pytest.param(
        STAGE + "    input: *nope\n",
        "10:12",
        "unknown alias '*nope': no anchor '&nope' is defined before it",
        "put '&nope' on the value to repeat, above this line, or write the value here",
        id="undefined alias",
    ),
    pytest.param(
        STAGE + '    input: "C:\\path"\n',
        "10:15",
        "unknown escape '\\p' in a double-quoted string",
        "write '\\\\' for a backslash, or use single quotes, where a backslash is plain text",
        id="bad escape",
    ),
    pytest.param(
        STAGE + '    input: "\\x4g"\n',
        "10:13",
        "the escape '\\x4g' needs 2 hexadecimal digits after '\\x'",
        "write '\\\\' for a backslash, or use single quotes, where a backslash is plain text",
        id="bad hex escape",
    ),
    pytest.param(
        STAGE + "    input: hello: there\n",
        "10:17",
        "':' followed by a space is not allowed inside a plain value",
        'quote the value: "hello: there"',
        id="colon in a plain value",
    ),
    pytest.param(
        STAGE + "    input: {{ inputs.x }}\n",
        "10:12",
        "an unquoted template: YAML reads {{ inputs.x }} as a mapping",
        'quote it: "{{ inputs.x }}"',
        id="unquoted template",
    ),
    pytest.param(
        STAGE + "    input: {{ inputs.x }} more\n",
        "10:27",
        "unexpected text after the value",
        'a template that starts a value must be quoted: input: "{{ ... }}"',
        id="unquoted template and text",
    ),
    pytest.param(
        STAGE + '    input: "x" y\n',
        "10:16",
        "unexpected text after the value",
        'put the whole value in one pair of quotes, e.g. "x" y becomes "x y"',
        id="text after quotes",
    ),
    pytest.param(
        STAGE + "    input: @x\n",
        "10:12",
        "'@' cannot start a value",
        'quote the value: "@x"',
        id="reserved character",
    ),
    pytest.param(
        STAGE + "  -id: t\n",
        "10:3",
        "'-' starts a list item only when a space follows it",
        "write '- ' (a dash, a space)",
        id="dash without space",
    ),
    pytest.param(
        STAGE + "---\nname: other\n",
        "10:1",
        "a second YAML document: a workflow file holds one",
        "remove the '---' line and what follows it, or split the file in two",
        id="two documents",
    ),
]


@pytest.mark.parametrize(("text", "where", "message", "hint"), SYNTAX_CASES)
def test_common_yaml_mistakes_are_located_worded_and_hinted(
    tmp_path: Path, text: str, where: str, message: str, hint: str
) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(text)
    _, problems = check_file(path)
    assert [(f"{p.line}:{p.column}", p.rule, p.message, p.hint) for p in problems] == [
        (where, "yaml-syntax", message, hint)
    ]
    line = int(where.split(":")[0])
    assert line <= text.count("\n")  # never the line after the file


def test_an_unclosed_quote_is_shown_with_its_source_line(write_wf, capsys) -> None:
    from runner.cli import main

    path = write_wf(STAGE + '    input: "unclosed\n  - id: t\n    agent: a\n')
    assert main(["validate", str(path)]) == 1
    assert capsys.readouterr().out == (
        f'{path}:10:12: error: unclosed quote: the text opened with " here never ends [yaml-syntax]\n'
        '    10 |     input: "unclosed\n'
        "       |            ^\n"
        '       = hint: end it with " on this line; a " inside the text is written \\"\n'
        "1 error(s), 0 warning(s) in 1 file(s)\n"
    )


EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "workflows").glob("*.yaml"))
_QUOTED = r'(?<![\w\\])"(?:[^"\\]|\\.)*"'
_KEY_VALUE = r"^(\s*(?:- )?)([\w-]+): (\S.*)$"


def _mutations(text: str):  # type: ignore[no-untyped-def]
    """(kind, mutated text, line, column where the mistake is) over every line of a workflow."""
    import re

    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line.lstrip().startswith("#"):
            continue

        def with_line(new: str, i: int = i) -> str:
            return "\n".join([*lines[:i], new, *lines[i + 1 :]])

        quoted = re.search(_QUOTED, line)
        if quoted:  # the closing quote dropped: the mistake is the opening quote
            end = quoted.end() - 1
            yield "unclosed quote", with_line(line[:end] + line[end + 1 :]), i + 1, quoted.start() + 1
        pair = re.match(_KEY_VALUE, line)
        if pair:  # the ':' after a key dropped: the mistake is that key
            indent, key, value = pair.groups()
            yield "missing colon", with_line(f"{indent}{key} {value}"), i + 1, len(indent) + 1
        if line.startswith(" "):
            yield "tab", with_line("\t" + line[1:]), i + 1, 1


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_mistakes_made_in_every_example_are_located_exactly(example: Path) -> None:
    """The class, not the cases: each example with each line broken in each common way reports the mistake
    at its line and column (measured before the fix: 104 of 214 unclosed quotes and missing colons were
    reported on another line, or at the line after the file)."""
    from runner.workflow.document import LoadError

    text = example.read_text()
    checked = 0
    for kind, mutated, line, column in _mutations(text):
        try:
            load_document(mutated, example.name)
        except LoadError as exc:
            (problem,) = exc.diagnostics
            assert (problem.line, problem.column, problem.rule) == (line, column, "yaml-syntax"), (kind, line)
            assert problem.hint, (kind, line)
            checked += 1
        else:  # a dropped ':' can leave valid YAML (`a b` continues a value): the schema reports that
            assert kind == "missing colon", (kind, line)
    assert checked >= 10


def test_random_edits_of_the_examples_are_reported_inside_the_file_never_raised() -> None:
    """The class of issue 14's end-of-stream positions: whatever breaks a file, the diagnostic is a located
    LoadError on a line the file has (a seeded sample of 400 random character edits of the examples)."""
    from runner.workflow.document import LoadError

    rng = random.Random(14)
    texts = [path.read_text() for path in EXAMPLES]
    broken = 0
    for _ in range(400):
        text = rng.choice(texts)
        for _ in range(rng.randrange(1, 4)):
            i = rng.randrange(len(text))
            edit = rng.randrange(3)
            if edit == 0:
                text = text[:i] + text[i + 1 :]
            elif edit == 1:
                text = text[:i] + rng.choice("\"'[]{}:#-|>\t \n&*!%@`\\") + text[i:]
            else:
                j = rng.randrange(len(text))
                text = text[:i] + text[j : j + 5] + text[i:]
        try:
            load_document(text, "f.yaml")
        except LoadError as exc:
            broken += 1
            last_line = len(text.rstrip("\n").split("\n"))
            assert all(1 <= d.line <= last_line for d in exc.diagnostics), (text, exc.diagnostics)
    assert broken > 100
