"""Positions inside a scalar: where each character of a string value sits in the YAML file.

A template's text is the scalar's *value*: quotes, escapes, block indentation and line folding are gone,
so an offset in the value is not an offset in the file. The scanners below re-read the scalar as written,
following PyYAML's scanner rule for rule, and record where each run of value characters comes from. The
result is trusted only when it rebuilds the loaded value exactly; otherwise there is no map (the callers
then fall back to the scalar's start), never a wrong one. ``Document.segments`` (runner/workflow/document.py)
turns the runs into file positions.
"""

from __future__ import annotations

Segment = tuple[int, int, int]
"""``(offset in the value, line, column)``: value characters from that offset on sit at consecutive columns
of that line, up to the next segment's offset. Lines and columns are 1-based."""

_BREAKS = "\r\n\x85\u2028\u2029"
_ESCAPES = {
    "0": "\0",
    "a": "\x07",
    "b": "\x08",
    "t": "\t",
    "\t": "\t",
    "n": "\n",
    "v": "\x0b",
    "f": "\x0c",
    "r": "\r",
    "e": "\x1b",
    " ": " ",
    '"': '"',
    "\\": "\\",
    "/": "/",
    "N": "\x85",
    "_": "\xa0",
    "L": "\u2028",
    "P": "\u2029",
}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}


class _Mismatch(Exception):
    """The scalar does not read as the scanner expects: no map rather than a wrong one."""


class _Out:
    """The value being rebuilt, with the file offset of every run of characters."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.parts: list[str] = []
        self.runs: list[tuple[int, int]] = []  # (offset in the value, offset in the file)
        self.size = 0

    def copy(self, start: int, end: int) -> None:
        """The file's characters ``start:end``, as they are."""
        if end > start:
            self.runs.append((self.size, start))
            self.parts.append(self.text[start:end])
            self.size += end - start

    def put(self, value: str, at: int) -> None:
        """A character the file spells differently (an escape, a folded line break), placed at ``at``."""
        self.runs.append((self.size, at))
        self.parts.append(value)
        self.size += len(value)


def _break_end(text: str, i: int) -> int:
    return i + 2 if text.startswith("\r\n", i) else i + 1


def _newline(ch: str) -> str:
    """What a line break reads as: CR, LF, CRLF and NEL as LF; YAML 1.1 keeps LS and PS as they are."""
    return "\n" if ch in "\r\n\x85" else ch


def _skip_properties(text: str, i: int, end: int) -> int:
    """Past an anchor (``&a``), a tag (``!!str``), comments and line breaks before the scalar itself."""
    while i < end:
        ch = text[i]
        if ch in "&!":
            while i < end and text[i] not in " \t" + _BREAKS:
                i += 1
        elif ch in " \t" + _BREAKS:
            i += 1
        elif ch == "#":
            while i < end and text[i] not in _BREAKS:
                i += 1
        else:
            break
    return i


def _fold(text: str, i: int, end: int, out: _Out, blanks: str) -> int:
    """A line break inside a plain or quoted scalar at ``i``: one break reads as a space, n breaks as n-1
    newlines; the indentation of the following lines is dropped. Returns the offset after the folding."""
    first = i
    i = _break_end(text, i)
    extra: list[int] = []
    while i < end:
        while i < end and text[i] in blanks:
            i += 1
        if i < end and text[i] in _BREAKS:
            extra.append(i)
            i = _break_end(text, i)
        else:
            break
    if text[first] in "\u2028\u2029":  # YAML 1.1 keeps these two as they are
        out.put(text[first], first)
    elif not extra:
        out.put(" ", first)
    for at in extra:
        out.put(_newline(text[at]), at)
    return i


def _scan_flow(text: str, i: int, end: int, out: _Out, quote: str) -> None:
    """A plain (``quote`` empty), single- or double-quoted scalar between ``i`` and ``end``."""
    blanks = " \t"
    stop = " \t" + _BREAKS + ("'" if quote == "'" else "\\" if quote == '"' else "")
    while i < end:
        ch = text[i]
        if ch in blanks:
            j = i
            while j < end and text[j] in blanks:
                j += 1
            if j < end and text[j] in _BREAKS:  # trailing blanks before a break are dropped
                i = _fold(text, j, end, out, blanks)
            else:
                out.copy(i, j)
                i = j
        elif ch in _BREAKS:
            i = _fold(text, i, end, out, blanks)
        elif quote == "'" and ch == "'":
            if not text.startswith("''", i):
                raise _Mismatch
            out.put("'", i)
            i += 2
        elif quote == '"' and ch == "\\":
            code = text[i + 1] if i + 1 < end else ""
            if code in _ESCAPES:
                out.put(_ESCAPES[code], i)
                i += 2
            elif code in _HEX_ESCAPES:
                digits = text[i + 2 : i + 2 + _HEX_ESCAPES[code]]
                try:
                    out.put(chr(int(digits, 16)), i)
                except ValueError:
                    raise _Mismatch from None
                i += 2 + len(digits)
            elif code and code in _BREAKS:  # an escaped line break joins the lines without a space
                i = _break_end(text, i + 1)
                while i < end:
                    while i < end and text[i] in blanks:
                        i += 1
                    if i < end and text[i] in _BREAKS:
                        out.put(_newline(text[i]), i)
                        i = _break_end(text, i)
                    else:
                        break
            else:
                raise _Mismatch
        else:
            j = i + 1
            while j < end and text[j] not in stop:
                j += 1
            out.copy(i, j)
            i = j


