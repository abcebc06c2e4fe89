"""Templates as the checks need them: the AST, tokens with offsets, and syntax errors with a column.

Jinja reports a syntax error with a line number only and its tokens carry no column, so the raw token
stream is re-walked to give every token its offset in the template text. With offsets the validator can
put a caret under the exact name (``inputs.topc``) or the token where parsing stopped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from runner.templates import environment

_AT_OFFSET = re.compile(r" at (\d+)$")
# Tags that open a block closed by end<tag> ('set' only in its block form, without '=').
_BLOCK_TAGS = frozenset({"for", "if", "macro", "call", "filter", "with", "block", "autoescape", "trans", "set"})


@dataclass(frozen=True, slots=True)
class Tok:
    type: str
    value: Any
    start: int  # offset in the template text
    end: int


@dataclass(frozen=True, slots=True)
class SyntaxProblem:
    message: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Parsed:
    ast: Any  # jinja2.nodes.Template, or None after a syntax error
    tokens: tuple[Tok, ...]
    error: SyntaxProblem | None


def parse_ast(text: str) -> Any:
    """The template's AST, or None when it has a syntax error (then :func:`parse` says where)."""
    from jinja2 import TemplateSyntaxError  # noqa: PLC0415

    try:
        return environment().parse(text)
    except TemplateSyntaxError:
        return None


def parse(text: str) -> Parsed:
    from jinja2 import TemplateSyntaxError  # noqa: PLC0415 - jinja2 only once a file has templates
    from jinja2.lexer import TOKEN_RAW_BEGIN, TOKEN_RAW_END, TokenStream, ignored_tokens  # noqa: PLC0415
    from jinja2.parser import Parser  # noqa: PLC0415

    env = environment()
    lexer = env.lexer
    tokens: list[Tok] = []
    wrapped: list[Any] = []
    pos = 0
    try:
        for raw in lexer.tokeniter(text, None):
            value = raw[2]
            # The raw values are the source text, except whitespace dropped by '-' (``{{-``): search forward.
            at = text.find(value, pos) if value else pos
            start = at if at >= 0 else pos
            pos = start + len(value)
            if raw[1] in ignored_tokens or raw[1] in (TOKEN_RAW_BEGIN, TOKEN_RAW_END):
                continue
            try:
                token = next(lexer.wrap([raw]))
            except TemplateSyntaxError as exc:
                return Parsed(None, tuple(tokens), SyntaxProblem(exc.message or "invalid token", start, pos))
            wrapped.append(token)
            tokens.append(Tok(token.type, token.value, start, pos))
    except TemplateSyntaxError as exc:
        message = exc.message or "invalid template"
        match = _AT_OFFSET.search(message)
        if match:
            at = int(match.group(1))
            return Parsed(None, tuple(tokens), SyntaxProblem(message[: match.start()], at, at + 1))
        rest = text[pos:]
        if rest.strip():  # the lexer stopped at the first character it could not read
            start = pos + len(rest) - len(rest.lstrip())
        else:  # at the end: blame what is still open
            index = _unclosed(tokens)
            start = tokens[index].start if tokens else 0
        return Parsed(None, tuple(tokens), SyntaxProblem(message, start, start + 1))
    parser = Parser(env, text)
    parser.stream = TokenStream(iter(wrapped), None, None)
    try:
        ast = parser.parse()
    except TemplateSyntaxError as exc:
        current = parser.stream.current
        found = next((i for i, t in enumerate(wrapped) if t is current), None)
        index = _unclosed(tokens) if current.type == "eof" or found is None else found
        if not tokens:
            return Parsed(None, (), SyntaxProblem(exc.message or "invalid template", 0, 1))
        tok = tokens[index]
        return Parsed(None, tuple(tokens), SyntaxProblem(exc.message or "invalid template", tok.start, tok.end))
    return Parsed(ast, tuple(tokens), None)


def _unclosed(tokens: list[Tok]) -> int:
    """The token to blame at the end of the template: an unclosed ``{{``/``{%``, else the innermost open block."""
    open_at: int | None = None
    blocks: list[int] = []
    for i, tok in enumerate(tokens):
        if tok.type in ("variable_begin", "block_begin"):
            open_at = i
        elif tok.type in ("variable_end", "block_end"):
            open_at = None
        elif tok.type == "name" and i and tokens[i - 1].type == "block_begin":
            name = str(tok.value)
            if name in _BLOCK_TAGS and not (name == "set" and _has_assign(tokens, i)):
                blocks.append(i)
            elif name.startswith("end") and blocks:
                blocks.pop()
    if open_at is not None:
        return open_at
    if blocks:
        return blocks[-1]
    return max(len(tokens) - 1, 0)


def _has_assign(tokens: list[Tok], i: int) -> bool:
    for tok in tokens[i:]:
        if tok.type == "block_end":
            return False
        if tok.type == "assign":
            return True
    return False


