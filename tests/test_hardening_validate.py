"""Issues 14 and 21: what `runner validate` passes, `runner run` runs; templates are untrusted input.

- the modules and functions of python stages and tools are found as the run will import them, without
  running them;
- a stage that `when:` (or a failed branch under `on_error: collect`) may leave without output is read only
  behind a check;
- templates compile and render in a bounded sandbox: no template blocks the event loop, and each limit is a
  located error;
- every template is checked against that sandbox: unknown filters and tests, unsafe attributes and constant
  expressions over the limits fail validate at their exact line and column.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from runner.config.source import Loc, TemplateSrc
from runner.engine.session import run_plan
from runner.errors import RunnerError, TemplateError
from runner.plan.compile import compile_workflow
from runner.templates import Template, base_context
from runner.validate.check import check_file
from runner.workflow.inputs import resolve_inputs
from tests.conftest import ROOT, load_unchecked, run_cli


def problems(path: Path) -> list[str]:
    return [p.format_line().removeprefix(f"{path}:") for p in check_file(path)[1]]


def run_failure(path: Path) -> str:
    """The run's error for a workflow run without the checks (as if validate had passed it); '' when ok."""
    try:
        wf = load_unchecked(path)
        outcome = run_plan(compile_workflow(wf), resolve_inputs(wf, []))
    except RunnerError as exc:
        return str(exc)
    return "" if outcome.status == "ok" else str(outcome.error)


def render(text: str, **values: object) -> str:
    return Template(TemplateSrc(text, Loc("f.yaml", 3, 5))).render(base_context(**values))


# -- issue 21: the sandbox bounds every template ---------------------------------------------------------------

OVER = "a value built in a template may have at most 10,000,000"
BOMBS = {
    "power": ("{{ 9**(9**9) }}", "9 ** 387420489 would give a number of more than 4,000 digits"),
    "text repetition": (
        "{{ 'x' * 10**10 }}",
        f"repeating a text 10,000,000,000 times would build 10,000,000,000 characters; {OVER}",
    ),
    "nested list repetition": (
        "{{ [[1] * 3000] * 3000 * 2 }}",
        f"repeating a list 2 times would build 18,006,001 items; {OVER}",
    ),
    "range": (
        "{{ range(10**9) | length }}",
        "range(1000000000) would have 1,000,000,000 items; templates may use ranges of at most 100,000",
    ),
    "format width": (
        "{{ '{:999999999}'.format(1) }}",
        f"formatting '{{:999999999}}' would build 1,000,000,000 characters; {OVER}",
    ),
    "percent width": (
        "{{ '%999999999d' % 1 }}",
        f"formatting '%999999999d' with % would build 1,000,000,011 characters; {OVER}",
    ),
    "percent star width": (
        "{{ '%*d' % (10**9, 1) }}",
        f"formatting '%*d' with % would build 1,000,000,016 characters; {OVER}",
    ),
    "center": ("{{ 'x' | center(10**9) }}", f"center(1,000,000,000) would build 1,000,000,000 characters; {OVER}"),
    "str.center": (
        "{{ 'x'.center(10**9) }}",
        f"center(1000000000) on 'x' would build 1,000,000,000 characters; {OVER}",
    ),
    "replace growth": (
        "{{ ('ab' * 10000).replace('a', 'a' * 10000) }}",
        "replace('a', a text of 10,000 characters) on a text of 20,000 characters would build 100,010,000 "
        f"characters; {OVER}",
    ),
    "join separator": (
        "{{ ('x' * 1000).join(range(100000)) }}",
        f"joining 100,000 items with a text of 1,000 characters would build 99,999,000 characters; {OVER}",
    ),
    "to_bytes": ("{{ (1).to_bytes(10**9, 'big') }}", f"to_bytes(1000000000) would build 1,000,000,000 bytes; {OVER}"),
    "lipsum": ("{{ lipsum(10**7) }}", "lipsum(10,000,000) would write up to 1,000,000,000 words; at most 100,000"),
    "batch fill": (
        "{{ [1] | batch(10**9, 0) | list }}",
        f"batch(1,000,000,000) with a fill value would build 1,000,000,000 items; {OVER}",
    ),
    "slice": (
        "{{ [1] | slice(10**9) | list }}",
        "slice(1,000,000,000) would make 1,000,000,000 lists; at most 100,000",
    ),
    "tojson indent": (
        "{{ ['x' * 1000] | tojson(indent=100000) }}",
        f"tojson(indent=100000) would build 100,101,001 characters; {OVER}",
    ),
    "doubling with ~": (
        "{% set ns = namespace(s='ab') %}{% for i in range(100) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        f"joining 2 values with ~ would build 16,777,216 characters; {OVER}",
    ),
    "doubling with format": (
        "{% set ns = namespace(s='ab') %}{% for i in range(30) %}{% set ns.s = '{}{}'.format(ns.s, ns.s) %}"
        "{% endfor %}",
        f"formatting '{{}}{{}}' would build 16,777,216 characters; {OVER}",
    ),
    "doubling with join": (
        "{% set ns = namespace(s='ab') %}{% for i in range(30) %}{% set ns.s = [ns.s, ns.s] | join %}{% endfor %}",
        f"joining 2 items would build 16,777,216 characters; {OVER}",
    ),
    "doubling a list with +": (
        "{% set ns = namespace(l=[1]) %}{% for i in range(100) %}{% set ns.l = ns.l + ns.l %}{% endfor %}",
        f"joining two lists with + would build 16,777,217 items; {OVER}",
    ),
    "squaring a number": (
        "{% set ns = namespace(n=3) %}{% for i in range(100) %}{% set ns.n = ns.n * ns.n %}{% endfor %}",
        "a number of about 3,909 digits * a number of about 3,909 digits would give a number of more than 4,000 digits",
    ),
    "a list holding itself twice, 60 deep": (
        "{% set ns = namespace(l=[1]) %}{% for i in range(60) %}{% set ns.l = [ns.l, ns.l] %}{% endfor %}{{ ns.l }}",
        f"the text of this value would build 3,458,764,513,820,540,927 characters or items; {OVER}",
    ),
    "output": (
        "{% for i in range(100) %}{{ inputs.big }}{% endfor %}",
        "the template's output would pass 10,000,000 characters",
    ),
    "nested loops": (
        "{% for i in range(inputs.n) %}{% for j in range(inputs.n) %}{% endfor %}{% endfor %}",
        "the template took more than 500,000 steps (loop iterations, calls and filters) in one render; a render "
        "must not block the run",
    ),
}


