"""YAML loading that keeps every key's and value's position, refuses duplicate keys and bounds expansion.

PyYAML's safe loader drops positions and silently keeps the last of two equal keys; the composer does
neither, so we compose the node graph ourselves and build plain Python values from it, with the
standard safe constructors for scalars (so ``yes``/``1e3``/dates mean what YAML 1.1 says they mean).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import yaml

from runner.diagnostics import Diagnostic

Path = tuple[str | int, ...]

# An alias bomb ("billion laughs") is a small file whose aliases expand exponentially; cap the number
# of values built so such a file fails fast with a located message instead of exhausting memory.
MAX_NODES = 200_000
MAX_DEPTH = 200
_PLAIN_COLLECTION_TAGS = frozenset({"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"})


@dataclass(frozen=True, slots=True)
class Span:
    line: int  # 1-based
    column: int  # 1-based
    end_line: int
    end_column: int


@dataclass(frozen=True)
class Document:
    """A loaded YAML file: the data plus where every value (``values``) and mapping key (``keys``) is."""

    file: str
    text: str
    data: Any
    values: dict[Path, Span]
    keys: dict[Path, Span]

    def span(self, path: Path, *, key: bool = False) -> Span:
        """The span of ``path``'s value (or its key), falling back to the nearest located parent."""
        table = self.keys if key else self.values
        p = tuple(path)
        while p:
            if p in table:
                return table[p]
            if key and p in self.values:
                return self.values[p]
            p = p[:-1]
        return self.values.get((), Span(1, 1, 1, 1))

    @cached_property
    def line_starts(self) -> list[int]:
        """The offset in ``text`` where each line starts."""
        starts = [0]
        at = self.text.find("\n")
        while at >= 0:
            starts.append(at + 1)
            at = self.text.find("\n", at + 1)
        return starts

    def offset(self, line: int, column: int) -> int:
        starts = self.line_starts
        return starts[min(max(line, 1), len(starts)) - 1] + column - 1

    def position(self, offset: int) -> tuple[int, int]:
        """``(line, column)``, 1-based, of an offset in ``text``."""
        line = bisect.bisect_right(self.line_starts, offset)
        return line, offset - self.line_starts[line - 1] + 1

    def segments(self, path: Path) -> tuple[Segment, ...]:
        """Where the characters of the string at ``path`` are in the file (see :data:`Segment`); empty when
        the value is not a string or its scalar could not be re-read."""
        span = self.values.get(path)
        if span is None:
            return ()
        value: Any = self.data
        for part in path:
            value = value[part]
        if not isinstance(value, str):
            return ()
        start, end = self.offset(span.line, span.column), self.offset(span.end_line, span.end_column)
        runs = scalar_runs(self.text, start, end, value)
        if runs is None:
            return ()
        return tuple((at, *self.position(source)) for at, source in runs)


class LoadError(Exception):
    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        super().__init__("; ".join(d.message for d in diagnostics))
        self.diagnostics = diagnostics


def _span(node: yaml.Node) -> Span:
    start, end = node.start_mark, node.end_mark
    return Span(start.line + 1, start.column + 1, end.line + 1, end.column + 1)


