"""The constant expressions of a template, folded with the sandbox's own checks (runner/sandbox/checks.py): a
value the template text fixes that is over one of the sandbox's limits (``{{ 9 ** 9 ** 9 }}``,
``'x' * 10**10``, ``range(10**9)``, nested loops over large literal ranges) is found before anything renders.

Only what the text fixes is folded: literal numbers, strings and lists, and the operators, filters, methods
and globals applied to them. ``range(inputs.n)`` or ``'x' * vars.k`` depend on values known only at run time;
the sandbox bounds those when they render. ``runner/validate/rules/hazards.py`` reports what is found here.
"""

from __future__ import annotations

from typing import Any

from runner.sandbox.checks import check_filter, check_format, check_lipsum, check_method, check_range, checked_binop
from runner.sandbox.limits import MAX_LENGTH, MAX_STEPS, TemplateLimitError, Weigher

_UNKNOWN = object()


class Folder:
    """Folds every expression of a template. ``found``: each node whose value is over a limit, with the
    message saying which, in the order they are met (the same for two parses of one text)."""

    def __init__(self, free: frozenset[str], filters: Any) -> None:
        self.free = free  # names the template never assigns: only those are the sandbox's globals
        self.filters = filters
        self.found: list[tuple[Any, str]] = []
        self.weigher = Weigher()

    def fold_all(self, node: Any, loops: int) -> None:
        """Fold every expression of the template; ``loops``: how often the enclosing loops run (when known)."""
        from jinja2 import nodes  # noqa: PLC0415

        if isinstance(node, nodes.For):
            items = self.fold(node.iter)
            size = len(items) if isinstance(items, range | list | tuple | str) else None
            inner = loops * size if size is not None and loops else 0
            if inner > MAX_STEPS:
                message = f"these nested loops run {inner:,} times; a render may take at most {MAX_STEPS:,} steps"
                self.found.append((node.iter, message))
                inner = 0
            for child in (*node.body, *node.else_):
                self.fold_all(child, inner)
            if node.test is not None:
                self.fold(node.test)
            return
        if isinstance(node, nodes.Expr):
            self.fold(node)
            return
        for child in node.iter_child_nodes():
            self.fold_all(child, loops)

    def fold(self, node: Any) -> Any:
        """The value of a constant expression, or _UNKNOWN; a constant over a limit is recorded in ``found``."""
        from jinja2 import nodes  # noqa: PLC0415

        kind = type(node)
        try:
            if kind is nodes.Const:
                return node.value
            if kind is nodes.List or kind is nodes.Tuple:
                items = [self.fold(item) for item in node.items]
                if any(item is _UNKNOWN for item in items):
                    return _UNKNOWN
                return items if kind is nodes.List else tuple(items)
            if kind is nodes.Neg or kind is nodes.Pos:
                value = self.fold(node.node)
                if value is _UNKNOWN:
                    return _UNKNOWN
                return -value if kind is nodes.Neg else +value
            if isinstance(node, nodes.BinExpr):
                left, right = self.fold(node.left), self.fold(node.right)
                if left is _UNKNOWN or right is _UNKNOWN:
                    return _UNKNOWN
                if node.operator in ("+", "-", "*", "%", "**"):
                    return checked_binop(node.operator, left, right, self.weigher)
                return _UNKNOWN
            if kind is nodes.Concat:
                parts = [self.fold(part) for part in node.nodes]
                if any(part is _UNKNOWN for part in parts):
                    return _UNKNOWN
                texts = [str(part) for part in parts]
                if sum(map(len, texts)) > MAX_LENGTH:
                    raise TemplateLimitError(f"joining {len(parts)} values with ~ is too long")
                return "".join(texts)
            if kind is nodes.Call:
                return self._call(node)
            if kind is nodes.Filter:
                return self._filter(node)
        except TemplateLimitError as exc:
            self.found.append((node, str(exc)))
            return _UNKNOWN
        except Exception:  # noqa: BLE001 - a constant that fails otherwise (1/0, 'a' - 1) is not this check's
            return _UNKNOWN
        for child in node.iter_child_nodes():
            self.fold(child)
        return _UNKNOWN

    def _arguments(self, node: Any) -> tuple[list[Any], dict[str, Any]] | None:
        args = [self.fold(arg) for arg in node.args]
        kwargs = {kw.key: self.fold(kw.value) for kw in node.kwargs}
        for extra in (node.dyn_args, node.dyn_kwargs):
            if extra is not None:
                self.fold(extra)
                return None
        if any(v is _UNKNOWN for v in (*args, *kwargs.values())):
            return None
        return args, kwargs

    def _call(self, node: Any) -> Any:
        from jinja2 import nodes  # noqa: PLC0415

        callee = node.node
        receiver = self.fold(callee.node) if type(callee) is nodes.Getattr else _UNKNOWN
        if type(callee) is not nodes.Getattr:
            self.fold(callee)
        arguments = self._arguments(node)
        if type(callee) is nodes.Getattr and isinstance(receiver, str) and callee.attr in ("format", "format_map"):
            args, kwargs = arguments or ([], {})  # unknown arguments: the widths the format string asks for
            if callee.attr == "format_map" and len(args) == 1 and isinstance(args[0], dict):
                kwargs, args = args[0], []
            check_format(receiver, tuple(args), kwargs)
            return _UNKNOWN
        if arguments is None:
            return _UNKNOWN
        args, kwargs = arguments
        if type(callee) is nodes.Name and callee.name in self.free:
            if callee.name == "range" and not kwargs:
                return check_range(tuple(args))
            if callee.name == "lipsum":
                check_lipsum(*args, **kwargs)
            return _UNKNOWN
        if type(callee) is nodes.Getattr and receiver is not _UNKNOWN:
            check_method(receiver, callee.attr, tuple(args), kwargs)
        return _UNKNOWN

    def _filter(self, node: Any) -> Any:
        value = self.fold(node.node) if node.node is not None else _UNKNOWN
        arguments = self._arguments(node)
        if value is _UNKNOWN or arguments is None or node.name not in self.filters:
            return _UNKNOWN
        args, kwargs = arguments
        check_filter(node.name, value, tuple(args), kwargs, self.weigher)
        return _UNKNOWN
