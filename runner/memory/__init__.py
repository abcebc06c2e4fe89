"""Working memory: each agent's conversation kept within a token budget, its full history on disk.

Its settings are records of :mod:`runner.config.memory`; the memory itself is :mod:`runner.memory.working`,
its token counters :mod:`runner.memory.tokens`.
"""
