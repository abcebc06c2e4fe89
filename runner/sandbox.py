"""The sandbox templates compile and render in: Jinja2's immutable sandbox, bounded so that no template can
block the event loop (issue 21: templates are untrusted input).

Jinja's sandbox stops templates from reaching Python internals, but not from asking for a lot of work:
``{{ 9**(9**9) }}`` hung ``runner run`` at full CPU (Jinja folds constant expressions while compiling),
``'x' * 10**10`` asked for 10 GB and a loop doubling a nested list (``[ns.l, ns.l]``) builds a value whose
text is 2**60 characters long. A render runs on the event loop, so while it runs no timeout can fire. Every
way a template can build something large or spin goes through one of these bounds:

- **sizes:** a value a template builds (text by ``*``, ``+``, ``~``, ``%``, ``format``, padding and
  joining; lists and tuples by ``*`` and ``+``; the text of nested lists, counted with their repetitions)
  is at most :data:`MAX_LENGTH` characters or items, checked *before* it is built; numbers have at most
  :data:`MAX_INT_DIGITS` digits; ``range()`` gives at most :data:`MAX_RANGE` items;
- **work:** each render may take :data:`MAX_STEPS` steps (loop iterations, calls, filters, one more per
  KiB of text built or output) and :data:`MAX_SECONDS` of time, whichever comes first, and its output is
  at most :data:`MAX_LENGTH` characters.

The binary operators are intercepted (``intercepted_binops``), which also stops Jinja from folding them at
compile time; every filter takes the render's context, which stops Jinja from calling filters at compile
time; so compiling a template does no work that depends on its numbers. The validator runs the same checks
on the constant parts of templates (``runner.validate.rules.hazards``), so a file that breaks one fails
``runner validate`` at its line and column.

Values a template only reads (inputs, stage outputs) are data, not built by the template: they are not
limited, except when a template repeats or stringifies them.
"""

from __future__ import annotations

import operator
import re
import string
import time
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import update_wrapper
from typing import Any

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.runtime import Context, LoopContext, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEscapeFormatter, SandboxedFormatter
from jinja2.utils import Namespace, generate_lorem_ipsum, pass_context
from markupsafe import Markup

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
_MAX_INT_BITS = _INT_LIMIT.bit_length()
_TEXT = (str, bytes)
_SEQUENCES = (str, bytes, list, tuple)
_CONTAINERS = (list, tuple, dict, set, frozenset)

FAST_ATTRS: dict[type, frozenset[str]] = {}
"""Types whose listed attributes templates may read directly (plain data fields of runner's own records, safe in
the sandbox): the fast template path reads them without Jinja, and the weigher counts them."""


class TemplateLimitError(Exception):
    """A template went over one of the bounds of this module; the message says which, in the user's terms."""


def _short(value: Any) -> str:
    """A value as a message shows it: small ones as written, large ones by their size."""
    if _is_int(value) and value.bit_length() > 64:
        return f"a number of about {int(value.bit_length() * 0.30103) + 1:,} digits"
    if isinstance(value, _SEQUENCES) and len(value) > 20:
        if isinstance(value, _TEXT):
            return f"a text of {len(value):,} characters"
        return f"a list of {len(value):,} items"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _too_long(what: str, size: int, unit: str = "characters") -> TemplateLimitError:
    return TemplateLimitError(
        f"{what} would build {size:,} {unit}; a value built in a template may have at most {MAX_LENGTH:,}"
    )


def _too_many_digits(what: str) -> TemplateLimitError:
    return TemplateLimitError(f"{what} would give a number of more than {MAX_INT_DIGITS:,} digits")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_number(value: Any, what: str) -> Any:
    if _is_int(value):
        bits = value.bit_length()
        if bits > _MAX_INT_BITS or (bits == _MAX_INT_BITS and abs(value) >= _INT_LIMIT):
            raise _too_many_digits(what)
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
        if isinstance(value, _TEXT):
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
            raise _too_long(what, weight, "characters or items")
        return weight


