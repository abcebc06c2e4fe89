"""The ``fanout`` stage kind: parallel branches, either listed (``branches``, each a list of stages) or one
per item of ``for_each`` (a list, or a template giving one) through one ``agent``, a list of ``stages`` or a
child ``workflow`` (with its ``inputs``: ``runner/stages/workflow.py``).

Branches run as tasks of one ``asyncio.TaskGroup`` (``runner/dispatch.py``), at most ``max_concurrency`` at
once; the output is the list of the branch outputs, in input order. Under ``on_error: fail_fast`` the first
failure cancels the siblings; under ``collect`` a failed branch's output is an :class:`Output` whose ``error``
says why. The hot path of a wide fan-out is a plain ``for_each`` over an agent: each branch is one agent call
started directly (``start_agent``), with one context dict and the renders its templates need.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runner.config.source import Loc, TemplateSrc
from runner.errors import GateStop, RunError
from runner.stages.agent import agent_text
from runner.stages.base import (
    NO_POLICY,
    Block,
    BuildContext,
    CompiledTemplate,
    EngineServices,
    GraphPart,
    Output,
    PlanContext,
    ShapeContext,
    StageKind,
    StagePlan,
    StagePolicy,
    StageRecord,
    StageShape,
    TemplateUse,
    YamlPath,
    as_text,
    brief,
    one_line,
    yaml_path,
)
from runner.stages.workflow import Include, IncludePlan, build_include, include_label, plan_include


@dataclass(frozen=True, slots=True)
class FanoutStage:
    """Parallel branches. Either ``branches`` (listed, each a tuple of stages) or ``for_each`` (a list or a
    template rendering to one) with ``agent`` or ``stages`` run once per item, the item named ``as_name``."""

    id: str
    input: TemplateSrc | None
    vars: Mapping[str, Any]
    branches: tuple[tuple[StageRecord, ...], ...]
    for_each: TemplateSrc | tuple[Any, ...] | None
    as_name: str
    agent: str | None
    stages: tuple[StageRecord, ...]
    max_concurrency: int | None
    loc: Loc
    on_error: str = "fail_fast"  # fail_fast | collect
    policy: StagePolicy = NO_POLICY
    workflow: Include | None = None  # a child workflow run per item (issue 22)


@dataclass(frozen=True, slots=True)
class FanoutPlan(StagePlan):
    """A fan-out's plan: ``for_each`` compiled when it is a template. ``blocks`` holds the listed branches'
    plans, or the per-item pipeline's as its one block (none for a per-item agent)."""

    for_each: CompiledTemplate | tuple[Any, ...] | None = None
    include: IncludePlan | None = None  # the per-item child workflow, compiled

    @property
    def listed(self) -> bool:
        return bool(self.stage.branches)


