"""File positions for the checks: value spans from the YAML document, and template offsets mapped back
into the file whatever the scalar's style (plain, quoted, literal ``|`` or folded ``>`` block)."""

from __future__ import annotations

from dataclasses import dataclass

from runner.config.source import Loc, TemplateSrc
from runner.workflow.build import template_src
from runner.workflow.document import Document, Path, Span


@dataclass(frozen=True, slots=True)
class Where:
    """A located range in the workflow file, for a diagnostic."""

    line: int
    column: int
    end_line: int
    end_column: int


class Source:
    """One workflow file's text and document, or only the records' locations when there is no document."""

    def __init__(self, doc: Document | None) -> None:
        self.doc = doc

    def value(self, path: Path, fallback: Loc, width: int = 1) -> Where:
        if self.doc is not None and path in self.doc.values:
            return _where(self.doc.values[path])
        return Where(fallback.line, fallback.column, fallback.line, fallback.column + width)

    def key(self, path: Path, fallback: Loc, width: int = 1) -> Where:
        if self.doc is not None and path in self.doc.keys:
            return _where(self.doc.keys[path])
        return Where(fallback.line, fallback.column, fallback.line, fallback.column + width)

    def template_src(self, path: Path) -> TemplateSrc | None:
        """A string value of the document as a template located in the file (for templates the records keep
        as plain data, such as a scripted model's tool-call arguments)."""
        doc = self.doc
        if doc is None or path not in doc.values:
            return None
        value = doc.data
        for part in path:
            value = value[part]
        return template_src(doc, path) if isinstance(value, str) else None

    def template(self, src: TemplateSrc, start: int, end: int) -> Where:
        """Where the template text ``src.text[start:end]`` is in the file: the first and the last character
        mapped through the scalar's segments, so quotes, escapes and folded lines are accounted for."""
        end = max(end, start + 1)
        first = src.loc_at(start)
        last = src.loc_at(end - 1)
        if src.segments:
            return Where(first.line, first.column, last.line, last.column + 1)
        # Without segments only the start is known exactly: the width is the text's, on one line.
        same_line = src.text.count("\n", start, end) == 0
        return Where(first.line, first.column, first.line, first.column + (end - start if same_line else 1))


def _where(span: Span) -> Where:
    return Where(span.line, span.column, span.end_line, span.end_column)