@dataclass(frozen=True, slots=True)
class Names:
    """What a template reads, from one walk of its AST."""

    free: frozenset[str]  # names read and never assigned in the template (Jinja's globals included)
    refs: frozenset[tuple[str, str]]  # ``name.key`` / ``name['key']`` on names that are never assigned
    chains: frozenset[tuple[str, str, str]]  # ``name.key.attr``, likewise
    guarded: frozenset[tuple[str, ...]]  # uses the template guards: ``| default``, ``is defined``, ``'k' in name``
    loads: frozenset[str]  # tags that load other templates (include, extends, import, from): no loader exists


def analyse(ast: Any) -> Names:
    """One pass over the AST (``jinja2.meta.find_undeclared_variables`` runs the compiler's frame analysis and
    was half the validator's time). A name assigned anywhere counts as assigned everywhere: this can miss a
    use outside its loop, never flag a correct template."""
    from jinja2 import nodes  # noqa: PLC0415

    loaded: set[str] = set()
    stored: set[str] = set()
    refs: set[tuple[str, str]] = set()
    chains: set[tuple[str, str, str]] = set()
    guarded: set[tuple[str, ...]] = set()
    implicit: set[str] = set()
    loads: set[str] = set()
    stack: list[Any] = [ast]
    while stack:
        node = stack.pop()
        kind = type(node)
        if kind is nodes.Name:
            (loaded if node.ctx == "load" else stored).add(node.name)
        elif kind is nodes.Getattr or kind is nodes.Getitem:
            path = _chain_of(node)
            if path is not None and len(path) == 2:
                refs.add((path[0], path[1]))
            elif path is not None and len(path) == 3:
                chains.add((path[0], path[1], path[2]))
        elif kind is nodes.Filter or kind is nodes.Test:
            if node.name in ("default", "d", "defined", "undefined") and node.node is not None:
                path = _chain_of(node.node)
                if path is not None:
                    guarded.add(path)
        elif kind is nodes.Compare:
            if isinstance(node.expr, nodes.Const) and isinstance(node.expr.value, str):
                for op in node.ops:
                    if op.op in ("in", "notin") and isinstance(op.expr, nodes.Name):
                        guarded.add((op.expr.name, node.expr.value))
        elif kind is nodes.For:
            implicit.add("loop")
        elif kind is nodes.Macro or kind is nodes.CallBlock:
            implicit.update(("caller", "varargs", "kwargs"))
            if kind is nodes.Macro:
                stored.add(node.name)
        elif kind is nodes.Import:
            stored.add(node.target)
            loads.add("import")
        elif kind is nodes.FromImport:
            stored.update(n if isinstance(n, str) else n[1] for n in node.names)
            loads.add("from")
        elif kind is nodes.Include or kind is nodes.Extends:
            loads.add("include" if kind is nodes.Include else "extends")
        stack.extend(node.iter_child_nodes())
    free = loaded - stored - implicit
    return Names(
        frozenset(free),
        frozenset(r for r in refs if r[0] in free),
        frozenset(c for c in chains if c[0] in free),
        frozenset(guarded),
        frozenset(loads),
    )


def _chain_of(node: Any) -> tuple[str, ...] | None:
    """``('stages', 'notes', 'content')`` for ``stages.notes.content`` (or with ``['key']``); None for anything
    that is not a chain of constant keys on a name."""
    from jinja2 import nodes  # noqa: PLC0415

    keys: list[str] = []
    while True:
        kind = type(node)
        if kind is nodes.Getattr:
            keys.append(node.attr)
        elif kind is nodes.Getitem and type(node.arg) is nodes.Const and isinstance(node.arg.value, str):
            keys.append(node.arg.value)
        elif kind is nodes.Name and node.ctx == "load" and keys:
            return (node.name, *reversed(keys))
        else:
            return None
        node = node.node


def name_spans(tokens: tuple[Tok, ...], name: str, *keys: str) -> list[tuple[int, int]]:
    """Offsets of ``name`` used as a variable, or of ``name.key...`` (each key as ``.key`` or ``['key']``)."""
    out: list[tuple[int, int]] = []
    n = len(tokens)
    for i, tok in enumerate(tokens):
        if tok.type != "name" or tok.value != name:
            continue
        before = tokens[i - 1].type if i else ""
        if before in ("dot", "pipe", "is") or (i + 1 < n and tokens[i + 1].type == "assign"):
            continue
        end: int | None = tok.end
        j = i + 1
        for key in keys:
            if j + 1 < n and tokens[j].type == "dot" and tokens[j + 1].type == "name" and tokens[j + 1].value == key:
                end, j = tokens[j + 1].end, j + 2
            elif (
                j + 2 < n
                and tokens[j].type == "lbracket"
                and tokens[j + 1].type == "string"
                and tokens[j + 1].value == key
                and tokens[j + 2].type == "rbracket"
            ):
                end, j = tokens[j + 2].end, j + 3
            else:
                end = None
                break
        if end is not None:
            out.append((tok.start, end))
    return out