class FanoutKind(StageKind[FanoutStage]):
    name = "fanout"
    record = FanoutStage
    output = "list"
    agent_key = ("fanout", "agent")
    mermaid_shape = ("{{", "}}")

    def build(self, raw: Mapping[str, Any], path: YamlPath, b: BuildContext) -> FanoutStage:
        c = b.common(raw, path)
        fan = raw["fanout"]
        fpath = (*path, "fanout")
        branches = tuple(
            tuple(b.stage(s, (*fpath, "branches", bi, si)) for si, s in enumerate(branch))
            for bi, branch in enumerate(fan.get("branches") or ())
        )
        for_each: TemplateSrc | tuple[Any, ...] | None = None
        if "for_each" in fan:
            for_each = b.template((*fpath, "for_each")) if isinstance(fan["for_each"], str) else tuple(fan["for_each"])
        inner = tuple(b.stage(s, (*fpath, "stages", i)) for i, s in enumerate(fan.get("stages") or ()))
        return FanoutStage(
            id=c.id,
            input=c.input,
            vars=c.vars,
            branches=branches,
            for_each=for_each,
            as_name=fan.get("as", "item"),
            agent=fan.get("agent"),
            stages=inner,
            max_concurrency=fan.get("max_concurrency"),
            loc=c.loc,
            on_error=fan.get("on_error", "fail_fast"),
            policy=c.policy,
            workflow=build_include(fan, fpath, ("fanout",), b) if "workflow" in fan else None,
        )

    def templates(self, stage: FanoutStage) -> tuple[TemplateUse, ...]:
        out = []
        if isinstance(stage.for_each, TemplateSrc):  # renders without the item, before any branch
            out.append(TemplateUse("for_each", stage.for_each, ("fanout", "for_each")))
        if stage.input is not None:
            out.append(TemplateUse("input", stage.input, ("input",), per_item=True))
        if stage.workflow is not None:
            out.extend(stage.workflow.templates(True))
        return tuple(out)

    def item_name(self, stage: FanoutStage) -> str | None:
        return stage.as_name if stage.for_each is not None else None

    def blocks(self, stage: FanoutStage) -> tuple[Block, ...]:
        collect = stage.on_error == "collect"
        if stage.branches:
            # Listed branches start from the fan-out's input; the engine copies each branch's outputs out
            # once it finishes, so their stages are visible after the fan-out.
            return tuple(
                Block(branch, ("fanout", "branches", b), f"branch {b}", exported=True, partial=collect)
                for b, branch in enumerate(stage.branches)
            )
        if stage.stages:
            return (Block(stage.stages, ("fanout", "stages"), "pipeline", item=stage.as_name, partial=collect),)
        return ()

    def plan(self, stage: FanoutStage, p: PlanContext) -> FanoutPlan:
        when = p.template(stage.policy.when)
        for_each: CompiledTemplate | tuple[Any, ...] | None = None
        if isinstance(stage.for_each, TemplateSrc):
            for_each = p.template(stage.for_each)
        elif stage.for_each is not None:
            for_each = stage.for_each
        return FanoutPlan(
            stage,
            self,
            p.template(stage.input),
            when,
            p.agent(stage.agent) if stage.agent else None,
            tuple(p.stages(block.stages) for block in self.blocks(stage)),
            for_each,
            plan_include(stage.workflow, p) if stage.workflow is not None else None,
        )

    async def run(
        self,
        sp: StagePlan,
        engine: EngineServices,
        stages: dict[str, Any],
        prev: Any,
        vars_: Mapping[str, Any],
        prefix: str,
        ctx: dict[str, Any],
    ) -> list[Any]:
        import asyncio  # noqa: PLC0415 - runs only on the loop; records load without asyncio

        from runner.dispatch import first_error  # noqa: PLC0415

        assert isinstance(sp, FanoutPlan)
        node = prefix + sp.stage.id
        rec = engine.recorder
        rec.emit("started", node, {"kind": "fanout"})
        try:
            outputs = await _body(sp, engine, stages, prev, vars_, prefix, ctx, node)
        except BaseException as exc:
            rec.emit(
                "cancelled" if isinstance(exc, asyncio.CancelledError) else "failed",
                node,
                {"error": brief(first_error(exc))},
            )
            raise
        stage: FanoutStage = sp.stage
        # Only on_error: collect keeps failed branches as outputs; otherwise a failure has raised above.
        failed = (
            sum(1 for o in outputs if isinstance(o, Output) and o.error is not None)
            if stage.on_error == "collect"
            else 0
        )
        rec.emit("finished", node, {"failed_branches": failed} if failed else None)
        return outputs

    def graph_label(self, sp: StagePlan) -> str:
        assert isinstance(sp, FanoutPlan)
        stage: FanoutStage = sp.stage
        bound = f", max {stage.max_concurrency} at once" if stage.max_concurrency else ""
        errors = ", on error collect" if stage.on_error == "collect" else ""
        if sp.listed:
            return f"fanout over {len(sp.blocks)} branches{bound}{errors}"
        source = (
            one_line(sp.for_each.template.src.text)
            if isinstance(sp.for_each, CompiledTemplate)
            else f"{len(sp.for_each or ())} items"
        )
        return f"fanout for each {stage.as_name} in {source}{bound}{errors}"

    def graph_parts(self, sp: StagePlan) -> tuple[GraphPart, ...]:
        assert isinstance(sp, FanoutPlan)
        if sp.listed:
            return tuple(GraphPart(f"branch {b}", str(b), plans=branch) for b, branch in enumerate(sp.blocks))
        if sp.include is not None:
            return (GraphPart(f"each: {include_label(sp.include)}", "each", plans=sp.include.child.stages),)
        if sp.agent is not None:
            text = agent_text(sp.agent)
            return (GraphPart("each", "each", leaf=text, mermaid_leaf=f"each {sp.stage.as_name}: {text}"),)
        return (GraphPart("each", "each", plans=sp.blocks[0]),)

    def shape(self, stage: FanoutStage, path: str, s: ShapeContext) -> StageShape:
        blocks = self.blocks(stage)
        if stage.branches:
            branches = tuple(s.block(path + yaml_path(block.path), block) for block in blocks)
            return StageShape(stage.id, path, "branches", max_concurrency=stage.max_concurrency, branches=branches)
        if stage.agent is not None:
            model = s.model_of(stage.agent)
            return StageShape(stage.id, path, "each_agent", stage.agent, model, stage.max_concurrency)
        if stage.workflow is not None:  # branch i runs the child's stages as <id>[i].<inner>
            inner = s.workflow(stage.workflow.child)
            return StageShape(stage.id, path, "each_stages", max_concurrency=stage.max_concurrency, stages=inner)
        inner = s.block(path + yaml_path(blocks[0].path), blocks[0])
        return StageShape(stage.id, path, "each_stages", max_concurrency=stage.max_concurrency, stages=inner)


FANOUT = FanoutKind()


