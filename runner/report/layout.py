"""The workflow's shape as the report needs it: stages in order, fan-outs and their branches, the YAML
path of each stage (for settings named in bottleneck advice) and each model's limits.

Built once per run from the frozen records (pure, cheap); the critical path walks it to know which spans
follow which and which branches a fan-out waited for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from runner.config.models import ModelSettings
from runner.workflow.records import AgentStage, PythonStage, Stage, Workflow


@dataclass(frozen=True, slots=True)
class StageShape:
    """One stage. ``mode`` is ``agent`` for a plain agent stage, ``python`` for a python stage; for a
    fan-out ``each_agent`` (``for_each`` with ``agent``: branch ``i`` is the call ``<id>[i]``), ``each_stages``
    (``for_each`` with ``stages``: branch ``i`` runs ``<id>[i].<inner>``) or ``branches`` (listed branches,
    their stages keep their ids)."""

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
        return self.mode not in ("agent", "python")


@dataclass(frozen=True, slots=True)
class ModelShape:
    """What the report says about a model and the limits its advice names."""

    name: str
    provider: str
    model: str | None = None  # the remote model name, when there is one
    max_connections: int | None = None
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    max_attempts: int | None = None


@dataclass(frozen=True, slots=True)
class Layout:
    stages: tuple[StageShape, ...] = ()
    models: Mapping[str, ModelShape] = field(default_factory=lambda: MappingProxyType({}))
    secrets_env: tuple[str, ...] = ()  # names of environment variables holding API keys


def describe_workflow(wf: Workflow) -> Layout:
    agent_model = {name: spec.model for name, spec in wf.agents.items()}

    def shape(stage: Stage, path: str) -> StageShape:
        if isinstance(stage, AgentStage):
            return StageShape(stage.id, path, "agent", stage.agent, agent_model.get(stage.agent))
        if isinstance(stage, PythonStage):
            return StageShape(stage.id, path, "python", function=stage.function)
        fpath = f"{path}.fanout"
        if stage.branches:
            branches = tuple(
                tuple(shape(s, f"{fpath}.branches[{bi}][{si}]") for si, s in enumerate(branch))
                for bi, branch in enumerate(stage.branches)
            )
            return StageShape(stage.id, path, "branches", max_concurrency=stage.max_concurrency, branches=branches)
        if stage.agent is not None:
            return StageShape(
                stage.id, path, "each_agent", stage.agent, agent_model.get(stage.agent), stage.max_concurrency
            )
        inner = tuple(shape(s, f"{fpath}.stages[{i}]") for i, s in enumerate(stage.stages))
        return StageShape(stage.id, path, "each_stages", max_concurrency=stage.max_concurrency, stages=inner)

    models = {name: _model_shape(name, spec.provider, spec.config) for name, spec in wf.models.items()}
    secrets = sorted({env for spec in wf.models.values() if spec.config and (env := spec.config.api_key_env)})
    return Layout(
        stages=tuple(shape(s, f"stages[{i}]") for i, s in enumerate(wf.stages)),
        models=MappingProxyType(models),
        secrets_env=tuple(secrets),
    )


def _model_shape(name: str, provider: str, config: ModelSettings | None) -> ModelShape:
    if config is None:  # records of a file whose settings were refused: never run, so never reported
        return ModelShape(name=name, provider=provider)
    pool, rate, retry = config.pool, config.rate_limit, config.retry
    return ModelShape(
        name=name,
        provider=provider,
        model=config.remote_model,
        max_connections=pool.max_connections if pool is not None else None,
        requests_per_minute=rate.requests_per_minute if rate is not None else None,
        tokens_per_minute=rate.tokens_per_minute if rate is not None else None,
        max_attempts=retry.max_attempts if retry is not None else None,
    )
