"""What a Python module's top level binds, read from its source with :mod:`ast`, never run.

A name counts as defined when the module's top level binds it: ``def``, ``async def``, ``class``, an
assignment (also ``for`` targets, ``with ... as``, ``:=``, ``match`` captures), an import, or a ``global``
statement in a function. What a module does at run time cannot be known without running it, so a module
that may define names dynamically is trusted, never flagged: a module-level ``__getattr__``, a star import,
``globals()``, ``sys.modules[...]``, or ``exec``/``vars()``/``locals()`` at its top level. ``Class.method``
is known inside a class with no base classes, decorators or metaclass (anything else may inherit or add the
method). ``runner/validate/rules/imports.py`` finds the file and judges the names.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import os
from dataclasses import dataclass

_MAX_SOURCE_BYTES = 8 << 20  # a larger file is trusted rather than parsed


@dataclass(frozen=True, slots=True)
class Module:
    """What the checks need of one module file: the names its top level binds, or why it is not known."""

    path: str | None  # the file, None for a module without a file (built in, namespace package)
    names: frozenset[str] | None  # None: the names cannot be known statically (dynamic, or no source)
    classes: dict[str, frozenset[str] | None]  # top-level classes -> their own names (None: may have more)
    error: str | None = None  # a syntax error: the import fails
    package: list[str] | None = None  # a package's folders (its submodules' search path)
    kind: str = "source"  # source | built-in | namespace (a folder without __init__.py) | opaque
    plain: dict[str, str] = dataclasses.field(
        default_factory=dict
    )  # names bound only to a module or a literal -> which
    class_plain: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)  # the same for each class's names


def read_source(path: str, size: int, package: list[str] | None) -> Module:
    if size > _MAX_SOURCE_BYTES:
        return Module(path, None, {}, package=package)
    try:
        with open(path, "rb") as f:
            text = importlib.util.decode_source(f.read())
        tree = ast.parse(text, path)
    except SyntaxError as exc:
        where = f"{os.path.basename(path)}:{exc.lineno}" if exc.lineno else os.path.basename(path)
        return Module(path, None, {}, f"SyntaxError at {where}: {exc.msg}", package)
    except (OSError, UnicodeDecodeError, ValueError):
        return Module(path, None, {}, package=package)
    bound, dynamic = _bound_names(tree.body)
    names = set(bound)
    for node in ast.walk(tree):
        if isinstance(node, ast.Global):
            names.update(node.names)
            for name in node.names:
                bound.setdefault(name, set()).add("other")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "globals":
            dynamic = True
        elif (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "modules"
            and isinstance(node.value.value, ast.Name)
            and node.value.value.id == "sys"
        ):
            dynamic = True
    classes = {node.name: _class_names(node) for node in _top_level(tree.body) if isinstance(node, ast.ClassDef)}
    plain = {name: _plain(kinds) for name, kinds in bound.items() if _plain(kinds)}
    class_plain = {node.name: _class_plain(node) for node in _top_level(tree.body) if isinstance(node, ast.ClassDef)}
    return Module(
        path, None if dynamic else frozenset(names), classes, package=package, plain=plain, class_plain=class_plain
    )


def _plain(kinds: set[str]) -> str:
    """What a name is when every binding makes it something that cannot be called: 'a module', 'a constant'."""
    if kinds and kinds <= {"module", "constant"}:
        return "a module" if kinds == {"module"} else "a constant" if kinds == {"constant"} else "a module or constant"
    return ""


def _top_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """The statements that run at a module's (or class's) top level: inside if/try/with/for/while/match
    blocks too, not inside functions and classes."""
    out: list[ast.stmt] = []
    stack = list(reversed(body))
    while stack:
        node = stack.pop()
        out.append(node)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        inner: list[ast.stmt] = []
        for field in ("body", "orelse", "finalbody"):
            inner.extend(getattr(node, field, ()) or ())
        for handler in getattr(node, "handlers", ()) or ():
            inner.extend(handler.body)
        for case in getattr(node, "cases", ()) or ():
            inner.extend(case.body)
        stack.extend(reversed(inner))
    return out


_LITERALS = (ast.Constant, ast.List, ast.Tuple, ast.Dict, ast.Set, ast.JoinedStr, ast.ListComp, ast.DictComp)


def _bound_names(body: list[ast.stmt]) -> tuple[dict[str, set[str]], bool]:
    """The names a block's top level binds, each with what binds it (``module``: ``import x``; ``constant``:
    a literal; ``other``: anything that may be callable), and whether it may bind others at run time."""
    names: dict[str, set[str]] = {}
    dynamic = False

    def bind(name: str, kind: str = "other") -> None:
        names.setdefault(name, set()).add(kind)

    for node in _top_level(body):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bind(node.name)
            if node.name == "__getattr__" and not isinstance(node, ast.ClassDef):
                dynamic = True
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                bind(alias.asname or alias.name.split(".")[0], "module")
            continue
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name == "*":
                    dynamic = True
                else:
                    bind(alias.asname or alias.name)
            continue
        if isinstance(node, ast.AnnAssign) and node.value is None:
            continue  # `x: int` alone binds nothing
        # `x = 3`, `x: list = []`: a value that cannot be called (not `a, b = f, g`: those are f and g)
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        literal = (
            isinstance(node, ast.Assign | ast.AnnAssign)
            and isinstance(node.value, _LITERALS)
            and all(isinstance(t, ast.Name) for t in targets)
        )
        for part in _own_expressions(node):
            for inner in ast.walk(part):
                if isinstance(inner, ast.Name) and isinstance(inner.ctx, ast.Store):
                    bind(inner.id, "constant" if literal else "other")
                elif isinstance(inner, ast.MatchAs | ast.MatchStar) and inner.name:
                    bind(inner.name)
                elif isinstance(inner, ast.MatchMapping) and inner.rest:
                    bind(inner.rest)
                elif (
                    isinstance(inner, ast.Call)
                    and isinstance(inner.func, ast.Name)
                    and inner.func.id in ("exec", "vars", "locals")
                ):
                    dynamic = True
        if isinstance(node, ast.Try | ast.TryStar):
            for handler in node.handlers:
                if handler.name:
                    bind(handler.name)
    return names, dynamic


def _own_expressions(node: ast.stmt) -> list[ast.AST]:
    """The parts of a statement that are not nested statements (those are walked on their own)."""
    out: list[ast.AST] = []
    for field, value in ast.iter_fields(node):
        if field in ("body", "orelse", "finalbody", "handlers", "cases"):
            if field == "cases":
                out.extend(case.pattern for case in value)
                out.extend(case.guard for case in value if case.guard is not None)
            continue
        if isinstance(value, list):
            out.extend(v for v in value if isinstance(v, ast.AST))
        elif isinstance(value, ast.AST):
            out.append(value)
    return out


def _class_names(node: ast.ClassDef) -> frozenset[str] | None:
    """The names a class body binds; None when the class may have more (bases, decorators, a metaclass)."""
    if node.bases or node.keywords or node.decorator_list:
        return None
    names, dynamic = _bound_names(node.body)
    return None if dynamic else frozenset(names)


def _class_plain(node: ast.ClassDef) -> dict[str, str]:
    names, _ = _bound_names(node.body)
    return {name: _plain(kinds) for name, kinds in names.items() if _plain(kinds)}
