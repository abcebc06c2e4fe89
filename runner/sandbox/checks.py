"""The bound of each operation a template can amplify with, checked before the operation runs: the binary
operators, ``%`` and ``str.format``, ``range()`` and ``lipsum()``, the methods of text and numbers, and the
filters. The sandbox (``runner.sandbox.environment``) calls them at render time; the validator
(``runner.validate.rules.folding``) calls the same ones on a template's constant expressions."""

from __future__ import annotations

import operator
import re
import string
from collections.abc import Callable, Mapping
from typing import Any

from jinja2.sandbox import SandboxedEscapeFormatter, SandboxedFormatter

from runner.sandbox.limits import (
    MAX_INT_BITS,
    MAX_LENGTH,
    MAX_RANGE,
    SEQUENCES,
    TEXT,
    TemplateLimitError,
    Weigher,
    check_number,
    is_int,
    short,
    too_long,
    too_many_digits,
)


def checked_binop(op: str, left: Any, right: Any, weigher: Weigher) -> Any:
    """``left <op> right`` when its result stays within the limits, refused before it is computed otherwise.

    The one implementation of the bounds on operators: the sandbox calls it for every ``+ - * % **`` of a
    render, and the validator for the constant ones of a template."""
    if op == "**":
        if is_int(left) and is_int(right) and right > 0 and abs(left) > 1:
            # |left| ** right has at least (bit_length(|left|) - 1) * right + 1 bits
            if (abs(left).bit_length() - 1) * right > MAX_INT_BITS:
                raise too_many_digits(f"{short(left)} ** {short(right)}")
        return check_number(left**right, f"{short(left)} ** {short(right)}")
    if op == "*":
        if isinstance(left, SEQUENCES) and is_int(right):
            return _repeat(left, right, weigher)
        if isinstance(right, SEQUENCES) and is_int(left):
            return _repeat(right, left, weigher)
        return check_number(left * right, f"{short(left)} * {short(right)}")
    if op == "+":
        if isinstance(left, SEQUENCES) and isinstance(right, SEQUENCES) and type(left) is type(right):
            size = len(left) + len(right)
            if isinstance(left, TEXT):
                if size > MAX_LENGTH:
                    raise too_long("joining two texts with +", size)
            else:
                weight = size + 1 if size > MAX_LENGTH else weigher.weigh(left) + weigher.weigh(right) - 1
                if weight > MAX_LENGTH:
                    raise too_long("joining two lists with +", weight, "items")
                return weigher.remember(operator.add(left, right), weight)  # left and right: lists or tuples
        return check_number(left + right, f"{short(left)} + {short(right)}")
    if op == "-":
        return check_number(left - right, f"{short(left)} - {short(right)}")
    if op == "%":
        if isinstance(left, TEXT):
            check_percent(left, right, weigher)
        return check_number(left % right, f"{short(left)} % {short(right)}")
    raise AssertionError(op)


def _repeat(seq: Any, times: int, weigher: Weigher) -> Any:
    if times <= 0:
        return seq * times
    if isinstance(seq, TEXT):
        if len(seq) * times > MAX_LENGTH:
            raise too_long(f"repeating a text {times:,} times", len(seq) * times)
        return seq * times
    # a list's items count with what they hold: [[1] * 3000] * 3000 prints 9 million numbers
    weight = len(seq) * times + 1 if len(seq) * times > MAX_LENGTH else (weigher.weigh(seq) - 1) * times + 1
    if weight > MAX_LENGTH:
        raise too_long(f"repeating a list {times:,} times", weight, "items")
    return weigher.remember(seq * times, weight)


# %-conversions: (mapping key)? flags? width? (.precision)? length modifier? type
_PERCENT = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?([diouxXeEfFgGcrsab%])")


def check_percent(fmt: str | bytes, args: Any, weigher: Weigher) -> None:
    """Refuse ``fmt % args`` when its text may exceed the limit: the widths and precisions it asks for, the
    numbers given for ``*`` widths, and the text of every argument."""
    text = fmt.decode("latin-1") if isinstance(fmt, bytes) else fmt
    size = len(text)
    star = False
    for match in _PERCENT.finditer(text):
        for number in match.group(1, 2):
            if number == "*":
                star = True
            elif number:
                size += int(number)
    values = list(args.values()) if isinstance(args, Mapping) else list(args) if isinstance(args, tuple) else [args]
    for value in values:
        size += weigher.weigh(value)
        if star and is_int(value):
            size += abs(value)
    if size > MAX_LENGTH:
        raise too_long(f"formatting {short(fmt)} with %", size)


_FORMAT_NUMBERS = re.compile(r"\d+")


