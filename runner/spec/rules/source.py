"""File positions for the checks: value spans from the YAML document, and template offsets mapped back
into the file whatever the scalar's style (plain, quoted, literal ``|`` or folded ``>`` block)."""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from runner.spec.records import Loc, TemplateSrc
from runner.spec.yamlpos import Document, Path, Span


@dataclass(frozen=True, slots=True)
class Where:
    line: int
    column: int
    end_line: int
    end_column: int


class Source:
    """One workflow file's text and document, or only the records' locations when there is no document."""

    def __init__(self, doc: Document | None) -> None:
        self.doc = doc
        self._starts: list[int] | None = None
        self._by_line: dict[int, list[tuple[Span, Path]]] | None = None

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
        if not isinstance(value, str):
            return None
        span = doc.values[path]
        first = doc.text[self._offset(span.line, span.column)] if doc.text else ""
        if first in "|>" and first:
            starts = self._offsets()
            if span.line < len(starts):
                body = doc.text[starts[span.line] :].split("\n", 1)[0]
                column = len(body) - len(body.lstrip(" ")) + 1
                return TemplateSrc(value, Loc(doc.file, span.line, column), 1)
        quoted = first in ("'", '"') and first != ""
        return TemplateSrc(value, Loc(doc.file, span.line, span.column + (1 if quoted else 0)))

    def template(self, src: TemplateSrc, start: int, end: int) -> Where:
        """Where the template text ``src.text[start:end]`` is in the file."""
        text = src.text
        end = max(end, start + 1)
        raw = self._raw(src)
        literal = raw is not None and raw[0].startswith("|")
        if raw is not None and not literal:
            # Plain, quoted and folded scalars: the same characters appear in the file, in order; find the
            # k-th occurrence of the needle (escapes and folding only change text *between* tokens).
            needle = text[start:end]
            k = text.count(needle, 0, start) if needle else 0
            raw_text, raw_start = raw
            at = -1
            for _ in range(k + 1):
                at = raw_text.find(needle, at + 1)
                if at < 0:
                    break
            if at >= 0 and needle:
                line, col = self._position(raw_start + at)
                end_line, end_col = self._position(raw_start + at + len(needle))
                return Where(line, col, end_line, end_col)
        line_no = text.count("\n", 0, start) + 1
        col = start - (text.rfind("\n", 0, start) + 1) + 1
        loc = src.loc_of_line(line_no)
        column = loc.column + col - 1
        same_line = text.count("\n", start, end) == 0
        return Where(loc.line, column, loc.line, column + (end - start if same_line else 1))

    def _raw(self, src: TemplateSrc) -> tuple[str, int] | None:
        """The scalar's text as written in the file and its offset, found from the template's location."""
        doc = self.doc
        if doc is None or src.loc.file != doc.file:
            return None
        if self._by_line is None:
            self._by_line = {}
            for path, span in doc.values.items():
                self._by_line.setdefault(span.line, []).append((span, path))
        best: Span | None = None
        for line in (src.loc.line, src.loc.line - src.first_line_offset):
            for span, _ in self._by_line.get(line, ()):
                inside = (span.line, span.column) <= (src.loc.line, src.loc.column) <= (span.end_line, span.end_column)
                if inside and (best is None or (span.line, span.column) > (best.line, best.column)):
                    best = span
        if best is None:
            return None
        start = self._offset(best.line, best.column)
        return doc.text[start : self._offset(best.end_line, best.end_column)], start

    def _offsets(self) -> list[int]:
        if self._starts is None:
            text = self.doc.text if self.doc is not None else ""
            starts = [0]
            at = text.find("\n")
            while at >= 0:
                starts.append(at + 1)
                at = text.find("\n", at + 1)
            self._starts = starts
        return self._starts

    def _offset(self, line: int, column: int) -> int:
        starts = self._offsets()
        return starts[min(line, len(starts)) - 1] + column - 1

    def _position(self, offset: int) -> tuple[int, int]:
        starts = self._offsets()
        line = bisect.bisect_right(starts, offset)
        return line, offset - starts[line - 1] + 1


def _where(span: Span) -> Where:
    return Where(span.line, span.column, span.end_line, span.end_column)
