"""The plan of bench/otel_export.py: engine_overhead's fan-out of scripted calls."""

from __future__ import annotations

import tempfile
from pathlib import Path

from engine_overhead import FANOUT, LATENCY_MS

from runner.plan.compile import Plan, compile_workflow
from runner.validate.check import load_workflow


def plan_for(n: int) -> Plan:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "wf.yaml"
        path.write_text(FANOUT.format(n=n, latency=LATENCY_MS))
        return compile_workflow(load_workflow(path))
