"""Templates: Jinja2 syntax, and every name a template reads resolved against its run-time context.

Checked from the AST, never by rendering: ``inputs.<name>`` declared, ``stages.<id>`` finished before on
every path, ``vars.<name>`` set by every caller, top-level names the context has; and ``for_each`` giving
a list where the type is knowable (a literal, an input's declared type, a stage's kind, a filter).
The parts it uses: ``jinja`` parses (tokens with offsets, syntax errors), ``names`` walks the AST for what a
template reads, ``kinds`` knows what values expressions give, ``hazards`` finds what the sandbox refuses.

Over 400 lines on purpose: :class:`TemplateChecker` is one pass over one template's reads, and its judgments
(is ``stages.<id>`` ready on every path here, may ``when`` or a switch have skipped it, does the template guard
it) share that pass's state; the parts that stand alone (parsing, names, kinds, hazards, loops, data flow) are
already their own modules.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

from runner.config.source import TemplateSrc
from runner.diagnostics import Diagnostic
from runner.stages import kind_of
from runner.stages.base import StageRecord
from runner.templates import environment, is_constant
from runner.validate.rules import jinja
from runner.validate.rules.common import A_TYPE, diag, suggest
from runner.validate.rules.kinds import FOR_EACH_HINT, attribute_problem, expression_kind
from runner.validate.rules.loops import KIND_WORDS, in_block, in_switch, loop_reads
from runner.validate.rules.names import Names, analyse, ref_of, simple_names, single_expression
from runner.validate.rules.scope import Scope, Site, Walk, call_sites, model_scopes, output_kind
from runner.validate.rules.source import Source
from runner.workflow.records import Workflow

_BASE = frozenset({"inputs", "stages", "prev", "vars", "run"})
_CALL = frozenset({"agent", "input"})
_FIELDS = {"run": ("id", "name"), "agent": ("description", "model", "name")}


class TemplateChecker:
    def __init__(self, wf: Workflow, source: Source, walk: Walk) -> None:
        self.wf = wf
        self.source = source
        self.walk = walk
        self.inputs = {spec.name: spec for spec in wf.inputs}
        self.stages: dict[str, StageRecord] = {}
        for stage, _ in walk.order:
            self.stages.setdefault(stage.id, stage)
        self.out: list[Diagnostic] = []

    @functools.cached_property
    def globals(self) -> frozenset[str]:
        """Jinja's global names; read only once a template is not constant text (so a file whose templates all
        are checks without importing jinja2)."""
        return frozenset(environment().globals)

    def run(self) -> list[Diagnostic]:
        for site in [*self.walk.sites, *call_sites(self.walk), *self.argument_sites()]:
            self.site(site)
        for stage, path in self.walk.order:
            for use in kind_of(stage).templates(stage):
                if use.role == "for_each" and is_constant(use.src.text):
                    self.out.append(
                        diag(
                            self.wf.file,
                            self.source.value((*path, *use.path), use.src.loc),
                            "for-each-not-list",
                            f"for_each of stage '{stage.id}' is text, not a list",
                            "write a YAML list such as [a, b], or a template giving one such as '{{ inputs.items }}'",
                        )
                    )
        return self.out

    def argument_sites(self) -> list[Site]:
        """The string values in a scripted model's tool-call arguments: templates rendered per call."""
        out: list[Site] = []
        doc = self.source.doc
        for model in self.wf.models.values():
            turns = model.config.turns if model.config is not None else ()
            if not turns or doc is None:
                continue
            scopes = model_scopes(self.walk, model.name)
            label = f"the tool-call arguments of model '{model.name}'"
            for i, turn in enumerate(turns):
                for j, call in enumerate(turn.tool_calls):
                    base = ("models", model.name, "turns", i, "tool_calls", j, "arguments")
                    for path in _string_paths(call.arguments, base):
                        src = self.source.template_src(path)
                        if src is not None:
                            extra = frozenset({"tool_results"})
                            out.append(Site(src, label, True, tuple(scopes) or None, extra, kind="model"))
        return out

    def add(self, src: TemplateSrc, start: int, end: int, rule: str, message: str, hint: str) -> None:
        self.out.append(diag(self.wf.file, self.source.template(src, start, end), rule, message, hint))

    def site(self, site: Site) -> None:
        src = site.src
        if is_constant(src.text):
            return
        simple = simple_names(src.text) if site.kind != "for_each" else None
        ast: Any = None
        if simple is not None:  # `{{ name.key }}` outputs only: read without Jinja (runner/templates.py)
            names, path = simple
        else:
            ast = jinja.parse_ast(src.text)
            if ast is None:  # a syntax error: parse again, slowly, with token offsets to place the caret
                err = jinja.parse(src.text).error
                assert err is not None
                message = f"template syntax error: {err.message}"
                self.add(src, err.start, err.end, "template-syntax", message, _SYNTAX_HINT)
                return
            names = analyse(ast)
            whole = single_expression(ast)
            path = ref_of(whole) if whole is not None else None
        if site.kind == "when" and path is not None:  # `when: "{{ stages.x }}"` tests the value: None skips
            names = dataclasses.replace(names, tested=names.tested | {path})
        located: jinja.Parsed | None = None  # tokens with offsets, parsed again for the first problem

        def parsed() -> jinja.Parsed:
            nonlocal located
            if located is None:
                located = jinja.parse(src.text)
            return located

        def spans(name: str, *keys: str) -> list[tuple[int, int]]:
            return jinja.name_spans(parsed(), name, *keys) or [(0, len(src.text))]

        clean = not names.hazardous or self.hazards(src, ast, names, parsed) == 0

        for tag in sorted(names.loads):
            for start, end in spans(tag):
                self.add(
                    src,
                    start,
                    end,
                    "template-syntax",
                    f"'{tag}' loads another template, and workflow templates cannot load files",
                    "write the text in this template, or pass it in through inputs or vars",
                )
        allowed = _BASE | (_CALL if site.call else frozenset()) | site.extra
        if site.scopes:  # names only some contexts have (`loop`) must be there in every one
            allowed |= frozenset.intersection(*(scope.names for scope in site.scopes))
        if names.free - allowed:  # a name beyond the context's: Jinja's globals (range, dict, ...) may have it
            allowed |= self.globals
        for name in sorted(names.free - allowed):
            message, hint = self.unknown_name(name, site, allowed)
            for start, end in spans(name):
                self.add(src, start, end, "unknown-name", message, hint)
        checked = _BASE | (_CALL if site.call else frozenset())
        for name, key in sorted(names.refs):
            if (name, key) in names.guarded:  # only a stage that may be skipped is worth a word then
                problem = self.skipped(key, site, names) if name == "stages" else None
            else:
                problem = self.judge(name, key, site, names) if name in checked else None
            if problem is None:
                continue
            rule, message, hint = problem
            places = spans(name, key)
            for start, end in places[:1] if rule == "stage-maybe-skipped" else places:  # one warning a template
                self.add(src, start, end, rule, message, hint)
        for name, key, attr in sorted(names.chains):
            if name != "stages" or (name, key, attr) in names.guarded or (name, key) in names.guarded:
                continue
            stage = self.stages.get(key)
            found = attribute_problem(output_kind(stage), f"stages.{key}", attr) if stage is not None else None
            if found is not None:
                message, hint = found
                for start, end in spans(name, key, attr):
                    self.add(src, start, end, "no-attribute", message, hint)
        if "loop" in names.free and "loop" in allowed:  # inside a loop: its fields and previous iteration
            for start, end, rule, message, hint in loop_reads(site, names, spans, self.stages):
                self.add(src, start, end, rule, message, hint)
        if ast is None:  # a simple template: no filter, test or constant for the checks below
            return
        if site.kind == "for_each" and site.stage is not None:
            self.for_each(site.stage, src, ast, site.scopes[0].prev if site.scopes else "any")
        if clean and _COMPILER_CHECKED.intersection(src.text.split()) and _has_compiler_checks(ast):
            self.compiles(src, ast)  # last: Jinja's optimizer folds constants into the AST as it compiles

    def hazards(self, src: TemplateSrc, ast: Any, names: Names, parsed: Callable[[], jinja.Parsed]) -> int:
        """What the sandbox refuses when this template compiles or renders (unknown filters and tests, unsafe
        attributes, constants over its limits), each at its exact span. Returns how many were found."""
        from runner.validate.rules import hazards  # noqa: PLC0415 - imports the sandbox, and so jinja2

        env = environment()
        found = hazards.find(ast, names.free, env.filters, env.tests)
        if not found:
            return 0
        located = parsed()
        # The parse with offsets has nodes of its own: find the same hazards on it, in the same order.
        for hazard in hazards.find(located.ast, names.free, env.filters, env.tests):
            for start, end in hazard.spans(located):
                self.add(src, start, end, hazard.rule, hazard.message, hazard.hint)
        return len(found)

    def compiles(self, src: TemplateSrc, ast: Any) -> None:
        """Compile the template as ``runner run`` will, in the same sandbox: Jinja's compiler has checks of
        its own on macros, call blocks and blocks (a ``caller`` argument without a default, a block defined
        twice). Only for templates with those: every other template compiles whenever the checks above pass
        (the compiler's one check on ``for`` is among them), and compiling costs more than every other check of
        a template together."""
        problem = jinja.compile_error(src.text, ast)
        if problem is not None:
            self.add(src, problem.start, problem.end, "template-syntax", problem.message, _SYNTAX_HINT)

    def unknown_name(self, name: str, site: Site, allowed: frozenset[str]) -> tuple[str, str]:
        message = f"'{name}' is not defined in {site.label}"
        lacking = [scope for scope in site.scopes or () if name not in scope.names]
        if site.call and lacking and len(lacking) < len(site.scopes or ()):  # some callers have it, not all
            message = f"'{name}' is not defined in {_where(site, lacking[0])}"
        if name in _CALL:
            return message, (
                "'agent' and 'input' exist only in system prompts and model templates; "
                "a stage's input reads 'prev' or 'stages.<id>'"
            )
        if name == "loop":
            return message, (
                "'loop' exists only in the stages of a loop stage (and its 'until'), and in the templates of the "
                "agents and models only they call"
            )
        visible = sorted(allowed - self.globals)
        return message, suggest(name, visible, "names") if _close(name, visible) else (
            f"templates here see: {', '.join(visible)}"
        )

    def judge(self, name: str, key: str, site: Site, names: Names) -> tuple[str, str, str] | None:
        if name == "inputs":
            if key in self.inputs:
                return None
            return "unknown-input", f"inputs.{key} is not declared", suggest(key, self.inputs, "inputs")
        if name in _FIELDS:
            fields = _FIELDS[name]
            if key in fields:
                return None
            return "unknown-name", f"{name}.{key} does not exist", f"'{name}' has: {', '.join(fields)}"
        if name == "stages":
            if key not in self.stages:
                return "unknown-stage", f"stages.{key}: there is no stage '{key}'", suggest(key, self.stages, "stages")
            for scope in site.scopes or ():
                if key not in scope.ready:
                    reason, hint = self.not_ready(key, scope)
                    return "stage-not-ready", f"stages.{key} is not available in {_where(site, scope)}: {reason}", hint
            return self.skipped(key, site, names)
        if name == "prev":
            for scope in site.scopes or ():
                found = attribute_problem(scope.prev, "prev", key, _where(site, scope))
                if found is not None:
                    return "no-attribute", *found
            return None
        if name == "vars":
            for scope in site.scopes or ():
                if key not in scope.vars:
                    hint = (
                        suggest(key, scope.vars, "vars")
                        if _close(key, sorted(scope.vars))
                        else f"set '{key}' in the 'vars' of the agent or the stage, or name a fan-out's items "
                        f"with 'as: {key}'"
                    )
                    return "unknown-var", f"vars.{key} is not set in {_where(site, scope)}", hint
        return None

    def skipped(self, key: str, site: Site, names: Names) -> tuple[str, str, str] | None:
        """``stages.<key>`` where a ``when`` (or a failed branch under ``on_error: collect``) may have left it
        without output: an error, or a warning when the template (or the reading stage's ``when``) checks it."""
        for scope in site.scopes or ():
            if key not in scope.maybe or key not in scope.ready:
                continue
            absent, reason, hint = self.skip_reason(key)
            where = _where(site, scope)
            if self.checks(key, names, scope, absent, site.kind == "when"):
                return (
                    "stage-maybe-skipped",
                    f"stages.{key} may have no output in {where}: {reason}; a check guards it",
                    "make sure every read of it is behind that check",
                )
            return "stage-not-ready", f"stages.{key} may have no output in {where}: {reason}", hint
        return None

    def checks(self, key: str, names: Names, scope: Scope, absent: bool, in_when: bool) -> bool:
        """Whether a template tests ``stages.<key>`` before reading it, or the reading stage's ``when`` does.
        A stage skipped by its own ``when`` is None: ``{% if stages.x %}``, ``stages.x is none`` and
        ``stages.x.content | default('')`` guard it. A stage of a skipped fan-out or failed branch does not
        exist, and reading it at all fails: only ``stages.x is defined``, ``stages.x | default`` and
        ``'x' in stages`` guard it."""
        path = ("stages", key)
        if absent:
            if path in names.guarded:
                return True
        elif path in names.tested or any(g[:2] == path for g in names.guarded):
            return True
        if in_when:  # the `when` is the check, or it reads what it should check
            return False
        reader = self.stages.get(scope.stage)
        when = reader.policy.when if reader is not None else None
        if when is None or is_constant(when.text):
            return False
        ast = jinja.parse_ast(when.text)
        if ast is None:
            return False
        condition = analyse(ast)
        if path in condition.guarded or (not absent and path in condition.tested):
            return True
        whole = single_expression(ast)  # `when: "{{ stages.x }}"`, as above
        return not absent and whole is not None and ref_of(whole) == path

    def skip_reason(self, key: str) -> tuple[bool, str, str]:
        """(whether ``stages.<key>`` is then absent rather than None, why, how to guard the read)."""
        stage = self.stages[key]
        check = f"check it first: {{% if stages.{key} is defined %}}...{{% endif %}}"
        if stage.policy.when is not None:
            return (
                False,
                f"stage '{key}' has a 'when' that may skip it, and then stages.{key} is None",
                f"read it behind a check, {{% if stages.{key} %}}...{{% endif %}}, or with a fallback, "
                f"{{{{ stages.{key}.content | default('') }}}}",
            )
        for fanout, how in self.walk.places[key].chain:
            outer = self.stages.get(fanout)
            if outer is None:
                continue
            word = KIND_WORDS.get(kind_of(outer).name, "stage")
            if outer.policy.when is not None:
                return True, f"stage '{key}' runs inside {word} '{fanout}', which has a 'when' that may skip it", check
            if kind_of(outer).name == "switch":
                return True, *in_switch(key, fanout, how, check)
            if any(block.partial for block in kind_of(outer).blocks(outer)):  # a fan-out's on_error: collect
                return (
                    True,
                    f"stage '{key}' runs in a branch of fan-out '{fanout}' (on_error: collect), and a branch that "
                    "fails hands out none of its stages",
                    check,
                )
        return True, f"stage '{key}' may be skipped", check

    def not_ready(self, target: str, scope: Scope) -> tuple[str, str]:
        if target == scope.stage:
            return "a stage cannot read its own output", "read 'prev' for the previous stage's output"
        if target in scope.path:
            word = KIND_WORDS.get(kind_of(self.stages[target]).name, "stage")
            return (
                f"{word} '{target}' contains it and finishes after it",
                f"read the stages before the {word}, or the earlier stages of this block",
            )
        there = self.walk.places[target].chain
        here = self.walk.places[scope.stage].chain if scope.stage in self.walk.places else ()
        for fanout, how in there:
            found = in_block(target, fanout, how, here)  # a later stage of a loop, another case of a switch
            if found is not None:
                return found
            if how == "pipeline" and (fanout, how) not in here:
                return (
                    f"stage '{target}' runs once per item inside fan-out '{fanout}' and is visible only there",
                    f"read stages.{fanout}, the list of its per-item outputs",
                )
            if how.startswith("branch") and any(f == fanout and h != how for f, h in here):
                return (
                    f"stage '{target}' runs in another branch of fan-out '{fanout}', at the same time",
                    f"read it after fan-out '{fanout}', or move both into one branch",
                )
        return f"stage '{target}' runs later", f"move stage '{target}' before stage '{scope.stage}'"

    def for_each(self, stage: StageRecord, src: TemplateSrc, ast: Any, prev: str) -> None:
        text = src.text.strip()
        single = text.startswith("{{") and text.endswith("}}") and text.count("{{") == 1
        expr = single_expression(ast) if single else None
        whole = len(src.text.rstrip())
        if expr is None:
            self.add(
                src,
                0,
                whole,
                "for-each-not-list",
                f"for_each of stage '{stage.id}' renders text, not a list",
                "use one expression that gives a list, such as '{{ inputs.items }}'",
            )
            return
        found = self.infer(expr, prev)
        if found is None:
            return
        what, hint = found
        self.add(src, 0, whole, "for-each-not-list", f"for_each of stage '{stage.id}' gives {what}, not a list", hint)

    def infer(self, node: Any, prev: str = "any") -> tuple[str, str] | None:
        """What a for_each expression gives when that is knowably not a list: (description, hint)."""
        found = expression_kind(node, prev)
        if found is not None:
            return found
        generic = FOR_EACH_HINT
        ref = ref_of(node)
        if ref is not None:
            name, key = ref
            if name == "inputs" and key in self.inputs and self.inputs[key].type != "array":
                kind = self.inputs[key].type
                return f"{A_TYPE[kind]} (input '{key}' has type {kind})", generic
            stage = self.stages.get(key)
            if name == "stages" and stage is not None and output_kind(stage) == "message":
                return (
                    f"one message (stage '{key}' runs one agent)",
                    f'split its text ("{{{{ stages.{key}.content.splitlines() }}}}"), or read a fan-out\'s outputs',
                )
        return None


