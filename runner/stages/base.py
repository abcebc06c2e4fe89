"""The contract of a stage kind, and the small types every layer uses to talk to one.

A stage kind (``agent``, ``python``, ``fanout``) is one :class:`StageKind` in one module of this package and
one entry of the registry (``runner/stages/__init__.py``). It says in one place what every layer needs to
know about it:

- ``name``: the key that picks the kind in a stage's mapping, one of the stage ``oneOf`` of
  ``schemas/workflow.schema.json`` (``tests/test_stage_kinds.py`` pins the two together);
- ``build``: a schema-valid mapping and its position -> the kind's frozen record (``workflow/build.py``);
- ``templates``, ``item_name``, ``blocks``, ``output``: the templates it renders, the item they see, the stage
  lists nested in it and what its output is, so that the validator (``validate/rules/``), the compiler
  and the report walk stages without knowing the kinds;
- ``plan``: record -> plan node (``plan/compile.py``); ``run``: how the engine runs that node
  (``engine/execute.py``); ``graph_label``, ``graph_parts``: its lines in ``runner graph`` (``plan/graph.py``);
  ``shape``: how it and its children appear in the report (``report/layout.py``).

The kinds sit below every layer that asks them: this package imports only the bottom of the house
(``config``, ``errors``; ``calls`` and ``dispatch`` once a run starts) and the standard library. What a kind
needs from a higher layer comes through a Protocol defined here (:class:`BuildContext`, :class:`PlanContext`,
:class:`EngineServices`, :class:`ShapeContext`), so no kind imports the builder, the compiler or the engine,
and the package graph keeps no cycle (``workflow/records.py`` re-exports the stage records from here). Nothing
here imports asyncio or Jinja at import time: ``runner validate`` and ``runner report`` load the records
without either.

This module is over 400 lines on purpose: it is the whole contract, read in one place.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, NamedTuple, Protocol, TypeVar

from runner.config.source import Loc, TemplateSrc
from runner.retry import RetryPolicy  # a stage's retries: the same record (and back-off) as a model's

if TYPE_CHECKING:
    import asyncio
    from concurrent.futures import Executor

    from runner.calls import Usage
    from runner.events import Recorder
    from runner.stages.gating import GateRequest
    from runner.templates import Template

YamlPath = tuple[str | int, ...]
"""A path in the YAML document: ``("stages", 1, "fanout", "branches", 0)`` (``runner.workflow.document.Path``)."""


# ---------------------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True, slots=True)
class StagePolicy:
    """What any stage takes besides its kind's own keys: ``timeout``, ``retry`` and ``when``."""

    timeout: float | None = None
    retry: RetryPolicy = RetryPolicy()
    when: TemplateSrc | None = None


NO_POLICY = StagePolicy()


class StageRecord(Protocol):
    """What every stage's frozen record has, whatever its kind: code that walks stages reads only these, and
    asks the stage's kind (:func:`runner.stages.kind_of`) for the rest."""

    @property
    def id(self) -> str: ...
    @property
    def input(self) -> TemplateSrc | None: ...
    @property
    def vars(self) -> Mapping[str, Any]: ...
    @property
    def loc(self) -> Loc: ...
    @property
    def policy(self) -> StagePolicy: ...
    @property
    def agent(self) -> str | None:
        """The agent the stage calls itself (a fan-out's per-item agent included); None when it calls none."""


class Common(NamedTuple):
    """The keys every stage has, read by :meth:`BuildContext.common`.

    This and the other small views kinds hand out (:class:`TemplateUse`, :class:`Block`, :class:`GraphPart`)
    are named tuples: a tenth of a frozen dataclass's cost to define, paid at every ``runner validate``."""

    id: str
    input: TemplateSrc | None
    vars: Mapping[str, Any]
    loc: Loc
    policy: StagePolicy