async def _body(
    sp: FanoutPlan,
    engine: EngineServices,
    stages: dict[str, Any],
    prev: Any,
    vars_: Mapping[str, Any],
    prefix: str,
    ctx: dict[str, Any],
    node: str,
) -> list[Any]:
    from runner.calls import Usage  # noqa: PLC0415 - runs only on the loop; records load without it
    from runner.dispatch import first_error, run_all  # noqa: PLC0415

    stage: FanoutStage = sp.stage
    as_name = stage.as_name
    listed = sp.listed
    shared_input: str | None = None
    if sp.input is None:
        shared_input = as_text(prev)
    elif listed or not sp.input.per_branch:  # listed branches have no per-branch variables
        shared_input = sp.input.template.render(ctx)
    items: Sequence[Any] = sp.blocks if listed else _items(sp, ctx)
    n = len(items)
    limit = stage.max_concurrency
    bounded = limit is not None and limit < n
    collect = stage.on_error == "collect"
    rec = engine.recorder
    agent = sp.agent
    input_tpl: CompiledTemplate | None = sp.input
    pipeline = sp.blocks[0] if sp.blocks and not listed else ()
    include = sp.include
    if bounded:  # the branches past the bound wait for a slot from now: the report's concurrency wait
        for i in range(n):
            rec.emit("queued", f"{node}[{i}]")

    async def branch(i: int, item: Any) -> Any:
        branch_node = f"{node}[{i}]"
        try:
            if listed:
                scope = dict(stages)
                out = await engine.run_sequence(item, scope, shared_input, vars_, prefix)
                for key, value in scope.items():  # ids are unique across nesting: no clobbering
                    stages.setdefault(key, value)
                return out
            item_vars = {**vars_, as_name: item} if vars_ else {as_name: item}
            item_ctx = {**ctx, "vars": item_vars}
            if shared_input is not None:
                text = shared_input
            else:
                assert input_tpl is not None
                text = input_tpl.template.render(item_ctx)
            if agent is not None:
                return await engine.call_agent(branch_node, agent, text, item_ctx)
            if include is not None:
                return await engine.run_workflow(include, include.values(item_ctx), text, branch_node + ".")
            return await engine.run_sequence(pipeline, dict(stages), text, item_vars, branch_node + ".")
        except Exception as exc:
            error = first_error(exc)
            if not collect or isinstance(error, GateStop):  # a gate ends the run: never a branch's collected error
                raise
            rec.emit("failed", branch_node, {"error": brief(error), "kind": "branch"}) if listed else None
            name = agent.spec.name if agent is not None else ""
            return Output("", name, branch_node, Usage(), error=brief(error))

    start: Callable[[int], Coroutine[Any, Any, Any]]
    if agent is not None and not listed and not collect:
        # The common wide fan-out: each branch is one agent call, started directly (no wrapper coroutine).
        render_input = input_tpl.template.render if shared_input is None and input_tpl is not None else None
        call_agent = engine.call_agent

        def start_agent(i: int) -> Coroutine[Any, Any, Any]:
            item = items[i]
            item_ctx = ctx.copy()  # a copy, then a set: cheaper than {**ctx, "vars": ...}
            item_ctx["vars"] = {**vars_, as_name: item} if vars_ else {as_name: item}
            text = render_input(item_ctx) if render_input is not None else shared_input
            assert text is not None
            return call_agent(f"{node}[{i}]", agent, text, item_ctx)

        start = start_agent
    else:

        def start_branch(i: int) -> Coroutine[Any, Any, Any]:
            return branch(i, items[i])

        start = start_branch
    ckpt = engine.checkpoint
    if ckpt is not None and agent is not None and not listed:
        # Each branch is one agent call and a node of its own (issue 23): a finished one comes from the run's
        # checkpoint, not the model; the others are committed as they end. Pipelines' stages commit themselves.
        uncheckpointed = start

        def start_checkpointed(i: int) -> Coroutine[Any, Any, Any]:
            branch_node = f"{node}[{i}]"
            found = ckpt.restored(branch_node)
            if found is not ckpt.MISSING:
                rec.emit("restored", branch_node, {"kind": "agent"})
                return _ready(found)
            return _committed(ckpt, branch_node, uncheckpointed(i))

        start = start_checkpointed
    shared = engine.shared_slots.get(stage.id) if limit is not None else None
    if shared is not None:  # a dataset batch: this bound holds across all its rows, not only within this one
        unshared = start

        async def start_shared(i: int) -> Any:
            async with shared:
                return await unshared(i)

        start = start_shared
    return await run_all(n, start, limit=limit)


async def _ready(value: Any) -> Any:
    return value


async def _committed(ckpt: Any, node: str, call: Coroutine[Any, Any, Any]) -> Any:
    out = await call
    ckpt.commit(node, out)
    return out


def _items(sp: FanoutPlan, ctx: Mapping[str, Any]) -> Sequence[Any]:
    if isinstance(sp.for_each, tuple):
        return sp.for_each
    assert isinstance(sp.for_each, CompiledTemplate)
    value = sp.for_each.template.evaluate(ctx)
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        src = sp.for_each.template.src
        raise RunError(
            f"{src.loc}: for_each of stage '{sp.id}' must give a list, got {type(value).__name__} {value!r:.60}"
        )
    return value
