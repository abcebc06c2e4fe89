"""Stage kinds: the registry. One module per kind, each a :class:`~runner.stages.base.StageKind` (the contract
is in ``runner/stages/base.py``); every layer that handles stages asks here rather than testing types.

A new kind is its module here, its entry in :data:`KINDS` and :data:`Stage`, and its choice in the stage
``oneOf`` of ``schemas/workflow.schema.json`` (``tests/test_stage_kinds.py`` fails while the two disagree).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from runner.stages.agent import AGENT, AgentStage
from runner.stages.approve import APPROVE_KIND, ApproveStage
from runner.stages.ask import ASK_KIND, AskStage
from runner.stages.base import StageKind, StageRecord
from runner.stages.fanout import FANOUT, FanoutStage
from runner.stages.loop import LOOP, LoopStage
from runner.stages.python import PYTHON, PythonStage
from runner.stages.switch import SWITCH, SwitchStage
from runner.stages.workflow import WORKFLOW, WorkflowStage

KINDS: dict[str, StageKind[Any]] = {
    kind.name: kind for kind in (AGENT, PYTHON, FANOUT, LOOP, SWITCH, WORKFLOW, APPROVE_KIND, ASK_KIND)
}
"""Every stage kind by the key that picks it in YAML, in the schema's order of choices."""

BY_RECORD: dict[type, StageKind[Any]] = {kind.record: kind for kind in KINDS.values()}

Stage = AgentStage | PythonStage | FanoutStage | LoopStage | SwitchStage | WorkflowStage | ApproveStage | AskStage
"""Any stage's record: the union of the kinds' records (a test keeps it equal to :data:`KINDS`)."""


def kind_of(stage: StageRecord) -> StageKind[Any]:
    """The kind of a stage's record."""
    return BY_RECORD[type(stage)]


def kind_for(raw: Mapping[str, Any]) -> StageKind[Any]:
    """The kind a schema-valid stage mapping picks: the one whose key it has (the schema allows exactly one)."""
    for name, kind in KINDS.items():
        if name in raw:
            return kind
    raise KeyError(f"a stage needs one of {', '.join(KINDS)}")


def walk(stages: Sequence[StageRecord]) -> Iterator[StageRecord]:
    """Every stage, nested ones included, in document order."""
    for stage in stages:
        yield stage
        for block in kind_of(stage).blocks(stage):
            yield from walk(block.stages)


def included(workflow: Any) -> list[Any]:
    """Every child workflow's records (``runner.workflow.records.Workflow``) that ``workflow`` runs, children of
    children too, each once (issue 22): what a run must know of them besides its own (their secrets, models)."""
    from runner.stages.workflow import WorkflowStage  # noqa: PLC0415

    found: dict[str, Any] = {}

    def visit(wf: Any) -> None:
        for stage in walk(wf.stages):
            include = stage.include if isinstance(stage, WorkflowStage) else getattr(stage, "workflow", None)
            child = getattr(include, "child", None)
            if child is not None and child.file not in found:
                found[child.file] = child
                visit(child)

    visit(workflow)
    return list(found.values())


__all__ = [
    "BY_RECORD",
    "KINDS",
    "AgentStage",
    "ApproveStage",
    "AskStage",
    "FanoutStage",
    "LoopStage",
    "PythonStage",
    "Stage",
    "SwitchStage",
    "WorkflowStage",
    "included",
    "kind_for",
    "kind_of",
    "walk",
]