@pytest.mark.parametrize("case", list(BOMBS))
def test_a_template_over_a_limit_stops_with_a_located_error(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # These limits are of size and steps: the render's clock (its own test below) must not stop them first on a
    # loaded machine (building the last 8-million-item list before the limit took over 1 s under load).
    monkeypatch.setattr("runner.sandbox.environment.MAX_SECONDS", 60.0)
    text, message = BOMBS[case]
    with pytest.raises(TemplateError) as info:
        render(text, inputs={"big": "x" * 200_000, "n": 1000})
    assert str(info.value) == f"f.yaml:3:5: template error: {message}"


def test_a_render_that_runs_too_long_stops_after_a_second() -> None:
    # Comparing two large lists takes time but few steps: the clock stops it.
    text = (
        "{% set a = [[0] * 3000] * 3000 %}{% set b = [[0] * 3000] * 3000 %}\n"
        "{% for i in range(1000) %}{{ a == b }}{% endfor %}"
    )
    with pytest.raises(TemplateError) as info:
        render(text)
    assert str(info.value) == (
        "f.yaml:4:5: template error: the template ran for more than 1 s in one render; a render must not block the run"
    )


def test_templates_within_the_limits_render_as_before() -> None:
    text = (
        "{{ 'ab' * 3 }} {{ [1, 2] * 2 }} {{ 2**100 }} {{ '%5d|%-3s|' % (3, 'x') }} {{ 'a' ~ 1 ~ [2] }} "
        "{% for i in range(3) %}{{ loop.index }}/{{ loop.length }} {% endfor %}{{ 'x' | center(5) }}| "
        "{{ 'a,b' | replace(',', '--') }} {{ ['a', 'b'] | join('-') }} {{ [3, 1, 2] | sort | list }} "
        "{{ range(4) | map('string') | join(',') }} {{ '{:>4}|{:.2f}'.format('a', 1 / 3) }} "
        "{{ ('<b>' | safe).join(['x', 'y']) }} {{ '{x}!'.format_map({'x': 1}) }} {{ [[1, 2], [3]] | sum(start=[]) }} "
        "{{ 10 - 3 }} {{ 7 % 3 }} {{ dict(a=[1] * 3) | tojson }} {{ 'ab'.zfill(4) }} {{ [1, [2, [3]]] }}"
    )
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    expected = ImmutableSandboxedEnvironment().from_string(text).render()  # Jinja's own sandbox, unbounded
    assert render(text) == expected
    assert expected.startswith("ababab [1, 2, 1, 2] 1267650600228229401496703205376     3|x  | a1[2] 1/3 2/3 3/3")


def test_the_for_loop_counts_every_level_of_a_recursive_loop() -> None:
    text = "{% for x in [1, 2] recursive %}{% if loop.depth < 3 %}{{ loop(range(inputs.n)) }}{% endif %}{% endfor %}"
    assert render(text, inputs={"n": 3}) == ""
    with pytest.raises(TemplateError) as info:
        render(text, inputs={"n": 100_000})
    # 2 * 100,000 * 100,000 iterations: the steps stop it, or the clock on a slow machine
    assert str(info.value).endswith("in one render; a render must not block the run")


def test_a_value_a_for_each_builds_is_bounded_before_it_leaves_the_sandbox() -> None:
    template = Template(TemplateSrc("{{ [[[1] * 3000] * 3000, [[1] * 3000] * 3000] }}", Loc("f.yaml", 3, 5)))
    with pytest.raises(TemplateError) as info:
        template.evaluate(base_context())
    assert str(info.value) == (
        f"f.yaml:3:5: template error: the text of this value would build 18,006,003 characters or items; {OVER}"
    )
    assert (
        Template(TemplateSrc("{{ inputs.xs }}", Loc("f.yaml", 3, 5))).evaluate(
            base_context(inputs={"xs": [[1] * 3000] * 4000})
        )
        == [[1] * 3000] * 4000
    )  # a value the template only reads is data, not bounded


def test_an_error_in_a_for_each_points_at_its_own_line() -> None:
    # The error used to name a line of Jinja's generated code (21 or 28 in a 10-line file); an expression is
    # one statement there, so its first line in the file is the place.
    src = TemplateSrc("{{ inputs.xs\n   + inputs.nope.x }}", Loc("f.yaml", 3, 5), 1)
    with pytest.raises(TemplateError) as info:
        Template(src).evaluate(base_context(inputs={"xs": []}))
    assert str(info.value) == "f.yaml:4:5: template error: 'dict object' has no attribute 'nope'"
    src = TemplateSrc("{% for x in inputs.xs %}\n{{ x.nope }}{% endfor %}", Loc("f.yaml", 3, 5), 1)
    with pytest.raises(TemplateError) as info:
        Template(src).render(base_context(inputs={"xs": [{}]}))
    assert str(info.value) == "f.yaml:5:5: template error: 'dict object' has no attribute 'nope'"


def test_a_template_nested_too_deeply_is_a_syntax_error_not_a_crash() -> None:
    deep = "{{ " + "(" * 2000 + "1" + ")" * 2000 + " }}"
    with pytest.raises(TemplateError) as info:
        Template(TemplateSrc(deep, Loc("f.yaml", 3, 5)))
    assert str(info.value) == (
        "f.yaml:3:5: template syntax error: the template nests too deeply (brackets or blocks inside each other)"
    )


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("(" * 2000 + "1" + ")" * 2000, "the template nests too deeply (brackets or blocks inside each other)"),
        ("9" * 5000, "a number with more than 4,300 digits, more than Python reads"),
    ],
    ids=["nesting", "digits"],
)
def test_a_template_the_parser_cannot_read_is_a_located_error_in_validate_too(
    expression: str, message: str, write_wf
) -> None:
    path = write_wf(
        "version: 1\nname: deep\nmodels:\n  m: {provider: scripted}\nagents:\n  a: {model: m}\n"
        f'stages:\n  - {{id: s, agent: a, input: "{{{{ {expression} }}}}"}}\n'
    )
    found = problems(path)
    assert (
        len(found) == 1
        and found[0].startswith("8:")
        and found[0].endswith(f"error: template syntax error: {message} [template-syntax]")
    )


