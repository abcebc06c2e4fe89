"""YAML loading that keeps every key's and value's position, refuses duplicate keys and bounds expansion.

PyYAML's safe loader drops positions and silently keeps the last of two equal keys; the composer does
neither, so we compose the node graph ourselves and build plain Python values from it, with the
standard safe constructors for scalars (so ``yes``/``1e3``/dates mean what YAML 1.1 says they mean).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from runner.spec.diagnostics import Diagnostic

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


class LoadError(Exception):
    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        super().__init__("; ".join(d.message for d in diagnostics))
        self.diagnostics = diagnostics


def _span(node: yaml.Node) -> Span:
    start, end = node.start_mark, node.end_mark
    return Span(start.line + 1, start.column + 1, end.line + 1, end.column + 1)


class _Builder:
    def __init__(self, file: str, loader: yaml.SafeLoader) -> None:
        self.file = file
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
            message = f"the document nests deeper than {MAX_DEPTH} levels"
            raise _too_large(file, mark.line + 1, mark.column + 1, message) from None
        return None
    except yaml.YAMLError:
        loader.dispose()
        return None


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
        except RecursionError:
            raise _too_large(file, 1, 1, "the document nests too deeply to parse") from None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
            problem = exc.problem or "invalid YAML"
            if exc.context:
                problem = f"{problem} ({exc.context})"
            message = f"YAML syntax error: {problem}"
            hint = "fix the YAML syntax at this position"
            if "\\t" in problem or "'\\t'" in problem or "tab" in problem:
                hint = "YAML does not allow tabs for indentation; indent with spaces"
            raise LoadError(
                [Diagnostic(file, line, col, line, col + 1, "error", "yaml-syntax", message, hint)]
            ) from exc
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
        builder = _Builder(file, loader)
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
