"""What the two human-gate kinds (``approve``, ``ask``) share when they run: putting the request to the run's
gatekeeper with the gate's node opened and closed in the recorder (issue 23)."""

from __future__ import annotations

from typing import Any

from runner.errors import GateStop
from runner.events import Recorder
from runner.stages.base import EngineServices, brief
from runner.stages.gating import GateRequest


async def put_to_gate(engine: EngineServices, request: GateRequest, recorder: Recorder) -> Any:
    """The decision or answer for ``request`` from the run's gatekeeper (``engine.gate``), the gate's node opened in
    ``recorder`` first. A run stopped at the gate (:class:`~runner.errors.GateStop`: waiting) leaves the node open
    (the report says unfinished; the gate's own event says why); a failure or a cancellation closes it."""
    import asyncio  # noqa: PLC0415 - runs only on the loop; records load without asyncio

    recorder.emit("started", request.stage, {"kind": request.kind})
    try:
        return await engine.gate(request)
    except GateStop:
        raise
    except BaseException as exc:
        closed = "cancelled" if isinstance(exc, asyncio.CancelledError) else "failed"
        recorder.emit(closed, request.stage, {"error": brief(exc)})
        raise