def _scan_block(text: str, i: int, out: _Out, min_indent: int) -> None:
    """A literal (``|``) or folded (``>``) block scalar whose indicator is at ``i``, as PyYAML's
    ``scan_block_scalar`` reads it; ``min_indent`` is the least indentation its content may have."""
    size = len(text)
    folded = text[i] == ">"
    i += 1
    chomping: bool | None = None
    increment: int | None = None
    for _ in range(2):
        ch = text[i] if i < size else ""
        if ch and ch in "+-" and chomping is None:
            chomping = ch == "+"
            i += 1
        elif ch and ch in "123456789" and increment is None:
            increment = int(ch)
            i += 1
    while i < size and text[i] not in _BREAKS:  # blanks and a comment after the indicators
        i += 1
    i = _break_end(text, i) if i < size else i
    line_start = i

    def column(at: int) -> int:
        return at - line_start

    def breaks(indent: int) -> list[int]:
        nonlocal i, line_start
        found: list[int] = []
        while column(i) < indent and i < size and text[i] == " ":
            i += 1
        while i < size and text[i] in _BREAKS:
            found.append(i)
            i = _break_end(text, i)
            line_start = i
            while column(i) < indent and i < size and text[i] == " ":
                i += 1
        return found

    if increment is None:
        found: list[int] = []
        deepest = 0
        while i < size and text[i] in " " + _BREAKS:
            if text[i] == " ":
                i += 1
                deepest = max(deepest, column(i))
            else:
                found.append(i)
                i = _break_end(text, i)
                line_start = i
        indent = max(min_indent, deepest)
    else:
        indent = min_indent + increment - 1
        found = breaks(indent)
    last_break = -1
    while column(i) == indent and i < size:
        for at in found:
            out.put(_newline(text[at]), at)
        leading_non_space = text[i] not in " \t"
        j = i
        while j < size and text[j] not in _BREAKS:
            j += 1
        out.copy(i, j)
        i = j
        last_break = i if i < size else -1
        if i < size:
            i = _break_end(text, i)
            line_start = i
        found = breaks(indent)
        if column(i) == indent and i < size:
            plain_break = last_break >= 0 and text[last_break] in "\r\n\x85"
            if folded and plain_break and leading_non_space and text[i] not in " \t":
                if not found:
                    out.put(" ", last_break)
            elif last_break >= 0:
                out.put(_newline(text[last_break]), last_break)
        else:
            break
    if chomping is not False and last_break >= 0:
        out.put(_newline(text[last_break]), last_break)
    if chomping is True:
        for at in found:
            out.put(_newline(text[at]), at)


def scalar_runs(text: str, start: int, end: int, value: str) -> list[tuple[int, int]] | None:
    """``(offset in the value, offset in the file)`` runs for the scalar written at ``text[start:end]``
    (its node's marks), or None when re-reading it does not give ``value``."""
    i = _skip_properties(text, start, end)
    if i >= len(text):
        return None
    first = text[i]
    candidates: list[int] = [1]
    if first in "|>" and any(c in "123456789" for c in text[i + 1 : i + 3]):
        # An indentation indicator counts from the enclosing collection's indentation, which the marks do not
        # give: try each, from the deepest the indicator's line allows; only the right one rebuilds the value.
        # (Without an indicator the content's own indentation decides, whatever the enclosing one.)
        line_start = text.rfind("\n", 0, i) + 1
        candidates = list(range(i - line_start + 1, 0, -1))
    for min_indent in candidates:
        out = _Out(text)
        try:
            if first in "|>":
                _scan_block(text, i, out, min_indent)
            elif first in "'\"":
                if end - 1 <= i or text[end - 1] != first:
                    return None
                _scan_flow(text, i + 1, end - 1, out, first)
            else:
                _scan_flow(text, i, end, out, "")
        except (_Mismatch, IndexError):
            continue
        if "".join(out.parts) == value:
            return out.runs
    return None
