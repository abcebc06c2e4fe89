"""Dataset files read as a stream (runner/dataset/read.py) and rows made into inputs (runner/dataset/rows.py)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from runner.dataset import read
from runner.dataset.read import DatasetError, SourceRow, count_rows, read_rows
from runner.dataset.rows import RowInputs, parse_map
from runner.errors import UsageError
from tests.conftest import load_unchecked

pytestmark = pytest.mark.timeout(30)


def rows_of(path: Path) -> list[SourceRow]:
    return list(read_rows(str(path)))


def test_jsonl_rows_blank_lines_and_bad_lines_located(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2\n[1, 2]\n{"a": "é"}\n', encoding="utf-8")
    rows = rows_of(path)
    assert [(r.index, r.where, r.values, r.problem) for r in rows] == [
        (0, f"{path}:1", {"a": 1}, None),
        (1, f"{path}:3", {}, "not a JSON line: Expecting ',' delimiter"),
        (2, f"{path}:4", {}, "a row is a JSON object of input values, not an array"),
        (3, f"{path}:5", {"a": "é"}, None),
    ]
    assert count_rows(str(path)) == 4


def test_csv_with_quoted_newlines_unicode_and_a_bom(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    text = 'id,text,n\r\n1,"two\nlines, and a comma",3\r\n2,"日本語 ""quoted"" 🙂",\r\n\r\n3,short\r\n'
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    rows = rows_of(path)
    assert [(r.index, r.where, r.values, r.problem) for r in rows] == [
        (0, f"{path}:2", {"id": "1", "text": "two\nlines, and a comma", "n": "3"}, None),
        (1, f"{path}:4", {"id": "2", "text": '日本語 "quoted" 🙂', "n": ""}, None),
        (2, f"{path}:6", {}, "2 fields where the header has 3 columns"),
    ]
    assert all(r.from_text for r in rows[:2])
    assert count_rows(str(path)) == 3


def test_csv_duplicate_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a,b,a\n1,2,3\n")
    with pytest.raises(DatasetError) as caught:
        rows_of(path)
    assert str(caught.value) == f"{path}:1: column 'a' appears twice in the header; rename one"


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 64 * 1024])
def test_json_array_read_incrementally_at_every_chunk_boundary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(read, "_CHUNK", chunk)
    path = tmp_path / "d.json"
    path.write_text('[\n  {"a": "x,]y"},\n  {"a": [1, {"b": 2}]} ,\n 12345,\n  {"a": "\\u00e9"}\n]\n', encoding="utf-8")
    rows = rows_of(path)
    assert [(r.index, r.where, r.values, r.problem) for r in rows] == [
        (0, f"{path}:2", {"a": "x,]y"}, None),
        (1, f"{path}:3", {"a": [1, {"b": 2}]}, None),
        (2, f"{path}:4", {}, "a row is a JSON object of input values, not a number"),
        (3, f"{path}:5", {"a": "é"}, None),
    ]


def test_json_array_reads_a_row_before_the_rest_of_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stream: the first row comes out having read one chunk, not the whole (here broken) file."""
    monkeypatch.setattr(read, "_CHUNK", 16)
    path = tmp_path / "d.json"
    path.write_text('[{"a": 1}, ' + '{"b": 2}, ' * 1000 + "oops")
    rows = read_rows(str(path))
    assert next(rows).values == {"a": 1}
    with pytest.raises(DatasetError) as caught:
        list(rows)
    assert str(caught.value) == f"{path}:1: Expecting value"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": 1}', "expected '[' (a dataset in .json is an array of objects), found '{'"),
        ('[{"a": 1} {"a": 2}]', "expected ',' or ']' after an item, found '{'"),
        ('[{"a": 1},', "Expecting value"),
        ("", "expected '[' (a dataset in .json is an array of objects), found the end of the file"),
    ],
)
def test_json_array_broken_structure_is_located(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "d.json"
    path.write_text(text)
    with pytest.raises(DatasetError) as caught:
        rows_of(path)
    assert str(caught.value).startswith(f"{path}:1: {message}")


def test_unknown_format_missing_file_and_parquet_without_pyarrow(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as caught:
        rows_of(tmp_path / "d.txt")
    assert str(caught.value) == (
        f"--dataset {tmp_path / 'd.txt'}: unknown format; name the file with one of .csv, .json, .jsonl, .ndjson, "
        ".parquet"
    )
    with pytest.raises(DatasetError) as caught:
        rows_of(tmp_path / "missing.jsonl")
    assert str(caught.value) == f"--dataset {tmp_path / 'missing.jsonl'}: no such file"
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        path = tmp_path / "d.parquet"
        path.write_bytes(b"PAR1")
        with pytest.raises(DatasetError) as caught:
            rows_of(path)
        assert str(caught.value) == (
            f"--dataset {path}: reading Parquet needs pyarrow; install the extra: pip install 'runner[parquet]'"
        )


def test_not_utf8_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"a": "\xff"}\n')
    with pytest.raises(DatasetError) as caught:
        rows_of(path)
    assert str(caught.value).startswith(f"--dataset {path}: not UTF-8 text (invalid start byte")


WF = """\
version: 1
name: typed
inputs:
  text: {type: string}
  n: {type: integer, default: 1}
  ratio: {type: number, default: 0.5}
  flag: {type: boolean, default: false}
  tags: {type: array, items: string, default: []}
models:
  m: {provider: scripted, reply: "ok"}
agents:
  a: {model: m, sys_prompt: "s"}
stages:
  - {id: s, agent: a, input: "{{ inputs.text }}"}
"""


@pytest.fixture
def typed(tmp_path: Path) -> RowInputs:
    path = tmp_path / "wf.yaml"
    path.write_text(textwrap.dedent(WF))
    return RowInputs(load_unchecked(path), parse_map(["body=text"]), key="id")


def test_csv_text_is_coerced_by_the_declared_types(typed: RowInputs) -> None:
    values = {"id": "T-1", "body": "hello", "n": "42", "ratio": "2.5", "flag": "yes", "tags": '["a", "b"]', "x": "1"}
    prepared = typed.prepare(0, "d.csv:2", values, from_text=True)
    assert prepared.key == "T-1"
    assert prepared.error is None
    assert prepared.inputs == {"text": "hello", "n": 42, "ratio": 2.5, "flag": True, "tags": ["a", "b"]}
    empty = typed.prepare(1, "d.csv:3", {"body": "hi", "n": ""}, from_text=True)
    assert empty.key == "1" and empty.inputs is not None and empty.inputs["n"] == 1  # an empty cell: the default


def test_a_bad_row_is_a_located_error_naming_every_problem(typed: RowInputs) -> None:
    prepared = typed.prepare(7, "d.csv:9", {"body": "x", "n": "many", "flag": "maybe"}, from_text=True)
    assert prepared.inputs is None
    assert prepared.error == (
        "d.csv:9: row 7: input n (column 'n'): expected an integer, got 'many'; "
        "input flag (column 'flag'): expected true or false, got 'maybe'"
    )
    missing = typed.prepare(3, "d.jsonl:4", {"n": 2.5}, from_text=False)
    assert missing.error == (
        "d.jsonl:4: row 3: input n: expected integer, got float; "
        "input text is required: pass a column text (or --map COLUMN=text) "
        f"({typed.specs['text'].loc})"
    )


def test_a_mapped_column_wins_and_a_bad_map_is_a_usage_error(typed: RowInputs, tmp_path: Path) -> None:
    prepared = typed.prepare(0, "d.jsonl:1", {"text": "ignored", "body": "used"}, from_text=False)
    assert prepared.inputs is not None and prepared.inputs["text"] == "used"
    with pytest.raises(UsageError) as caught:
        RowInputs(typed.wf, parse_map(["body=txt"]))
    assert str(caught.value) == "--map body=txt: the workflow has no input 'txt' (did you mean 'text'?)"
    with pytest.raises(UsageError) as caught:
        parse_map(["a=b,c"])
    assert str(caught.value) == "--map 'c': expected column=input"


def test_a_json_dataset_with_many_rows_is_not_read_whole(tmp_path: Path) -> None:
    """Counting and reading 20,000 JSONL rows gives them in order, one at a time."""
    path = tmp_path / "d.jsonl"
    with path.open("w") as f:
        for i in range(20_000):
            f.write(json.dumps({"i": i}) + "\n")
    rows = read_rows(str(path))
    assert next(rows).values == {"i": 0}
    assert sum(1 for _ in rows) == 19_999