class _BoundedFields:
    """``str.format`` in the sandbox, refusing a field whose width, precision or text would pass the limit."""

    _size = 0
    _format = ""
    _weigher: Weigher | None = None

    def format_field(self, value: Any, format_spec: str) -> Any:
        self._size += _field_size(format_spec)
        if self._weigher is None:
            self._weigher = Weigher()
        self._size += self._weigher.weigh(value)
        if self._size > MAX_LENGTH:
            raise too_long(f"formatting {short(self._format)}", self._size)
        return super().format_field(value, format_spec)  # type: ignore[misc]


class BoundedFormatter(_BoundedFields, SandboxedFormatter):
    pass


class BoundedEscapeFormatter(_BoundedFields, SandboxedEscapeFormatter):
    pass


def _field_size(spec: str) -> int:
    """The most a field's width or precision asks for (any number in its format spec)."""
    numbers = _FORMAT_NUMBERS.findall(spec)
    if any(len(n) > 9 for n in numbers):
        raise too_long(f"the format field {{:{spec[:30]}}}", int(max(numbers, key=len)[:30]))
    return max((int(n) for n in numbers), default=0)


def check_format(fmt: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """The static twin of :class:`BoundedFormatter`: the widths of ``fmt`` and the text of its arguments."""
    size = len(fmt)
    weigher = Weigher()
    for _, _, spec, _ in string.Formatter().parse(fmt):
        size += _field_size(spec or "")
    size += sum(weigher.weigh(v) for v in (*args, *kwargs.values()))
    if size > MAX_LENGTH:
        raise too_long(f"formatting {short(fmt)}", size)


def check_range(args: tuple[Any, ...]) -> range:
    rng = range(*args)
    if len(rng) > MAX_RANGE:
        shown = ", ".join(short(a) for a in args)
        raise TemplateLimitError(
            f"range({shown}) would have {len(rng):,} items; templates may use ranges of at most {MAX_RANGE:,}"
        )
    return rng


def safe_range(*args: int) -> range:
    """``range()`` in templates: at most :data:`MAX_RANGE` items."""
    return check_range(args)


# Amplifying methods of text and numbers: name -> the size of the result, computed before it is built.
def _padded(obj: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int:
    width = args[0] if args else 0
    return max(len(obj), width) if is_int(width) else len(obj)


def _expandtabs(obj: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int:
    size = args[0] if args else kwargs.get("tabsize", 8)
    tab = "\t" if isinstance(obj, str) else b"\t"
    return len(obj) + obj.count(tab) * size if is_int(size) and size > 0 else len(obj)


def _replaced(obj: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int:
    if len(args) < 2 or not isinstance(args[0], TEXT) or not isinstance(args[1], TEXT):
        return len(obj)
    old, new = args[0], args[1]
    count = args[2] if len(args) > 2 else kwargs.get("count", -1)
    found = len(obj) + 1 if not old else obj.count(old)
    if is_int(count) and count >= 0:
        found = min(found, count)
    return len(obj) + found * max(len(new) - len(old), 0)


def _joined(obj: Any, items: list[Any]) -> int:
    return len(obj) * max(len(items) - 1, 0) + sum(len(i) for i in items if isinstance(i, TEXT))


def _translated(obj: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int:
    table = args[0] if args else None
    if isinstance(table, Mapping):
        longest = max((len(v) for v in table.values() if isinstance(v, TEXT)), default=1)
        return len(obj) * max(longest, 1)
    return len(obj)


def _to_bytes(obj: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int:
    length = args[0] if args else kwargs.get("length", 1)
    return length if is_int(length) else 0


_TEXT_METHODS: dict[str, Callable[[Any, tuple[Any, ...], Mapping[str, Any]], int]] = {
    "center": _padded,
    "ljust": _padded,
    "rjust": _padded,
    "zfill": _padded,
    "expandtabs": _expandtabs,
    "replace": _replaced,
    "translate": _translated,
}


def check_method(obj: Any, name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
    """Refuse a call of an amplifying method of text or numbers whose result would pass the limits; returns
    the arguments to call with (``join``'s iterable, read once to be measured, as a list)."""
    if isinstance(obj, TEXT):
        if name == "join" and args:
            items = list(args[0])
            size = _joined(obj, items)
            if size > MAX_LENGTH:
                raise too_long(f"joining {len(items):,} items with {short(obj)}", size)
            return (items, *args[1:])
        measure = _TEXT_METHODS.get(name)
        if measure is not None:
            size = measure(obj, args, kwargs)
            if size > MAX_LENGTH:
                shown = ", ".join(short(a) for a in args)
                raise too_long(f"{name}({shown}) on {short(obj)}", size)
    elif is_int(obj) and name == "to_bytes":
        size = _to_bytes(obj, args, kwargs)
        if size > MAX_LENGTH:
            raise too_long(f"to_bytes({short(size)})", size, "bytes")
    return args


def checked_result(value: Any, what: str) -> Any:
    if isinstance(value, SEQUENCES) or isinstance(value, dict):
        if len(value) > MAX_LENGTH:
            unit = "characters" if isinstance(value, TEXT) else "items"
            raise too_long(what, len(value), unit)
    elif is_int(value):
        check_number(value, what)
    return value


# Filters that turn their value into text: a nested list's text is its weight.
_STRINGIFYING = frozenset(
    {
        "capitalize",
        "center",
        "e",
        "escape",
        "forceescape",
        "indent",
        "lower",
        "pprint",
        "replace",
        "safe",
        "string",
        "striptags",
        "title",
        "tojson",
        "trim",
        "truncate",
        "upper",
        "urlencode",
        "urlize",
        "wordcount",
        "wordwrap",
    }
)


def _arg(args: tuple[Any, ...], kwargs: Mapping[str, Any], index: int, name: str, default: Any) -> Any:
    return args[index] if len(args) > index else kwargs.get(name, default)


def check_filter(name: str, value: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], weigher: Weigher) -> Any:
    """Refuse a filter call whose result would pass the limits, before it is made; returns the value to
    filter (``join``'s, read once to be measured, as a list). Shared by the sandbox and the validator."""
    if name in _STRINGIFYING and not isinstance(value, TEXT):
        weigher.check(value, f"the text of the value given to '{name}'")
    text_len = len(value) if isinstance(value, TEXT) else 0
    if name == "center":
        width = _arg(args, kwargs, 0, "width", 80)
        if is_int(width) and width > MAX_LENGTH:
            raise too_long(f"center({width:,})", width)
    elif name == "indent":
        width = _arg(args, kwargs, 0, "width", 4)
        per_line = width if is_int(width) else len(str(width))
        lines = value.count("\n") + 1 if isinstance(value, str) else 1
        if text_len + lines * per_line > MAX_LENGTH:
            raise too_long(f"indent({short(width)}) of {lines:,} lines", text_len + lines * per_line)
    elif name == "format" and isinstance(value, TEXT):
        check_percent(value, args if args else dict(kwargs), weigher)
    elif name == "join":
        items = list(value) if not isinstance(value, TEXT) else list(value)
        sep = _arg(args, kwargs, 0, "d", "")
        if isinstance(sep, TEXT):
            size = len(sep) * max(len(items) - 1, 0) + sum(
                len(i) if isinstance(i, TEXT) else weigher.weigh(i) for i in items
            )
            if size > MAX_LENGTH:
                raise too_long(f"joining {len(items):,} items", size)
        return items
    elif name == "replace" and isinstance(value, TEXT):
        size = _replaced(value, args[:2] + (_arg(args, kwargs, 2, "count", None) or -1,), {})
        if size > MAX_LENGTH:
            raise too_long(f"replace() in {short(value)}", size)
    elif name == "wordwrap" and isinstance(value, str):
        width = _arg(args, kwargs, 0, "width", 79)
        wrap = _arg(args, kwargs, 2, "wrapstring", None)
        if isinstance(wrap, str) and len(wrap) > 1 and is_int(width):
            breaks = text_len // max(width, 1) + value.count(" ") + value.count("\n") + 1
            if text_len + breaks * len(wrap) > MAX_LENGTH:
                raise too_long("wordwrap() with this wrapstring", text_len + breaks * len(wrap))
    elif name == "batch":
        linecount = _arg(args, kwargs, 0, "linecount", 1)
        if _arg(args, kwargs, 1, "fill_with", None) is not None and is_int(linecount) and linecount > MAX_LENGTH:
            raise too_long(f"batch({linecount:,}) with a fill value", linecount, "items")
    elif name == "slice":
        slices = _arg(args, kwargs, 0, "slices", 1)
        if is_int(slices) and slices > MAX_RANGE:
            raise TemplateLimitError(f"slice({slices:,}) would make {slices:,} lists; at most {MAX_RANGE:,}")
    elif name == "tojson":
        indent = _arg(args, kwargs, 0, "indent", None)
        per = indent if is_int(indent) else len(indent) if isinstance(indent, str) else 0
        if per:
            size = weigher.weigh(value) * (per + 1)
            if size > MAX_LENGTH:
                raise too_long(f"tojson(indent={short(indent)})", size)
    return value


def check_lipsum(n: Any = 5, html: Any = True, min: Any = 20, max: Any = 100) -> None:  # noqa: A002 - Jinja's
    words = n * max if is_int(n) and is_int(max) else 0
    if words > MAX_RANGE:
        raise TemplateLimitError(f"lipsum({n:,}) would write up to {words:,} words; at most {MAX_RANGE:,}")
