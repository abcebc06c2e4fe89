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


def free_names(ast: Any) -> set[str]:
    from jinja2 import meta  # noqa: PLC0415

    return set(meta.find_undeclared_variables(ast))


def stored_names(ast: Any) -> set[str]:
    """Names the template assigns anywhere (set, for, macro and call arguments, with)."""
    from jinja2 import nodes  # noqa: PLC0415

    return {n.name for n in ast.find_all(nodes.Name) if n.ctx != "load"}


def attribute_refs(ast: Any, names: set[str]) -> list[tuple[str, str]]:
    """``(name, key)`` for every ``name.key`` and ``name['key']`` in the template, for the given names."""
    from jinja2 import nodes  # noqa: PLC0415

    out: list[tuple[str, str]] = []
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        base = node.node
        if not (isinstance(base, nodes.Name) and base.ctx == "load" and base.name in names):
            continue
        if isinstance(node, nodes.Getattr):
            out.append((base.name, node.attr))
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            out.append((base.name, node.arg.value))
    return out


def guarded_refs(ast: Any) -> set[tuple[str, str]]:
    """``name.key`` uses that are allowed to be missing: under ``| default(...)``, tested with ``is defined`` or
    ``is undefined``, or with ``'key' in name`` (the template handles the missing case itself)."""
    from jinja2 import nodes  # noqa: PLC0415

    out: set[tuple[str, str]] = set()
    for node in ast.find_all((nodes.Filter, nodes.Test, nodes.Compare)):
        if isinstance(node, nodes.Filter) and node.name not in ("default", "d"):
            continue
        if isinstance(node, nodes.Test) and node.name not in ("defined", "undefined"):
            continue
        if isinstance(node, nodes.Compare):
            if isinstance(node.expr, nodes.Const) and isinstance(node.expr.value, str):
                for op in node.ops:
                    if op.op in ("in", "notin") and isinstance(op.expr, nodes.Name):
                        out.add((op.expr.name, node.expr.value))
            continue
        for target in (node.node,):
            if isinstance(target, nodes.Getattr) and isinstance(target.node, nodes.Name):
                out.add((target.node.name, target.attr))
            elif (
                isinstance(target, nodes.Getitem)
                and isinstance(target.node, nodes.Name)
                and isinstance(target.arg, nodes.Const)
            ):
                out.add((target.node.name, str(target.arg.value)))
    return out


def name_spans(tokens: tuple[Tok, ...], name: str, key: str | None = None) -> list[tuple[int, int]]:
    """Offsets of ``name`` used as a variable (or of ``name.key`` / ``name['key']``) in the token stream."""
    out: list[tuple[int, int]] = []
    n = len(tokens)
    for i, tok in enumerate(tokens):
        if tok.type != "name" or tok.value != name:
            continue
        before = tokens[i - 1].type if i else ""
        if before in ("dot", "pipe", "is") or (i + 1 < n and tokens[i + 1].type == "assign"):
            continue
        if key is None:
            out.append((tok.start, tok.end))
        elif i + 2 < n and tokens[i + 1].type == "dot" and tokens[i + 2].type == "name" and tokens[i + 2].value == key:
            out.append((tok.start, tokens[i + 2].end))
        elif (
            i + 3 < n
            and tokens[i + 1].type == "lbracket"
            and tokens[i + 2].type == "string"
            and tokens[i + 2].value == key
            and tokens[i + 3].type == "rbracket"
        ):
            out.append((tok.start, tokens[i + 3].end))
    return out