HANG = """\
import sys
from runner.workflow.records import Loc, TemplateSrc
from runner.templates import Template
Template(TemplateSrc(sys.argv[1], Loc("f.yaml", 1, 1)))
print("compiled")
"""


@pytest.mark.parametrize("text", ["{{ 9**(9**9) }}", "{{ 'x' * 10**10 }}", "{{ 'x' | center(1000000000) }}"])
def test_compiling_a_template_does_no_work_its_numbers_ask_for(text: str) -> None:
    # In a child process: before the fix Jinja folded these constants while compiling, for minutes.
    proc = subprocess.run([sys.executable, "-c", HANG, text], capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "compiled\n", "")


SITES = """\
version: 1
name: sites
inputs:
  n: {{type: integer, default: 1000000000}}
tools:
  lookup: {{function: "toolbox_lookup:lookup"}}
models:
  m:
    provider: scripted
    reply: "{reply}"
    turns:
      - tool_calls: [{{name: lookup, arguments: {{key: "{args}"}}}}]
{turn}agents:
  a: {{model: m, tools: [lookup], sys_prompt: "{prompt}"}}
stages:
  - id: s
    agent: a
    input: "{input}"
    when: "{when}"
  - id: f
    fanout: {{for_each: "{for_each}", agent: a}}
"""
BOMB = "{{ range(inputs.n) | length }}"
FINE = {"reply": "ok", "args": "k", "turn": "done", "prompt": "p", "input": "i", "when": "yes", "for_each": "{{ [1] }}"}


