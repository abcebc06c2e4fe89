"""What a template reads, from one walk of its AST: the names it never assigns, the ``name.key`` and
``name.key.attr`` chains on them, which of those it guards or tests, the tags that load other templates, and
a cheap first look for anything the sandbox may refuse (``runner/validate/rules/hazards.py`` then looks
closely). The AST comes from ``runner/validate/rules/jinja.py``; the rules of ``templating.py`` judge what
is found here against the template's run-time context.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runner.templates import environment, simple_parts


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
                hazardous = hazardous or node.attr[:1] == "_" or node.attr in INTERNAL_ATTRIBUTES
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
            hazardous = hazardous or loops > 1 or targets_loop(node.target)
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


def simple_names(text: str) -> tuple[Names, tuple[str, str] | None] | None:
    """For a template of ``{{ name.key }}`` outputs only (:func:`runner.templates.simple_parts`): what
    :func:`analyse` would find in its AST, and the ``name.key`` of its one expression when it has exactly one (as
    :func:`ref_of` of :func:`single_expression`); read without Jinja. None for any other template, and for one
    reading an attribute the sandbox may refuse (``_x``, internal names), which Jinja's reading then judges."""
    parts = simple_parts(text)
    if parts is None:
        return None
    paths = [part for part in parts if isinstance(part, tuple)]
    if any(attr[:1] == "_" or attr in INTERNAL_ATTRIBUTES for path in paths for attr in path[1:]):
        return None
    names = Names(
        frozenset(path[0] for path in paths),
        frozenset((path[0], path[1]) for path in paths if len(path) >= 2),
        frozenset((path[0], path[1], path[2]) for path in paths if len(path) >= 3),
        frozenset(),
        frozenset(),
    )
    whole = (paths[0][0], paths[0][1]) if len(paths) == 1 and len(paths[0]) == 2 else None
    return names, whole


def targets_loop(target: Any) -> bool:
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
# Attributes the sandbox refuses besides those starting with '_' (jinja2.sandbox.is_internal_attribute), and
# the Python 2 names of function internals that escape recipes still try: none of them is data. The one list:
# runner/validate/rules/hazards.py reports them, the cheap first look of analyse() needs it here.
INTERNAL_ATTRIBUTES = frozenset(
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


def single_expression(ast: Any) -> Any:
    """The one expression of a template made of a single ``{{ expression }}`` (and text), else None."""
    from jinja2 import nodes  # noqa: PLC0415

    if len(ast.body) != 1 or not isinstance(ast.body[0], nodes.Output):
        return None
    exprs = [n for n in ast.body[0].nodes if not isinstance(n, nodes.TemplateData)]
    return exprs[0] if len(exprs) == 1 else None


def ref_of(node: Any) -> tuple[str, str] | None:
    """``('stages', 'x')`` for ``stages.x`` or ``stages['x']``; None for any other expression."""
    from jinja2 import nodes  # noqa: PLC0415

    if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name):
        return node.node.name, node.attr
    if (
        isinstance(node, nodes.Getitem)
        and isinstance(node.node, nodes.Name)
        and isinstance(node.arg, nodes.Const)
        and isinstance(node.arg.value, str)
    ):
        return node.node.name, node.arg.value
    return None
