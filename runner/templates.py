"""Jinja2 templates rendered in the sandbox, with undefined names as errors located in the YAML file.

Templates see only what the engine passes (``inputs``, ``stages``, ``prev``, ``vars``, ``agent``, ``run``,
``input``), never the environment. Text without any ``{{``/``{%``/``{#`` is returned as is, without Jinja.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import cache, lru_cache
from typing import Any

from runner.config.source import TemplateSrc
from runner.errors import TemplateError
from runner.sandbox.fields import FAST_ATTRS

_GLOBALS: dict[str, Any] = {}
"""Jinja's globals (``range``, ``namespace``, ...) once :func:`environment` exists; empty until then."""


@cache
def environment() -> Any:
    """The one sandbox templates compile and render in, at run time and in the validator (runner/sandbox/)."""
    from jinja2 import StrictUndefined  # noqa: PLC0415 - imported on first use: validate's cold start

    from runner.sandbox.environment import Environment  # noqa: PLC0415

    env = Environment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
    _GLOBALS.update(env.globals)
    return env


def template_globals() -> dict[str, Any]:
    """Jinja's globals. Contexts built on :func:`base_context` carry them, which lets :meth:`Template.render`
    skip Jinja's per-render merge of globals and variables: that merge (a ChainMap walk and a dict copy) was
    two thirds of the cost of rendering a short template."""
    environment()
    return _GLOBALS


def base_context(**values: Any) -> dict[str, Any]:
    """A render context: ``values`` and, once any template needed Jinja, Jinja's globals. Templates are
    compiled before a run renders any, so a run that has a Jinja template gets them in every context, and
    a run whose templates are all text (rendered without Jinja) never imports jinja2 for them."""
    return {**_GLOBALS, **values} if _GLOBALS else values


def is_constant(text: str) -> bool:
    return "{{" not in text and "{%" not in text and "{#" not in text


_OUTPUT = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*\}\}")
_NOT_NAMES = frozenset({"true", "false", "none", "True", "False", "None", "and", "or", "not", "in", "is", "if", "else"})
"""Words Jinja reads as constants or operators, never as a name or an attribute here: such a template is not
simple (Jinja parses it)."""


def simple_parts(text: str) -> tuple[str | tuple[str, ...], ...] | None:
    """For a template whose only Jinja is ``{{ name }}`` / ``{{ name.attr.attr }}`` outputs (most prompts): its
    parts as Jinja's parser gives them, text and name paths, read without Jinja; None for any other template.

    Jinja's lexer reads such text the same way (no other ``{{``, ``{%`` or ``{#`` in it; whitespace inside the
    braces, newlines included, is whitespace to both), so a run and ``runner validate`` of a workflow whose
    templates are all like this never import jinja2 (25 ms of a run). ``tests/test_templates_simple.py``
    compares the two readings over generated templates."""
    parts: list[str | tuple[str, ...]] = []
    pos = 0
    for match in _OUTPUT.finditer(text):
        literal = text[pos : match.start()]
        if not is_constant(literal) or literal.endswith("{"):  # "{{{ x }}": Jinja's output starts a brace earlier
            return None
        path = tuple(match.group(1).split("."))
        if _NOT_NAMES.intersection(path):
            return None
        if literal:
            parts.append(literal)
        parts.append(path)
        pos = match.end()
    rest = text[pos:]
    if not parts or not is_constant(rest):
        return None
    if rest:
        parts.append(rest)
    return tuple(parts)


def _fast_parts(text: str) -> tuple[str | tuple[str, ...], ...] | None:
    """For a template made only of text and ``{{ name.attr.attr }}`` outputs, the parts to join; else None.

    Such templates (most prompts) render without Jinja's context machinery: a dict lookup per part. Any
    lookup that is not a plain dict key or a registered data field falls back to Jinja, so the output
    and the errors are Jinja's own.
    """
    from jinja2 import nodes  # noqa: PLC0415

    tree = environment().parse(text)
    parts: list[str | tuple[str, ...]] = []
    for stmt in tree.body:
        if not isinstance(stmt, nodes.Output):
            return None
        for node in stmt.nodes:
            if isinstance(node, nodes.TemplateData):
                parts.append(node.data)
                continue
            path: list[str] = []
            while isinstance(node, nodes.Getattr):
                path.append(node.attr)
                node = node.node
            if not isinstance(node, nodes.Name) or node.ctx != "load":
                return None
            path.append(node.name)
            parts.append(tuple(reversed(path)))
    return tuple(parts)


_MISSING = object()