@pytest.mark.parametrize("site", list(FINE))
def test_every_kind_of_template_renders_in_the_bounded_sandbox(site: str, tmp_path: Path) -> None:
    # range(inputs.n) depends on a value, so validate cannot see it: the run must stop it, located.
    (tmp_path / "toolbox_lookup.py").write_text("def lookup(key: str) -> str:\n    return key\n")
    fields = {**FINE, site: BOMB if site != "for_each" else "{{ range(inputs.n) }}"}
    # the model's own reply is used once no turn is left
    fields["turn"] = "" if site == "reply" else f'      - reply: "{fields["turn"]}"\n'
    path = tmp_path / "wf.yaml"
    path.write_text(SITES.format(**fields))
    assert [p for p in problems(path) if ": error: " in p] == []
    failure = run_failure(path)
    message = "range(1000000000) would have 1,000,000,000 items; templates may use ranges of at most 100,000"
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "range(inputs.n)" in text)
    assert failure.startswith(f"{path}:{line}:") and failure.endswith(message), failure


def test_runner_run_refuses_a_bomb_at_once_with_validates_message(write_wf) -> None:
    path = write_wf(
        """\
        version: 1
        name: bomb
        models:
          m: {provider: scripted}
        agents:
          a: {model: m}
        stages:
          - {id: s, agent: a, input: "{{ 9**(9**9) }}"}
        """
    )
    proc = run_cli("run", str(path), "--report-dir", str(path.parent / "reports"), timeout=30)
    assert proc.returncode == 1
    column = path.read_text().splitlines()[7].index("9**(9**9)") + 1
    message = "9 ** 387420489 would give a number of more than 4,000 digits [template-limit]"
    assert f"{path}:8:{column}: error: {message}" in proc.stderr


# -- issue 21: validate compiles every template against the same sandbox --------------------------------------

ESCAPES = {
    "__class__": ("{{ inputs.topic.__class__ }}", "__class__"),
    "__mro__": ("{{ inputs.topic.__class__.__mro__ }}", "__class__"),
    "__globals__": ("{{ range.__globals__ }}", "__globals__"),
    "__subclasses__": ("{{ ().__class__.__base__.__subclasses__() }}", "__class__"),
    "mro()": ("{{ dict.mro() }}", "mro"),
    "func_globals": ("{{ lipsum.func_globals }}", "func_globals"),
    "gi_frame": ("{{ (range(2) | map('string')).gi_frame }}", "gi_frame"),
    "format field": ("{{ '{0.__class__}'.format(inputs.topic) }}", "'{0.__class__}'"),
    "attr filter": ("{{ inputs.topic | attr('__class__') }}", "'__class__'"),
    "subscript": ("{{ inputs.topic['__class__'] }}", "'__class__'"),
}
ESCAPE_SITES = {
    "stage input": ('  - {id: s, agent: a, input: "EXPR"}\n', ""),
    "sys_prompt": ("  - {id: s, agent: b}\n", "EXPR"),
    "when": ('  - {id: s, agent: a, when: "EXPR"}\n', ""),
    "for_each": ('  - id: s\n    fanout: {for_each: "[EXPR]", agent: a}\n', ""),
}


@pytest.mark.parametrize("site", list(ESCAPE_SITES))
@pytest.mark.parametrize("escape", list(ESCAPES))
def test_a_sandbox_escape_fails_validate_at_its_span_and_fails_the_run(escape: str, site: str, write_wf) -> None:
    expression, first = ESCAPES[escape]
    stages, prompt = ESCAPE_SITES[site]
    if site == "for_each":
        stages = stages.replace("[EXPR]", expression.replace("{{ ", "{{ [").replace(" }}", "] }}"))
    text = (
        "version: 1\nname: escape\ninputs:\n  topic: {type: string, default: t}\nmodels:\n"
        "  m: {provider: scripted}\nagents:\n  a: {model: m}\n"
        f'  b: {{model: m, sys_prompt: "{prompt.replace("EXPR", expression)}"}}\n'
        "stages:\n" + stages.replace("EXPR", expression) + ("  - {id: t, agent: b}\n" if not prompt else "")
    )
    path = write_wf(text)
    found = [p for p in problems(path) if "[unsafe-attribute]" in p]
    assert found, problems(path)
    line_no, column = found[0].split(":")[:2]
    line = text.splitlines()[int(line_no) - 1]
    assert line[int(column) - 1 :].startswith(first)
    assert run_failure(path) != ""


