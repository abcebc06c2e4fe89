"""Typed data flow (issue 16): every template read of ``stages.<id>.data.<path>`` checked against the output
schema of stage ``<id>``, as actionlint checks GitHub's expressions against what each step gives.

- a field the schema does not have (a misspelling) is an error, with "did you mean" (``data-field``); so is a
  field read on a value the schema says is a list, text, a number or a boolean;
- ``for_each`` over a value whose schema is not an array is an error (``for-each-not-list``);
- reading a field that is not ``required`` without a fallback (``| default(...)``, ``is defined``, an ``if``)
  is a warning (``data-optional``): a reply may leave it out, and the template then fails.

Values are followed through the template: ``{% for t in stages.plan.data.tasks %}{{ t.title }}`` checks
``title`` against the items of ``tasks``, and a fan-out whose ``for_each`` is such a list gives its item
(``vars.<as>``) the items' schema in its per-item templates and nested stages; ``prev.data`` is that of the
stage before, when no ``when`` can pass another output through. Nested stages are reached
through the stage-kind registry (the walk of ``scope.py``), so a new kind is covered without this module
knowing it. A schema that does not say (no ``type``, ``true``, an open ``additionalProperties``, a
``$ref`` outside the schema) stops the check there: nothing is reported that the schema does not decide.

:func:`schema_at` is the same lookup for other rules; a ``switch`` on a structured field checks its cases
against that field's ``enum`` through :class:`TemplateFlow` (``cases.py``). One step into a schema is
``schemas.py``; scripted replies to structured outputs are checked in ``outputs.py``.

About 450 lines, on purpose: the values' kinds, their walk through a template and the steps into a
sub-workflow's outputs (issue 22) call each other (a child's outputs are typed by the same walk over the
child), so they stay one module rather than two that import each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runner.config.source import TemplateSrc
from runner.diagnostics import Diagnostic
from runner.stages import FanoutStage, WorkflowStage, kind_of
from runner.stages.base import StageRecord
from runner.stages.workflow import Include
from runner.validate.rules import jinja
from runner.validate.rules.common import diag, suggest
from runner.validate.rules.names import analyse, single_expression
from runner.validate.rules.schemas import Key, index_text, kinds_text, resolve, step, types_of
from runner.validate.rules.scope import Site, Walk, call_sites
from runner.validate.rules.source import Source
from runner.workflow.records import Workflow


@dataclass(frozen=True, slots=True)
class Message:
    """A stage's output that carries a structured value: ``.data`` has ``schema``."""

    stage: str
    schema: Any


@dataclass(frozen=True, slots=True)
class Messages:
    """A fan-out's outputs: a list of :class:`Message` (its per-item agent has an output schema)."""

    stage: str
    schema: Any


@dataclass(frozen=True, slots=True)
class Value:
    """A value inside a structured output: its ``schema``, the schema's ``root`` (for ``$ref``), the stage it
    came from and how templates write it (``stages.plan.data.tasks[*]``)."""

    stage: str
    schema: Any
    root: Any
    expr: str


@dataclass(frozen=True, slots=True)
class ChildOut:
    """A sub-workflow stage's output (issue 22): ``stages.<id>.stages.<child id>`` is what the child's stage is
    (``types``; ``ids``: every stage id of the child), ``.data`` and ``.output`` what its last stage is (``last``)."""

    stage: str
    file: str
    types: Mapping[str, Typed]
    ids: frozenset[str]
    last: Typed | None


@dataclass(frozen=True, slots=True)
class ChildStages:
    """``stages.<id>.stages``: the stages of a sub-workflow's run."""

    child: ChildOut


@dataclass(frozen=True, slots=True)
class ChildOuts:
    """A fan-out's outputs, one :class:`ChildOut` per item (it runs a sub-workflow per item)."""

    child: ChildOut


Typed = Message | Messages | Value | ChildOut | ChildStages | ChildOuts


def output_schema(wf: Workflow, stage: StageRecord) -> Any | None:
    """The output schema of a stage whose output is one agent's message: the stage's own, else its agent's."""
    if stage.agent is None:
        return None
    spec = getattr(stage, "output", None)
    if spec is None:
        agent = wf.agents.get(stage.agent)
        spec = agent.output if agent is not None else None
    return spec.schema if spec is not None else None


