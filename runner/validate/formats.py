"""Formatters for diagnostics, by name (``runner validate --format``): text, json, github, sarif.

Each takes the sorted problems and the number of files checked and returns the whole output; the
command only picks one from ``FORMATS_BY_NAME``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from runner.diagnostics import Diagnostic
from runner.errors import ProviderError, RunnerError, SpecError
from runner.secrets import one_line, redact

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_MAX_SOURCE_LINE = 500  # longer lines (minified data) are not echoed under the message
_CONTROL = dict.fromkeys((*range(9), 11, 12, *range(14, 32), 127), "\ufffd")


class _Lines:
    """Source lines for the snippets, read once per file and never more than the size limit allows."""

    def __init__(self) -> None:
        self._files: dict[str, list[str]] = {}

    def get(self, file: str, line: int) -> str | None:
        if file not in self._files:
            from runner.workflow.limits import read_limited  # noqa: PLC0415

            try:
                data, _ = read_limited(file)
                text = data.decode("utf-8", errors="replace")
                # Control characters (a NUL, a bell) would garble the terminal: show them as U+FFFD.
                self._files[file] = text.translate(_CONTROL).splitlines()
            except OSError:
                self._files[file] = []
        lines = self._files[file]
        return lines[line - 1] if 0 < line <= len(lines) else None


def render_diagnostics(diagnostics: Sequence[Diagnostic]) -> list[str]:
    """Each problem as ``path:line:col: severity: message [rule]``, the source line, a caret under the span and
    the hint: how `runner validate` shows a problem, and `runner run` / `runner graph` the same one."""
    out: list[str] = []
    lines = _Lines()
    for d in diagnostics:
        out.append(d.format_line())
        source = lines.get(d.file, d.line)
        if source is not None and len(source) <= _MAX_SOURCE_LINE:
            width = d.end_column - d.column if d.end_line == d.line and d.end_column > d.column else 1
            width = max(1, min(width, len(source) - d.column + 1))
            # Keep tabs in the padding so the caret lines up however the terminal expands them.
            pad = "".join(c if c == "\t" else " " for c in source[: d.column - 1])
            out.append(f"  {d.line:>4} | {source}")
            out.append(f"       | {pad}{'^' * width}")
        if d.hint:
            out.append(f"       = hint: {d.hint}")
    return out


def format_text(diagnostics: Sequence[Diagnostic], files: int) -> str:
    """The problems (:func:`render_diagnostics`), then how many in how many files."""
    out = render_diagnostics(diagnostics)
    errors = sum(1 for d in diagnostics if d.severity == "error")
    warnings = len(diagnostics) - errors
    if diagnostics:
        out.append(f"{errors} error(s), {warnings} warning(s) in {files} file(s)")
    else:
        out.append(f"{files} file(s) valid")
    return "\n".join(out) + "\n"


def format_error(exc: RunnerError) -> str:
    """A user-facing error as the CLI prints it, whatever the command: the problems of a file that does not
    validate exactly as `runner validate` shows them (no prefix: each line names its file and severity), else
    ``runner: error: <message>``."""
    if isinstance(exc, SpecError) and exc.diagnostics:
        return format_text(exc.diagnostics, len({d.file for d in exc.diagnostics}))
    # redacted; a provider's error (which quotes the server, whose messages may span lines) on one line
    text = redact(str(exc))
    return f"runner: error: {one_line(text) if isinstance(exc, ProviderError) else text}\n"


def format_json(diagnostics: Sequence[Diagnostic], files: int) -> str:
    problems = [
        {
            "file": d.file,
            "line": d.line,
            "column": d.column,
            "end_line": d.end_line,
            "end_column": d.end_column,
            "severity": d.severity,
            "rule": d.rule,
            "message": d.message,
            "hint": d.hint,
        }
        for d in diagnostics
    ]
    return json.dumps({"files": files, "problems": problems}, indent=2, ensure_ascii=False) + "\n"


def _escape_data(text: str) -> str:
    # https://github.com/actions/toolkit/blob/main/packages/core/src/command.ts (escapeData)
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    # (escapeProperty): also ':' and ',', which separate the properties
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def format_github(diagnostics: Sequence[Diagnostic], files: int) -> str:
    """GitHub Actions workflow commands: one annotation per problem, shown on the pull request's diff."""
    out: list[str] = []
    for d in diagnostics:
        level = "error" if d.severity == "error" else "warning"
        props = [f"file={_escape_property(d.file)}", f"line={d.line}", f"col={d.column}"]
        if d.end_line and d.end_line != d.line:
            props.append(f"endLine={d.end_line}")
        if d.end_column:
            props.append(f"endColumn={d.end_column}")
        props.append(f"title={_escape_property(d.rule)}")
        message = f"{d.message}\nhint: {d.hint}" if d.hint else d.message
        out.append(f"::{level} {','.join(props)}::{_escape_data(message)}")
    return "".join(line + "\n" for line in out)


