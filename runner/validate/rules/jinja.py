"""Templates as the checks need them: the AST, tokens with offsets, and syntax errors with a column.

Jinja reports a syntax error with a line number only and its tokens carry no column, so the raw token
stream is re-walked to give every token its offset in the template text. With offsets the validator can
put a caret under the exact name (``inputs.topc``) or the token where parsing stopped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from runner.templates import TOO_DEEP, environment, too_long_number

_AT_OFFSET = re.compile(r" at (\d+)$")
# Tags that open a block closed by end<tag> ('set' only in its block form, without '=').
_BLOCK_TAGS = frozenset({"for", "if", "macro", "call", "filter", "with", "block", "autoescape", "trans", "set"})


@dataclass(frozen=True, slots=True)
class Tok:
    """One token of a template, with its offsets in the template's text."""

    type: str
    value: Any
    start: int  # offset in the template text
    end: int


@dataclass(frozen=True, slots=True)
class SyntaxProblem:
    """A template's syntax error and the text it covers."""

    message: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Parsed:
    """A template parsed for the checks: its tree, its tokens and where each node lies."""

    ast: Any  # jinja2.nodes.Template, or None after a syntax error
    tokens: tuple[Tok, ...]
    error: SyntaxProblem | None
    spans: dict[int, tuple[int, int]] = field(default_factory=dict)  # id(node) -> its first and last token
    _at: dict[Any, list[int]] = field(default_factory=dict, compare=False, repr=False)

    def at(self, value: Any) -> list[int]:
        """The indices of the tokens whose value is ``value``: finding every use of a name costs a lookup,
        not a pass over the tokens (a template may hold thousands of names, each reported)."""
        if not self._at and self.tokens:
            for i, tok in enumerate(self.tokens):
                self._at.setdefault(tok.value, []).append(i)
        return self._at.get(value, [])

    def span(self, node: Any) -> tuple[int, int]:
        """The offsets in the template text of an expression node: from its first token to its last."""
        first, last = self._tokens_of(node)
        if first is None or last is None:  # not an expression: the whole template
            return 0, max(self.tokens[-1].end if self.tokens else 1, 1)
        return self.tokens[first].start, self.tokens[last].end

    def _tokens_of(self, node: Any) -> tuple[int | None, int | None]:
        from jinja2 import nodes  # noqa: PLC0415

        first, last = self.spans.get(id(node), (None, None))
        for child in node.iter_child_nodes():
            a, b = self._tokens_of(child)
            if a is not None and (first is None or a < first):
                first = a
            if b is not None and (last is None or b > last):
                last = b
        if isinstance(node, nodes.Filter) and node.node is not None:
            # A chain `x | a | b` makes its inner filters inside one parser call: find `| name (...)` after x.
            _, after = self._tokens_of(node.node)
            at = self._find_pipe(node.name, (after or -1) + 1)
            if at is not None:
                end = self._call_end(at + 2) if at + 2 < len(self.tokens) else at + 1
                last = max(last if last is not None else end, end)
        return first, last

    def _find_pipe(self, name: str, start: int) -> int | None:
        toks = self.tokens
        for i in range(start, len(toks) - 1):
            if toks[i].type == "pipe" and toks[i + 1].type == "name" and toks[i + 1].value == name:
                return i
        return None

    def _call_end(self, at: int) -> int:
        """The index of the ``)`` closing the call whose ``(`` is at ``at``, or ``at - 1`` with no call."""
        toks = self.tokens
        if toks[at].type != "lparen":
            return at - 1
        depth = 0
        for i in range(at, len(toks)):
            if toks[i].type in ("lparen", "lbracket", "lbrace"):
                depth += 1
            elif toks[i].type in ("rparen", "rbracket", "rbrace"):
                depth -= 1
                if depth == 0:
                    return i
        return len(toks) - 1


def parse_ast(text: str) -> Any:
    """The template's AST, or None when it has a syntax error (then :func:`parse` says where)."""
    from jinja2 import TemplateSyntaxError  # noqa: PLC0415

    try:
        return environment().parse(text)
    except (TemplateSyntaxError, RecursionError, ValueError):  # ValueError: a number too long to read
        return None