def test_an_input_default_that_looks_like_a_template_is_data(write_wf) -> None:
    path = write_wf(
        """\
        version: 1
        name: data
        inputs:
          topic: {type: string, default: "{{ ''.__class__.__mro__ }}"}
        models:
          m: {provider: scripted, reply: "{{ input }}"}
        agents:
          a: {model: m}
        stages:
          - {id: s, agent: a, input: "{{ inputs.topic }}"}
        """
    )
    assert problems(path) == []
    wf = load_unchecked(path)
    outcome = run_plan(compile_workflow(wf), resolve_inputs(wf, []))
    assert outcome.output.content == "{{ ''.__class__.__mro__ }}"


def test_unknown_filters_and_tests_fail_validate_where_they_fail_the_run(write_wf) -> None:
    path = write_wf(
        """\
        version: 1
        name: filters
        models:
          m: {provider: scripted, reply: "{{ input | shout }}"}
        agents:
          a: {model: m, sys_prompt: "{% if input is shouty %}x{% endif %}"}
        stages:
          - {id: s, agent: a, input: "{% if false %}{{ run.name | uper }}{% endif %}"}
          - {id: t, agent: a, input: "{{ run.name | upper }}"}
        """
    )
    lines = path.read_text().splitlines()
    assert problems(path) == [
        f"4:{lines[3].index('shout') + 1}: error: there is no filter named 'shout' [unknown-filter]",
        f"6:{lines[5].index('shouty') + 1}: error: there is no test named 'shouty' [unknown-filter]",
        f"8:{lines[7].index('uper') + 1}: error: there is no filter named 'uper' [unknown-filter]",
    ]
    assert run_failure(path) == f"{path}:4:{lines[3].index('{{') + 1}: template syntax error: No filter named 'shout'."


def test_the_hints_name_the_close_filter(write_wf) -> None:
    path = write_wf(
        """\
        version: 1
        name: filters
        models:
          m: {provider: scripted}
        agents:
          a: {model: m}
        stages:
          - {id: s, agent: a, input: "{{ run.name | uper }}"}
        """
    )
    proc = run_cli("validate", str(path))
    assert proc.returncode == 1
    assert proc.stdout == (
        f"{path}:8:45: error: there is no filter named 'uper' [unknown-filter]\n"
        '     8 |   - {id: s, agent: a, input: "{{ run.name | uper }}"}\n'
        "       |                                             ^^^^\n"
        "       = hint: did you mean 'upper'?\n"
        "1 error(s), 0 warning(s) in 1 file(s)\n"
    )


def test_statement_errors_only_the_compiler_finds_fail_validate(write_wf) -> None:
    path = write_wf(
        """\
        version: 1
        name: compiler
        models:
          m: {provider: scripted}
        agents:
          a: {model: m}
        stages:
          - id: s
            agent: a
            input: |
              {% for loop in [1] %}{{ loop }}{% endfor %}
          - id: t
            agent: a
            input: |
              {{ 1 }}
              {% macro m(caller) %}{{ caller() }}{% endmacro %}
        """
    )
    assert problems(path) == [
        "11:14: error: template error: Can't assign to special loop variable in for-loop target [template-syntax]",
        '16:7: error: template error: When defining macros or call blocks the special "caller" argument must be '
        "omitted or be given a default. [template-syntax]",
    ]
    assert "Can't assign to special loop variable" in run_failure(path)
    path.write_text(path.read_text().replace("{% for loop in [1] %}{{ loop }}{% endfor %}", "x"))
    assert 'the special "caller" argument must be omitted' in run_failure(path)


# -- issue 14: python stages and tools -------------------------------------------------------------------------

MODULE = """\
import json
from os import path as p

LIMIT = 10


def search(query: str) -> str:
    return query


async def fetch(url: str) -> str:
    return url


class Box:
    size = 3

    def open(self) -> None:
        pass


class Child(Box):
    pass


try:
    from not_installed_anywhere import speedy
except ImportError:
    def speedy() -> None:
        pass

if p:
    alias = search
"""


def code_case(tmp_path: Path, targets: list[str], files: dict[str, str] | None = None) -> Path:
    (tmp_path / "mycode.py").write_text(MODULE)
    for name, source in (files or {}).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(source)
    stages = "".join(f'  - {{id: p{i}, python: "{target}", input: "x"}}\n' for i, target in enumerate(targets))
    path = tmp_path / "wf.yaml"
    path.write_text(f"version: 1\nname: code\nstages:\n{stages}")
    return path


FOUND = [
    "mycode:search",
    "mycode:fetch",
    "mycode:Box",
    "mycode:Box.open",
    "mycode:speedy",
    "mycode:alias",
    "json:dumps",
    "json.decoder:JSONDecoder",
    "sys:getrecursionlimit",
    "pkg.sub:inner",
]
# What only running the module can tell: validate trusts it, the run says.
TRUSTED = ["mycode:Child.anything", "dynamic:anything", "star:anything", "uses_globals:anything"]
FILES = {
    "pkg/__init__.py": "open(__file__ + '.ran', 'w').close()\n",
    "pkg/sub.py": "def inner(x):\n    return x\n",
    "dynamic.py": "def __getattr__(name):\n    return len\n",
    "star.py": "from json import *\n",
    "uses_globals.py": "globals()['made'] = len\n",
}


