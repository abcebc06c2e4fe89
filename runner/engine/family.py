"""What the child workflows of a run (``workflow:`` stages and fan-outs, issue 22) open, once per run or batch.

Each child file's plan is compiled once (``runner/plan/compile.py``); here each one gets its providers, its user
code (tools and python stages' functions, imported from its own folder) and its resources, once, however many
stages and branches run it. A child's model defined exactly as a model already opened (the parent's or another
child's, by its resolved settings, whatever its name) shares that one's provider: one client, one connection
pool, one rate limit for both, as the provider's settings promise. The run's budget and fallbacks wrap each
child's providers as they wrap the parent's (:meth:`Family.runs`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sys
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.config.source import Loc, TemplateSrc
from runner.engine.opening import (
    load_user_code,
    models_in_use,
    open_mcp_servers,
    open_model,
    response_caches,
)
from runner.engine.resources import RunResources, open_resources
from runner.plan.compile import Plan, child_plans, walk_plans
from runner.providers.base import ChatProvider
from runner.tools import ToolRunner
from runner.workflow.records import ModelSpec, Workflow


@dataclass(slots=True)
class ChildRun:
    """What every run of one child workflow shares: its providers by its own model names, its tools and
    functions, its resources."""

    providers: Mapping[str, ChatProvider]
    tools: ToolRunner
    functions: dict[str, Callable[..., Any]]
    resources: RunResources


def settings_key(spec: ModelSpec) -> Hashable:
    """A model's resolved settings, where it is written left out: equal for two models defined the same way."""
    return (spec.provider, _key(spec.config), _key(spec.fallback))


def _key(value: Any) -> Hashable:
    if isinstance(value, Loc):
        return None
    if isinstance(value, TemplateSrc):
        return ("template", value.text)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (type(value).__name__, tuple((f.name, _key(getattr(value, f.name))) for f in dataclasses.fields(value)))
    if isinstance(value, Mapping):
        return ("map", tuple(sorted((str(k), _key(v)) for k, v in value.items())))
    if isinstance(value, list | tuple | set | frozenset):
        return ("seq", tuple(_key(v) for v in value))
    try:
        hash(value)
    except TypeError:
        return repr(value)
    hashable: Hashable = value
    return hashable


def family_of(plan: Plan) -> Family | None:
    """The sub-workflows' :class:`Family` of a plan that runs any (issue 22), else None: nothing to open."""
    if not any(getattr(sp, "include", None) for sp in walk_plans(plan.stages)):
        return None
    return Family(plan)


class Family:
    """The child workflows under a plan: opened with :meth:`open` (inside the run's transport wrapper, so that
    cassettes and caches see their calls), handed to the engine by :meth:`runs`, closed with :meth:`aclose`."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.children = child_plans(plan)
        self.owned: dict[str, ChatProvider] = {}  # the providers opened here, by child file and model name
        self.raw: dict[str, dict[str, ChatProvider]] = {}  # child file -> its providers, before any wrapper
        self.code: dict[str, tuple[ToolRunner, dict[str, Callable[..., Any]]]] = {}
        self.resources: dict[str, RunResources] = {}
        self.mcp: list[Any] = []  # the children's MCP servers (runner.mcp.sources.McpTools), one set per child file
        self.caches: dict[str, Any] = {}  # child file -> the wrapper of its models' response caches, when any has one

    def open(
        self, root: Mapping[str, ChatProvider], transport: Any, run_dir: Path, *, resources_transport: Any = None
    ) -> None:
        """Open what the children need; ``root``: the parent's providers by its model names (given or opened)."""
        opened: dict[Hashable, ChatProvider] = {}
        for name, provider in root.items():
            spec = self.plan.workflow.models.get(name)
            if spec is not None:
                opened.setdefault(settings_key(spec), provider)
        for child in self.children:
            wf = child.workflow
            self.code[wf.file] = load_user_code(child)
            self.resources[wf.file] = open_resources(child, run_dir, transport=resources_transport)
            mine: dict[str, ChatProvider] = {}
            with self._wrapper_of(child):
                for name in sorted(models_in_use(child)):
                    spec = wf.models[name]
                    key = settings_key(spec)
                    if key not in opened:
                        opened[key] = self.owned[f"{wf.file}:{name}"] = open_model(spec, transport)
                    mine[name] = opened[key]
            self.raw[wf.file] = mine

    def _wrapper_of(self, child: Plan) -> contextlib.AbstractContextManager[None]:
        """Where a child's models are opened: inside the run's tape (its cassette, if any) and the child's own
        response caches (``models.<name>.cache.responses``, folders beside its file), by its model names; never
        inside the parent's caches, whose names are the parent's (a child's ``main`` is not the parent's)."""
        transport = sys.modules.get("runner.providers.transport")  # loaded when the run wraps its endpoints
        run_wrapper = transport.current_wrapper() if transport is not None else None
        tape = getattr(run_wrapper, "outer", run_wrapper)  # the parent's caches hold the run's tape, if any
        caches = response_caches(child, None)
        if caches is not None:
            self.caches[child.workflow.file] = tape = caches(tape)
        if tape is run_wrapper:
            return contextlib.nullcontext()
        from runner.providers.transport import wrapping  # noqa: PLC0415 - loaded: there is a wrapper, or a cache

        return wrapping(tape)

    def cache_figures(self) -> dict[str, dict[str, Any]]:
        """The children's response caches' figures for the report's cache section, under ``models.<name>`` and
        the child's file name: ``models.small (summarize.yaml)``."""
        out: dict[str, dict[str, Any]] = {}
        for file, wrapper in self.caches.items():
            for name, figures in wrapper.cache_figures().items():
                out[f"{name} ({Path(file).name})"] = figures
        return out

    async def open_mcp(self, run_dir: Path, recorder: Any = None) -> None:
        """Start the MCP servers the children's agents use, once per child file for the run (as the parent's:
        shared by every stage and branch that runs the child), after :meth:`open`; their stderr logs go to
        ``children/<file stem>/mcp/`` in the run folder."""
        for child in self.children:
            tools, _ = self.code[child.workflow.file]
            folder = run_dir / "children" / Path(child.workflow.file).stem
            opened = await open_mcp_servers(child, tools, folder, recorder)
            if opened is not None:
                self.mcp.append(opened)

    def runs(
        self, wrap: Callable[[Mapping[str, ChatProvider], Workflow], Mapping[str, ChatProvider]]
    ) -> dict[str, ChildRun]:
        """Each child's :class:`ChildRun` by its file; ``wrap(providers, workflow)`` puts the run's budget and
        the child's fallbacks around its providers."""
        return {
            child.workflow.file: ChildRun(
                wrap(self.raw[child.workflow.file], child.workflow),
                *self.code[child.workflow.file],
                self.resources[child.workflow.file],
            )
            for child in self.children
        }

    async def aclose(self) -> None:
        """Close what :meth:`open` made, on every exit path of the run; a failing close hides nothing."""
        await asyncio.gather(
            *(p.aclose() for p in self.owned.values()),
            *(r.aclose() for r in self.resources.values()),
            return_exceptions=True,
        )
        if self.mcp:  # every server process stopped, also when the run was cancelled
            await asyncio.shield(asyncio.gather(*(m.aclose() for m in self.mcp), return_exceptions=True))
        for tools, _ in self.code.values():
            tools.close()