def _uri(file: str) -> tuple[str, bool]:
    """A relative URI (to the working folder, which is the repository root in CI) when possible."""
    path = Path(file)
    if path.is_absolute():
        try:
            return quote(path.resolve().relative_to(Path.cwd().resolve()).as_posix()), True
        except ValueError:
            return path.resolve().as_uri(), False
    return quote(Path(os.path.normpath(file)).as_posix()), True


def sarif_document(diagnostics: Sequence[Diagnostic], files: int) -> dict[str, Any]:
    """SARIF 2.1.0 as GitHub code scanning reads it: every rule with its help, results with exact regions."""
    from runner.validate.rules.catalog import RULES  # noqa: PLC0415
    from runner.version import __version__  # noqa: PLC0415

    rule_ids = list(RULES)
    rules = [
        {
            "id": rule.id,
            "name": "".join(part.capitalize() for part in rule.id.split("-")),
            "shortDescription": {"text": rule.summary},
            "fullDescription": {"text": f"{rule.summary} {rule.help}"},
            "help": {
                "text": f"{rule.help} See docs/rules.md#{rule.id} for a bad and a fixed example.",
                "markdown": f"{rule.help}\n\nSee `docs/rules.md#{rule.id}` for a bad and a fixed example.",
            },
            "defaultConfiguration": {"level": "error" if rule.severity == "error" else "warning"},
        }
        for rule in RULES.values()
    ]
    results = []
    for d in diagnostics:
        uri, relative = _uri(d.file)
        location: dict[str, Any] = {"uri": uri}
        if relative:
            location["uriBaseId"] = "%SRCROOT%"
        end_line = d.end_line or d.line
        end_column = d.end_column if d.end_column > d.column or end_line > d.line else d.column + 1
        result: dict[str, Any] = {
            "ruleId": d.rule,
            "level": "error" if d.severity == "error" else "warning",
            "message": {"text": f"{d.message}\nhint: {d.hint}" if d.hint else d.message},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": location,
                        "region": {
                            "startLine": d.line,
                            "startColumn": d.column,
                            "endLine": end_line,
                            "endColumn": end_column,
                        },
                    }
                }
            ],
        }
        if d.rule in RULES:
            result["ruleIndex"] = rule_ids.index(d.rule)
        results.append(result)
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "runner",
                        "version": __version__,
                        "semanticVersion": __version__,
                        "rules": rules,
                    }
                },
                "originalUriBaseIds": {"%SRCROOT%": {"uri": Path.cwd().resolve().as_uri() + "/"}},
                "columnKind": "unicodeCodePoints",
                "invocations": [{"executionSuccessful": True}],
                "results": results,
                "properties": {"files": files},
            }
        ],
    }


def format_sarif(diagnostics: Sequence[Diagnostic], files: int) -> str:
    return json.dumps(sarif_document(diagnostics, files), indent=2, ensure_ascii=False) + "\n"


FORMATS_BY_NAME: dict[str, Callable[[Sequence[Diagnostic], int], str]] = {
    "text": format_text,
    "json": format_json,
    "github": format_github,
    "sarif": format_sarif,
}