def compile_error(text: str, ast: Any) -> SyntaxProblem | None:
    """What Jinja's compiler refuses in a template that parses (a ``caller`` argument without a default, a block
    defined twice), placed on the line it names from its first non-blank character; None when it compiles."""
    from jinja2 import TemplateSyntaxError  # noqa: PLC0415 - TemplateAssertionError is one

    try:
        environment().compile(ast, raw=True)
    except TemplateSyntaxError as exc:
        line = max(exc.lineno or 1, 1)
        starts = [0, *(i + 1 for i, c in enumerate(text) if c == "\n")]
        start = starts[min(line, len(starts)) - 1]
        end = text.find("\n", start)
        text_end = len(text) if end < 0 else end
        lead = len(text[start:text_end]) - len(text[start:text_end].lstrip())
        return SyntaxProblem(f"template error: {exc.message}", start + lead, max(text_end, start + lead + 1))
    except RecursionError:
        return SyntaxProblem(f"template syntax error: {TOO_DEEP}", 0, 1)
    return None


# The parser's methods that return an expression node: each records the tokens the node spans.
_SPANNED = (
    "parse_expression",
    "parse_condexpr",
    "parse_or",
    "parse_and",
    "parse_not",
    "parse_compare",
    "parse_math1",
    "parse_concat",
    "parse_math2",
    "parse_pow",
    "parse_unary",
    "parse_primary",
    "parse_tuple",
    "parse_list",
    "parse_dict",
    "parse_postfix",
    "parse_filter_expr",
    "parse_subscript",
    "parse_subscribed",
    "parse_call",
    "parse_filter",
    "parse_test",
)


@cache
def _spanning_parser() -> Any:
    """Jinja's parser, recording for every expression node the first and last token it was parsed from
    (Jinja's nodes carry a line number only)."""
    from jinja2 import nodes  # noqa: PLC0415
    from jinja2.parser import Parser  # noqa: PLC0415

    def recording(method: Any) -> Any:
        def parse(self: Any, *args: Any, **kwargs: Any) -> Any:
            index = self.token_index
            start = index.get(id(self.stream.current), len(index))
            node = method(self, *args, **kwargs)
            if isinstance(node, nodes.Node) and id(node) not in self.spans:
                end = index.get(id(self.stream.current), len(index)) - 1
                if end >= start:
                    self.spans[id(node)] = (start, end)
            return node

        return parse

    return type("SpanningParser", (Parser,), {name: recording(getattr(Parser, name)) for name in _SPANNED})


def parse(text: str) -> Parsed:
    from jinja2 import TemplateSyntaxError  # noqa: PLC0415 - jinja2 only once a file has templates
    from jinja2.lexer import TOKEN_RAW_BEGIN, TOKEN_RAW_END, TokenStream, ignored_tokens  # noqa: PLC0415

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
            except ValueError:  # int() of a number literal of thousands of digits
                return Parsed(None, tuple(tokens), SyntaxProblem(too_long_number(), start, pos))
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
    parser = _spanning_parser()(env, text)
    parser.stream = TokenStream(iter(wrapped), None, None)
    parser.token_index = {id(token): i for i, token in enumerate(wrapped)}
    parser.spans = {}
    try:
        ast = parser.parse()
    except RecursionError:
        return Parsed(None, tuple(tokens), SyntaxProblem(TOO_DEEP, 0, 1))
    except TemplateSyntaxError as exc:
        current = parser.stream.current
        found = next((i for i, t in enumerate(wrapped) if t is current), None)
        index = _unclosed(tokens) if current.type == "eof" or found is None else found
        if not tokens:
            return Parsed(None, (), SyntaxProblem(exc.message or "invalid template", 0, 1))
        tok = tokens[index]
        return Parsed(None, tuple(tokens), SyntaxProblem(exc.message or "invalid template", tok.start, tok.end))
    return Parsed(ast, tuple(tokens), None, parser.spans)


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


def name_spans(parsed: Parsed, name: str, *keys: str) -> list[tuple[int, int]]:
    """Offsets of ``name`` used as a variable, or of ``name.key...`` (each key as ``.key`` or ``['key']``)."""
    out: list[tuple[int, int]] = []
    tokens = parsed.tokens
    n = len(tokens)
    for i in parsed.at(name):
        tok = tokens[i]
        if tok.type != "name":
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
