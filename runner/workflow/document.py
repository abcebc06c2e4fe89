"""YAML loading that keeps every key's and value's position, refuses duplicate keys and bounds expansion.

PyYAML's safe loader drops positions and silently keeps the last of two equal keys; the composer does
neither, so we compose the node graph ourselves and build plain Python values from it, with the
standard safe constructors for scalars (so ``yes``/``1e3``/dates mean what YAML 1.1 says they mean).
Where each character of a string sits inside its scalar is worked out by ``runner.workflow.scalars``; how many
values and how deep a nesting a file may build is set in ``runner.workflow.limits``.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import yaml

from runner.diagnostics import Diagnostic
from runner.workflow.limits import MAX_DEPTH, MAX_NODES
from runner.workflow.scalars import Segment, scalar_runs

Path = tuple[str | int, ...]

_PLAIN_COLLECTION_TAGS = frozenset({"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"})


@dataclass(frozen=True, slots=True)
class Span:
    """Where a node of the YAML document starts and ends (1-based lines and columns)."""

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
        """Where the characters of the string at ``path`` are in the file (see
        :data:`runner.workflow.scalars.Segment`); empty when the value is not a string or its scalar could not be
        re-read."""
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
            if isinstance(raw_key, bool) and not key_node.style:  # plain: None, or "" from libyaml
                # A plain `on:` or `yes:` key is the word written, not "True": a switch's `on` and its cases
                # (YAML 1.1 reads on/off/yes/no as booleans, which no key here means).
                key = key_node.value
            else:
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
