"""Dataset files read as a stream of rows, never whole: JSONL, CSV with a header, a JSON array, Parquet.

Each reader yields :class:`SourceRow` one at a time, holding only the row being read (and, for a JSON array, the
unparsed rest of the current 64 KiB chunk), so a 100,000-row file costs the memory of a row, not of the file
(issue 17). A row that cannot be read (a JSONL line that is not JSON, a JSON item that is not an object) is a row
with ``problem`` set: the batch counts it as a failed row, located, and goes on. A file that cannot be read at
all, or a JSON array whose structure breaks, raises :class:`DatasetError` (the rows before it have been run).

Parquet needs ``pyarrow`` (the ``parquet`` extra): it is imported only when a ``.parquet`` file is read.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from runner.errors import RunnerError

FORMATS = ("jsonl", "csv", "json", "parquet")
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".json": "json", ".parquet": "parquet"}
_CHUNK = 64 * 1024


class DatasetError(RunnerError):
    """A dataset file that cannot be read (missing, unknown format, broken structure): names the file and where."""


@dataclass(frozen=True, slots=True)
class SourceRow:
    """One row as read: its 0-based ``index`` in the file, ``where`` (``file:line``, or ``file: row N`` for
    Parquet), its ``values`` by column, or ``problem`` when the row itself could not be read."""

    index: int
    where: str
    values: dict[str, Any]
    problem: str | None = None
    from_text: bool = False  # CSV: every value is text, parsed by the input's declared type


def format_of(path: str) -> str:
    """The format named by the file's suffix; a :class:`DatasetError` with the known ones otherwise."""
    fmt = _SUFFIXES.get(os.path.splitext(path)[1].lower())
    if fmt is None:
        known = ", ".join(sorted(_SUFFIXES))
        raise DatasetError(f"--dataset {path}: unknown format; name the file with one of {known}")
    return fmt


def check_readable(path: str) -> str:
    """The file's format, once it is known that the file is there and can be read in it (pyarrow for
    Parquet): what a batch checks before it makes its run folder."""
    fmt = format_of(path)
    if not os.path.isfile(path):
        what = "is a folder, not a file" if os.path.isdir(path) else "no such file"
        raise DatasetError(f"--dataset {path}: {what}")
    if fmt == "parquet":
        _pyarrow(path)
    return fmt


def _pyarrow(path: str) -> Any:
    try:
        import pyarrow.parquet as pq  # type: ignore[import-not-found, import-untyped, unused-ignore]  # noqa: PLC0415
    except ImportError:
        raise DatasetError(
            f"--dataset {path}: reading Parquet needs pyarrow; install the extra: pip install 'runner[parquet]'"
        ) from None
    return pq


def read_rows(path: str) -> Iterator[SourceRow]:
    """The rows of the dataset file ``path``, in file order, read as a stream."""
    fmt = check_readable(path)
    readers = {"jsonl": _jsonl, "csv": _csv, "json": _json_array, "parquet": _parquet}
    try:
        yield from readers[fmt](path)
    except UnicodeDecodeError as exc:
        raise DatasetError(f"--dataset {path}: not UTF-8 text ({exc.reason} at byte {exc.start} of a read)") from None
    except OSError as exc:
        raise DatasetError(f"--dataset {path}: cannot read the file: {exc.strerror}") from None


def count_rows(path: str) -> int:
    """How many rows the file holds (read once more, as a stream): the progress line's total."""
    if format_of(path) == "jsonl":  # the common case, counted without parsing
        with open(path, "rb") as f:
            return sum(1 for line in f if line.strip())
    return sum(1 for _ in read_rows(path))


def _jsonl(path: str) -> Iterator[SourceRow]:
    index = 0
    with open(path, encoding="utf-8-sig") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue  # a blank line (a trailing one, most often) is not a row
            where = f"{path}:{number}"
            try:
                value = json.loads(line)
            except (json.JSONDecodeError, RecursionError) as exc:
                message = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
                yield SourceRow(index, where, {}, f"not a JSON line: {message}")
            else:
                yield _object_row(index, where, value)
            index += 1