_COMPILER_CHECKED = frozenset({"macro", "call", "block"})


def _has_compiler_checks(ast: Any) -> bool:
    from jinja2 import nodes  # noqa: PLC0415

    return ast.find((nodes.Macro, nodes.CallBlock, nodes.Block)) is not None


_SYNTAX_HINT = "fix the Jinja2 syntax at the caret: {{ expression }}, {% statement %}, {# comment #}"


def _string_paths(value: Any, path: tuple[str | int, ...]) -> list[tuple[str | int, ...]]:
    if isinstance(value, str):
        return [path]
    if isinstance(value, Mapping):
        return [p for key, item in value.items() for p in _string_paths(item, (*path, key))]
    if isinstance(value, list | tuple):
        return [p for i, item in enumerate(value) for p in _string_paths(item, (*path, i))]
    return []


def _where(site: Site, scope: Scope) -> str:
    if site.call:
        return f"{site.label} when stage '{scope.stage}' calls it"
    return site.label


def _close(name: str, options: list[str]) -> bool:
    import difflib  # noqa: PLC0415

    return bool(difflib.get_close_matches(name, options, n=1, cutoff=0.6))


def check_templates(wf: Workflow, source: Source, walk: Walk) -> list[Diagnostic]:
    return TemplateChecker(wf, source, walk).run()
