"""``assert:`` lists (issue 24), checked before any token is spent, with the rules other parts of a workflow use:

- every template (a value, a ``one_of`` item, a rubric): its syntax (``template-syntax``), its names (``row``,
  ``output``, ``stages`` and ``inputs``; else ``unknown-name``), ``inputs.<name>`` declared (``unknown-input``),
  ``stages.<id>`` a stage of the workflow (``unknown-stage``), and each field of a structured output it reads
  against the output's schema (``data-field``, ``data-optional``: the data-flow rule's own checker), ``output``
  standing for the checked output;
- ``path: data.label`` read the same way, as ``output.data.label``;
- a judge (``llm-rubric``'s ``model``) declared under ``models`` (``unknown-model``);
- a ``tool-call``'s tool declared under ``tools`` or built in (``unknown-tool``), its ``arguments`` among the
  tool's declared parameters (``invalid-setting``) and their text values checked as templates;
- a ``similar``'s embedder declared under ``embeddings`` (``unknown-embedding``);
- a Python assertion's ``module:function`` found without importing it (``unknown-module``,
  ``unknown-function``: the rule of python stages and tools).

A regex that does not compile, a ``close`` without its tolerance and the like are refused when the records are
built (``invalid-setting``, ``runner/workflow/asserts.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.config.source import TemplateSrc
from runner.diagnostics import Diagnostic
from runner.templates import environment, is_constant
from runner.validate.rules import jinja
from runner.validate.rules.common import diag, suggest
from runner.validate.rules.names import analyse
from runner.validate.rules.scope import Walk
from runner.validate.rules.source import Source
from runner.workflow.asserts import AssertList, AssertSpec
from runner.workflow.records import Workflow

_NAMES = frozenset({"row", "output", "stages", "inputs"})
_BUILT_IN_TOOLS = frozenset({"read_stored_result", "recall"})  # an agent's memory offers them
_SYNTAX_HINT = "fix the template's syntax: {{ expression }} for a value, {% ... %} for a statement"


def check_asserts(wf: Workflow, source: Source, walk: Walk) -> list[Diagnostic]:
    if not wf.asserts:
        return []
    return _Checker(wf, source, walk).run()


class _Checker:
    def __init__(self, wf: Workflow, source: Source, walk: Walk) -> None:
        self.wf = wf
        self.source = source
        self.walk = walk
        self.out: list[Diagnostic] = []
        self.stage_ids = {stage.id for stage, _ in walk.order}
        self._types: dict[str, Any] | None = None

    @property
    def types(self) -> dict[str, Any]:
        """Stage id -> its typed output (the data-flow rule's), made once a template reads one."""
        if self._types is None:
            from runner.validate.rules.dataflow import stage_types  # noqa: PLC0415 - jsonschema's side

            self._types = stage_types(self.wf, self.walk)
        return self._types

    def run(self) -> list[Diagnostic]:
        from runner.validate.rules.imports import _check, _located  # noqa: PLC0415

        base = Path(self.wf.file).resolve().parent
        for lst in self.wf.asserts:
            for spec in lst.items:
                if spec.model is not None and spec.model not in self.wf.models:
                    where = self.source.value((*spec.yaml_path, "model"), spec.loc, len(spec.model))
                    self.out.append(
                        diag(
                            self.wf.file,
                            where,
                            "unknown-model",
                            f"{lst.scope}: the judge model '{spec.model}' is not declared under models",
                            suggest(spec.model, self.wf.models, "models"),
                        )
                    )
                if spec.kind == "python" and isinstance(spec.value, TemplateSrc):
                    target = spec.value.text
                    problem = _check(target, base, f"python assertion of {lst.scope}", frozenset())
                    if problem is not None:
                        self.out.append(
                            _located(self.wf, self.source, (*spec.yaml_path, "value"), target, spec.loc, problem)
                        )
                else:
                    for src in _templates(spec):
                        self.template(lst, src)
                if spec.rubric is not None:
                    self.template(lst, spec.rubric)
                if spec.tool is not None:
                    self.tool(lst, spec)
                if spec.embedder is not None and spec.embedder not in self.wf.embeddings:
                    where = self.source.value((*spec.yaml_path, "embedder"), spec.loc, len(spec.embedder))
                    self.out.append(
                        diag(
                            self.wf.file,
                            where,
                            "unknown-embedding",
                            f"{lst.scope}: similar uses embedding '{spec.embedder}', which is not defined",
                            suggest(spec.embedder, self.wf.embeddings, "embeddings"),
                        )
                    )
                if spec.path is not None:
                    self.path(lst, spec)
        return self.out

    def tool(self, lst: AssertList, spec: AssertSpec) -> None:
        """A tool-call's tool and the arguments it names."""
        assert spec.tool is not None
        declared = self.wf.tools.get(spec.tool)
        if declared is None and spec.tool not in _BUILT_IN_TOOLS:
            where = self.source.value((*spec.yaml_path, "tool"), spec.loc, len(spec.tool))
            self.out.append(
                diag(
                    self.wf.file,
                    where,
                    "unknown-tool",
                    f"{lst.scope}: tool-call names tool '{spec.tool}', which is not defined",
                    suggest(spec.tool, self.wf.tools, "tools"),
                )
            )
        params = (declared.parameters or {}).get("properties") if declared is not None else None
        for key, value in spec.arguments or ():
            if isinstance(params, dict) and key not in params:
                where = self.source.key((*spec.yaml_path, "arguments", key), spec.loc, len(key))
                self.out.append(
                    diag(
                        self.wf.file,
                        where,
                        "invalid-setting",
                        f"{lst.scope}: tool '{spec.tool}' has no parameter '{key}'",
                        suggest(key, sorted(params), "parameters"),
                    )
                )
            if isinstance(value, TemplateSrc):
                self.template(lst, value)

    def output_type(self, lst: AssertList) -> Any:
        """What ``output`` is in this list's templates (the stage's, or the last stage's at the top level), when
        it carries a structured value."""
        stage = lst.stage if lst.stage is not None else self.wf.stages[-1].id
        return self.types.get(stage)

    def template(self, lst: AssertList, src: TemplateSrc) -> None:
        if is_constant(src.text):
            return
        ast = jinja.parse_ast(src.text)
        if ast is None:
            err = jinja.parse(src.text).error
            assert err is not None
            self.add(src, err.start, err.end, "template-syntax", f"template syntax error: {err.message}", _SYNTAX_HINT)
            return
        names = analyse(ast)
        located: jinja.Parsed | None = None

        def spans(name: str, *keys: str) -> list[tuple[int, int]]:
            nonlocal located
            if located is None:
                located = jinja.parse(src.text)
            return jinja.name_spans(located, name, *keys) or [(0, len(src.text))]

        allowed = _NAMES | frozenset(environment().globals)
        for name in sorted(names.free - allowed):
            for start, end in spans(name):
                self.add(
                    src,
                    start,
                    end,
                    "unknown-name",
                    f"'{name}' is not defined in an assertion of {lst.scope}",
                    suggest(name, sorted(_NAMES), "names"),
                )
        inputs = [spec.name for spec in self.wf.inputs]
        for name, key in sorted(names.refs):
            if (name, key) in names.guarded:
                continue
            if name == "inputs" and key not in inputs:
                for start, end in spans(name, key):
                    self.add(
                        src,
                        start,
                        end,
                        "unknown-input",
                        f"input '{key}' is not declared",
                        suggest(key, inputs, "inputs"),
                    )
            elif name == "stages" and key not in self.stage_ids:
                for start, end in spans(name, key):
                    self.add(
                        src,
                        start,
                        end,
                        "unknown-stage",
                        f"stage '{key}' does not exist",
                        suggest(key, sorted(self.stage_ids), "stages"),
                    )
        if "data" in src.text:
            self.flow(lst, src, names)

    def flow(self, lst: AssertList, src: TemplateSrc, names: Any) -> None:
        from runner.validate.rules.dataflow import TemplateFlow  # noqa: PLC0415

        typed = self.output_type(lst)
        bindings: dict[tuple[str, ...], Any] = {("output",): typed} if typed is not None else {}
        if not self.types and not bindings:
            return
        parsed = jinja.parse(src.text)
        flow = TemplateFlow(self.types, bindings)
        flow.walk(parsed.ast, frozenset(names.guarded | names.tested))
        seen: set[tuple[int, int, str]] = set()
        for found in flow.found:
            start, end = parsed.span(found.node)
            if (start, end, found.rule) not in seen:
                seen.add((start, end, found.rule))
                self.add(src, start, end, found.rule, found.message, found.hint)

    def path(self, lst: AssertList, spec: AssertSpec) -> None:
        """``path: data.label`` read as ``output.data.label``, its problems placed on the path's value."""
        from runner.validate.rules.dataflow import TemplateFlow  # noqa: PLC0415

        assert spec.path is not None
        typed = self.output_type(lst)
        if typed is None:
            return
        text = "{{ output." + spec.path + " }}"
        parsed = jinja.parse(text)
        if parsed.ast is None:
            return
        flow = TemplateFlow(self.types, {("output",): typed})
        flow.walk(parsed.ast, frozenset())
        for found in flow.found[:1]:
            where = self.source.value((*spec.yaml_path, "path"), spec.loc, len(spec.path))
            self.out.append(diag(self.wf.file, where, found.rule, f"path {spec.path}: {found.message}", found.hint))

    def add(self, src: TemplateSrc, start: int, end: int, rule: str, message: str, hint: str) -> None:
        self.out.append(diag(self.wf.file, self.source.template(src, start, end), rule, message, hint))


def _templates(spec: AssertSpec) -> list[TemplateSrc]:
    if isinstance(spec.value, TemplateSrc):
        return [spec.value]
    if isinstance(spec.value, tuple):
        return [v for v in spec.value if isinstance(v, TemplateSrc)]
    return []
