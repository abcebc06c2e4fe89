"""``runner validate PATH...``: every problem in every file, at once, sorted; exit 0 clean, 1 problems, 2 usage.

Folders are searched for ``*.yaml`` and ``*.yml``, skipping hidden folders (``.git``, ``.venv``, caches);
files named explicitly are checked whatever their suffix (pre-commit passes its own selection).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from runner.errors import UsageError
from runner.spec import check_file
from runner.spec.diagnostics import ERROR, WARNING, Diagnostic
from runner.spec.formats import FORMATS_BY_NAME

SUFFIXES = (".yaml", ".yml")


def collect_files(paths: Sequence[str]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = (
                p
                for p in path.rglob("*")
                if p.suffix in SUFFIXES
                and not any(part.startswith(".") for part in p.relative_to(path).parts[:-1])
                and p.is_file()
            )
            files.extend(sorted(found))
        elif path.exists():
            files.append(path)
        else:
            raise UsageError(f"{raw}: no such file or folder")
    return list(dict.fromkeys(files))  # a file named twice is checked once


def parse_sets(sets: Sequence[str]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for assignment in sets:
        name, sep, text = assignment.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--set {assignment!r}: expected name=value")
        out.append((name.strip(), text))
    return out


def check_paths(
    paths: Sequence[str], *, strict: bool = False, sets: Sequence[str] = ()
) -> tuple[list[Diagnostic], int]:
    """Every problem in the files under ``paths``, sorted, and the number of files; ``strict``: warnings
    count as errors (the rule id stays, so suppressions and docs still match); ``sets``: ``name=value``
    input values checked against every file's inputs, as ``runner run --set`` parses them."""
    from runner.spec.rules.values import check_sets  # noqa: PLC0415

    assignments = parse_sets(sets)
    files = collect_files(paths)
    problems: list[Diagnostic] = []
    for file in files:
        wf, found = check_file(file)
        problems.extend(found)
        if wf is not None and assignments:
            problems.extend(check_sets(wf, assignments))
    if strict:
        problems = [dataclasses.replace(p, severity=ERROR) if p.severity == WARNING else p for p in problems]
    problems.sort()
    return problems, len(files)


def validate_command(
    paths: Sequence[str], *, fmt: str, out: TextIO, strict: bool = False, sets: Sequence[str] = ()
) -> int:
    formatter = FORMATS_BY_NAME.get(fmt)
    if formatter is None:
        raise UsageError(f"unknown format {fmt!r}; choose from: {', '.join(FORMATS_BY_NAME)}")
    problems, count = check_paths(paths, strict=strict, sets=sets)
    out.write(formatter(problems, count))
    return 1 if any(p.severity == ERROR for p in problems) else 0