def checked_binop(op: str, left: Any, right: Any, weigher: Weigher) -> Any:
    """``left <op> right`` when its result stays within the limits, refused before it is computed otherwise.

    The one implementation of the bounds on operators: the sandbox calls it for every ``+ - * % **`` of a
    render, and the validator for the constant ones of a template."""
    if op == "**":
        if _is_int(left) and _is_int(right) and right > 0 and abs(left) > 1:
            # |left| ** right has at least (bit_length(|left|) - 1) * right + 1 bits
            if (abs(left).bit_length() - 1) * right > _MAX_INT_BITS:
                raise _too_many_digits(f"{_short(left)} ** {_short(right)}")
        return check_number(left**right, f"{_short(left)} ** {_short(right)}")
    if op == "*":
        if isinstance(left, _SEQUENCES) and _is_int(right):
            return _repeat(left, right, weigher)
        if isinstance(right, _SEQUENCES) and _is_int(left):
            return _repeat(right, left, weigher)
        return check_number(left * right, f"{_short(left)} * {_short(right)}")
    if op == "+":
        if isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES) and type(left) is type(right):
            size = len(left) + len(right)
            if isinstance(left, _TEXT):
                if size > MAX_LENGTH:
                    raise _too_long("joining two texts with +", size)
            else:
                weight = size + 1 if size > MAX_LENGTH else weigher.weigh(left) + weigher.weigh(right) - 1
                if weight > MAX_LENGTH:
                    raise _too_long("joining two lists with +", weight, "items")
                return weigher.remember(operator.add(left, right), weight)  # left and right: lists or tuples
        return check_number(left + right, f"{_short(left)} + {_short(right)}")
    if op == "-":
        return check_number(left - right, f"{_short(left)} - {_short(right)}")
    if op == "%":
        if isinstance(left, _TEXT):
            check_percent(left, right, weigher)
        return check_number(left % right, f"{_short(left)} % {_short(right)}")
    raise AssertionError(op)


def _repeat(seq: Any, times: int, weigher: Weigher) -> Any:
    if times <= 0:
        return seq * times
    if isinstance(seq, _TEXT):
        if len(seq) * times > MAX_LENGTH:
            raise _too_long(f"repeating a text {times:,} times", len(seq) * times)
        return seq * times
    # a list's items count with what they hold: [[1] * 3000] * 3000 prints 9 million numbers
    weight = len(seq) * times + 1 if len(seq) * times > MAX_LENGTH else (weigher.weigh(seq) - 1) * times + 1
    if weight > MAX_LENGTH:
        raise _too_long(f"repeating a list {times:,} times", weight, "items")
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
        if star and _is_int(value):
            size += abs(value)
    if size > MAX_LENGTH:
        raise _too_long(f"formatting {_short(fmt)} with %", size)


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
            raise _too_long(f"formatting {_short(self._format)}", self._size)
        return super().format_field(value, format_spec)  # type: ignore[misc]


class BoundedFormatter(_BoundedFields, SandboxedFormatter):
    pass


class BoundedEscapeFormatter(_BoundedFields, SandboxedEscapeFormatter):
    pass


def _field_size(spec: str) -> int:
    """The most a field's width or precision asks for (any number in its format spec)."""
    numbers = _FORMAT_NUMBERS.findall(spec)
    if any(len(n) > 9 for n in numbers):
        raise _too_long(f"the format field {{:{spec[:30]}}}", int(max(numbers, key=len)[:30]))
    return max((int(n) for n in numbers), default=0)


