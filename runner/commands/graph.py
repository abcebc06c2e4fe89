"""``runner graph WF``: the compiled graph, before any token is spent."""

from __future__ import annotations

from typing import TextIO

from runner.engine.graph_view import RENDERERS
from runner.engine.plan import compile_workflow
from runner.spec import load_workflow


def graph_command(workflow: str, *, fmt: str, out: TextIO) -> int:
    plan = compile_workflow(load_workflow(workflow))
    out.write(RENDERERS[fmt](plan) + "\n")
    return 0
