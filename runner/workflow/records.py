"""Frozen, typed records of a validated workflow, with defaults applied.

Nothing downstream of ``runner.validate`` reads the raw YAML mapping: the compiler and the engine take these.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runner.config.fallback import FallbackConfig
from runner.config.limits import RunLimits
from runner.config.source import Loc, TemplateSrc
from runner.retry import RetryPolicy as RetryPolicy

# The stages' records live with their kinds (runner/stages/: one module per kind, and the registry).
from runner.stages import AgentStage as AgentStage
from runner.stages import FanoutStage as FanoutStage
from runner.stages import LoopStage as LoopStage
from runner.stages import PythonStage as PythonStage
from runner.stages import Stage as Stage
from runner.stages import SwitchStage as SwitchStage
from runner.stages import WorkflowStage as WorkflowStage
from runner.stages.base import NO_POLICY as NO_POLICY
from runner.stages.base import StagePolicy as StagePolicy
from runner.stages.base import StageRecord

if TYPE_CHECKING:
    from runner.config.embeddings import LongTermConfig
    from runner.config.mcp import McpServerSpec, McpToolUse
    from runner.config.memory import WorkingMemoryConfig
    from runner.config.models import ModelSettings


@dataclass(frozen=True, slots=True)
class InputSpec:
    """One declared input of the workflow: its name, type, item type and default."""

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
    fallback: FallbackConfig | None = None  # the models that stand in when it fails (issue 23)


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
    """An agent as the file declares it: model, system prompt, variables, tools, memory and limits."""

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
    output: Any = None  # a runner.config.output.OutputSpec: what its replies must be (issue 16), or None
    tool_positions: tuple[int, ...] = ()  # where each of ``tools`` stands in the file's list (MCP entries between)
    mcp_tools: tuple[McpToolUse, ...] = ()  # tools from MCP servers (issue 22)


@dataclass(frozen=True, slots=True)
class ReportSpec:
    """Where the timing report goes and in which formats (``report:``)."""

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
    """A whole checked workflow: every section's records, the file they came from and its hash."""

    file: str
    sha256: str
    version: int
    name: str
    description: str
    inputs: tuple[InputSpec, ...]
    models: Mapping[str, ModelSpec]
    agents: Mapping[str, AgentSpec]
    stages: tuple[StageRecord, ...]
    report: ReportSpec
    tools: Mapping[str, ToolSpec] = field(default_factory=dict)
    timeout: float | None = None
    embeddings: Mapping[str, EmbeddingSpec] = field(default_factory=dict)
    memory: Mapping[str, MemorySpec] = field(default_factory=dict)
    logging: LoggingSpec = LoggingSpec()
    limits: RunLimits | None = None  # the run's budget (issue 23), for a dataset batch each row's
    asserts: tuple[Any, ...] = ()  # runner.workflow.asserts.AssertList: the assert: lists (issue 24)
    repeat: int = 1  # runs of each dataset row whose assertions make one verdict by majority (issue 24)
    variants: tuple[Any, ...] = ()  # runner.workflow.variants.Variant: other versions compared by runner eval
    mcp_servers: Mapping[str, McpServerSpec] = field(default_factory=dict)  # tool sources (issue 22)