def stage_types(wf: Workflow, walk: Walk, children: dict[str, ChildOut] | None = None) -> dict[str, Typed]:
    """Stage id -> what ``stages.<id>`` is, for the stages whose output carries a structured value or is a
    sub-workflow's (``children``: the children's, by file, made once per check)."""
    out: dict[str, Typed] = {}
    children = {} if children is None else children
    for stage, _ in walk.order:
        include = _include_of(stage)
        if include is not None and include.child is not None and stage.id not in out:
            child = _child_out(stage.id, include.child, children)
            out[stage.id] = child if isinstance(stage, WorkflowStage) else ChildOuts(child)
            continue
        if stage.id in out:
            continue
        kind = kind_of(stage)
        own = kind.data_schema(stage)  # an ask's answer: its schema, when it is one (else invalid-setting says)
        if own is not None:
            if _usable(own):
                out[stage.id] = Message(stage.id, own)
            continue
        if stage.agent is None:
            continue
        agent = wf.agents.get(stage.agent)
        if kind.output == "message":
            schema = output_schema(wf, stage)
            if schema is not None:
                out[stage.id] = Message(stage.id, schema)
        elif kind.output == "list" and not kind.blocks(stage) and agent is not None and agent.output is not None:
            out[stage.id] = Messages(stage.id, agent.output.schema)  # one message per item, from one agent
    return out


def _usable(schema: Any) -> bool:
    from runner.structured import schema_problem  # noqa: PLC0415

    return schema_problem(schema) is None


def _include_of(stage: StageRecord) -> Include | None:
    if isinstance(stage, WorkflowStage):
        return stage.include
    return stage.workflow if isinstance(stage, FanoutStage) else None


def _child_out(stage: str, child: Workflow, children: dict[str, ChildOut]) -> ChildOut:
    found = children.get(child.file)
    if found is None:
        walk = Walk(child)
        walk.run()
        types = stage_types(child, walk, children)
        last = types.get(child.stages[-1].id) if child.stages else None
        found = children[child.file] = ChildOut(stage, child.file, types, frozenset(walk.places), last)
    return ChildOut(stage, found.file, found.types, found.ids, found.last)


def _into_child(at: ChildOut | ChildStages | ChildOuts, key: Key, written: str) -> tuple[Typed | None, str | None]:
    """One step into a sub-workflow's output: what it reaches, or a problem (an unknown child stage)."""
    if isinstance(at, ChildOuts):
        return (at.child if isinstance(key, int) else None), None
    if isinstance(at, ChildOut):
        if key == "stages":
            return ChildStages(at), None
        if key == "output":
            return at.last, None
        if key == "data" and isinstance(at.last, Message):
            return Value(at.last.stage, at.last.schema, at.last.schema, f"{written}.data"), None
        return None, None
    if not isinstance(key, str):
        return None, None
    if key not in at.child.ids:
        return None, f"{written}.{key}: workflow {at.child.file} has no stage '{key}'"
    return at.child.types.get(key), None


# -- templates -----------------------------------------------------------------------------------------------


def _chain(node: Any) -> tuple[Any, tuple[tuple[Key, Any], ...]] | None:
    """``(root Name node, ((key, node reading it), ...))`` for ``a.b[0]['c']``; None for anything else."""
    from jinja2 import nodes  # noqa: PLC0415

    keys: list[tuple[Key, Any]] = []
    while True:
        if type(node) is nodes.Getattr:
            keys.append((node.attr, node))
        elif type(node) is nodes.Getitem and type(node.arg) is nodes.Const and isinstance(node.arg.value, str | int):
            keys.append((node.arg.value, node))
        elif type(node) is nodes.Name and node.ctx == "load":
            return node, tuple(reversed(keys))
        else:
            return None
        node = node.node


@dataclass(frozen=True, slots=True)
class Found:
    """One problem: the node to underline, the rule, the message and the hint."""

    node: Any
    rule: str
    message: str
    hint: str


