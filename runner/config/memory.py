"""Settings of the working memory of one ``memory.<name>`` entry, as a frozen record with defaults applied.

Kept free of heavy imports: ``runner validate`` reads this module and its cold start matters. The raw
mapping comes from YAML that already passed ``$defs/memory`` of ``schemas/workflow.schema.json``; the parser
checks what the schema cannot say (one key against another) and what it converts, raising
:class:`~runner.errors.ConfigError` with the key's path and a hint, which ``runner validate`` reports at that
key; a caller that skips the schema gets the same message, never a wrong record. Keys that are not
working-memory keys (``long_term``) are left to their own parsers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runner.errors import ConfigError

# The workflow schema ($defs/memory) lists the same values; tests keep the three in step (and tokens.COUNTERS_BY_NAME).
MODES = ("compact", "compress", "auto")
TOKEN_COUNTERS = ("approx", "tiktoken")
DEFAULT_KEEP_RECENT_COUNT = 10
DEFAULT_MODE = "auto"
DEFAULT_COMPACT_RATIO_THRESHOLD = 0.75
DEFAULT_MAX_TOOL_MESSAGE_TOKENS = 2000
DEFAULT_TOKEN_COUNTER = "approx"
# A compacted tool result keeps a preview of up to this many characters plus a notice of about 40 tokens;
# below this threshold the stand-in would not be much shorter than what it stands for.
MIN_TOOL_MESSAGE_TOKENS = 64
MIN_TOTAL_TOKENS = 256

WORKING_MEMORY_KEYS = frozenset(
    {
        "max_total_tokens",
        "keep_recent_count",
        "working_summary_mode",
        "compact_ratio_threshold",
        "max_tool_message_tokens",
        "summary_model",
        "summary_group_tokens",
        "token_counter",
    }
)


@dataclass(frozen=True, slots=True)
class WorkingMemoryConfig:
    """How one agent's conversation is kept within ``max_total_tokens`` (see ``runner.memory.working``).

    ``keep_recent_count`` newest messages are never compacted or summarised. ``summary_model`` names an
    entry under ``models:`` (``None``: the agent's own model). ``summary_group_tokens`` bounds what one
    summary call reads; longer stretches are summarised in several groups at once (``None``: the budget).
    """

    max_total_tokens: int
    keep_recent_count: int = DEFAULT_KEEP_RECENT_COUNT
    working_summary_mode: str = DEFAULT_MODE
    compact_ratio_threshold: float = DEFAULT_COMPACT_RATIO_THRESHOLD
    max_tool_message_tokens: int = DEFAULT_MAX_TOOL_MESSAGE_TOKENS
    summary_model: str | None = None
    summary_group_tokens: int | None = None
    token_counter: str = DEFAULT_TOKEN_COUNTER

    @property
    def group_tokens(self) -> int:
        return self.summary_group_tokens or self.max_total_tokens

    @property
    def summarises(self) -> bool:
        return self.working_summary_mode != "compact"


def _int(raw: Mapping[str, Any], key: str, default: int | None, minimum: int) -> int | None:
    value = raw.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(
            f"{key} must be an integer of at least {minimum}, not {value!r}",
            (key,),
            f"write a whole number >= {minimum}",
        )
    return value


def parse_working_memory(raw: Mapping[str, Any]) -> WorkingMemoryConfig:
    """The record for the working-memory keys of one ``memory.<name>`` mapping, defaults applied."""
    max_total = _int(raw, "max_total_tokens", None, MIN_TOTAL_TOKENS)
    if max_total is None:
        raise ConfigError(
            "max_total_tokens is required for a working memory (e.g. 20000)",
            (),
            "add max_total_tokens: 20-50% of the model's context window is a good start",
        )
    keep_recent = _int(raw, "keep_recent_count", DEFAULT_KEEP_RECENT_COUNT, 0)
    max_tool = _int(raw, "max_tool_message_tokens", DEFAULT_MAX_TOOL_MESSAGE_TOKENS, MIN_TOOL_MESSAGE_TOKENS)
    group = _int(raw, "summary_group_tokens", None, MIN_TOTAL_TOKENS)
    assert keep_recent is not None and max_tool is not None  # defaults are given
    mode = raw.get("working_summary_mode", DEFAULT_MODE)
    if mode not in MODES:
        raise ConfigError(
            f"working_summary_mode must be one of {', '.join(MODES)}, not {mode!r}",
            ("working_summary_mode",),
            f"use one of: {', '.join(MODES)}",
        )
    counter = raw.get("token_counter", DEFAULT_TOKEN_COUNTER)
    if counter not in TOKEN_COUNTERS:
        raise ConfigError(
            f"token_counter must be one of {', '.join(TOKEN_COUNTERS)}, not {counter!r}",
            ("token_counter",),
            f"use one of: {', '.join(TOKEN_COUNTERS)}",
        )
    ratio = raw.get("compact_ratio_threshold", DEFAULT_COMPACT_RATIO_THRESHOLD)
    if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 < ratio <= 1:
        raise ConfigError(
            f"compact_ratio_threshold must be a number above 0 and at most 1, not {ratio!r}",
            ("compact_ratio_threshold",),
            "a fraction of the budget, such as 0.75",
        )
    summary_model = raw.get("summary_model")
    if summary_model is not None and (not isinstance(summary_model, str) or not summary_model):
        raise ConfigError(
            f"summary_model must be the name of an entry under models:, not {summary_model!r}",
            ("summary_model",),
            "name a model defined under models:, or leave it out to use the agent's own model",
        )
    if "max_tool_message_tokens" in raw and max_tool >= max_total:
        raise ConfigError(
            f"max_tool_message_tokens ({max_tool}) must be below max_total_tokens ({max_total}): "
            "a single tool result could otherwise fill the whole budget",
            ("max_tool_message_tokens",),
            f"lower max_tool_message_tokens below {max_total} (a tenth of the budget is typical), "
            "or raise max_total_tokens",
        )
    return WorkingMemoryConfig(
        max_total_tokens=max_total,
        keep_recent_count=keep_recent,
        working_summary_mode=mode,
        compact_ratio_threshold=float(ratio),
        max_tool_message_tokens=max_tool,
        summary_model=summary_model,
        summary_group_tokens=group,
        token_counter=counter,
    )
