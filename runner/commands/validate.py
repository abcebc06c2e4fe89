"""``runner validate PATH...``: every problem in every file, at once, sorted; exit 0 clean, 1 problems, 2 usage."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from runner.errors import UsageError
from runner.spec import check_file
from runner.spec.diagnostics import Diagnostic
from runner.spec.formats import FORMATS_BY_NAME


def collect_files(paths: Sequence[str]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()))
        elif path.exists():
            files.append(path)
        else:
            raise UsageError(f"{raw}: no such file or folder")
    return files


def validate_command(paths: Sequence[str], *, fmt: str, out: TextIO) -> int:
    formatter = FORMATS_BY_NAME.get(fmt)
    if formatter is None:
        raise UsageError(f"unknown format {fmt!r}; choose from: {', '.join(FORMATS_BY_NAME)}")
    files = collect_files(paths)
    problems: list[Diagnostic] = []
    for file in files:
        problems.extend(check_file(file)[1])
    problems.sort()
    out.write(formatter(problems, len(files)))
    return 1 if any(p.severity == "error" for p in problems) else 0
