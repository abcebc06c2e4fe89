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


@dataclass(frozen=True, slots=True)
class Names:
    """What a template reads, from one walk of its AST."""

    free: frozenset[str]  # names read and never assigned in the template (Jinja's globals included)
    refs: frozenset[tuple[str, str]]  # ``name.key`` / ``name['key']`` on names that are never assigned
    chains: frozenset[tuple[str, str, str]]  # ``name.key.attr``, likewise
    guarded: frozenset[tuple[str, ...]]  # uses the template guards: ``| default``, ``is defined``, ``'k' in name``
    loads: frozenset[str]  # tags that load other templates (include, extends, import, from): no loader exists
    tested: frozenset[tuple[str, ...]] = frozenset()  # chains the template tests: ``{% if x.y %}``, ``x.y is none``
    hazardous: bool = False  # something the sandbox may refuse: see runner/validate/rules/hazards.py, which says


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
    tested: set[tuple[str, ...]] = set()
    env = environment()
    hazardous = False  # a cheap look for what runner/validate/rules/hazards.py checks (it walks the AST twice)
    loops = 0
    stack: list[Any] = [ast]
    while stack:
        node = stack.pop()
        kind = type(node)
        if kind is nodes.Name:
            (loaded if node.ctx == "load" else stored).add(node.name)
        elif kind in _ARITHMETIC:
            hazardous = True
        elif kind is nodes.Call:
            callee = node.node
            hazardous = hazardous or type(callee) is not nodes.Getattr or callee.attr in _AMPLIFYING_METHODS
        elif kind is nodes.Getattr or kind is nodes.Getitem:
            if kind is nodes.Getattr:
                hazardous = hazardous or node.attr[:1] == "_" or node.attr in _INTERNAL
            elif type(node.arg) is nodes.Const and isinstance(node.arg.value, str):
                hazardous = hazardous or node.arg.value[:2] == "__"
            path = _chain_of(node)
            if path is not None and len(path) == 2:
                refs.add((path[0], path[1]))
            elif path is not None and len(path) == 3:
                chains.add((path[0], path[1], path[2]))
        elif kind is nodes.Filter or kind is nodes.Test:
            known = env.filters if kind is nodes.Filter else env.tests
            hazardous = hazardous or node.name not in known or node.name in _HAZARDOUS_FILTERS
            if node.name in ("default", "d", "defined", "undefined") and node.node is not None:
                path = _chain_of(node.node)
                if path is not None:
                    guarded.add(path)
            if kind is nodes.Test and node.node is not None:
                path = _chain_of(node.node)
                if path is not None:
                    tested.add(path)
        elif kind is nodes.If or kind is nodes.CondExpr:
            tested.update(_chains_in(node.test))
        elif kind is nodes.And or kind is nodes.Or:
            tested.update(_chains_in(node.left))
        elif kind is nodes.Compare:
            if isinstance(node.expr, nodes.Const) and isinstance(node.expr.value, str):
                for op in node.ops:
                    if op.op in ("in", "notin") and isinstance(op.expr, nodes.Name):
                        guarded.add((op.expr.name, node.expr.value))
        elif kind is nodes.For:
            implicit.add("loop")
            loops += 1
            hazardous = hazardous or loops > 1 or _targets_loop(node.target)
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
        frozenset(tested),
        hazardous,
    )


def _targets_loop(target: Any) -> bool:
    """Whether a ``for`` target assigns ``loop`` (``for loop in``, ``for x, loop in``), which Jinja refuses."""
    from jinja2 import nodes  # noqa: PLC0415

    return any(n.name == "loop" for n in (target, *target.find_all(nodes.Name)) if type(n) is nodes.Name)


def _arithmetic() -> tuple[type, ...]:
    from jinja2 import nodes  # noqa: PLC0415

    return (nodes.Pow, nodes.Mul, nodes.Mod, nodes.Add, nodes.Sub, nodes.Concat)


class _Lazy:
    """A set of Jinja node types built on first use (jinja2 is imported only once a file has templates)."""

    def __init__(self) -> None:
        self._types: frozenset[type] | None = None

    def __contains__(self, kind: object) -> bool:
        if self._types is None:
            self._types = frozenset(_arithmetic())
        return kind in self._types


_ARITHMETIC = _Lazy()
# Methods whose result may grow past the sandbox's limits, and `format` (whose fields may read attributes).
_AMPLIFYING_METHODS = frozenset(
    {
        "center",
        "ljust",
        "rjust",
        "zfill",
        "expandtabs",
        "replace",
        "translate",
        "join",
        "to_bytes",
        "format",
        "format_map",
    }
)
# Filters that grow text or lists with their arguments, or read an attribute named by one.
_HAZARDOUS_FILTERS = frozenset(
    {
        "center",
        "indent",
        "format",
        "join",
        "replace",
        "wordwrap",
        "batch",
        "slice",
        "tojson",
        "attr",
        "map",
        "selectattr",
        "rejectattr",
        "sort",
        "groupby",
        "sum",
        "unique",
        "min",
        "max",
    }
)
# jinja2.sandbox refuses these besides '_' names (runner/validate/rules/hazards.py INTERNAL_ATTRIBUTES)
_INTERNAL = frozenset(
    {
        "mro",
        "gi_frame",
        "gi_code",
        "gi_yieldfrom",
        "cr_frame",
        "cr_code",
        "cr_await",
        "ag_frame",
        "ag_code",
        "ag_await",
        "f_globals",
        "f_locals",
        "f_builtins",
        "f_back",
        "f_code",
        "tb_frame",
        "tb_next",
        "co_code",
        "func_globals",
        "func_code",
        "func_closure",
        "func_defaults",
        "func_dict",
        "im_func",
        "im_self",
        "im_class",
    }
)


def _chains_in(node: Any) -> list[tuple[str, ...]]:
    """The chains a condition tests as truth values: ``x.y`` in ``x.y and z``, ``not x.y``; not ``x.y.z`` of
    a deeper chain (whose ``x.y`` is read, not tested)."""
    from jinja2 import nodes  # noqa: PLC0415

    out: list[tuple[str, ...]] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if current is None:
            continue
        if type(current) is nodes.Not:
            stack.append(current.node)
        elif type(current) is nodes.And or type(current) is nodes.Or:
            stack.extend((current.left, current.right))
        else:
            path = _chain_of(current)
            if path is not None:
                out.append(path)
    return out


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
