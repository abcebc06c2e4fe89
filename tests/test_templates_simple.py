"""Templates of ``{{ name.key }}`` outputs only are read without Jinja (runner/templates.py ``simple_parts``,
runner/validate/rules/names.py ``simple_names``): a run and ``runner validate`` of a workflow whose templates are
all like that never import jinja2 (issue 14's start-up). The reading must be Jinja's own: compared here with
Jinja's parser, its names analysis and its renders over generated templates, simple and nearly simple."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from runner.config.source import Loc, TemplateSrc
from runner.templates import Template, _fast_parts, base_context, environment, simple_parts
from runner.validate.rules.names import analyse, ref_of, simple_names, single_expression
from tests.conftest import ROOT

PIECES = [
    "Write about ",
    "{{ inputs.topic }}",
    "{{inputs.topic}}",
    "{{\n  stages.plan.content\n}}",
    "{{ vars.item }}",
    "{{ a.b.c.d }}",
    "{{ x }}",
    " and ",
    "\n",
    "{",
    "}",
    "}}",
    "{ {",
    "} }",
    "{x}",
    "%}",
    "#}",
    "{{ true }}",
    "{{ none }}",
    "{{ a.if }}",
    "{{- a.b }}",
    "{{ a.b -}}",
    "{{ a.b | upper }}",
    "{% if a %}x{% endif %}",
    "{# note #}",
    "{{ a['b'] }}",
    "{{ a.0 }}",
    "{{ a._b }}",
    "{{ é.b }}",
    "{{ a.b }}{{ c.d }}",
    "\t",
    "{{\ta.b\t}}",
    "{{ a. b }}",
    "{{ a .b }}",
    "{{}}",
    "{{ }}",
    "{{ a.b }",
    "{ { a.b }}",
]


def generated(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(PIECES) for _ in range(rng.randint(1, 6))) for _ in range(n)]


@pytest.mark.parametrize("text", [*PIECES, *generated(1500, 14)])
def test_a_simple_reading_is_jinjas_reading(text: str) -> None:
    parts = simple_parts(text)
    if parts is None:
        return  # Jinja reads it (most of these are not simple, some are simple but refused to be safe)
    ast = environment().parse(text)  # parses: a simple template has no syntax error
    assert parts == _fast_parts(text)  # the parts Jinja's AST gives, text merged as Jinja merges it
    found = simple_names(text)
    if found is not None:
        names, whole = found
        assert names == analyse(ast)
        expression = single_expression(ast)
        assert whole == (ref_of(expression) if expression is not None else None)


@pytest.mark.parametrize("text", [t for t in generated(300, 21) if simple_parts(t) is not None])
def test_a_simple_template_renders_as_jinja_does(text: str) -> None:
    context = base_context(
        inputs={"topic": "tides"},
        stages={"plan": {"content": "a plan"}},
        vars={"item": 3},
        a={"b": {"c": {"d": 1}}},
        c={"d": "D"},
        x="X",
    )
    src = TemplateSrc(text, Loc("t.yaml", 1, 1))
    ours = Template(src)
    try:
        expected = environment().from_string(text).render(context)
    except Exception:  # noqa: BLE001 - a missing name: ours must fail too, through Jinja, located
        with pytest.raises(Exception, match="t.yaml"):
            ours.render(context)
        return
    assert ours.render(context) == expected


def test_near_misses_are_left_to_jinja() -> None:
    for text in [
        "{{ a.b | upper }}",
        "{{- a.b }}",
        "{{ true }}",
        "{{ a['b'] }}",
        "{{ a.0 }}",
        "{% if a %}{% endif %}",
        "{{ a.b }}{# c #}",
        "{{ é.b }}",
        "{{ a. b }}",
    ]:
        assert simple_parts(text) is None, text
    assert simple_names("{{ a._b }}") is None  # the sandbox's business: Jinja's reading, and the hazard checks


def test_a_workflow_of_simple_templates_runs_and_validates_without_jinja(tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(
        "version: 1\nname: t\ninputs:\n  topic: {type: string, default: tides}\n"
        "models:\n  m: {provider: scripted, reply: 'on {{ input }}'}\n"
        "agents:\n  a: {model: m, sys_prompt: 'You write about {{ inputs.topic }}.'}\n"
        "stages:\n  - {id: s, agent: a, input: 'Write about {{ inputs.topic }}.'}\n"
        "  - {id: t, agent: a, input: '{{ stages.s.content }} again'}\n"
    )
    probe = (
        "import sys\nfrom runner.cli import main\n"
        f"assert main(['validate', {str(wf)!r}]) == 0\n"
        f"assert main(['run', {str(wf)!r}, '-q', '--report-dir', {str(tmp_path / 'r')!r}]) == 0\n"
        "print('jinja2' in sys.modules)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "RUNNER_NO_CACHE": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-2:] == ["on on Write about tides. again", "False"]
