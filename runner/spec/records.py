"""Frozen, typed records of a validated workflow, with defaults applied.

Nothing downstream of ``runner.spec`` reads the raw YAML mapping: the compiler and the engine take these.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runner.embeddings.config import LongTermConfig
    from runner.memory.config import WorkingMemoryConfig


@dataclass(frozen=True, slots=True)
class Loc:
    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class TemplateSrc:
    """A template's text and where it is in the YAML file.

    ``segments`` maps the text back to the file whatever the scalar's style (quotes, escapes, folded lines,
    block indentation): ``(offset in the text, line, column)``, each run of characters from that offset on
    sitting at consecutive columns of that line (see ``runner.spec.yamlpos.Segment``). Without segments
    (a template made in code) ``loc`` is where the text starts, and ``first_line_offset`` is 1 for block
    scalars (``|``, ``>``), whose text starts on the line after the indicator.
    """

    text: str
    loc: Loc
    first_line_offset: int = 0
    segments: tuple[tuple[int, int, int], ...] = ()

    def loc_at(self, offset: int) -> Loc:
        """The file position of the text's character at ``offset`` (clamped to the text)."""
        offset = max(0, min(offset, len(self.text)))
        if self.segments:
            i = bisect.bisect_right(self.segments, (offset, _AFTER, _AFTER)) - 1
            start, line, column = self.segments[max(i, 0)]
            return Loc(self.loc.file, line, column + max(offset - start, 0))
        lineno = self.text.count("\n", 0, offset) + 1
        column = offset - (self.text.rfind("\n", 0, offset) + 1)
        return self._line_start(lineno, column)

    def loc_of_line(self, lineno: int) -> Loc:
        """The file position where the text's line ``lineno`` (1-based, as Jinja counts) starts."""
        if self.segments:
            offset = 0
            for _ in range(max(lineno, 1) - 1):
                found = self.text.find("\n", offset)
                if found < 0:
                    break
                offset = found + 1
            return self.loc_at(offset)
        return self._line_start(lineno, 0)

    def _line_start(self, lineno: int, column: int) -> Loc:
        lineno = max(1, min(lineno, self.text.count("\n") + 1))
        if lineno <= 1 and not self.first_line_offset:
            return Loc(self.loc.file, self.loc.line, self.loc.column + column)
        return Loc(self.loc.file, self.loc.line + self.first_line_offset + lineno - 1, self.loc.column + column)


_AFTER = 1 << 62  # sorts after any line or column, so bisect finds the segment holding an offset


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
    name: str
    provider: str
    config: Any  # the provider's own frozen config record
    loc: Loc


@dataclass(frozen=True, slots=True)
class EmbeddingSpec:
    """``embeddings.<name>``: ``config`` is the common record (provider, dimensions, batch, cache);
    ``openai`` the endpoint settings when the provider is openai."""

    name: str
    provider: str
    config: Any
    openai: Any | None
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
class RetryPolicy:
    """Whole-stage retries: ``max_attempts`` counts the first; back-off doubles from ``initial_delay``."""

    max_attempts: int = 1
    initial_delay: float = 0.5
    max_delay: float = 8.0


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