@pytest.mark.parametrize("target", FOUND + TRUSTED)
def test_a_function_the_run_can_import_passes_validate(target: str, tmp_path: Path, own_imports) -> None:
    path = code_case(tmp_path, [target], FILES)
    before = set(sys.modules)
    assert problems(path) == []
    assert not (tmp_path / "pkg" / "__init__.py.ran").exists()  # validate ran none of the user's code
    assert {name for name in set(sys.modules) - before if name.split(".")[0] in ("pkg", "mycode")} == set()
    if target in FOUND:  # the run imports it (and then calls it with the stage's arguments)
        assert not run_failure(path).startswith(("cannot import", f"python stage function '{target}'"))


# {m}: the column of the module's name, {f}: of the function's
MISSING = {
    "mycode:serch": "4:{f}: error: module 'mycode' (mycode.py) does not define 'serch' (python stage 'p0') "
    "[unknown-function]",
    "mycode:Box.close": "4:{f}: error: class 'Box' in module 'mycode' (mycode.py) does not define 'close' "
    "(python stage 'p0') [unknown-function]",
    "mycod:search": "4:{m}: error: cannot find module 'mycod' for python stage 'p0': no such module [unknown-module]",
    "pkg.nope:inner": "4:{m}: error: cannot find module 'pkg.nope' for python stage 'p0': package 'pkg' has no "
    "module 'nope' [unknown-module]",
    "mycode.sub:x": "4:{m}: error: cannot find module 'mycode.sub' for python stage 'p0': 'mycode' is a module, "
    "not a package [unknown-module]",
    "pkg:sub.inner": "4:{f}: error: 'sub' is a submodule of package 'pkg', which does not import it (python stage "
    "'p0') [unknown-function]",
    "json:dumpz": "4:{f}: error: module 'json' ({json}) does not define 'dumpz' (python stage 'p0') [unknown-function]",
    "sys:nope": "4:{f}: error: module 'sys' (built in) does not define 'nope' (python stage 'p0') [unknown-function]",
    "nsfolder:f": "4:{f}: error: module 'nsfolder' (a folder without __init__.py, which defines nothing) does not "
    "define 'f' (python stage 'p0') [unknown-function]",
    "broken:f": "4:{m}: error: module 'broken' for python stage 'p0' cannot be imported: SyntaxError at "
    "broken.py:1: invalid syntax [unknown-module]",
    "mycode:json": "4:{f}: error: 'json' in module 'mycode' (mycode.py) is a module, not a function (python stage "
    "'p0') [unknown-function]",
    "mycode:LIMIT": "4:{f}: error: 'LIMIT' in module 'mycode' (mycode.py) is a constant, not a function (python "
    "stage 'p0') [unknown-function]",
    "mycode:Box.size": "4:{f}: error: 'Box.size' in module 'mycode' (mycode.py) is a constant, not a function "
    "(python stage 'p0') [unknown-function]",
}


@pytest.fixture
def own_imports():
    """The engine imports the modules of these tests into this process: forget them afterwards, so that the
    next test's module of the same name is read from its own folder."""
    modules, path = set(sys.modules), list(sys.path)
    yield
    for name in set(sys.modules) - modules:
        del sys.modules[name]
    sys.path[:] = path


@pytest.mark.parametrize("target", list(MISSING))
def test_a_function_the_run_cannot_import_fails_validate_and_the_run(target: str, tmp_path: Path, own_imports) -> None:
    import json

    files = {**FILES, "broken.py": "def f(:\n    pass\n", "nsfolder/data.txt": ""}
    path = code_case(tmp_path, [target], files)
    line = path.read_text().splitlines()[3]
    m = line.index(target) + 1
    expected = MISSING[target].format(m=m, f=m + target.index(":") + 1, json=json.__file__)
    assert problems(path) == [expected]
    failure = run_failure(path)
    assert failure.startswith(f"cannot import python stage function '{target}'") or failure == (
        f"python stage function '{target}' is not callable"
    )


def test_the_hints_say_what_the_module_defines(tmp_path: Path) -> None:
    path = code_case(tmp_path, ["mycode:serch", "mycode:nothing_like_it", "mycod:search"])
    proc = run_cli("validate", "--format", "json", str(path))
    import json

    hints = [p["hint"] for p in json.loads(proc.stdout)["problems"]]
    assert hints == [
        "did you mean 'search'?",
        "module 'mycode' defines: Box, Child, LIMIT, alias, fetch, json, p, search, speedy",
        "did you mean 'mycode'?",
    ]


