"""Working memory: each agent's conversation kept within a token budget, its full history on disk.

Its settings are records of :mod:`runner.config.memory`; the memory itself is :mod:`runner.memory.working`, built
from :mod:`~runner.memory.policy` (pure decisions), :mod:`~runner.memory.context` (the context and its cuts),
:mod:`~runner.memory.summary` (snapshots), :mod:`~runner.memory.history` (the JSONL file),
:mod:`~runner.memory.stats` (figures) and :mod:`~runner.memory.tokens` (token counters).
"""