class _Builder:
    def __init__(self, file: str, text: str, loader: yaml.SafeLoader) -> None:
        self.file = file
        self.text = text
        self.loader = loader
        self.values: dict[Path, Span] = {}
        self.keys: dict[Path, Span] = {}
        self.count = 0
        self.problems: list[Diagnostic] = []

    def diag(self, span: Span, rule: str, message: str, hint: str = "") -> None:
        self.problems.append(
            Diagnostic(self.file, span.line, span.column, span.end_line, span.end_column, "error", rule, message, hint)
        )

    def build(self, node: yaml.Node, path: Path, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise _TooBig(node, f"the document expands to more than {MAX_NODES:,} values")
        if depth > MAX_DEPTH:
            raise _TooBig(node, f"the document nests deeper than {MAX_DEPTH} levels")
        self.values[path] = _span(node)
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode) and node.tag not in _PLAIN_COLLECTION_TAGS:
            mark = node.start_mark
            raise yaml.constructor.ConstructorError(
                None, None, f"could not determine a constructor for the tag {node.tag!r}", mark
            )
        if isinstance(node, yaml.MappingNode):
            return self.build_mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(child, (*path, i), depth + 1) for i, child in enumerate(node.value)]
        return self.loader.construct_object(node, deep=True)

    def build_mapping(self, node: yaml.MappingNode, path: Path, depth: int) -> dict[str, Any]:
        own = {id(k) for k, _ in node.value}
        self.loader.flatten_mapping(node)  # applies YAML merge keys (<<) the way the safe loader does
        out: dict[str, Any] = {}
        seen: dict[str, Span] = {}
        seen_own: dict[str, bool] = {}
        for key_node, value_node in node.value:
            merged = id(key_node) not in own
            key_span = _span(key_node)
            if not isinstance(key_node, yaml.ScalarNode):
                at = node.start_mark.index
                if self.text.startswith("{{", at):  # `input: {{ x }}`: YAML reads a mapping holding a mapping
                    end = node.end_mark.index
                    template = self.text[at:end] if "\n" not in self.text[at:end] else "{{ ... }}"
                    self.diag(
                        _span(node),
                        "yaml-syntax",
                        f"an unquoted template: YAML reads {template} as a mapping",
                        f'quote it: "{template}"',
                    )
                else:
                    self.diag(key_span, "yaml-syntax", "a mapping key must be a plain value, not a list or mapping")
                continue
            raw_key = self.loader.construct_object(key_node, deep=True)
            key = raw_key if isinstance(raw_key, str) else str(raw_key)
            if key in seen and not merged and seen_own.get(key, False):
                first = seen[key]
                self.diag(
                    key_span,
                    "duplicate-key",
                    f"duplicate key '{key}' (first defined at line {first.line}, column {first.column})",
                    "remove one of the two; YAML keeps only the last, which silently drops the first",
                )
            seen[key] = key_span
            seen_own[key] = not merged
            child = (*path, key)
            self.keys[child] = key_span
            out[key] = self.build(value_node, child, depth + 1)
        return out


class _TooBig(Exception):
    def __init__(self, node: yaml.Node, message: str) -> None:
        super().__init__(message)
        self.node = node
        self.message = message


def _too_large(file: str, line: int, column: int, message: str) -> LoadError:
    hint = "remove the aliases that multiply content, or flatten the nesting"
    return LoadError([Diagnostic(file, line, column, line, column + 1, "error", "yaml-too-large", message, hint)])


def _fast_compose(text: str, file: str) -> tuple[Any, yaml.Node | None] | None:
    """The node graph from libyaml's parser (about 15 times faster than PyYAML's own; the same nodes, marks
    and resolver) when PyYAML has it. None when it is missing or finds a problem: the pure-Python loader
    then runs and reports the problem with the messages the tests pin (issue 3: 1,000 files in 5 s)."""
    c_loader = getattr(yaml, "CSafeLoader", None)
    if c_loader is None:
        return None
    loader = c_loader(text)
    try:
        return loader, loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        loader.dispose()
        mark = exc.problem_mark
        if "maximum nesting depth" in str(exc.problem) and mark is not None:  # PyYAML's own would recurse
            # libyaml stops at its own limit (1,000 levels): say where ours is crossed, as for shallower files
            line, column = _too_deep_at(text)
            message = f"the document nests deeper than {MAX_DEPTH} levels"
            raise _too_large(file, line, column, message) from None
        return None
    except yaml.YAMLError:
        loader.dispose()
        return None


def _too_deep_at(text: str) -> tuple[int, int]:
    """Where the nesting first goes past ``MAX_DEPTH``, from the parser's events (no recursion); 1:1 when the
    text breaks before that."""
    loader = yaml.SafeLoader(text)
    depth = 0
    try:
        while loader.check_event():
            event = loader.get_event()  # type: ignore[no-untyped-call]
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                mark = event.start_mark
                if depth > MAX_DEPTH + 1 and mark is not None:  # the root is level 0, as in _Builder.build
                    return mark.line + 1, mark.column + 1
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        pass
    finally:
        loader.dispose()
    return 1, 1


