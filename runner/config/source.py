"""Where things are in a workflow file: a position, and a template's text with the map back to its file.

At the bottom of the house: the settings records, the templates and the workflow records all point into the
file with these.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Loc:
    """A position in a workflow file (1-based line and column)."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class TemplateSrc:
    """A template's text and where it is in the YAML file.

    ``segments`` maps the text back to the file whatever the scalar's style (quotes, escapes, folded lines,
    block indentation): ``(offset in the text, line, column)``, each run of characters from that offset on
    sitting at consecutive columns of that line (see ``runner.workflow.scalars.Segment``). Without segments
    (a template made in code) ``loc`` is where the text starts, and ``first_line_offset`` is 1 for block
    scalars (``|``, ``>``), whose text starts on the line after the indicator.
    """

    text: str
    loc: Loc
    first_line_offset: int = 0
    segments: tuple[tuple[int, int, int], ...] = ()

    def loc_at(self, offset: int) -> Loc:
        """The file position of the text's character at ``offset`` (clamped to the text)."""
        offset = max(0, min(offset, len(self.text)))
        if self.segments:
            i = bisect.bisect_right(self.segments, (offset, _AFTER, _AFTER)) - 1
            start, line, column = self.segments[max(i, 0)]
            return Loc(self.loc.file, line, column + max(offset - start, 0))
        lineno = self.text.count("\n", 0, offset) + 1
        column = offset - (self.text.rfind("\n", 0, offset) + 1)
        return self._line_start(lineno, column)

    def loc_of_line(self, lineno: int) -> Loc:
        """The file position where the text's line ``lineno`` (1-based, as Jinja counts) starts."""
        if self.segments:
            offset = 0
            for _ in range(max(lineno, 1) - 1):
                found = self.text.find("\n", offset)
                if found < 0:
                    break
                offset = found + 1
            return self.loc_at(offset)
        return self._line_start(lineno, 0)

    def _line_start(self, lineno: int, column: int) -> Loc:
        lineno = max(1, min(lineno, self.text.count("\n") + 1))
        if lineno <= 1 and not self.first_line_offset:
            return Loc(self.loc.file, self.loc.line, self.loc.column + column)
        return Loc(self.loc.file, self.loc.line + self.first_line_offset + lineno - 1, self.loc.column + column)


_AFTER = 1 << 62  # sorts after any line or column, so bisect finds the segment holding an offset