def test_a_submodule_another_stage_imports_is_an_attribute_of_its_package(tmp_path: Path, own_imports) -> None:
    path = code_case(tmp_path, ["pkg.sub:inner", "pkg:sub.inner"], FILES)
    assert problems(path) == []
    assert not run_failure(path).startswith("cannot import")  # both import; inner() then wants its argument


def test_tools_are_checked_like_python_stages(write_wf, tmp_path: Path) -> None:
    (tmp_path / "mycode.py").write_text(MODULE)
    path = write_wf(
        """\
        version: 1
        name: tools
        tools:
          s: {function: "mycode:search"}
          f: {function: 'mycode:fetchh'}
          gone: {function: "no_such_module_xyz:fn"}
        models:
          m: {provider: scripted}
        agents:
          a: {model: m, tools: [s, f, gone]}
        stages:
          - {id: s, agent: a}
        """
    )
    lines = path.read_text().splitlines()
    assert problems(path) == [
        f"5:{lines[4].index('fetchh') + 1}: error: module 'mycode' (mycode.py) does not define 'fetchh' (tool 'f') "
        "[unknown-function]",
        f"6:{lines[5].index('no_such') + 1}: error: cannot find module 'no_such_module_xyz' for tool 'gone': no such "
        "module [unknown-module]",
    ]


# -- issue 14: stages that `when` may skip ---------------------------------------------------------------------

SKIP_HEADER = """\
version: 1
name: skip
inputs:
  careful: {type: boolean, default: false}
models:
  m: {provider: scripted, reply: "{{ input }}"}
agents:
  a: {model: m}
stages:
"""
# Each case: the stages, and the expected error with {line}:{col} of the read it reports.
SKIPPED = {
    "top level": (
        "  - {id: draft, agent: a, input: d}\n"
        "  - {id: revision, agent: a, when: '{{ inputs.careful }}', input: r}\n"
        "  - {id: final, agent: a, input: '{{ stages.revision.content }}'}\n",
        "stages.revision may have no output in the input of stage 'final': stage 'revision' has a 'when' that may "
        "skip it, and then stages.revision is None [stage-not-ready]",
    ),
    "inside a branch": (
        "  - id: fan\n    fanout:\n      branches:\n"
        "        - [{id: b1, agent: a, when: '{{ inputs.careful }}', input: x}, "
        "{id: b2, agent: a, input: '{{ stages.b1.content }}'}]\n",
        "stages.b1 may have no output in the input of stage 'b2': stage 'b1' has a 'when' that may skip it, and "
        "then stages.b1 is None [stage-not-ready]",
    ),
    "after a branch": (
        "  - id: fan\n    fanout:\n      branches:\n"
        "        - [{id: b1, agent: a, when: '{{ inputs.careful }}', input: x}]\n"
        "  - {id: after, agent: a, input: '{{ stages.b1.content }}'}\n",
        "stages.b1 may have no output in the input of stage 'after': stage 'b1' has a 'when' that may skip it, and "
        "then stages.b1 is None [stage-not-ready]",
    ),
    "inside a fan-out's pipeline": (
        "  - id: fan\n    fanout:\n      for_each: [1, 2]\n      stages:\n"
        "        - {id: p1, agent: a, when: '{{ inputs.careful }}', input: x}\n"
        "        - {id: p2, agent: a, input: '{{ stages.p1.content }}'}\n",
        "stages.p1 may have no output in the input of stage 'p2': stage 'p1' has a 'when' that may skip it, and "
        "then stages.p1 is None [stage-not-ready]",
    ),
    "a skipped fan-out's branch": (
        "  - id: fan\n    when: '{{ inputs.careful }}'\n    fanout:\n      branches: [[{id: b1, agent: a, input: x}]]\n"
        "  - {id: after, agent: a, input: '{{ stages.b1.content }}'}\n",
        "stages.b1 may have no output in the input of stage 'after': stage 'b1' runs inside fan-out 'fan', which "
        "has a 'when' that may skip it [stage-not-ready]",
    ),
    "a failed branch under collect": (
        "  - id: fan\n    fanout:\n      on_error: collect\n      branches:\n"
        "        - [{id: b1, agent: a, input: x}, {id: b2, agent: boom, input: y}]\n"
        "  - {id: after, agent: a, input: '{{ stages.b1.content }}'}\n",
        "stages.b1 may have no output in the input of stage 'after': stage 'b1' runs in a branch of fan-out 'fan' "
        "(on_error: collect), and a branch that fails hands out none of its stages [stage-not-ready]",
    ),
}


