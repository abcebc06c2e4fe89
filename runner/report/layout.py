"""The workflow's shape as the report needs it: stages in order, fan-outs and their branches, the YAML
path of each stage (for settings named in bottleneck advice) and each model's limits.

Built once per run from the frozen records (pure, cheap); the critical path walks it to know which spans
follow which and which branches a fan-out waited for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from runner.stages import kind_of
from runner.stages.base import Block, StageRecord
from runner.stages.base import StageShape as StageShape  # each kind shapes its stages (runner/stages/)
from runner.workflow.records import Workflow


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


class _Shaper:
    """What a stage kind's ``shape`` gets (``runner.stages.base.ShapeContext``)."""

    def __init__(self, wf: Workflow) -> None:
        self.agent_model = {name: spec.model for name, spec in wf.agents.items()}

    def model_of(self, agent: str | None) -> str | None:
        return self.agent_model.get(agent) if agent is not None else None

    def shape(self, stage: StageRecord, path: str) -> StageShape:
        return kind_of(stage).shape(stage, path, self)

    def block(self, path: str, block: Block) -> tuple[StageShape, ...]:
        return tuple(self.shape(s, f"{path}[{i}]") for i, s in enumerate(block.stages))


def describe_workflow(wf: Workflow) -> Layout:
    shaper = _Shaper(wf)
    models = {name: _model_shape(name, spec.provider, spec.config) for name, spec in wf.models.items()}
    secrets = sorted({env for name, spec in wf.models.items() if (env := getattr(spec.config, "api_key_env", None))})
    return Layout(
        stages=tuple(shaper.shape(s, f"stages[{i}]") for i, s in enumerate(wf.stages)),
        models=MappingProxyType(models),
        secrets_env=tuple(secrets),
    )


def _model_shape(name: str, provider: str, config: Any) -> ModelShape:
    pool = getattr(config, "pool", None)
    rate = getattr(config, "rate_limit", None)
    retry = getattr(config, "retry", None)
    remote = getattr(config, "model", None)
    return ModelShape(
        name=name,
        provider=provider,
        model=remote if isinstance(remote, str) else None,
        max_connections=getattr(pool, "max_connections", None),
        requests_per_minute=getattr(rate, "requests_per_minute", None),
        tokens_per_minute=getattr(rate, "tokens_per_minute", None),
        max_attempts=getattr(retry, "max_attempts", None),
    )