def _object_row(index: int, where: str, value: Any) -> SourceRow:
    if not isinstance(value, dict):
        return SourceRow(index, where, {}, f"a row is a JSON object of input values, not {_json_type(value)}")
    return SourceRow(index, where, value)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array"


def _csv(path: str) -> Iterator[SourceRow]:
    # newline="" lets the csv module read quoted fields that span lines; utf-8-sig drops a spreadsheet's BOM.
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise DatasetError(f"{path}:1: the header cannot be read: {exc}") from None
        names = [name.strip() for name in header]
        duplicate = next((n for i, n in enumerate(names) if n in names[:i]), None)
        if duplicate is not None:
            raise DatasetError(f"{path}:1: column {duplicate!r} appears twice in the header; rename one")
        index = 0
        line = reader.line_num + 1
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise DatasetError(f"{path}:{line}: {exc}") from None
            where = f"{path}:{line}"
            line = reader.line_num + 1
            if not fields or fields == [""]:
                continue  # a blank line
            if len(fields) != len(names):
                problem = f"{len(fields)} fields where the header has {len(names)} columns"
                yield SourceRow(index, where, {}, problem)
            else:
                yield SourceRow(index, where, dict(zip(names, fields, strict=True)), from_text=True)
            index += 1


def _json_array(path: str) -> Iterator[SourceRow]:
    """A JSON array's items, decoded one at a time from 64 KiB chunks (``json.JSONDecoder.raw_decode``)."""
    decoder = json.JSONDecoder()
    with open(path, encoding="utf-8-sig") as f:
        buffer = ""
        pos = 0
        line = 1  # the line at ``pos``
        eof = False

        def fill() -> bool:
            nonlocal buffer, pos, eof
            if eof:
                return False
            chunk = f.read(_CHUNK)
            if not chunk:
                eof = True
                return False
            buffer = buffer[pos:] + chunk
            pos = 0
            return True

        def skip_space() -> str:
            """The next character that is not white space ("" at the end of the file), counting lines."""
            nonlocal pos, line
            while True:
                while pos < len(buffer) and buffer[pos] in " \t\r\n":
                    if buffer[pos] == "\n":
                        line += 1
                    pos += 1
                if pos < len(buffer):
                    return buffer[pos]
                if not fill():
                    return ""

        def broken(expected: str) -> DatasetError:
            got = skip_space()
            found = repr(got) if got else "the end of the file"
            return DatasetError(f"{path}:{line}: expected {expected}, found {found}; the file is not a JSON array")

        if skip_space() != "[":
            raise broken("'[' (a dataset in .json is an array of objects)")
        pos += 1
        index = 0
        if skip_space() == "]":
            return
        while True:
            skip_space()
            while True:
                try:
                    value, end = decoder.raw_decode(buffer, pos)
                except json.JSONDecodeError as exc:
                    if fill():
                        continue  # the item runs past this chunk: read on
                    raise DatasetError(f"{path}:{line + buffer.count(chr(10), pos, exc.pos)}: {exc.msg}") from None
                except RecursionError:
                    raise DatasetError(f"{path}:{line}: an item nests too deeply") from None
                if end == len(buffer) and fill():
                    continue  # a number may go on in the next chunk: decode the item again with it
                break
            where = f"{path}:{line}"
            line += buffer.count("\n", pos, end)
            pos = end
            yield _object_row(index, where, value)
            index += 1
            after = skip_space()
            if after == ",":
                pos += 1
                continue
            if after == "]":
                return
            raise broken("',' or ']' after an item")


def _parquet(path: str) -> Iterator[SourceRow]:
    pq = _pyarrow(path)
    index = 0
    try:
        batches = pq.ParquetFile(path).iter_batches(batch_size=1024)  # a batch at a time, never the whole file
        for batch in batches:
            for values in batch.to_pylist():
                yield SourceRow(index, f"{path}: row {index + 1}", values)
                index += 1
    except ValueError as exc:  # pyarrow's ArrowInvalid: not a Parquet file, a damaged one
        raise DatasetError(f"--dataset {path}: not a readable Parquet file: {exc}") from None
