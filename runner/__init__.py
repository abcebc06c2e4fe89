"""runner: a declarative workflow runner for LLM agents."""

from __future__ import annotations

import sys as _sys

if _sys.argv[:1] == ["-m"]:  # `python -m runner` is importing us: answer signals from here on (issue 21)
    from runner import interrupts as _interrupts

    if _interrupts.started_as_program():
        _interrupts.install()

from runner.errors import RunnerError, SpecError

__version__ = "0.1.0"
__all__ = ["RunnerError", "SpecError", "__version__"]
