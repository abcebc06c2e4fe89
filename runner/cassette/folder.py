"""A cassette on disk: one JSON file per recorded answer.

**Why one file per entry, not one JSONL file.** Each answer is written atomically the moment it is complete
(:func:`runner.fsutil.atomic_write_text`), so an interrupted recording keeps every answer it got and never a
half-written file, without rewriting what is there; two branches of a repository that recorded different
requests add different files and merge without a conflict; pruning is deleting files; and a reviewer reads
one request and its answer in one file, pretty-printed, with each streamed chunk on a line of its own, which
is what a diff of a re-recorded answer shows. A replay reads only the files of the requests it makes.

A file is named ``<first 16 hex digits of the key>-<n>.json``: ``n`` counts the same request made again in
one run (the branches of a fan-out asking the same thing), answered in that order. Its content::

    {
      "runner_cassette": 1,
      "key": "<sha256 of the request, see runner.cassette.keys>",
      "request": {"provider": "openai", "path": "/chat/completions", "body": {...}},
      "recorded": {"model": "main", "node": "notes[0]"},
      "response": {
        "status": 200,
        "headers": {"content-type": "text/event-stream"},
        "elapsed": 0.0512,                      (seconds from sending to the answer's headers)
        "json": {...}, "end": 0.0519            (a whole JSON answer, and when it had arrived), or
        "chunks": [
          [0.0515, "data: {...}\\n\\n"],          (every chunk of the body, with its offset from sending)
          ...
        ]
      }
    }
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import RunnerError
from runner.fsutil import atomic_write_text, is_temp_name

FORMAT = 1
KEPT_HEADERS = ("content-type",)
"""The answer's headers a recording keeps: what the provider reads to decide how to parse the body. Others
(cookies, request ids, rate-limit figures, the server's name) are either secret-adjacent or change every call."""
NAME = re.compile(r"^(?P<prefix>[0-9a-f]{16})-(?P<n>[1-9][0-9]*)\.json$")


class CassetteError(RunnerError):
    """A cassette folder that cannot be used: missing, not a folder, or an entry that cannot be read."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One recorded answer, as read from its file."""

    path: Path
    key: str
    n: int
    request: dict[str, Any]
    recorded: dict[str, Any]
    response: dict[str, Any]

    @property
    def body(self) -> bytes:
        """The answer's body, whole."""
        response = self.response
        if "json" in response:
            return json.dumps(response["json"], ensure_ascii=False).encode()
        if "text" in response:
            return str(response["text"]).encode("utf-8", "surrogateescape")
        return b"".join(str(text).encode("utf-8", "surrogateescape") for _, text in response.get("chunks", ()))


def file_name(key: str, n: int) -> str:
    return f"{key[:16]}-{n}.json"


class Cassette:
    """The folder of a cassette. ``index`` maps each key prefix to the numbers recorded under it (listed once,
    when opened; entries are read when asked for)."""

    def __init__(self, path: str | os.PathLike[str], *, create: bool = False) -> None:
        self.path = Path(path)
        if create:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise CassetteError(f"cassette {self.path}: cannot create the folder: {exc.strerror}") from exc
        if not self.path.is_dir():
            what = "is not a folder" if self.path.exists() else "no such folder"
            raise CassetteError(
                f"cassette {self.path}: {what}; record one first with `runner run WF --record {self.path}`"
            )
        self.index: dict[str, set[int]] = {}
        for name in os.listdir(self.path):
            match = NAME.match(name)
            if match is not None:
                self.index.setdefault(match["prefix"], set()).add(int(match["n"]))

    def __len__(self) -> int:
        return sum(len(ns) for ns in self.index.values())

    def has(self, key: str, n: int) -> bool:
        return n in self.index.get(key[:16], ())

    def read(self, key: str, n: int) -> Entry | None:
        """The ``n``-th recording of ``key``, or None (not recorded, or recorded under another key that shares
        the prefix)."""
        if not self.has(key, n):
            return None
        entry = self.load(self.path / file_name(key, n))
        return entry if entry.key == key else None

    def load(self, path: Path) -> Entry:
        return self.load_file(path)

    @staticmethod
    def load_file(path: Path) -> Entry:
        """The entry in file ``path``; :class:`CassetteError` when it cannot be read as one."""
        try:
            data = json.loads(path.read_bytes())
            if not isinstance(data, dict) or data.get("runner_cassette") != FORMAT:
                raise ValueError(f"not a runner cassette entry (format {FORMAT})")
            match = NAME.match(path.name)  # a response cache's files are named by the whole key, without n
            n = int(match["n"]) if match is not None else 1
            return Entry(path, str(data["key"]), n, data["request"], data.get("recorded", {}), data["response"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            raise CassetteError(f"cassette entry {path}: cannot be read: {reason}; record it again") from exc

    def entries(self) -> Iterator[Entry]:
        """Every entry, in name order."""
        for name in sorted(os.listdir(self.path)):
            if NAME.match(name) and not is_temp_name(name):
                yield self.load(self.path / name)

    def write(
        self, key: str, n: int, request: dict[str, Any], recorded: dict[str, Any], response: dict[str, Any]
    ) -> Path:
        """Write (or replace) the ``n``-th recording of ``key``, atomically."""
        path = self.path / file_name(key, n)
        entry = {"runner_cassette": FORMAT, "key": key, "request": request, "recorded": recorded}
        atomic_write_text(path, render(entry, response), fsync=False)
        self.index.setdefault(key[:16], set()).add(n)
        return path


def _dumps(value: Any, indent: int | None = None) -> str:
    """JSON as readable as it can be: UTF-8 text as itself, except a chunk that holds bytes that are not UTF-8
    (kept as escaped lone surrogates, which read back to the same bytes)."""
    text = json.dumps(value, indent=indent, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, indent=indent)
    return text


def render(entry: dict[str, Any], response: dict[str, Any]) -> str:
    """The file's text: indented JSON, with each streamed chunk on one line."""
    chunks = response.get("chunks")
    head = {**entry, "response": {k: v for k, v in response.items() if k != "chunks"}}
    text = _dumps(head, indent=2)
    if chunks is None:
        return text + "\n"
    assert text.endswith("\n  }\n}")
    lines = ",\n".join(f"      {_dumps([offset, chunk])}" for offset, chunk in chunks)
    return text[: -len("\n  }\n}")] + ',\n    "chunks": [\n' + lines + "\n    ]\n  }\n}\n"