class BuildContext(Protocol):
    """What a kind's :meth:`StageKind.build` gets from ``runner/workflow/build.py``: located templates and
    positions in the document, and the building of nested stages (through the registry)."""

    def common(self, raw: Mapping[str, Any], path: YamlPath) -> Common: ...
    def template(self, path: YamlPath) -> TemplateSrc: ...
    def stage(self, raw: Mapping[str, Any], path: YamlPath) -> StageRecord: ...
    def output(self, raw: Mapping[str, Any], path: YamlPath, name: str) -> Any:
        """The structured output (``runner.config.output.OutputSpec``) at ``path`` of ``raw``'s ``output`` key,
        or None: without one, or when it is refused (a located problem)."""

    def loc(self, path: YamlPath) -> Loc: ...
    def include(self, file: str, path: YamlPath) -> tuple[str, Any]:
        """The child workflow ``file`` (written at ``path``, relative to the including file): the child's file as
        messages name it, and its records (None when it cannot be read or checked: a located problem)."""


# ---------------------------------------------------------------------------------------------------------
# What validation, planning and reporting read of a record


class TemplateUse(NamedTuple):
    """A template a stage renders (its ``when`` aside, which every stage may have): ``role`` names it in
    messages ("the input of stage 'x'") and is ``for_each`` for one that must give a list; ``path`` is where
    it is, relative to the stage; ``per_item`` when it also sees the stage's item (:meth:`StageKind.item_name`)."""

    role: str
    src: TemplateSrc
    path: YamlPath
    per_item: bool = False
    after: bool = False  # renders after the stage's blocks ran (a loop's ``until``): sees their stages
    names: frozenset[str] = frozenset()  # names it sees besides the stage's own context (``loop``)


class Block(NamedTuple):
    """A list of stages nested in a stage, run in order (a fan-out's branch, its per-item pipeline).

    ``path`` is where the list is, relative to the stage; ``how`` says how it is nested, for messages and
    the validator's notion of who sees whom: ``branch <i>`` runs beside its sibling blocks, ``pipeline`` once
    per item. ``item``: the name its stages see in ``vars`` besides the stage's own (a fan-out's ``as``).
    ``exported``: its stages' outputs stay visible as ``stages.<id>`` after the stage (listed branches); a
    per-item pipeline's do not. ``partial``: a run of it may hand out none of its stages (a failed branch
    under ``on_error: collect``; a switch's cases). ``prev``: what ``prev`` holds for its first stage (``text``:
    the stage's input; ``loop-input``: a loop's input, in its first iteration), as :attr:`StageKind.output` says
    of outputs. ``names``: the names its stages' templates see besides the usual ones (a loop body's ``loop``;
    see :data:`CONTEXT_NAMES`). ``how`` is also ``body`` (a loop's), ``case '<value>'`` or ``the default case``.
    """

    stages: tuple[StageRecord, ...]
    path: YamlPath
    how: str
    item: str | None = None
    exported: bool = False
    partial: bool = False
    prev: str = "text"
    names: frozenset[str] = frozenset()


# ---------------------------------------------------------------------------------------------------------
# Plan


@dataclass(frozen=True, slots=True)
class CompiledTemplate:
    """A template and the names it reads (from its AST): the engine renders a template that reads nothing
    that varies per branch once per fan-out, not once per branch."""

    template: Template
    names: frozenset[str]

    @property
    def per_branch(self) -> bool:
        return bool(self.names & _PER_BRANCH)


# Names whose value differs between the branches of one fan-out.
_PER_BRANCH = frozenset({"vars", "prev", "stages", "agent", "input"})


@dataclass(frozen=True, slots=True)
class StagePlan:
    """A compiled stage, as the engine runs it: its record, its kind (the engine calls ``kind.run``), its
    compiled ``input`` and ``when``, the agent it calls (a :class:`runner.plan.compile.AgentPlan`: typed
    loosely here, since the plan layer sits above the stage kinds) and the plans of its blocks, in the order
    of :meth:`StageKind.blocks`. A kind with more to compile subclasses it (:class:`FanoutPlan`)."""

    stage: Any  # a StageRecord; Any so that a kind reads its own record's fields after an isinstance
    kind: StageKind[Any]
    input: CompiledTemplate | None
    when: CompiledTemplate | None = None
    agent: Any = None
    blocks: tuple[tuple[StagePlan, ...], ...] = ()

    @property
    def id(self) -> str:
        return str(self.stage.id)


