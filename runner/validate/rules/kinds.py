"""What kind of value a template expression gives, as far as the file shows, and what each kind has.

Two checks of runner/validate/rules/templating.py read these: ``for_each`` must give a list (a literal, a
filter's result or ``prev`` may show that it cannot), and an attribute read on a stage's output must exist
on what that output is there (None, text, a list of outputs, or one message: scope.output_kind says which).
"""

from __future__ import annotations

from typing import Any

from runner.stages.workflow import CHILD_FIELDS
from runner.validate.rules.common import suggest

FOR_EACH_HINT = "give a list: an input of type array, a fan-out's outputs, or e.g. \"{{ inputs.text.split(',') }}\""
# Filters whose result is a generator (the engine wants a sequence), text, or a number.
_LAZY_FILTERS = frozenset(
    {"map", "select", "reject", "selectattr", "rejectattr", "batch", "slice", "reverse", "unique"}
)
_TEXT_FILTERS = frozenset(
    {
        "join",
        "string",
        "upper",
        "lower",
        "title",
        "capitalize",
        "trim",
        "truncate",
        "replace",
        "format",
        "center",
        "indent",
        "wordwrap",
        "striptags",
        "tojson",
        "urlencode",
        "e",
        "escape",
    }
)
_NUMBER_FILTERS = frozenset({"length", "count", "int", "float", "sum", "abs", "round", "wordcount"})
_PREV_NOT_A_LIST = {
    "none": "None (no stage runs before it)",
    "text": "text (prev is the fan-out's input here)",
    "loop-input": "text in the first iteration (prev is the loop's input there)",
    "message": "one message (prev is the previous agent's output)",
}


def expression_kind(node: Any, prev: str = "any") -> tuple[str, str] | None:
    """What an expression gives, from its shape alone, when that is knowably not a list: (description, hint).
    ``prev``: the kind of ``prev`` where the expression is read (see scope.output_kind)."""
    from jinja2 import nodes  # noqa: PLC0415

    if isinstance(node, nodes.List | nodes.Tuple):
        return None
    if isinstance(node, nodes.Const):
        if isinstance(node.value, str):
            return "text", FOR_EACH_HINT
        return f"{type(node.value).__name__} {node.value!r}", FOR_EACH_HINT
    if isinstance(node, nodes.Dict):
        return "a mapping", FOR_EACH_HINT
    if isinstance(node, nodes.Concat):
        return "text", FOR_EACH_HINT
    if isinstance(node, nodes.Filter) and node.name in _LAZY_FILTERS:
        return f"a generator (the '{node.name}' filter is lazy)", "add '| list' at the end"
    if isinstance(node, nodes.Filter) and node.name in _TEXT_FILTERS:
        return f"text (the '{node.name}' filter gives text)", FOR_EACH_HINT
    if isinstance(node, nodes.Filter) and node.name in _NUMBER_FILTERS:
        return f"a number (the '{node.name}' filter gives a number)", FOR_EACH_HINT
    if isinstance(node, nodes.Name) and node.name == "prev" and prev in _PREV_NOT_A_LIST:
        return _PREV_NOT_A_LIST[prev], FOR_EACH_HINT
    return None


# What templates can read on a stage's output (runner/stages/base.py Output; a test keeps them in step).
MESSAGE_FIELDS = ("content", "data", "error", "name", "node", "usage")
ROUTED_FIELDS = ("case", "output")  # a switch's output (runner/stages/base.py Routed)
_TEXT_ATTRS = frozenset(a for a in dir(str) if not a.startswith("_"))
_LIST_ATTRS = frozenset(a for a in dir(list) if not a.startswith("_"))


def attribute_problem(kind: str, expr: str, attr: str, where: str = "") -> tuple[str, str] | None:
    """(message, hint) when ``expr.attr`` cannot exist on a value of this kind (see scope.output_kind)."""
    loop = f"loop over it: {{% for out in {expr} %}}{{{{ out.content }}}}{{% endfor %}}"
    if kind == "none":
        return (
            f"{expr}.{attr}: {expr} is None in {where} (no stage runs before it)",
            "give the stage an 'input', or read 'inputs'",
        )
    if kind == "text" and attr not in _TEXT_ATTRS:
        return (
            f"{expr}.{attr}: {expr} is text in {where} (the fan-out's input), not a message",
            f"use '{{{{ {expr} }}}}' for the text",
        )
    if kind == "list" and attr not in _LIST_ATTRS:
        return f"{expr}.{attr}: {expr} is a list (a fan-out's outputs, one per branch), not a message", loop
    if kind == "loop-input" and attr not in _TEXT_ATTRS:
        return (
            f"{expr}.{attr}: {expr} is text in {where} in the first iteration (the loop's input), not a message",
            f"use '{{{{ {expr} }}}}' for the text, or loop.previous.<id>.{attr} for the previous iteration's "
            "(behind {% if loop.previous %})",
        )
    if kind == "iterations" and attr not in _LIST_ATTRS:
        return (
            f"{expr}.{attr}: {expr} is a list (a loop's iterations, each its stages' outputs by id), not a message",
            f"read the last iteration's stage by its own id (stages.<id>), or index it: {expr}[-1].<id>.content",
        )
    if kind == "routed" and attr not in ROUTED_FIELDS:
        hint = (
            f"read {expr}.output.{attr}: the output of the case that ran"
            if attr in MESSAGE_FIELDS
            else f"a switch's output has: {', '.join(ROUTED_FIELDS)}"
        )
        return f"{expr}.{attr}: {expr} is a switch's outcome, not a message", hint
    if kind == "workflow" and attr not in CHILD_FIELDS:
        close = suggest(attr, CHILD_FIELDS, "fields")
        hint = close if close.startswith("did you mean") else f"a sub-workflow's output has: {', '.join(CHILD_FIELDS)}"
        return f"{expr}.{attr}: a sub-workflow's output has no '{attr}'", hint
    if kind == "message" and attr not in MESSAGE_FIELDS:
        close = suggest(attr, MESSAGE_FIELDS, "fields")
        hint = close if close.startswith("did you mean") else f"a message has: {', '.join(MESSAGE_FIELDS)}"
        return f"{expr}.{attr}: a stage's output has no '{attr}'", hint
    return None
