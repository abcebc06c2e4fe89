from __future__ import annotations

import pytest

from runner.calls import Usage
from runner.config.source import Loc, TemplateSrc
from runner.engine.execute import Output
from runner.errors import TemplateError
from runner.templates import Template, base_context, environment


def T(text: str) -> Template:
    return Template(TemplateSrc(text, Loc("f.yaml", 3, 5)))


class Shown:
    def __str__(self) -> str:
        return "str() of Shown"

    def __format__(self, spec: str) -> str:
        return "format() of Shown"


class Text(str):
    def __str__(self) -> str:
        return "str() of Text"


CONTEXTS = [
    {"vars": {"item": 3, "items": "mine", "none": None, "lst": [1, 2]}, "input": "in", "inputs": {"keys": "k"}},
    {"vars": {"item": "x"}, "prev": Output("c", "a", "n", Usage(1, 2)), "input": "", "inputs": {}},
    # str() is what Jinja prints, not format(); a str subclass prints as its __str__ says
    {"vars": {"item": Shown(), "lst": Text("t")}, "input": Text("i"), "inputs": {"keys": 1.5}},
    {"vars": ["not", "a", "dict"], "input": {"a": 1}, "inputs": {}},
]
TEMPLATES = [
    "plain text",
    "{{ input }}",
    "You are worker {{ vars.item }}.",
    "{{ vars.items }} {{ inputs.keys }}",  # keys before dict methods
    "{{ vars.none }}|{{ vars.lst }}",
    "{{ prev.content }}/{{ prev.usage.completion_tokens }}",
    "{{ vars.item }}{{ vars.item }}\n",
    "quotes ' \" and \\n, braces { } {x} {{ input }} \u00e9\U0001f600 tab\t",
    "{{ vars.lst }}",
]


@pytest.mark.parametrize("text", TEMPLATES)
@pytest.mark.parametrize("ctx", CONTEXTS, ids=["dicts", "objects", "str-of-values", "not-dicts"])
def test_fast_path_renders_exactly_what_jinja_renders(text: str, ctx: dict) -> None:
    template = T(text)
    try:
        expected = environment().from_string(text).render(ctx)
    except Exception as exc:  # noqa: BLE001
        with pytest.raises(TemplateError):
            template.render(base_context(**ctx))
        assert type(exc).__name__ == "UndefinedError"
        return
    assert template.render(base_context(**ctx)) == expected
    assert template.render(ctx) == expected  # a context without Jinja's globals works too


def test_undefined_is_an_error_with_the_location() -> None:
    with pytest.raises(TemplateError) as info:
        T("a {{ vars.nope }}").render(base_context(vars={}))
    assert str(info.value) == "f.yaml:3:5: template error: 'dict object' has no attribute 'nope'"


def test_sandbox_refuses_internals() -> None:
    with pytest.raises(TemplateError) as info:
        T("{{ input.__class__.__mro__ }}").render(base_context(input="x"))
    assert "unsafe operation refused by the sandbox" in str(info.value)


def test_globals_work_with_shared_contexts() -> None:
    assert T("{{ range(3) | join(',') }}").render(base_context()) == "0,1,2"


def test_evaluate_returns_values_not_text() -> None:
    assert T("{{ inputs.xs }}").evaluate(base_context(inputs={"xs": [1, 2]})) == [1, 2]
    assert T("{{ inputs.items }}").evaluate(base_context(inputs={"items": ["a"]})) == ["a"]