class TemplateFlow:
    """Follows the structured values one template reads (``bindings``: names already typed, such as
    ``vars.<item>`` of a typed fan-out), and collects what does not fit their schemas."""

    def __init__(self, stages: Mapping[str, Typed], bindings: Mapping[tuple[str, ...], Typed]) -> None:
        self.stages = stages
        self.bindings = bindings
        self.found: list[Found] = []

    def typed(self, node: Any, local: Mapping[str, Typed], guards: frozenset[tuple[str, ...]]) -> Typed | None:
        """What an expression is, when it is (part of) a structured value; problems on the way are recorded."""
        chain = _chain(node)
        if chain is None:
            return None
        root, keys = chain
        name = root.name
        at: Typed | None = None
        written = name
        rest = keys
        if name in local:
            at = local[name]
        elif name == "stages" and keys and isinstance(keys[0][0], str) and keys[0][0] in self.stages:
            at, written, rest = self.stages[keys[0][0]], f"stages.{keys[0][0]}", keys[1:]
        else:
            for length in range(len(keys), -1, -1):  # the longest bound prefix: vars.task, or prev
                prefix = (name, *(str(k) for k, _ in keys[:length]))
                if prefix in self.bindings:
                    at, written, rest = self.bindings[prefix], ".".join(prefix), keys[length:]
                    break
        if at is None:
            return None
        path: list[str] = [name, *(str(k) for k, _ in keys[: len(keys) - len(rest)])]
        for key, reader in rest:
            path.append(str(key))
            if isinstance(at, ChildOut | ChildStages | ChildOuts):
                went_to, problem = _into_child(at, key, written)
                if problem is not None:
                    assert isinstance(at, ChildStages)
                    hint = suggest(str(key), at.child.ids, f"stages of {at.child.file}")
                    self.found.append(Found(reader, "unknown-stage", problem, hint))
                if went_to is None:
                    return None
                at = went_to
                written = f"{written}{index_text(key)}"
                continue
            if isinstance(at, Message):
                if key != "data":
                    return None  # content, name, ...: the validator's other rules know messages
                at = Value(at.stage, at.schema, at.schema, f"{written}.data")
            elif isinstance(at, Messages):
                if not isinstance(key, int):
                    return None
                at = Message(at.stage, at.schema)
            else:
                went = step(at.schema, key, at.root, at.expr)
                if went.problem is not None:
                    self.found.append(
                        Found(
                            reader,
                            "data-field",
                            f"{at.expr}{index_text(key)}: {went.problem} (the output schema of stage '{at.stage}')",
                            went.hint,
                        )
                    )
                    return None
                here = f"{at.expr}{index_text(key)}"
                if not went.required and isinstance(key, str) and tuple(path) not in guards:
                    self.found.append(
                        Found(
                            reader,
                            "data-optional",
                            f"{here}: field '{key}' is optional in the output schema of stage '{at.stage}' (not in "
                            "its required list), and a reply may leave it out",
                            f"add '{key}' to required, or read it with a fallback: {{{{ {here} | default('') }}}}",
                        )
                    )
                    guards = guards | {tuple(path)}  # once per chain
                if went.schema is None:
                    return None
                at = Value(at.stage, went.schema, at.root, here)
            written = f"{written}{index_text(key)}"
        return at

    def walk(self, ast: Any, guards: frozenset[tuple[str, ...]]) -> None:
        from jinja2 import nodes  # noqa: PLC0415

        stack: list[tuple[Any, dict[str, Typed]]] = [(ast, {})]
        while stack:
            node, local = stack.pop()
            if type(node) in (nodes.Getattr, nodes.Getitem):
                chain = _chain(node)
                if chain is not None:
                    self.typed(node, local, guards)
                    continue  # the whole chain is read here: its inner links are not reads of their own
            if type(node) is nodes.For:
                over = self.typed(node.iter, local, guards)
                inner = dict(local)
                if type(node.target) is nodes.Name:
                    item = _item_of(over)
                    if item is not None:
                        inner[node.target.name] = item
                    else:
                        inner.pop(node.target.name, None)
                stack.extend((child, inner) for child in (*node.body, *node.else_))
                if node.test is not None:
                    stack.append((node.test, inner))
                continue
            stack.extend((child, local) for child in node.iter_child_nodes())


def _item_of(value: Typed | None) -> Typed | None:
    """What one item of a list value is, when the value is a typed list."""
    if isinstance(value, ChildOuts):
        return value.child
    if isinstance(value, Messages):
        return Message(value.stage, value.schema)
    if isinstance(value, Value):
        schema = resolve(value.schema, value.root)
        kinds = types_of(schema, value.root)
        if kinds is not None and "array" in kinds and isinstance(schema, Mapping):
            return Value(value.stage, schema.get("items", True), value.root, f"{value.expr}[*]")
    return None


# -- the rule ------------------------------------------------------------------------------------------------


