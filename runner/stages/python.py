"""The ``python`` stage kind: a Python function on the data flow, no model (``python: mymod:prepare``).

The function is imported before the run (``runner/engine/session.py``); sync or async. It receives the
arguments it names among ``input``, ``prev``, ``stages``, ``inputs`` and ``vars`` (all of them with
``**kwargs``). A sync function runs in the bounded thread pool, in its caller's context, never on the loop.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runner.config.source import Loc, TemplateSrc
from runner.errors import RunError
from runner.stages.base import (
    NO_POLICY,
    BuildContext,
    EngineServices,
    Output,
    ShapeContext,
    StageKind,
    StagePlan,
    StagePolicy,
    StageShape,
    YamlPath,
    as_text,
    brief,
)


@dataclass(frozen=True, slots=True)
class PythonStage:
    """A Python function on the data flow, no model: ``function`` is ``module:attribute``, sync or async."""

    id: str
    function: str
    input: TemplateSrc | None
    vars: Mapping[str, Any]
    loc: Loc
    policy: StagePolicy = NO_POLICY

    agent = None  # it calls no agent (see StageRecord.agent)


class PythonKind(StageKind[PythonStage]):
    name = "python"
    record = PythonStage
    mermaid_shape = ("[/", "/]")

    def build(self, raw: Mapping[str, Any], path: YamlPath, b: BuildContext) -> PythonStage:
        c = b.common(raw, path)
        return PythonStage(c.id, raw["python"], c.input, c.vars, c.loc, c.policy)

    async def run(
        self,
        sp: StagePlan,
        engine: EngineServices,
        stages: dict[str, Any],
        prev: Any,
        vars_: Mapping[str, Any],
        prefix: str,
        ctx: dict[str, Any],
    ) -> Any:
        import asyncio  # noqa: PLC0415 - runs only on the loop; records load without asyncio

        from runner.calls import Usage  # noqa: PLC0415
        from runner.dispatch import first_error  # noqa: PLC0415

        node = prefix + sp.stage.id
        text = sp.input.template.render(ctx) if sp.input is not None else as_text(prev)
        stage: PythonStage = sp.stage
        fn = engine.function(stage.function)
        offered = {
            "input": text,
            "prev": ctx["prev"],
            "stages": ctx["stages"],
            "inputs": ctx["inputs"],
            "vars": ctx["vars"],
        }
        params = inspect.signature(fn).parameters
        takes_all = any(p.kind is p.VAR_KEYWORD for p in params.values())
        kwargs = offered if takes_all else {k: v for k, v in offered.items() if k in params}
        rec = engine.recorder
        rec.emit("started", node, {"kind": "python", "function": stage.function})
        try:
            if inspect.iscoroutinefunction(fn):
                value = await fn(**kwargs)
            else:
                # in the branch's context, as asyncio.to_thread does: the function sees its caller's context vars
                context = contextvars.copy_context()
                value = await asyncio.get_running_loop().run_in_executor(
                    engine.executor(), context.run, functools.partial(fn, **kwargs)
                )
        except BaseException as exc:
            rec.emit("cancelled" if isinstance(exc, asyncio.CancelledError) else "failed", node, {"error": brief(exc)})
            if isinstance(exc, Exception) and not isinstance(exc, RunError):
                cause = first_error(exc)  # the user's own TaskGroup: its first real error, not the group
                raise RunError(
                    f"python stage '{node}' ({stage.function}) raised {type(cause).__name__}: {cause}"
                ) from exc
            raise
        rec.emit("finished", node)
        if isinstance(value, str):
            return Output(value, stage.function, node, Usage())
        return value

    def graph_label(self, sp: StagePlan) -> str:
        return f"python {sp.stage.function}"

    def shape(self, stage: PythonStage, path: str, s: ShapeContext) -> StageShape:
        return StageShape(stage.id, path, "python", function=stage.function)


PYTHON = PythonKind()
