"""runner: a declarative workflow runner for LLM agents."""

from __future__ import annotations

from runner.errors import RunnerError, SpecError

__version__ = "0.1.0"
__all__ = ["RunnerError", "SpecError", "__version__"]
