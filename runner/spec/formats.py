"""Formatters for diagnostics, by name (``runner validate --format``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from runner.spec.diagnostics import Diagnostic


def _source_line(file: str, line: int, cache: dict[str, list[str]]) -> str | None:
    if file not in cache:
        try:
            with open(file, encoding="utf-8", errors="replace") as f:
                cache[file] = f.read().splitlines()
        except OSError:
            cache[file] = []
    lines = cache[file]
    return lines[line - 1] if 0 < line <= len(lines) else None


def format_text(diagnostics: Sequence[Diagnostic], files: int) -> str:
    """``path:line:col: severity: message [rule]``, the source line, a caret under the span, the hint."""
    out: list[str] = []
    cache: dict[str, list[str]] = {}
    for d in diagnostics:
        out.append(d.format_line())
        source = _source_line(d.file, d.line, cache)
        if source is not None and len(source) < 500:
            width = d.end_column - d.column if d.end_line == d.line and d.end_column > d.column else 1
            width = max(1, min(width, len(source) - d.column + 1))
            out.append(f"  {d.line:>4} | {source}")
            out.append(f"       | {' ' * (d.column - 1)}{'^' * width}")
        if d.hint:
            out.append(f"       = hint: {d.hint}")
    errors = sum(1 for d in diagnostics if d.severity == "error")
    warnings = len(diagnostics) - errors
    if diagnostics:
        out.append(f"{errors} error(s), {warnings} warning(s) in {files} file(s)")
    else:
        out.append(f"{files} file(s) valid")
    return "\n".join(out) + "\n"


FORMATS_BY_NAME: dict[str, Callable[[Sequence[Diagnostic], int], str]] = {"text": format_text}