def check_format(fmt: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """The static twin of :class:`BoundedFormatter`: the widths of ``fmt`` and the text of its arguments."""
    size = len(fmt)
    weigher = Weigher()
    for _, _, spec, _ in string.Formatter().parse(fmt):
        size += _field_size(spec or "")
    size += sum(weigher.weigh(v) for v in (*args, *kwargs.values()))
    if size > MAX_LENGTH:
        raise _too_long(f"formatting {_short(fmt)}", size)


def check_range(args: tuple[Any, ...]) -> range:
    rng = range(*args)
    if len(rng) > MAX_RANGE:
        shown = ", ".join(_short(a) for a in args)
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
    return max(len(obj), width) if _is_int(width) else len(obj)


def _expandtabs(obj: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int:
    size = args[0] if args else kwargs.get("tabsize", 8)
    tab = "\t" if isinstance(obj, str) else b"\t"
    return len(obj) + obj.count(tab) * size if _is_int(size) and size > 0 else len(obj)


def _replaced(obj: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int:
    if len(args) < 2 or not isinstance(args[0], _TEXT) or not isinstance(args[1], _TEXT):
        return len(obj)
    old, new = args[0], args[1]
    count = args[2] if len(args) > 2 else kwargs.get("count", -1)
    found = len(obj) + 1 if not old else obj.count(old)
    if _is_int(count) and count >= 0:
        found = min(found, count)
    return len(obj) + found * max(len(new) - len(old), 0)


def _joined(obj: Any, items: list[Any]) -> int:
    return len(obj) * max(len(items) - 1, 0) + sum(len(i) for i in items if isinstance(i, _TEXT))


def _translated(obj: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int:
    table = args[0] if args else None
    if isinstance(table, Mapping):
        longest = max((len(v) for v in table.values() if isinstance(v, _TEXT)), default=1)
        return len(obj) * max(longest, 1)
    return len(obj)


def _to_bytes(obj: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int:
    length = args[0] if args else kwargs.get("length", 1)
    return length if _is_int(length) else 0


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
    if isinstance(obj, _TEXT):
        if name == "join" and args:
            items = list(args[0])
            size = _joined(obj, items)
            if size > MAX_LENGTH:
                raise _too_long(f"joining {len(items):,} items with {_short(obj)}", size)
            return (items, *args[1:])
        measure = _TEXT_METHODS.get(name)
        if measure is not None:
            size = measure(obj, args, kwargs)
            if size > MAX_LENGTH:
                shown = ", ".join(_short(a) for a in args)
                raise _too_long(f"{name}({shown}) on {_short(obj)}", size)
    elif _is_int(obj) and name == "to_bytes":
        size = _to_bytes(obj, args, kwargs)
        if size > MAX_LENGTH:
            raise _too_long(f"to_bytes({_short(size)})", size, "bytes")
    return args


def checked_result(value: Any, what: str) -> Any:
    if isinstance(value, _SEQUENCES) or isinstance(value, dict):
        if len(value) > MAX_LENGTH:
            unit = "characters" if isinstance(value, _TEXT) else "items"
            raise _too_long(what, len(value), unit)
    elif _is_int(value):
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
    if name in _STRINGIFYING and not isinstance(value, _TEXT):
        weigher.check(value, f"the text of the value given to '{name}'")
    text_len = len(value) if isinstance(value, _TEXT) else 0
    if name == "center":
        width = _arg(args, kwargs, 0, "width", 80)
        if _is_int(width) and width > MAX_LENGTH:
            raise _too_long(f"center({width:,})", width)
    elif name == "indent":
        width = _arg(args, kwargs, 0, "width", 4)
        per_line = width if _is_int(width) else len(str(width))
        lines = value.count("\n") + 1 if isinstance(value, str) else 1
        if text_len + lines * per_line > MAX_LENGTH:
            raise _too_long(f"indent({_short(width)}) of {lines:,} lines", text_len + lines * per_line)
    elif name == "format" and isinstance(value, _TEXT):
        check_percent(value, args if args else dict(kwargs), weigher)
    elif name == "join":
        items = list(value) if not isinstance(value, _TEXT) else list(value)
        sep = _arg(args, kwargs, 0, "d", "")
        if isinstance(sep, _TEXT):
            size = len(sep) * max(len(items) - 1, 0) + sum(
                len(i) if isinstance(i, _TEXT) else weigher.weigh(i) for i in items
            )
            if size > MAX_LENGTH:
                raise _too_long(f"joining {len(items):,} items", size)
        return items
    elif name == "replace" and isinstance(value, _TEXT):
        size = _replaced(value, args[:2] + (_arg(args, kwargs, 2, "count", None) or -1,), {})
        if size > MAX_LENGTH:
            raise _too_long(f"replace() in {_short(value)}", size)
    elif name == "wordwrap" and isinstance(value, str):
        width = _arg(args, kwargs, 0, "width", 79)
        wrap = _arg(args, kwargs, 2, "wrapstring", None)
        if isinstance(wrap, str) and len(wrap) > 1 and _is_int(width):
            breaks = text_len // max(width, 1) + value.count(" ") + value.count("\n") + 1
            if text_len + breaks * len(wrap) > MAX_LENGTH:
                raise _too_long("wordwrap() with this wrapstring", text_len + breaks * len(wrap))
    elif name == "batch":
        linecount = _arg(args, kwargs, 0, "linecount", 1)
        if _arg(args, kwargs, 1, "fill_with", None) is not None and _is_int(linecount) and linecount > MAX_LENGTH:
            raise _too_long(f"batch({linecount:,}) with a fill value", linecount, "items")
    elif name == "slice":
        slices = _arg(args, kwargs, 0, "slices", 1)
        if _is_int(slices) and slices > MAX_RANGE:
            raise TemplateLimitError(f"slice({slices:,}) would make {slices:,} lists; at most {MAX_RANGE:,}")
    elif name == "tojson":
        indent = _arg(args, kwargs, 0, "indent", None)
        per = indent if _is_int(indent) else len(indent) if isinstance(indent, str) else 0
        if per:
            size = weigher.weigh(value) * (per + 1)
            if size > MAX_LENGTH:
                raise _too_long(f"tojson(indent={_short(indent)})", size)
    return value


class Budget:
    """What one render may still spend: steps, time, output; and the weights of the values it built."""

    __slots__ = ("steps", "deadline", "output", "weigher")

    def __init__(self) -> None:
        self.steps = MAX_STEPS
        self.deadline = time.perf_counter() + MAX_SECONDS
        self.output = 0
        self.weigher: Weigher | None = None

    def weights(self) -> Weigher:
        if self.weigher is None:
            self.weigher = Weigher(FAST_ATTRS)
        return self.weigher

    def tick(self, steps: int = 1) -> None:
        self.steps -= steps
        if self.steps < 0:
            raise TemplateLimitError(
                f"the template took more than {MAX_STEPS:,} steps (loop iterations, calls and filters) in one "
                "render; a render must not block the run"
            )
        if time.perf_counter() > self.deadline:
            raise TemplateLimitError(
                f"the template ran for more than {MAX_SECONDS:g} s in one render; a render must not block the run"
            )


class BoundedContext(Context):
    """Jinja's context with the render's :class:`Budget`; contexts derived from it (scoped blocks) share it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.budget = Budget()

    def derived(self, locals: dict[str, Any] | None = None) -> Context:  # noqa: A002 - Jinja's name
        context = super().derived(locals)
        context.budget = self.budget  # type: ignore[attr-defined]
        return context


class BoundedCodeGenerator(CodeGenerator):
    """Jinja's code generator, with every ``for`` loop's items and every ``~`` join going through the sandbox.

    Jinja allows no custom node types, so a loop's iterable is wrapped where it is written out."""

    _loop_iterable: nodes.Node | None = None

    def visit(self, node: nodes.Node, *args: Any, **kwargs: Any) -> Any:
        if node is self._loop_iterable:
            self.write("environment.counted(context, ")
            super().visit(node, *args, **kwargs)
            self.write(")")
            return None
        return super().visit(node, *args, **kwargs)

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        outer, self._loop_iterable = self._loop_iterable, node.iter
        try:
            super().visit_For(node, frame)
        finally:
            self._loop_iterable = outer

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        if frame.eval_ctx.volatile:
            join = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            join = "markup_join"
        else:
            join = "str_join"
        self.write(f"environment.concat_checked(context, {join}, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class _Counted:
    """An iterator charging a step per item; keeps the iterable's length for ``loop.length``."""

    __slots__ = ("_iterable", "_iterator", "_budget")

    def __init__(self, iterable: Any, budget: Budget) -> None:
        self._iterable = iterable
        self._iterator = iter(iterable)
        self._budget = budget

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        item = next(self._iterator)
        self._budget.tick()
        return item

    def __len__(self) -> int:
        return len(self._iterable)


@pass_context
def _finalize(context: Any, value: Any) -> Any:
    """Every ``{{ expression }}``'s value on its way to the output: its text counted against the output limit."""
    budget: Budget = context.budget
    if isinstance(value, str):
        text = value
    else:
        if isinstance(value, _CONTAINERS) or isinstance(value, Namespace):
            budget.weights().check(value, "the text of this value")
        text = str(value)
    budget.output += len(text)
    if budget.output > MAX_LENGTH:
        raise TemplateLimitError(f"the template's output would pass {MAX_LENGTH:,} characters")
    budget.tick(1 + (len(text) >> 10))
    return text


def check_lipsum(n: Any = 5, html: Any = True, min: Any = 20, max: Any = 100) -> None:  # noqa: A002 - Jinja's
    words = n * max if _is_int(n) and _is_int(max) else 0
    if words > MAX_RANGE:
        raise TemplateLimitError(f"lipsum({n:,}) would write up to {words:,} words; at most {MAX_RANGE:,}")


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:  # noqa: A002 - Jinja's names
    check_lipsum(n, html, min, max)
    return generate_lorem_ipsum(n=n, html=html, min=min, max=max)


def _bounded_filter(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    from jinja2.utils import _PassArg  # noqa: PLC0415 - how Jinja says what a filter takes first

    passes = _PassArg.from_obj(fn)

    def bounded(context: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        budget: Budget = context.budget
        budget.tick()
        value = check_filter(name, value, args, kwargs, budget.weights())
        if passes is _PassArg.context:
            result = fn(context, value, *args, **kwargs)
        elif passes is _PassArg.eval_context:
            result = fn(context.eval_ctx, value, *args, **kwargs)
        elif passes is _PassArg.environment:
            result = fn(context.environment, value, *args, **kwargs)
        else:
            result = fn(value, *args, **kwargs)
        return checked_result(result, f"the '{name}' filter")

    # pass_context after update_wrapper, which copies the original's own jinja_pass_arg
    return pass_context(update_wrapper(bounded, fn))


class Environment(ImmutableSandboxedEnvironment):
    """The sandbox every template of a workflow compiles and renders in (the validator compiles in it too)."""

    intercepted_binops = frozenset({"+", "-", "*", "%", "**"})
    context_class = BoundedContext
    code_generator_class = BoundedCodeGenerator

    def __init__(self, **options: Any) -> None:
        super().__init__(finalize=_finalize, **options)
        self.globals["range"] = safe_range
        self.globals["lipsum"] = _lipsum
        self.filters = {name: _bounded_filter(name, fn) for name, fn in self.filters.items()}

    def getattr(self, obj: Any, attribute: str) -> Any:
        # Keys before methods: `inputs.items` or `vars.keys` name the user's value, not dict.items.
        if type(obj) is dict and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        budget: Budget = context.budget
        budget.tick()
        return checked_binop(operator, left, right, budget.weights())

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 - Jinja's
        budget: Budget = __context.budget
        budget.tick()
        if type(__obj) is types.BuiltinMethodType or type(__obj) is types.MethodType:  # Markup's are Python's
            args = check_method(__obj.__self__, __obj.__name__, args, kwargs)
        elif isinstance(__obj, LoopContext) and args:  # a recursive loop's next level: count its items too
            args = (_Counted(args[0], budget), *args[1:])
        result = super().call(__context, __obj, *args, **kwargs)
        return checked_result(result, "this call")

    def counted(self, context: Any, iterable: Any) -> Any:
        return _Counted(iterable, context.budget)

    def concat_checked(self, context: Any, join: Callable[[Iterable[Any]], str], parts: tuple[Any, ...]) -> str:
        budget: Budget = context.budget
        size = 0
        for part in parts:
            size += len(part) if isinstance(part, str) else budget.weights().weigh(part)
        if size > MAX_LENGTH:
            raise _too_long(f"joining {len(parts)} values with ~", size)
        budget.tick(1 + (size >> 10))
        return join(parts)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        # Jinja's own, with formatters that bound widths and sizes (see BoundedFormatter).
        if not isinstance(value, types.MethodType | types.BuiltinMethodType) or value.__name__ not in (
            "format",
            "format_map",
        ):
            return None
        f_self: Any = value.__self__
        if not isinstance(f_self, str):
            return None
        str_type: type[str] = type(f_self)
        is_format_map = value.__name__ == "format_map"
        formatter: Any
        if isinstance(f_self, Markup):
            formatter = BoundedEscapeFormatter(self, escape=f_self.escape)
        else:
            formatter = BoundedFormatter(self)

        def wrapper(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs:
                    raise TypeError("format_map() takes no keyword arguments")
                if len(args) != 1:
                    raise TypeError(f"format_map() takes exactly one argument ({len(args)} given)")
                kwargs = args[0]
                args = ()
            formatter._size = 0
            formatter._format = f_self
            return str_type(formatter.vformat(f_self, args, kwargs))

        return update_wrapper(wrapper, value)