class PlanContext(Protocol):
    """What a kind's :meth:`StageKind.plan` gets from ``runner/plan/compile.py``."""

    def template(self, src: TemplateSrc | None) -> CompiledTemplate | None: ...
    def agent(self, name: str) -> Any: ...  # the AgentPlan of agent ``name``
    def stages(self, stages: Sequence[StageRecord]) -> tuple[StagePlan, ...]: ...
    def child(self, workflow: Any) -> Any:
        """The plan of a child workflow's records (``runner.plan.compile.Plan``): compiled once per file per run."""


# ---------------------------------------------------------------------------------------------------------
# Run


@dataclass(slots=True)
class Output:
    """A stage's output as templates see it: ``content``, ``name`` (the agent or function), ``node``,
    ``usage``, ``error`` (None, or why the branch failed under ``on_error: collect``) and ``data`` (the value
    of a structured output, issue 16; None without one)."""

    content: str
    name: str
    node: str
    usage: Usage
    error: str | None = None
    data: Any = None

    def __str__(self) -> str:
        return self.content


class _Skipped:
    """A stage whose ``when`` was false: ``stages.<id>`` is None and ``prev`` passes through."""


SKIPPED = _Skipped()


class Iterations(list[dict[str, Any]]):
    """A loop's output: one mapping per iteration, from each inner stage's id to its output in that iteration.
    As a later stage's default input it is the last iteration's last output (``last``), not every iteration."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        super().__init__()
        self.last: Any = None


@dataclass(slots=True)
class Routed:
    """A switch's output: the ``case`` that ran (None when no case matched and there is no default; ``default``
    for the default) and the ``output`` of its last stage (the switch's input passed through when none ran)."""

    case: str | None
    output: Any

    def __str__(self) -> str:
        return as_text(self.output)


CONTEXT_NAMES: ContextVar[Mapping[str, Any] | None] = ContextVar("runner_context_names", default=None)
"""Names a stage kind adds to the template context of every stage run inside it (a loop's ``loop``): the engine
adds them to each context it builds. A context variable, so that tasks started inside (fan-out branches) see
them too, and each iteration of nested loops its own."""


def truthy(value: Any) -> bool:
    """A condition's value (``when``, ``until``): text such as "false", "no", "0" or "" is false, like false."""
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "no", "0", "none", "off")
    return bool(value)


def as_text(value: Any) -> str:
    """A stage's default input from the previous output: text as is, a fan-out's outputs one per paragraph, a
    loop's last output."""
    if value is None:
        return ""
    if isinstance(value, Iterations):
        return as_text(value.last)
    if isinstance(value, list):
        return "\n\n".join(as_text(v) for v in value)
    return str(value)


def brief(exc: BaseException) -> str:
    """An error as an event's ``error`` says it: its message, or its type when it has none."""
    import asyncio  # noqa: PLC0415 - loaded by then: only runs fail

    from runner.dispatch import first_error  # noqa: PLC0415

    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    exc = first_error(exc)
    return str(exc) or type(exc).__name__