@pytest.mark.parametrize("case", list(SKIPPED))
def test_reading_a_stage_that_may_be_skipped_fails_validate_and_the_run(case: str, write_wf) -> None:
    stages, expected = SKIPPED[case]
    header = SKIP_HEADER.replace("  a: {model: m}\n", "  a: {model: m}\n  boom: {model: bad}\n").replace(
        "models:\n", "models:\n  bad: {provider: scripted, turns: [{fail: broken}]}\n"
    )
    path = write_wf(header + stages)
    lines = path.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if "'{{ stages." in line)
    column = lines[at].index("{{ stages.") + 4
    assert [p for p in problems(path) if "[unused" not in p] == [f"{at + 1}:{column}: error: {expected}"]
    assert run_failure(path) != ""


GUARDED = {
    "if": "{% if stages.revision %}{{ stages.revision.content }}{% else %}none{% endif %}",
    "is none": "{{ 'none' if stages.revision is none else stages.revision.content }}",
    "default": "{{ stages.revision.content | default('none') }}",
}


@pytest.mark.parametrize("guard", list(GUARDED))
def test_a_checked_read_is_a_warning_and_runs(guard: str, write_wf) -> None:
    path = write_wf(
        SKIP_HEADER
        + "  - {id: revision, agent: a, when: '{{ inputs.careful }}', input: r}\n"
        + f'  - {{id: final, agent: a, input: "{GUARDED[guard]}"}}\n'
    )
    found = problems(path)
    assert (
        len(found) == 1
        and found[0].startswith("11:")
        and found[0].endswith(
            "warning: stages.revision may have no output in the input of stage 'final': stage 'revision' has a "
            "'when' that may skip it, and then stages.revision is None; a check guards it [stage-maybe-skipped]"
        )
    )
    assert run_failure(path) == ""
    wf = load_unchecked(path)
    assert run_plan(compile_workflow(wf), resolve_inputs(wf, [])).output.content == "none"


def test_a_stage_whose_own_when_checks_the_skippable_one_only_warns(write_wf) -> None:
    path = write_wf(
        SKIP_HEADER
        + "  - {id: draft, agent: a, input: d}\n"
        + "  - {id: revision, agent: a, when: '{{ inputs.careful }}', input: r}\n"
        + "  - {id: final, agent: a, when: '{{ stages.revision is not none }}',\n"
        + "     input: '{{ stages.revision.content }}'}\n"
        + "  - {id: last, agent: a, input: '{{ prev.content }}'}\n"
    )
    assert [p.split(": ", 2)[1] for p in problems(path)] == ["warning", "warning"]
    assert run_failure(path) == ""


def test_a_when_is_a_check_only_when_it_tests_the_stage(write_wf) -> None:
    stages = (
        "  - {id: draft, agent: a, input: d}\n"
        "  - {id: revision, agent: a, when: '{{ inputs.careful }}', input: r}\n"
        "  - {id: next, agent: a, when: 'WHEN', input: x}\n"
    )
    read = write_wf(SKIP_HEADER + stages.replace("WHEN", "{{ stages.revision.content }}"), "read.yaml")
    tested = write_wf(SKIP_HEADER + stages.replace("WHEN", "{{ stages.revision }}"), "tested.yaml")
    column = read.read_text().splitlines()[11].index("{{ stages") + 4
    assert problems(read) == [
        f"12:{column}: error: stages.revision may have no output in the 'when' of stage 'next': stage 'revision' "
        "has a 'when' that may skip it, and then stages.revision is None [stage-not-ready]"
    ]
    assert "'None' has no attribute 'content'" in run_failure(read)
    assert [p.split(": ", 2)[1] for p in problems(tested)] == ["warning"]
    assert run_failure(tested) == ""


def test_each_problem_is_located_from_the_tokens_of_its_name_only() -> None:
    # Each problem used to scan every token of its template: 20,000 unknown names took 77 s to place.
    from runner.validate.rules import hazards, jinja

    parsed = jinja.parse("".join(f"{{{{ u{i} | f{i} }}}}" for i in range(1000)) + "{{ x | f7 }}")
    seen: list[int] = []

    def match(tokens: tuple[jinja.Tok, ...], i: int) -> tuple[int, int] | None:
        seen.append(i)
        return hazards._filter_tokens("f7")(tokens, i)

    found = hazards.Hazard("unknown-filter", "m", "h", match=match, needle="f7").spans(parsed)
    assert [parsed.tokens[i].value for i in seen] == ["f7", "f7"]
    assert len(found) == 2
    assert len(jinja.name_spans(parsed, "u999")) == 1


def test_the_examples_stay_clean() -> None:
    proc = run_cli("validate", "--strict", "workflows")
    count = len(list((ROOT / "workflows").glob("*.yaml")))
    assert (proc.returncode, proc.stdout.splitlines()[-1]) == (0, f"{count} file(s) valid")
