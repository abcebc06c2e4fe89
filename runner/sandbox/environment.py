"""The environment every template compiles and renders in: Jinja's immutable sandbox with each operator,
call, filter, loop and output going through the checks of ``runner.sandbox.checks`` and charged to the
render's :class:`Budget` of steps, time and output."""

from __future__ import annotations

import time
import types
from collections.abc import Callable, Iterable, Iterator
from functools import update_wrapper
from typing import Any

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.runtime import Context, LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace, generate_lorem_ipsum, pass_context
from markupsafe import Markup

from runner.sandbox.checks import (
    BoundedEscapeFormatter,
    BoundedFormatter,
    check_filter,
    check_lipsum,
    check_method,
    checked_binop,
    checked_result,
    safe_range,
)
from runner.sandbox.fields import FAST_ATTRS
from runner.sandbox.limits import CONTAINERS, MAX_LENGTH, MAX_SECONDS, MAX_STEPS, TemplateLimitError, Weigher, too_long


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
        if isinstance(value, CONTAINERS) or isinstance(value, Namespace):
            budget.weights().check(value, "the text of this value")
        text = str(value)
    budget.output += len(text)
    if budget.output > MAX_LENGTH:
        raise TemplateLimitError(f"the template's output would pass {MAX_LENGTH:,} characters")
    budget.tick(1 + (len(text) >> 10))
    return text


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
            raise too_long(f"joining {len(parts)} values with ~", size)
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
