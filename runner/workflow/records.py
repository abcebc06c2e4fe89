"""Frozen, typed records of a validated workflow, with defaults applied.

Nothing downstream of ``runner.validate`` reads the raw YAML mapping: the compiler and the engine take these.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runner.config.source import Loc, TemplateSrc
from runner.retry import RetryPolicy as RetryPolicy  # a stage's retries: the same record as a model's

if TYPE_CHECKING:
    from runner.config.embeddings import LongTermConfig
    from runner.config.memory import WorkingMemoryConfig
    from runner.config.models import ModelSettings


@dataclass(frozen=True, slots=True)
class InputSpec:
    name: str
    type: str
    items: str | None
    default: Any
    required: bool
    description: str
    loc: Loc


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """``models.<name>``: ``config`` is the provider's own settings record (None only in the records
    ``runner validate`` builds from a file whose settings it refused)."""

    name: str
    provider: str
    config: ModelSettings | None
    loc: Loc


@dataclass(frozen=True, slots=True)
class EmbeddingSpec:
    """``embeddings.<name>``: ``config`` is the common record (provider, dimensions, batch, cache);
    ``settings`` the provider's own record when it has one (an endpoint's: see
    :data:`runner.config.embeddings.EMBEDDER_SETTINGS`), else None."""

    name: str
    provider: str
    config: Any
    settings: Any | None
    loc: Loc


@dataclass(frozen=True, slots=True)
class MemorySpec:
    """``memory.<name>``: working memory within a token budget, long-term memory across runs, or both."""

    name: str
    working: WorkingMemoryConfig | None
    long_term: LongTermConfig | None
    loc: Loc


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A Python callable the agents may call: ``function`` is ``module:attribute``."""

    name: str
    function: str
    timeout: float | None
    description: str | None  # None: from the docstring
    parameters: Mapping[str, Any] | None  # None: from the signature
    loc: Loc


@dataclass(frozen=True, slots=True)
class AgentSpec:
    name: str
    model: str
    sys_prompt: TemplateSrc | None
    vars: Mapping[str, Any]
    description: str
    loc: Loc
    tools: tuple[str, ...] = ()
    max_iters: int = 10
    max_parallel_tools: int = 4
    memory: str | None = None


@dataclass(frozen=True, slots=True)
class StagePolicy:
    timeout: float | None = None
    retry: RetryPolicy = RetryPolicy()
    when: TemplateSrc | None = None


NO_POLICY = StagePolicy()


@dataclass(frozen=True, slots=True)
class AgentStage:
    id: str
    agent: str
    input: TemplateSrc | None
    vars: Mapping[str, Any]
    loc: Loc
    policy: StagePolicy = NO_POLICY


@dataclass(frozen=True, slots=True)
class PythonStage:
    """A Python function on the data flow, no model: ``function`` is ``module:attribute``, sync or async."""

    id: str
    function: str
    input: TemplateSrc | None
    vars: Mapping[str, Any]
    loc: Loc
    policy: StagePolicy = NO_POLICY

    agent = None


@dataclass(frozen=True, slots=True)
class FanoutStage:
    """Parallel branches. Either ``branches`` (listed, each a tuple of stages) or ``for_each`` (a list or a
    template rendering to one) with ``agent`` or ``stages`` run once per item, the item named ``as_name``."""

    id: str
    input: TemplateSrc | None
    vars: Mapping[str, Any]
    branches: tuple[tuple[Stage, ...], ...]
    for_each: TemplateSrc | tuple[Any, ...] | None
    as_name: str
    agent: str | None
    stages: tuple[Stage, ...]
    max_concurrency: int | None
    loc: Loc
    on_error: str = "fail_fast"  # fail_fast | collect
    policy: StagePolicy = NO_POLICY


Stage = AgentStage | FanoutStage | PythonStage


@dataclass(frozen=True, slots=True)
class ReportSpec:
    dir: str = "reports"
    formats: tuple[str, ...] = ("json",)


@dataclass(frozen=True, slots=True)
class LoggingSpec:
    """The workflow's ``logging`` section; the command line's ``--log-level`` and ``--log-file`` win."""

    level: str = "warning"
    file: str | None = None
    format: str = "text"


@dataclass(frozen=True, slots=True)
class Workflow:
    file: str
    sha256: str
    version: int
    name: str
    description: str
    inputs: tuple[InputSpec, ...]
    models: Mapping[str, ModelSpec]
    agents: Mapping[str, AgentSpec]
    stages: tuple[Stage, ...]
    report: ReportSpec
    tools: Mapping[str, ToolSpec] = field(default_factory=dict)
    timeout: float | None = None
    embeddings: Mapping[str, EmbeddingSpec] = field(default_factory=dict)
    memory: Mapping[str, MemorySpec] = field(default_factory=dict)
    logging: LoggingSpec = LoggingSpec()
