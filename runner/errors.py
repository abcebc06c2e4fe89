"""The error tree of ``runner``.

Every error a user can cause or fix derives from :class:`RunnerError`; the CLI maps it to exit 1
with its message and never a traceback. Anything else escaping to the CLI is a bug (exit 3).

::

    RunnerError                     user-facing; exit 1
    ├── UsageError                  bad command-line use; exit 2
    ├── SpecError                   an invalid workflow file; carries every Diagnostic found
    ├── ConfigError                 a setting a section's parser refuses (also a ValueError); names its key
    ├── TokenCounterError           a token counter that cannot be used here (tiktoken missing)
    └── RunError                    a run that failed
        ├── TemplateError           a template failed to render (undefined name, bad filter, ...)
        ├── StageTimeout            a stage, branch or the run exceeded its timeout
        ├── ToolError               a tool could not be imported or called
        ├── GateStop                a human gate stopped the run (issue 23)
        │   ├── GateWaiting             no one to ask and no answer given: the run waits (exit 75)
        │   └── GateRejected            a person (or on_timeout) rejected an approve gate (exit 1)
        └── ProviderError           a model or embedding endpoint failed
            ├── ProviderConfigError     missing key variable, bad settings (before any request)
            ├── ProviderConnectError    could not connect (names the base URL)
            ├── ProviderTimeout         a timeout fired (names which one and its value)
            ├── ProviderHTTPError       the server answered with an error status
            └── ProviderProtocolError   the server's answer could not be understood

Foreign exceptions (``yaml.*``, ``httpx.*``, ``jinja2.*``) are translated where they are caught, with
``raise ... from exc`` so the cause is kept for debugging, and never reach callers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runner.diagnostics import Diagnostic


class RunnerError(Exception):
    """An expected, user-facing error: the message says what is wrong and how to fix it."""

    exit_code = 1


class UsageError(RunnerError):
    exit_code = 2


class SpecError(RunnerError):
    """A workflow file that does not validate; ``diagnostics`` holds every problem found (the warnings too,
    so the CLI shows what `runner validate` shows); the message lists the errors."""

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics = tuple(diagnostics)
        errors = [d for d in self.diagnostics if d.severity == "error"] or list(self.diagnostics)
        super().__init__("\n".join(d.format_line() for d in errors))


class ConfigError(RunnerError, ValueError):
    """A setting that a section's parser (a model's, an embedder's, a memory's) refuses.

    ``key`` is the path of the offending key inside the parsed mapping (``("retry", "jitter")``; empty for
    the mapping itself), so that ``runner validate`` can point at it; ``hint`` says how to fix it. It is a
    ``ValueError`` too, as the parsers' errors always were.
    """

    def __init__(self, message: str, key: tuple[str | int, ...] = (), hint: str = "") -> None:
        super().__init__(message)
        self.key = key
        self.hint = hint


class TokenCounterError(RunnerError):
    """A token counter that cannot be used here (tiktoken missing or its encoding unavailable)."""


class RunError(RunnerError):
    pass


class TemplateError(RunError):
    pass


class StageTimeout(RunError):
    pass


class ToolError(RunError):
    pass


class ProviderError(RunError):
    """A failure talking to a model or embedding endpoint.

    ``retryable`` tells the retry loop whether another attempt may succeed; ``kind`` is the short
    cause used in reports and in ``retry_on`` lists (``timeout``, ``connect``, ``read``, a status code).
    """

    retryable = False
    kind = "error"


class ProviderConfigError(ProviderError):
    kind = "config"


class ProviderConnectError(ProviderError):
    retryable = True
    kind = "connect"


class ProviderTimeout(ProviderError):
    retryable = True
    kind = "timeout"


class ProviderHTTPError(ProviderError):
    def __init__(self, message: str, status: int, retry_after: float | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.code = code  # the server's error code (OpenAI's error.code: context_length_exceeded), when it gave one
        self.kind = str(status)
        self.retryable = status == 429 or status >= 500


class ProviderProtocolError(ProviderError):
    retryable = True
    kind = "protocol"


class GateStop(RunError):
    """A human gate (an ``approve`` or ``ask`` stage) stopped the run: ``stage`` is its node id, ``kind`` the
    stage kind. Never retried, never collected as a fan-out branch's error: it ends the run."""

    def __init__(self, message: str, stage: str, kind: str) -> None:
        super().__init__(message)
        self.stage = stage
        self.kind = kind


class GateWaiting(GateStop):
    """No one to ask (no terminal, no ``on_gate``) and no answer given: the run stops at the gate and waits to be
    continued with ``--approve`` or ``--answer``. The run's status is ``waiting``; ``runner run`` exits 75."""


class GateRejected(GateStop):
    """An ``approve`` gate was rejected; ``reason`` is what the person typed (or None), ``by`` who decided
    (``terminal``, ``on_gate``, ``timeout``). The run's status is ``rejected``; ``runner run`` exits 1."""

    def __init__(self, message: str, stage: str, reason: str | None, by: str) -> None:
        super().__init__(message, stage, "approve")
        self.reason = reason
        self.by = by