class EngineServices(Protocol):
    """What a kind's :meth:`StageKind.run` may ask of the engine (``runner/engine/execute.py``)."""

    @property
    def recorder(self) -> Recorder: ...

    def run_sequence(
        self,
        plans: Sequence[StagePlan],
        stages: dict[str, Any],
        prev: Any,
        vars_: Mapping[str, Any],
        prefix: str,
    ) -> Coroutine[Any, Any, Any]:
        """Run ``plans`` in order from ``prev``, adding each output to ``stages``; the last output."""

    def call_agent(
        self, node: str, agent: Any, text: str, ctx: dict[str, Any], output: Any = None
    ) -> Coroutine[Any, Any, Output]:
        """One agent turn on ``text`` as node ``node``; takes ``ctx`` over (adds ``agent`` and ``input``).
        ``output``: the stage's structured output (a :class:`runner.config.output.OutputSpec`), if it has one."""

    def run_workflow(
        self, include: Any, inputs: Mapping[str, Any], start: Any, prefix: str
    ) -> Coroutine[Any, Any, Any]:
        """Run the child of ``include`` (a :class:`runner.stages.workflow.IncludePlan`) with ``inputs`` (checked
        against its ``inputs:`` here), its first stage starting from ``start``, its nodes under ``prefix``; its
        :class:`runner.stages.workflow.Child` output."""

    def function(self, name: str) -> Callable[..., Any]:
        """A python stage's function, imported before the run (``module:attribute``)."""

    def executor(self) -> Executor:
        """The bounded thread pool for sync user code (tools and python stages)."""

    def gate(self, request: GateRequest) -> Coroutine[Any, Any, Any]:
        """A human gate's decision (``approve``: a :class:`~runner.stages.gating.Decision`) or checked answer
        (``ask``), from the run's gatekeeper; raises :class:`runner.errors.GateWaiting` when there is none."""

    @property
    def checkpoint(self) -> Any:
        """The run's checkpoint (``runner.engine.checkpoint.Checkpoint``: ``restored(node)``, ``MISSING``,
        ``commit(node, output)``), or None when the run keeps none. Stages are restored and committed by the
        engine; a kind commits only the nodes it runs without a stage (a fan-out's per-item agent calls)."""
        ...

    @property
    def shared_slots(self) -> Mapping[str, asyncio.Semaphore]:
        """Bounds shared beyond this run, by top-level fan-out stage id: a dataset batch's rows share each such
        fan-out's ``max_concurrency`` (empty for a single run, whose fan-outs bound themselves)."""
        ...


# ---------------------------------------------------------------------------------------------------------
# Report and graph


@dataclass(frozen=True, slots=True)
class StageShape:
    """One stage as the report sees it. ``mode`` is ``agent`` for a plain agent stage, ``python`` for a python
    stage; for a fan-out ``each_agent`` (``for_each`` with ``agent``: branch ``i`` is the call ``<id>[i]``),
    ``each_stages`` (``for_each`` with ``stages``: branch ``i`` runs ``<id>[i].<inner>``) or ``branches``
    (listed branches, their stages keep their ids); ``loop`` (iteration ``i``, from 1, runs
    ``<id>[i].<inner>``, in order), ``workflow`` (a child workflow: ``stages`` are its own, run as
    ``<id>.<inner>``; a fan-out over a child is ``each_stages`` over the child's stages) or
    ``switch`` (``branches`` are its cases, then its default; the stages of
    the one that ran keep their ids); ``approve`` or ``ask`` for a human gate."""

    id: str
    path: str  # where it is in the YAML: stages[0].fanout.branches[1][0]
    mode: str
    agent: str | None = None
    model: str | None = None
    max_concurrency: int | None = None
    function: str | None = None
    stages: tuple[StageShape, ...] = ()
    branches: tuple[tuple[StageShape, ...], ...] = ()

    @property
    def is_fanout(self) -> bool:
        return self.mode not in ("agent", "python", "loop", "switch", "workflow", "approve", "ask")


class ShapeContext(Protocol):
    """What a kind's :meth:`StageKind.shape` gets from ``runner/report/layout.py``."""

    def model_of(self, agent: str | None) -> str | None: ...
    def block(self, path: str, block: Block) -> tuple[StageShape, ...]: ...
    def workflow(self, child: Any) -> tuple[StageShape, ...]:
        """The shapes of a child workflow's stages (its records: ``runner.workflow.records.Workflow``)."""