def load_document(text: str, file: str) -> Document:
    """Parse one YAML document; raise :class:`LoadError` with located diagnostics when it cannot."""
    fast = _fast_compose(text, file)
    if fast is not None:
        loader, root = fast
    else:
        try:
            loader = yaml.SafeLoader(text)
        except yaml.reader.ReaderError as exc:  # a control character, refused before parsing
            before = text[: exc.position]
            line = before.count("\n") + 1
            column = exc.position - (before.rfind("\n") + 1) + 1
            message = f"the file contains the control character U+{exc.character:04X}, which YAML does not allow"
            hint = "remove it: a workflow is printable text"
            control = Diagnostic(file, line, column, line, column + 1, "error", "encoding", message, hint)
            raise LoadError([control]) from None
    try:
        try:
            if fast is None:
                root = loader.get_single_node()
        except RecursionError:  # PyYAML's composer recurses once per level; its parser does not
            line, column = _too_deep_at(text)
            raise _too_large(file, line, column, f"the document nests deeper than {MAX_DEPTH} levels") from None
        except yaml.MarkedYAMLError as exc:
            from runner.workflow.syntax import describe  # noqa: PLC0415 - only for a broken file

            p = describe(exc, text)
            where = (p.line, p.column, p.end_line, p.end_column)
            raise LoadError([Diagnostic(file, *where, "error", "yaml-syntax", p.message, p.hint)]) from exc
        except yaml.YAMLError as exc:
            raise LoadError([Diagnostic(file, 1, 1, 1, 2, "error", "yaml-syntax", f"YAML error: {exc}")]) from exc
        if root is None:
            raise LoadError(
                [
                    Diagnostic(
                        file,
                        1,
                        1,
                        1,
                        1,
                        "error",
                        "empty-file",
                        "the file is empty",
                        "a workflow needs at least 'version', 'name' and 'stages'",
                    )
                ]
            )
        builder = _Builder(file, text, loader)
        try:
            data = builder.build(root, (), 0)
        except _TooBig as exc:
            span = _span(exc.node)
            raise LoadError(
                [
                    Diagnostic(
                        file,
                        span.line,
                        span.column,
                        span.end_line,
                        span.end_column,
                        "error",
                        "yaml-too-large",
                        exc.message,
                        "remove the aliases that multiply content, or split the file",
                    )
                ]
            ) from None
        except yaml.constructor.ConstructorError as exc:
            mark = exc.problem_mark
            line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
            raise LoadError(
                [
                    Diagnostic(
                        file,
                        line,
                        col,
                        line,
                        col + 1,
                        "error",
                        "yaml-syntax",
                        f"YAML error: {exc.problem}",
                        "only plain YAML values are allowed (no Python tags)",
                    )
                ]
            ) from exc
        if builder.problems:
            raise LoadError(builder.problems)
        return Document(file, text, data, builder.values, builder.keys)
    finally:
        loader.dispose()


def decode(raw: bytes, file: str) -> str:
    """Decode a workflow file as UTF-8 (a BOM is allowed); a bad byte is reported where it sits."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        raise LoadError(
            [
                Diagnostic(
                    file,
                    line,
                    column,
                    line,
                    column + 1,
                    "error",
                    "encoding",
                    f"the file is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})",
                    "save the file as UTF-8",
                )
            ]
        ) from None


# --- Positions inside a scalar --------------------------------------------------------------------------
#
# A template's text is the scalar's *value*: quotes, escapes, block indentation and line folding are gone,
# so an offset in the value is not an offset in the file. The scanners below re-read the scalar as written,
# following PyYAML's scanner rule for rule, and record where each run of value characters comes from. The
# result is trusted only when it rebuilds the loaded value exactly; otherwise there is no map (the callers
# then fall back to the scalar's start), never a wrong one.

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
