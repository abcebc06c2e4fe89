"""``runner graph WF``: the compiled graph, before any token is spent."""

from __future__ import annotations

from typing import TextIO

from runner.plan.compile import compile_workflow
from runner.plan.graph import RENDERERS
from runner.validate.check import load_workflow


def graph_command(workflow: str, *, fmt: str, out: TextIO) -> int:
    plan = compile_workflow(load_workflow(workflow))
    out.write(RENDERERS[fmt](plan) + "\n")
    return 0
