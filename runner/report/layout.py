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
from runner.config.pricing import Pricing
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
    pricing: Pricing | None = None  # US dollars per million tokens, when the file declares them


@dataclass(frozen=True, slots=True)
class Layout:
    """The shape of a run the report needs besides its events: the stages' tree and the models' settings."""

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

    def workflow(self, child: Workflow) -> tuple[StageShape, ...]:
        """A child workflow's stages, shaped with its own agents; their paths are in its file (issue 22)."""
        inner = _Shaper(child)
        return tuple(inner.shape(s, f"{child.file}: stages[{i}]") for i, s in enumerate(child.stages))


def describe_workflow(wf: Workflow) -> Layout:
    from runner.stages import included  # noqa: PLC0415

    shaper = _Shaper(wf)
    everyone = (*reversed(included(wf)), wf)  # a child's model by a name the parent also uses: the parent's wins
    models = {
        name: _model_shape(name, spec.provider, spec.config) for one in everyone for name, spec in one.models.items()
    }
    secrets = sorted(
        {env for one in everyone for spec in one.models.values() if spec.config and (env := spec.config.api_key_env)}
    )
    return Layout(
        stages=tuple(shaper.shape(s, f"stages[{i}]") for i, s in enumerate(wf.stages)),
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
        pricing=config.pricing,
    )
