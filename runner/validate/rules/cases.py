"""A ``switch`` on a structured field (issue 16, item 5): when ``on`` is one ``{{ expression }}`` that reads a field
whose schema lists its values (``enum``, ``const``, or ``type: boolean``), every case key must be one of them
(``switch-case``, an error at the key, with "did you mean"), and a switch without ``default`` should have a case
for each of them (``switch-uncovered``, a warning at ``cases:``).

Cases are compared as the run compares them (``runner/stages/switch.py``): with the text ``on`` renders, stripped.
A template writes a value as ``str()`` does, so an integer 2 is the case ``2`` (YAML's ``2:`` and ``"2":`` are
the same key), a boolean is ``True`` or ``False`` and null is ``None``: a case written ``true:`` never matches a
boolean, and is reported with the fix (write ``True:``, or ``on: "{{ ... | lower }}"`` to keep ``true:``).
Filters that only change the text's case or whitespace (``string``, ``trim``, ``lower``, ``upper``) are applied
to the values; any other expression is not checked, since what it renders is not known.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from runner.diagnostics import Diagnostic
from runner.stages.switch import SwitchStage
from runner.validate.rules import jinja
from runner.validate.rules.common import diag
from runner.validate.rules.dataflow import DataFlowChecker, TemplateFlow, Value
from runner.validate.rules.names import single_expression
from runner.validate.rules.schemas import resolve
from runner.validate.rules.scope import Site, Walk
from runner.validate.rules.source import Source
from runner.workflow.records import Workflow

# Filters whose effect on a rendered value is known (Jinja's own: do_string, do_trim, do_lower, do_upper).
TEXT_FILTERS: dict[str, Callable[[str], str]] = {
    "string": str,
    "trim": str.strip,
    "lower": str.lower,
    "upper": str.upper,
}


def check_switch_cases(wf: Workflow, source: Source, walk: Walk) -> list[Diagnostic]:
    """Every switch whose ``on`` reads a field with listed values: its cases against those values."""
    sites = [s for s in walk.sites if s.kind == "on" and isinstance(s.stage, SwitchStage)]
    if not sites:
        return []  # no switch: most files, without the data-flow pass below
    checker = DataFlowChecker(wf, source, walk)
    checker.run()  # types the fan-outs' items, which a switch inside one may read (its problems are data-flow's)
    if not checker.stages:
        return []
    out: list[Diagnostic] = []
    paths = {id(stage): path for stage, path in walk.order}
    for site in sites:
        stage = site.stage
        assert isinstance(stage, SwitchStage)
        found = _values_on_gives(checker, site)
        if found is None:
            continue
        expr, values, owner = found
        out.extend(_check(checker, stage, paths.get(id(stage), ()), expr, values, owner))
    return out


def _values_on_gives(checker: DataFlowChecker, site: Site) -> tuple[str, dict[str, Any], str] | None:
    """``(how on is written, {rendered text: JSON value}, the stage whose schema says so)``, or None when ``on``
    is not one expression reading a field with listed values."""
    from jinja2 import nodes  # noqa: PLC0415

    ast = jinja.parse_ast(site.src.text)
    node = single_expression(ast) if ast is not None else None
    if node is None or any(isinstance(part, nodes.TemplateData) and part.data.strip() for part in ast.body[0].nodes):
        return None  # text around the expression: the rendered value is not the field's alone
    filters: list[str] = []
    while type(node) is nodes.Filter:
        if node.name not in TEXT_FILTERS or node.args or node.kwargs or node.dyn_args or node.dyn_kwargs:
            return None
        filters.append(node.name)
        node = node.node
    value = TemplateFlow(checker.stages, checker.bindings(site)).typed(node, {}, frozenset())
    if not isinstance(value, Value):
        return None
    listed = _listed_values(value.schema, value.root)
    if listed is None:
        return None
    texts: dict[str, Any] = {}
    for item in listed:
        text = str(item)  # what the template writes (runner/sandbox/environment.py _finalize)
        for name in reversed(filters):  # innermost first
            text = TEXT_FILTERS[name](text)
        texts.setdefault(text.strip(), item)  # the run strips what `on` renders
    written = " | ".join((value.expr, *reversed(filters)))
    return written, texts, value.stage


def _listed_values(schema: Any, root: Any) -> list[Any] | None:
    """The values a schema allows, when it lists them: its ``enum``, its ``const``, or true and false."""
    schema = resolve(schema, root)
    if not isinstance(schema, Mapping):
        return None
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return list(schema["enum"])
    if "const" in schema:
        return [schema["const"]]
    if schema.get("type") == "boolean":
        return [True, False]
    return None


def _check(
    checker: DataFlowChecker, stage: SwitchStage, path: tuple[Any, ...], expr: str, texts: dict[str, Any], owner: str
) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    source, file = checker.source, checker.wf.file
    listing = _listing(list(texts))
    # A boolean or null is written by the template as Python spells it, not as JSON does: say so where it matters.
    spelled = " (as a template writes them)" if any(v is None or isinstance(v, bool) for v in texts.values()) else ""
    one_of = "one of " if len(texts) > 2 else ""
    cases = [key for key, _ in stage.cases]
    for key in cases:
        if key in texts:
            continue
        out.append(
            diag(
                file,
                source.key((*path, "switch", "cases", key), stage.loc),
                "switch-case",
                f"case '{key}' of switch '{stage.id}' never runs: on gives {expr}, which is {one_of}{listing}"
                f"{spelled} in the output schema of stage '{owner}'",
                _hint(key, texts, expr),
            )
        )
    missing = [text for text in texts if text not in cases]
    if missing and stage.default is None:
        one = len(missing) == 1
        what = "a value" if one else "values"
        out.append(
            diag(
                file,
                source.key((*path, "switch", "cases"), stage.loc),
                "switch-uncovered",
                f"switch '{stage.id}' has no case for {_listing(missing, 'and')}, {what} of {expr}, and no default: "
                f"for {'it' if one else 'those'} no stage runs",
                "add a case for each value, or a default: [stages] that runs for the rest",
            )
        )
    return out


def _hint(key: str, texts: dict[str, Any], expr: str) -> str:
    same = [text for text in texts if text.lower() == key.lower()]
    if same:
        value = texts[same[0]]
        if isinstance(value, bool) and " | " not in expr:  # on has no filter yet: lower-casing it is the other fix
            return (
                f"did you mean '{same[0]}'? A template writes a boolean as True or False; to write the cases in "
                f'lower case, lower what on gives: on: "{{{{ {expr} | lower }}}}"'
            )
        return f"did you mean '{same[0]}'?"
    import difflib  # noqa: PLC0415 - only for a message

    close = difflib.get_close_matches(key, list(texts), n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    return f"write one of {_listing(list(texts))} as the case"


def _listing(texts: list[str], word: str = "or") -> str:
    quoted = [f"'{text}'" for text in texts]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} {word} {quoted[-1]}"
