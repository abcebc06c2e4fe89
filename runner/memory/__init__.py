"""Working memory: each agent's conversation kept within a token budget, its full history on disk."""

from runner.memory.config import WorkingMemoryConfig, parse_working_memory
from runner.memory.tokens import TokenCounter, TokenCounterError, make_counter
from runner.memory.working import READ_STORED_RESULT_TOOL, MemoryStats, Summarize, WorkingMemory

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
]
