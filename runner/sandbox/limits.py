"""The bounds of the sandbox (see ``runner/sandbox/__init__.py``): the numbers, the error a template gets when it
goes over one, and the weigher that measures how much text a value would print."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from jinja2.runtime import Undefined
from jinja2.utils import Namespace

MAX_LENGTH = 10_000_000
"""Characters of text, or items of a list counting nested ones, that one value built by a template may have;
also the most a render may output. Ten million characters are about 2.5 million tokens: more than any
model's context."""
MAX_INT_DIGITS = 4_000
"""Digits of a number a template computes (Python refuses to print more than 4,300 anyway)."""
MAX_RANGE = 100_000
"""Items of ``range()`` (Jinja's own sandbox limit)."""
MAX_STEPS = 500_000
"""Steps of one render: loop iterations, calls and filters, plus one per KiB of text built or output."""
MAX_SECONDS = 1.0
"""Time one render may run on the event loop; the backstop for work the steps do not count (such as
comparing two large values in a loop)."""

_INT_LIMIT = 10**MAX_INT_DIGITS  # the smallest number with more digits
MAX_INT_BITS = _INT_LIMIT.bit_length()  # bits of that number: fewer bits, fewer digits
# The kinds of values the checks tell apart.
TEXT = (str, bytes)
SEQUENCES = (str, bytes, list, tuple)
CONTAINERS = (list, tuple, dict, set, frozenset)


class TemplateLimitError(Exception):
    """A template went over one of the bounds of the sandbox; the message says which, in the user's terms."""


def short(value: Any) -> str:
    """A value as a message shows it: small ones as written, large ones by their size."""
    if is_int(value) and value.bit_length() > 64:
        return f"a number of about {int(value.bit_length() * 0.30103) + 1:,} digits"
    if isinstance(value, SEQUENCES) and len(value) > 20:
        if isinstance(value, TEXT):
            return f"a text of {len(value):,} characters"
        return f"a list of {len(value):,} items"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def too_long(what: str, size: int, unit: str = "characters") -> TemplateLimitError:
    return TemplateLimitError(
        f"{what} would build {size:,} {unit}; a value built in a template may have at most {MAX_LENGTH:,}"
    )


def too_many_digits(what: str) -> TemplateLimitError:
    return TemplateLimitError(f"{what} would give a number of more than {MAX_INT_DIGITS:,} digits")


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_number(value: Any, what: str) -> Any:
    if is_int(value):
        bits = value.bit_length()
        if bits > MAX_INT_BITS or (bits == MAX_INT_BITS and abs(value) >= _INT_LIMIT):
            raise too_many_digits(what)
    return value


class Weigher:
    """The length of a value's text, counting what nested lists repeat: ``[x, x]`` weighs twice ``x``.

    Memoised per object, so a list that holds the same list twice at every level (2**60 characters of text
    in 60 objects) is weighed in 60 steps. Lists, tuples and dicts cannot change while a template renders
    (the sandbox is immutable); namespaces can, so they are weighed again each time.
    """

    __slots__ = ("_memo", "records")

    def __init__(self, records: Mapping[type, frozenset[str]] | None = None) -> None:
        self._memo: dict[int, tuple[Any, int]] = {}
        self.records = records or {}

    def _leaf(self, value: Any) -> int | None:
        kind = type(value)
        if kind is str or kind is bytes:
            return len(value)
        if kind is int:
            return 1 + int(value.bit_length()) // 3
        if kind is float or kind is bool or value is None:
            return 1
        if isinstance(value, TEXT):
            return len(value)
        hit = self._memo.get(id(value))
        return None if hit is None else int(hit[1])

    def _children(self, value: Any) -> Iterable[Any] | None:
        if isinstance(value, dict):
            return [*value.keys(), *value.values()]
        if isinstance(value, list | tuple | set | frozenset):
            return value
        if isinstance(value, Namespace):
            attrs: dict[str, Any] = object.__getattribute__(value, "_Namespace__attrs")
            return [*attrs.keys(), *attrs.values()]
        fields = self.records.get(type(value))
        if fields is not None:
            return [getattr(value, name) for name in fields]
        return None

    def weigh(self, value: Any) -> int:
        found = self._leaf(value)
        if found is not None:
            return found
        if type(value) is list or type(value) is tuple:  # a flat list of numbers or texts: at C speed
            kinds = set(map(type, value))
            if kinds == {str}:
                return 1 + sum(map(len, value))
            if kinds == {int}:  # each as _leaf weighs it: 1 + bit_length // 3
                return 1 + len(value) + sum(map((3).__rfloordiv__, map(int.bit_length, value)))
        namespaces: list[int] = []
        # Iterative: nested lists may be deeper than Python's recursion limit.
        stack: list[tuple[Any, bool]] = [(value, False)]
        open_: set[int] = set()
        while stack:
            item, done = stack.pop()
            key = id(item)
            if done:
                open_.discard(key)
                total = 1
                for child in self._children(item) or ():
                    weight = self._leaf(child)
                    total += weight if weight is not None else 1  # None: a cycle, a namespace holding itself
                self._memo[key] = (item, total)
                if isinstance(item, Namespace):
                    namespaces.append(key)
                continue
            if key in open_ or self._leaf(item) is not None:
                continue
            if isinstance(item, Undefined):
                str(item)  # an undefined or refused value inside a built one: its own error, now
            children = self._children(item)
            if children is None:  # another object: weighs what it prints
                try:
                    text = repr(item)
                except Exception:  # noqa: BLE001 - an object whose repr fails prints nothing large
                    text = ""
                self._memo[key] = (item, 1 + len(text))
                continue
            open_.add(key)
            stack.append((item, True))
            stack.extend((child, False) for child in children if self._leaf(child) is None)
        weight = self._memo[id(value)][1]
        for key in namespaces:  # a namespace may change before the next weighing
            del self._memo[key]
        return weight

    def remember(self, value: Any, weight: int) -> Any:
        """Record the weight of a list just built from weighed parts (``a + b``, ``a * n``), so that a loop
        doubling a list weighs it in one step, not by walking it again."""
        if weight >= 1024 and isinstance(value, list | tuple):  # small ones are quick to weigh again
            self._memo[id(value)] = (value, weight)
        return value

    def check(self, value: Any, what: str) -> int:
        weight = self.weigh(value)
        if weight > MAX_LENGTH:
            raise too_long(what, weight, "characters or items")
        return weight