class DataFlowChecker:
    def __init__(self, wf: Workflow, source: Source, walk: Walk) -> None:
        self.wf = wf
        self.source = source
        self.walk = walk
        self.stages = stage_types(wf, walk)
        self.out: list[Diagnostic] = []
        self.items: dict[str, tuple[str, Typed]] = {}  # fan-out id -> (its item's name, what the item is)
        self.previous: dict[str, StageRecord] = {}
        self._previous(wf.stages)

    def run(self) -> list[Diagnostic]:
        if not self.stages:
            return []
        sites = [*self.walk.sites, *call_sites(self.walk)]
        for site in sites:  # the fan-outs' for_each first: their items type the templates inside them
            if site.kind == "for_each" and site.stage is not None:
                self.for_each(site)
        for site in sites:
            self.site(site)
        return self.out

    def bindings(self, site: Site) -> dict[tuple[str, ...], Typed]:
        if not site.scopes or len(site.scopes) != 1:
            return {}
        scope = site.scopes[0]
        out: dict[tuple[str, ...], Typed] = {}
        for stage_id in scope.path:  # outermost first: an inner fan-out's item of the same name wins
            found = self.items.get(stage_id)
            if found is not None and found[0] in scope.vars:
                out[("vars", found[0])] = found[1]
        before = self.previous.get(scope.stage)
        if scope.prev == "message" and before is not None and before.id in self.stages:
            out[("prev",)] = self.stages[before.id]  # `prev` is that stage's message: no `when` passes another
        return out

    def _previous(self, stages: tuple[StageRecord, ...]) -> None:
        """Stage id -> the stage just before it in its list, when that one always runs (no ``when``)."""
        for before, stage in zip((None, *stages), stages, strict=False):
            if before is not None and before.policy.when is None:
                self.previous.setdefault(stage.id, before)
            for block in kind_of(stage).blocks(stage):
                self._previous(block.stages)

    def site(self, site: Site) -> None:
        src = site.src
        bindings = self.bindings(site)
        if "data" not in src.text and ".stages" not in src.text and not any(key[0] == "vars" for key in bindings):
            return  # reads no structured value: most templates, skipped without a parse
        parsed = jinja.parse(src.text)
        if parsed.ast is None:
            return  # the syntax error is template-syntax's
        names = analyse(parsed.ast)
        guards = frozenset(names.guarded | names.tested)
        flow = TemplateFlow(self.stages, bindings)
        flow.walk(parsed.ast, guards)
        seen: set[tuple[int, int, str]] = set()
        for found in flow.found:
            start, end = parsed.span(found.node)
            if (start, end, found.rule) in seen:
                continue
            seen.add((start, end, found.rule))
            self.add(src, start, end, found.rule, found.message, found.hint)

    def for_each(self, site: Site) -> None:
        stage = site.stage
        assert stage is not None
        ast = jinja.parse_ast(site.src.text)
        expr = single_expression(ast) if ast is not None else None
        if expr is None:
            return
        flow = TemplateFlow(self.stages, self.bindings(site))
        value = flow.typed(expr, {}, frozenset())
        item = _item_of(value)
        name = kind_of(stage).item_name(stage)
        if item is not None and name is not None:
            self.items[stage.id] = (name, item)
        elif isinstance(value, Value):
            kinds = types_of(value.schema, value.root)
            if kinds is not None and "array" not in kinds:
                text = site.src.text
                self.add(
                    site.src,
                    0,
                    len(text.rstrip()),
                    "for-each-not-list",
                    f"for_each of stage '{stage.id}' gives {value.expr}, which is {kinds_text(kinds)} in the output "
                    f"schema of stage '{value.stage}', not a list",
                    "iterate over a field whose schema is an array (type: array), or make this one an array",
                )

    def add(self, src: TemplateSrc, start: int, end: int, rule: str, message: str, hint: str) -> None:
        self.out.append(diag(self.wf.file, self.source.template(src, start, end), rule, message, hint))


def check_data_flow(wf: Workflow, source: Source, walk: Walk) -> list[Diagnostic]:
    from runner.validate.rules.outputs import check_scripted_outputs  # noqa: PLC0415 - jsonschema, when needed

    return [*DataFlowChecker(wf, source, walk).run(), *check_scripted_outputs(wf, source, walk)]


def schema_at(wf: Workflow, expression: str) -> Any | None:
    """The sub-schema that ``expression`` reads: ``stages.plan.data.route`` (or ``{{ stages.plan.data.route }}``)
    gives the schema of ``route`` in the output schema of stage ``plan``, ``$ref``s followed; None when the
    expression reads no structured value or the schema does not say what is there."""
    text = expression if "{{" in expression else "{{ " + expression + " }}"
    ast = jinja.parse_ast(text)
    node = single_expression(ast) if ast is not None else None
    if node is None:
        return None
    walk = Walk(wf)
    walk.run()
    value = TemplateFlow(stage_types(wf, walk), {}).typed(node, {}, frozenset())
    return resolve(value.schema, value.root) if isinstance(value, Value) else None
