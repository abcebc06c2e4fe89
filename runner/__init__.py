"""runner: a declarative workflow runner for LLM agents.

From Python (the README's "From Python" section shows each in use)::

    workflow = runner.load("workflows/quickstart.yaml")      # SpecError when invalid; runner.check() lists why
    result = runner.run(workflow, {"topic": "uvloop"})       # a script; `await runner.arun(...)` inside a loop
    result.output, result.stages, result.report               # the last output, each stage's, the report
    result.write_report("reports")

    async with runner.stream(workflow) as run:                # events and streamed tokens as they happen
        async for event in run: ...

    for row in runner.each(workflow, rows, concurrency=16):    # a dataset's rows as they finish (or async for)
        row.index, row.status, row.output

The names below are the public API (``__all__``, pinned by ``tests/test_public_api.py``); everything else is the
implementation and may change. They load on first use (PEP 562): the ``runner`` program imports this package
on every start, and ``import runner`` alone imports none of asyncio, jinja2, jsonschema, numpy or aiohttp.
"""

from __future__ import annotations

import sys as _sys

if _sys.argv[:1] == ["-m"]:  # `python -m runner` is importing us: answer signals from here on (issue 21)
    from runner import interrupts as _interrupts

    if _interrupts.started_as_program():
        _interrupts.install()

from runner.version import __version__

__all__ = [
    # load, check and run a workflow
    "load",
    "check",
    "run",
    "arun",
    "stream",
    "each",
    "RowResult",
    "Workflow",
    "Diagnostic",
    "Result",
    "RunStream",
    # events as they happen
    "Event",
    "NodeQueued",
    "NodeStarted",
    "NodeFinished",
    "NodeFailed",
    "NodeCancelled",
    "NodeSkipped",
    "Retry",
    "Token",
    "StreamRestarted",
    "RunFinished",
    # human gates (approve and ask stages): what on_gate receives and returns
    "GateRequest",
    "Decision",
    # the provider seam: what a fake model implements and returns
    "ChatProvider",
    "CallContext",
    "ChatResult",
    "Usage",
    "ToolCall",
    # errors
    "RunnerError",
    "SpecError",
    "RunError",
    "TemplateError",
    "StageTimeout",
    "ToolError",
    "ProviderError",
    "ProviderConfigError",
    "ProviderConnectError",
    "ProviderTimeout",
    "ProviderHTTPError",
    "ProviderProtocolError",
    "GateStop",
    "GateWaiting",
    "GateRejected",
    "__version__",
]

_HOMES = {
    "runner.api": ("load", "check", "run", "arun", "stream", "each"),
    "runner.dataset.batch": ("RowResult",),
    "runner.workflow.records": ("Workflow",),
    "runner.diagnostics": ("Diagnostic",),
    "runner.result": ("Result",),
    "runner.live.stream": ("RunStream",),
    "runner.live.events": (
        "Event",
        "NodeQueued",
        "NodeStarted",
        "NodeFinished",
        "NodeFailed",
        "NodeCancelled",
        "NodeSkipped",
        "Retry",
        "Token",
        "StreamRestarted",
        "RunFinished",
    ),
    "runner.stages.gating": ("GateRequest", "Decision"),
    "runner.providers.base": ("ChatProvider", "CallContext"),
    "runner.calls": ("ChatResult", "Usage", "ToolCall"),
    "runner.errors": (
        "RunnerError",
        "SpecError",
        "RunError",
        "TemplateError",
        "StageTimeout",
        "ToolError",
        "ProviderError",
        "ProviderConfigError",
        "ProviderConnectError",
        "ProviderTimeout",
        "ProviderHTTPError",
        "ProviderProtocolError",
        "GateStop",
        "GateWaiting",
        "GateRejected",
    ),
}
_HOME = {name: module for module, names in _HOMES.items() for name in names}

TYPE_CHECKING = False
if TYPE_CHECKING:  # what type checkers and editors see; at run time __getattr__ below imports on first use
    from runner.api import arun, check, each, load, run, stream
    from runner.calls import ChatResult, ToolCall, Usage
    from runner.dataset.batch import RowResult
    from runner.diagnostics import Diagnostic
    from runner.errors import (
        GateRejected,
        GateStop,
        GateWaiting,
        ProviderConfigError,
        ProviderConnectError,
        ProviderError,
        ProviderHTTPError,
        ProviderProtocolError,
        ProviderTimeout,
        RunError,
        RunnerError,
        SpecError,
        StageTimeout,
        TemplateError,
        ToolError,
    )
    from runner.live.events import (
        Event,
        NodeCancelled,
        NodeFailed,
        NodeFinished,
        NodeQueued,
        NodeSkipped,
        NodeStarted,
        Retry,
        RunFinished,
        StreamRestarted,
        Token,
    )
    from runner.live.stream import RunStream
    from runner.providers.base import CallContext, ChatProvider
    from runner.result import Result
    from runner.stages.gating import Decision, GateRequest
    from runner.workflow.records import Workflow


def __getattr__(name: str) -> object:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'runner' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module), name)
    globals()[name] = value  # once imported, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
