"""Working memory: each agent's conversation kept within a token budget, its full history on disk.

Only the settings are imported eagerly: ``runner validate`` reads ``runner.memory.config`` and must not
pay for asyncio. The rest loads on first use of its name.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from runner.memory.config import WorkingMemoryConfig, parse_working_memory

if TYPE_CHECKING:
    from runner.errors import TokenCounterError
    from runner.memory.tokens import TokenCounter, make_counter
    from runner.memory.working import (
        READ_STORED_RESULT_TOOL,
        MemoryStats,
        Summarize,
        WorkingMemory,
        provider_summarizer,
    )

__all__ = [
    "READ_STORED_RESULT_TOOL",
    "MemoryStats",
    "Summarize",
    "TokenCounter",
    "TokenCounterError",
    "WorkingMemory",
    "WorkingMemoryConfig",
    "make_counter",
    "parse_working_memory",
    "provider_summarizer",
]

_LAZY = {
    "READ_STORED_RESULT_TOOL": "runner.memory.working",
    "MemoryStats": "runner.memory.working",
    "Summarize": "runner.memory.working",
    "WorkingMemory": "runner.memory.working",
    "provider_summarizer": "runner.memory.working",
    "TokenCounter": "runner.memory.tokens",
    "TokenCounterError": "runner.errors",
    "make_counter": "runner.memory.tokens",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'runner.memory' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
