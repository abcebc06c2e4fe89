"""What the sandbox refuses at run time, found in a template's AST: filters and tests that do not exist,
attributes the sandbox will not read, and constant expressions over its limits (runner/sandbox/; those are
folded by runner/validate/rules/folding.py).

``runner run`` compiles and renders every template in that sandbox; a file ``runner validate`` passes must
not fail there on something the file itself shows. Each finding names how to locate it: a node (its tokens,
from the parser that records them) or a token pattern (every occurrence of an unknown filter's name).
"""

from __future__ import annotations

import difflib
import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runner.validate.rules.folding import Folder
from runner.validate.rules.jinja import Parsed, Tok
from runner.validate.rules.names import INTERNAL_ATTRIBUTES, targets_loop

# Names whose first key is a mapping key that other rules check (inputs.x, stages.x, vars.x, run.x, agent.x).
DATA_ROOTS = frozenset({"inputs", "stages", "vars", "run", "agent"})
# Filters that read an attribute of each item named by a string: the filter -> the position of that argument
# after the value (the keyword `attribute` works for all).
_ATTRIBUTE_ARGUMENT = {
    "attr": 0,
    "groupby": 0,
    "join": 1,
    "map": None,
    "max": 1,
    "min": 1,
    "rejectattr": 0,
    "selectattr": 0,
    "sort": 2,
    "sum": 0,
    "unique": 1,
}
_UNSAFE_HINT = (
    "templates read data (inputs, stages, prev, vars), never Python internals; "
    "for a mapping key that starts with '_', write x['_key']"
)
_LIMIT_HINT = (
    "templates are bounded so that no render blocks the run: compute large values in a python stage, "
    "or use smaller numbers"
)


@dataclass(frozen=True, slots=True)
class Hazard:
    """One problem: the rule, the message and hint, and where: a node of the AST, or the tokens ``match``
    accepts (every occurrence of an unknown filter's name, of an unsafe attribute)."""

    rule: str
    message: str
    hint: str
    node: Any = None
    match: Callable[[tuple[Tok, ...], int], tuple[int, int] | None] | None = None
    needle: str = ""  # the value of the tokens ``match`` may accept

    def spans(self, parsed: Parsed) -> list[tuple[int, int]]:
        if self.node is not None:
            return [parsed.span(self.node)]
        assert self.match is not None
        tokens = parsed.tokens
        found = [span for i in parsed.at(self.needle) if (span := self.match(tokens, i)) is not None]
        return found or [(0, 1)]


def find(ast: Any, free: frozenset[str], filters: Any, tests: Any) -> list[Hazard]:
    """Every hazard of a parsed template, in a fixed order (the same for two parses of one text)."""
    finder = _Finder(free, filters, tests)
    finder.names(ast)
    folder = Folder(free, filters)
    folder.fold_all(ast, 1)
    return finder.out + [Hazard("template-limit", message, _LIMIT_HINT, node=node) for node, message in folder.found]


class _Finder:
    def __init__(self, free: frozenset[str], filters: Any, tests: Any) -> None:
        self.free = free
        self.filters = filters
        self.tests = tests
        self.out: list[Hazard] = []
        self._named: set[tuple[str, str]] = set()

    def names(self, ast: Any) -> None:
        from jinja2 import nodes  # noqa: PLC0415

        stack = [ast]
        while stack:
            node = stack.pop()
            stack.extend(reversed(list(node.iter_child_nodes())))
            kind = type(node)
            if kind is nodes.Filter:
                if node.name not in self.filters:
                    self._unknown("filter", node.name, sorted(self.filters))
                else:
                    self._attribute_arguments(node)
            elif kind is nodes.Test and node.name not in self.tests:
                self._unknown("test", node.name, sorted(self.tests))
            elif kind is nodes.For and ("loop", "for") not in self._named:
                # Jinja's compiler refuses this one (runner/validate/rules/templating.py compiles the rarer ones)
                if targets_loop(node.target):
                    self._named.add(("loop", "for"))
                    self.out.append(
                        Hazard(
                            "template-syntax",
                            "template error: Can't assign to special loop variable in for-loop target",
                            "name the loop's item otherwise: 'loop' is the loop's own variable (loop.index, ...)",
                            match=_loop_target_tokens,
                            needle="loop",
                        )
                    )
            elif kind is nodes.Getattr:
                root = node.node
                exempt = type(root) is nodes.Name and root.name in DATA_ROOTS and root.name in self.free
                if not exempt and _unsafe(node.attr, underscore=True):
                    self._attribute(node.attr)
            elif kind is nodes.Getitem and type(node.arg) is nodes.Const and isinstance(node.arg.value, str):
                if _unsafe(node.arg.value, underscore=False):
                    self._string(node.arg.value, f"the key '{node.arg.value}'")
            elif kind is nodes.Call and type(node.node) is nodes.Getattr:
                receiver = node.node.node
                if (
                    node.node.attr in ("format", "format_map")
                    and type(receiver) is nodes.Const
                    and isinstance(receiver.value, str)
                ):
                    for attr in _format_attributes(receiver.value):
                        self._string(receiver.value, f"the format string's field '{attr}'", attr)

    def _unknown(self, what: str, name: str, known: list[str]) -> None:
        if (what, name) in self._named:
            return
        self._named.add((what, name))
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = (
            f"did you mean '{close[0]}'?"
            if close
            else f"templates have Jinja2's built-in {what}s only: https://jinja.palletsprojects.com/"
            f"en/stable/templates/#list-of-builtin-{what}s"
        )
        pattern = _filter_tokens(name) if what == "filter" else _test_tokens(name)
        self.out.append(
            Hazard("unknown-filter", f"there is no {what} named '{name}'", hint, match=pattern, needle=name)
        )

    def _attribute(self, attr: str) -> None:
        if ("attr", attr) in self._named:
            return
        self._named.add(("attr", attr))
        self.out.append(
            Hazard(
                "unsafe-attribute",
                f"the sandbox refuses the attribute '{attr}': {_why(attr)}",
                _UNSAFE_HINT,
                match=_attribute_tokens(attr),
                needle=attr,
            )
        )

    def _string(self, value: str, what: str, attr: str | None = None) -> None:
        if ("string", value + "\0" + (attr or "")) in self._named:
            return
        self._named.add(("string", value + "\0" + (attr or "")))
        name = attr if attr is not None else value
        self.out.append(
            Hazard(
                "unsafe-attribute",
                f"the sandbox refuses {what}: {_why(name)}",
                _UNSAFE_HINT,
                match=_string_tokens(value),
                needle=value,
            )
        )

    def _attribute_arguments(self, node: Any) -> None:
        """``attr('__class__')``, ``map(attribute='__class__')``: the item's attribute the filter will read."""
        from jinja2 import nodes  # noqa: PLC0415

        if node.name not in _ATTRIBUTE_ARGUMENT:
            return
        values = [kw.value for kw in node.kwargs if kw.key == "attribute"]
        position = _ATTRIBUTE_ARGUMENT[node.name]
        if position is not None and len(node.args) > position:
            values.append(node.args[position])
        for value in values:
            if type(value) is not nodes.Const or not isinstance(value.value, str):
                continue
            parts = [value.value] if node.name == "attr" else value.value.split(".")
            for part in parts:
                if _unsafe(part, underscore=node.name == "attr"):
                    self._string(value.value, f"the attribute '{part}' that '{node.name}' reads", part)