def yaml_path(path: YamlPath) -> str:
    """``fanout.branches[1]`` for ``("fanout", "branches", 1)``: a path as the report and messages write it."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


class GraphPart(NamedTuple):
    """A nested part of a stage in ``runner graph``: a heading (``branch 0``, ``each``) over the plans drawn
    inside it, or, without plans, one line (``leaf``; ``mermaid_leaf`` in Mermaid). ``key`` makes its
    Mermaid ids (``<id>_<key>_...``). ``repeats``: the part runs again (a loop's body); Mermaid draws a dotted
    edge with this label from its end back to the stage."""

    heading: str
    key: str
    plans: tuple[StagePlan, ...] = ()
    leaf: str = ""
    mermaid_leaf: str = ""
    repeats: str = ""


def one_line(text: str) -> str:
    """A template on one line: a block scalar's line breaks would break the tree and Mermaid's labels."""
    return " ".join(text.split())


# ---------------------------------------------------------------------------------------------------------
# The contract

R = TypeVar("R", bound=StageRecord)


class StageKind(ABC, Generic[R]):
    """One stage kind; ``R`` is its record type. Subclasses set the class attributes and implement the
    abstract hooks; the others have defaults that fit a kind with no nested stages."""

    name: ClassVar[str]
    """The key that picks this kind in a stage's mapping (``agent: ...``), as the schema's ``oneOf`` says."""
    record: ClassVar[type]
    """Its frozen record class (``R``)."""
    output: ClassVar[str] = "any"
    """What its output is as ``prev`` and ``stages.<id>``: ``message`` (an agent's), ``list`` (one item per
    branch), ``iterations`` (a loop's :class:`Iterations`), ``routed`` (a switch's :class:`Routed`) or ``any``;
    the validator checks attribute reads against it."""
    agent_key: ClassVar[YamlPath] = ("agent",)
    """Where the record's ``agent`` is written, relative to the stage (for messages)."""
    mermaid_shape: ClassVar[tuple[str, str]] = ("[", "]")
    """The brackets of its Mermaid node."""

    @abstractmethod
    def build(self, raw: Mapping[str, Any], path: YamlPath, b: BuildContext) -> R:
        """The record of a schema-valid stage mapping at ``path``."""

    def templates(self, stage: R) -> tuple[TemplateUse, ...]:
        """The templates it renders besides ``when``, in the order the engine renders them."""
        return (TemplateUse("input", stage.input, ("input",)),) if stage.input is not None else ()

    def item_name(self, stage: R) -> str | None:
        """The name under which its templates marked ``per_item`` and its ``agent`` see one item in ``vars``."""
        return None

    def blocks(self, stage: R) -> tuple[Block, ...]:
        """The stage lists nested in it, in document order."""
        return ()

    def data_schema(self, stage: R) -> Any:
        """The schema of its output's ``.data`` when the kind itself decides it (an ``ask``'s answer), for the
        validator's typed data flow; None otherwise (an agent stage's comes from its ``output``)."""
        return None

    def plan(self, stage: R, p: PlanContext) -> StagePlan:
        """Its plan node: ``input`` and ``when`` compiled, its agent's plan, its blocks planned."""
        when = p.template(stage.policy.when)  # first: of two template errors, the one raised stays the same
        return StagePlan(
            stage,
            self,
            p.template(stage.input),
            when,
            p.agent(stage.agent) if stage.agent is not None else None,
            tuple(p.stages(block.stages) for block in self.blocks(stage)),
        )

    @abstractmethod
    def run(
        self,
        sp: StagePlan,
        engine: EngineServices,
        stages: dict[str, Any],
        prev: Any,
        vars_: Mapping[str, Any],
        prefix: str,
        ctx: dict[str, Any],
    ) -> Awaitable[Any]:
        """Run the node once (the engine applies ``when``, ``timeout`` and ``retry`` around it): ``stages`` holds
        the outputs so far, ``prev`` the previous output, ``vars_`` the merged vars, ``prefix`` the node id
        prefix of an enclosing per-item pipeline, ``ctx`` the template context (the kind may change it).
        Returns the output. A plain function returning a coroutine saves a frame on hot paths."""

    @abstractmethod
    def graph_label(self, sp: StagePlan) -> str:
        """What it runs, in one line: ``agent a (model m, scripted)``."""

    def graph_parts(self, sp: StagePlan) -> tuple[GraphPart, ...]:
        """Its nested parts in ``runner graph``; a stage with parts gets a join node in Mermaid."""
        return ()

    @abstractmethod
    def shape(self, stage: R, path: str, s: ShapeContext) -> StageShape:
        """How the report sees it (``path``: where it is in the YAML, ``stages[0]``)."""