def _lookup(context: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    """``context[path[0]].path[1]...`` through plain dicts and registered data fields; else ``_MISSING``."""
    value = context.get(path[0], _MISSING)
    if value is _MISSING:
        return _MISSING
    for attr in path[1:]:
        kind = type(value)
        if kind is dict:
            value = value.get(attr, _MISSING)
            if value is _MISSING:
                return _MISSING
        elif attr in FAST_ATTRS.get(kind, ()):
            value = getattr(value, attr)
        else:
            return _MISSING
    return value


def _compile_fast(
    parts: tuple[str | tuple[str, ...], ...], slow: Callable[[Mapping[str, Any]], str]
) -> Callable[[Mapping[str, Any]], str]:
    """A Python function rendering ``parts``: ``name`` and ``name.key`` lookups as subscripts, joined by an
    f-string (``{value!s}``: ``str()``, as Jinja converts).

    The generated source holds only ``repr``s of Jinja-parsed identifiers; the template's text goes into the
    f-string as constants of its syntax tree, never as source, so running it is safe. A missing key, or
    anything but a plain dict on the way, hands the render to ``slow`` (Jinja), so the output and the
    errors are Jinja's own.
    """
    import ast  # noqa: PLC0415 - only when a template is compiled

    lines = ["def render(ctx):", "    try:"]
    pieces: list[ast.expr] = []
    for i, part in enumerate(parts):
        if isinstance(part, str):
            pieces.append(ast.Constant(part))
            continue
        name = f"v{i}"
        if len(part) <= 2:
            lines.append(f"        {name} = ctx[{part[0]!r}]")
            if len(part) == 2:
                lines += [
                    f"        if type({name}) is not dict: return slow(ctx)",
                    f"        {name} = {name}[{part[1]!r}]",
                ]
        else:
            lines += [f"        {name} = lookup(ctx, {part!r})", f"        if {name} is MISSING: return slow(ctx)"]
        pieces.append(ast.FormattedValue(ast.Name(name, ast.Load()), conversion=ord("s"), format_spec=None))
    lines += ["    except KeyError:", "        return slow(ctx)", "    return TEXT"]
    module = ast.parse("\n".join(lines))
    returned = module.body[0].body[-1]  # type: ignore[attr-defined]
    returned.value = ast.JoinedStr(pieces)
    code = compile(ast.fix_missing_locations(module), "<fast template>", "exec")
    namespace: dict[str, Any] = {"MISSING": _MISSING, "lookup": _lookup, "slow": slow}
    exec(code, namespace)  # noqa: S102 - identifiers from repr()s and text as constants, see above
    render: Callable[[Mapping[str, Any]], str] = namespace["render"]
    return render


def _constant(text: str) -> Callable[[Mapping[str, Any]], str]:
    def render(context: Mapping[str, Any]) -> str:
        return text

    return render


class Template:
    """A compiled template; ``render(context)`` raises :class:`TemplateError` naming the file position.

    ``render`` is set per template to the cheapest way to render it: the text itself for constant text, a
    generated function for text with ``{{ name.key }}`` outputs (falling back to Jinja when a lookup is not
    a plain one), Jinja otherwise. It is an attribute rather than a method so that the hot path makes one
    call per render.
    """

    __slots__ = ("src", "_template", "_constant", "_root", "_blocks", "_name", "render")

    render: Callable[[Mapping[str, Any]], str]

    def __init__(self, src: TemplateSrc) -> None:
        self.src = src
        self._constant: str | None = src.text if is_constant(src.text) else None
        self._template: Any = None
        if self._constant is not None:  # no Jinja at all: a run whose templates are all text never imports it
            self.render = _constant(self._constant)
            return
        simple = simple_parts(src.text)
        if simple is not None:  # read without Jinja, which compiles it only if a render needs it (a slow lookup)
            self.render = _compile_fast(simple, self._render_jinja)
            return
        self._compile()
        parts = _fast_parts(src.text)
        self.render = _compile_fast(parts, self._render_jinja) if parts is not None else self._render_jinja

    def _compile(self) -> None:
        """Compile the template with Jinja (a syntax error is a located :class:`TemplateError`)."""
        from jinja2 import TemplateSyntaxError  # noqa: PLC0415

        src = self.src
        try:
            self._template = environment().from_string(src.text)
        except TemplateSyntaxError as exc:
            raise TemplateError(f"{src.loc_of_line(exc.lineno or 1)}: template syntax error: {exc.message}") from None
        except RecursionError:  # Jinja's parser recurses once per nesting level
            raise TemplateError(f"{src.loc}: template syntax error: {TOO_DEEP}") from None
        except ValueError:  # Jinja's lexer reads numbers with int(), which refuses thousands of digits
            raise TemplateError(f"{src.loc}: template syntax error: {too_long_number()}") from None
        self._root = self._template.root_render_func
        self._blocks = self._template.blocks
        self._name = self._template.name

    def _render_jinja(self, context: Mapping[str, Any]) -> str:
        """Render with ``context``, which should come from :func:`base_context` (else it is merged here)."""
        from jinja2.runtime import new_context  # noqa: PLC0415 - cached module lookup after the first call

        if self._template is None:  # a simple template, read without Jinja until now
            self._compile()
        variables = context if "range" in context and isinstance(context, dict) else base_context(**context)
        try:
            out: str = "".join(self._root(new_context(environment(), self._name, self._blocks, variables, True)))
        except Exception as exc:  # noqa: BLE001 - any failure inside a user's template is the user's
            raise TemplateError(f"{self._where(exc)}: template error: {_describe(exc)}") from None
        return out

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        """The value of a template that is a single ``{{ expression }}`` (for ``for_each``), else its text."""
        text = self.src.text.strip()
        if self._constant is None and text.startswith("{{") and text.endswith("}}") and text.count("{{") == 1:
            expression, reads_only = _expression(text[2:-2])
            try:
                value = expression(**context)
                if not reads_only:  # the value leaves the sandbox: whatever prints it must not hang
                    from runner.sandbox.limits import Weigher  # noqa: PLC0415

                    Weigher(FAST_ATTRS).check(value, "the text of this value")
            except Exception as exc:  # noqa: BLE001 - as in render
                raise TemplateError(f"{self._where(exc)}: template error: {_describe(exc)}") from None
            return value
        return self.render(context)

    def _where(self, exc: BaseException) -> str:
        """The file position of the template line that raised ``exc``: the innermost frame of Jinja's generated
        code on the traceback, mapped back to the template's line as Jinja's own traceback rewriting does."""
        lineno = 1
        tb = exc.__traceback__
        while tb is not None:
            template = tb.tb_frame.f_globals.get("__jinja_template__")
            if template is not None:
                lineno = template.get_corresponding_lineno(tb.tb_lineno)
            tb = tb.tb_next
        return str(self.src.loc_of_line(lineno))


TOO_DEEP = "the template nests too deeply (brackets or blocks inside each other)"


def too_long_number() -> str:
    import sys  # noqa: PLC0415

    return f"a number with more than {sys.get_int_max_str_digits():,} digits, more than Python reads"


@lru_cache(maxsize=4096)
def template_for(src: TemplateSrc) -> Template:
    """The compiled template of ``src``, made once per process: compiling costs about a millisecond, which
    things made per run (providers, a scripted model's tool arguments) would otherwise pay inside the run.
    Templates never change once made, so sharing them is safe."""
    return Template(src)


@cache
def _expression(source: str) -> tuple[Any, bool]:
    """The compiled expression, and whether its value can hold no value twice that the template put there
    (then it needs no weighing when it leaves the sandbox, see :func:`_may_repeat`)."""
    expression = environment().compile_expression(source, undefined_to_none=False)
    return expression, not _may_repeat(_expression_node(source))


def _may_repeat(node: Any) -> bool:
    """Whether an expression may build a value holding one object many times (whose text is then that many
    times longer: ``[x, x]`` nested 60 deep prints 2**60 copies). Only literals, ``dict()``, ``namespace()``,
    ``fromkeys`` and the fill values of ``batch``, ``slice`` and ``map`` put one object in several places;
    ``+`` and ``*`` are bounded where they run. ``range(n) | list`` or ``inputs.items`` cannot."""
    from jinja2 import nodes  # noqa: PLC0415

    for inner in node.find_all((nodes.List, nodes.Tuple, nodes.Dict, nodes.Call, nodes.Filter)):
        if isinstance(inner, nodes.List | nodes.Tuple | nodes.Dict):
            return True
        if isinstance(inner, nodes.Filter):
            if inner.name in ("batch", "slice", "map") and (inner.args or inner.kwargs):
                return True
            continue
        callee = inner.node
        if isinstance(callee, nodes.Name) and callee.name != "range":
            return True
        if isinstance(callee, nodes.Getattr) and callee.attr == "fromkeys":
            return True
    return isinstance(node, nodes.List | nodes.Tuple | nodes.Dict)


def _expression_node(source: str) -> Any:
    from jinja2.parser import Parser  # noqa: PLC0415

    return Parser(environment(), source, state="variable").parse_expression()


def _describe(exc: BaseException) -> str:
    from jinja2 import UndefinedError  # noqa: PLC0415
    from jinja2.exceptions import SecurityError  # noqa: PLC0415

    from runner.sandbox.limits import TemplateLimitError  # noqa: PLC0415

    if isinstance(exc, UndefinedError):
        return f"{exc.message}"
    if isinstance(exc, SecurityError):
        return f"unsafe operation refused by the sandbox: {exc}"
    if isinstance(exc, TemplateLimitError):
        return str(exc)
    if isinstance(exc, RecursionError):
        return "the template recursed too deeply (a macro or a recursive loop that calls itself without end?)"
    return f"{type(exc).__name__}: {exc}"