def _unsafe(name: str, *, underscore: bool) -> bool:
    """Whether the sandbox refuses reading ``name``: '_'-names (as an attribute; as a key, dunder names only,
    since a mapping's own '_key' is read as a key) and Python's internals."""
    return name.startswith("__") or (underscore and name.startswith("_")) or name in INTERNAL_ATTRIBUTES


def _why(name: str) -> str:
    if name.startswith("_"):
        return "names that start with '_' are Python's internals"
    return f"'{name}' is one of Python's internals"


_FIELD_PART = re.compile(r"\.([^.\[]*)|\[([^\]]*)\]")


def _format_attributes(fmt: str) -> list[str]:
    """The attributes and keys a ``str.format`` string reads that the sandbox refuses: ``{0.__class__}``."""
    out: list[str] = []
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(fmt) if field]
    except ValueError:  # not a valid format string: str.format fails at run time on its own
        return []
    for field in fields:
        # As str.format splits a field name: the argument, then `.attribute` and `[key]` parts.
        rest = field[len(re.split(r"[.\[]", field, maxsplit=1)[0]) :]
        for attr, key in _FIELD_PART.findall(rest):
            if attr and _unsafe(attr, underscore=True):
                out.append(attr)
            elif key and _unsafe(key, underscore=False):
                out.append(key)
    return out


def _filter_tokens(name: str) -> Callable[[tuple[Tok, ...], int], tuple[int, int] | None]:
    def match(tokens: tuple[Tok, ...], i: int) -> tuple[int, int] | None:
        tok = tokens[i]
        if tok.type != "name" or tok.value != name or not i:
            return None
        before = tokens[i - 1]
        if before.type == "pipe" or (before.type == "name" and before.value == "filter" and i > 1):
            return tok.start, tok.end
        return None

    return match


def _test_tokens(name: str) -> Callable[[tuple[Tok, ...], int], tuple[int, int] | None]:
    def match(tokens: tuple[Tok, ...], i: int) -> tuple[int, int] | None:
        tok = tokens[i]
        if tok.type != "name" or tok.value != name or not i:
            return None
        before = tokens[i - 1]
        if before.type == "name" and before.value == "not" and i > 1:
            before = tokens[i - 2]
        if before.type == "name" and before.value == "is":
            return tok.start, tok.end
        return None

    return match


def _loop_target_tokens(tokens: tuple[Tok, ...], i: int) -> tuple[int, int] | None:
    """``loop`` as a ``for`` loop's target: ``{% for loop in ... %}``, ``{% for x, loop in ... %}``."""
    tok = tokens[i]
    if tok.type != "name" or tok.value != "loop" or i < 2:
        return None
    j = i - 1
    while j > 0 and tokens[j].type in ("comma", "name", "lparen") and tokens[j].value != "for":
        j -= 1
    if tokens[j].type == "name" and tokens[j].value == "for" and tokens[j - 1].type == "block_begin":
        return tok.start, tok.end
    return None


def _attribute_tokens(attr: str) -> Callable[[tuple[Tok, ...], int], tuple[int, int] | None]:
    def match(tokens: tuple[Tok, ...], i: int) -> tuple[int, int] | None:
        tok = tokens[i]
        if tok.type != "name" or tok.value != attr or i < 1 or tokens[i - 1].type != "dot":
            return None
        if i >= 2 and tokens[i - 2].type == "name" and tokens[i - 2].value in DATA_ROOTS:
            if i < 3 or tokens[i - 3].type != "dot":  # `inputs._x`: a key, checked by the other rules
                return None
        return tok.start, tok.end

    return match


def _string_tokens(value: str) -> Callable[[tuple[Tok, ...], int], tuple[int, int] | None]:
    def match(tokens: tuple[Tok, ...], i: int) -> tuple[int, int] | None:
        tok = tokens[i]
        return (tok.start, tok.end) if tok.type == "string" and tok.value == value else None

    return match
