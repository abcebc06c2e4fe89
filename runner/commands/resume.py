"""A single run's checkpoint from the command line: made as ``runner run WF`` starts, reopened by
``runner run --resume RUN_FOLDER`` (issue 23; the checkpoint itself: :mod:`runner.engine.checkpoint`).

A resume takes what the run was given from the checkpoint (the workflow's file, the inputs as they were resolved,
``--offline``, the report folder), so it runs the same run; ``--set``, ``--input`` and ``--offline`` given again are
refused rather than silently ignored. The workflow may have been edited in between (a tool fixed, a limit raised);
an edit to a stage's definition (or to an agent, model or tool a stage uses) is refused unless ``--force``, naming
the stages.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from runner.engine.checkpoint import Checkpoint
from runner.errors import UsageError
from runner.workflow.records import Workflow


def start(
    folder: Path, wf: Workflow, inputs: Mapping[str, Any], *, offline: bool, report_dir: str | None
) -> Checkpoint:
    """The checkpoint of a run starting in ``folder``."""
    return Checkpoint.start(folder, wf, inputs, offline=offline, report_dir=report_dir)


def reopen(
    folder: str,
    workflow: str | None,
    sets: Sequence[str],
    input_file: str | None,
    *,
    offline: bool,
    report_dir: str | None,
    force: bool,
) -> tuple[Checkpoint, str, dict[str, Any]] | int:
    """The checkpoint of ``folder``, checked against the workflow as it is now, with the workflow's file and the
    run's settings; or 0 when that run finished (said on stderr)."""
    given = [
        flag
        for flag, value in (
            ("--set", sets),
            ("--input", input_file),
            ("--offline", offline),
            ("--report-dir", report_dir),
        )
        if value
    ]
    if given:
        raise UsageError(
            f"{', '.join(given)}: a resumed run keeps the inputs and settings it started with; drop them with --resume"
        )
    ckpt = Checkpoint.open(Path(folder))
    try:
        settings = ckpt.settings
        if ckpt.status == "finished":
            print(
                f"runner: the run in {folder} already finished; there is nothing to resume (its report is in "
                f"{settings['report_dir']})",
                file=sys.stderr,
            )
            ckpt.close()
            return 0
        file = settings["workflow"]
        if workflow is not None and os.path.abspath(workflow) != file:
            raise UsageError(f"{workflow}: the run in {folder} is of {file}; resume it without naming a workflow")
        ckpt.ready(force=force)
    except BaseException:
        ckpt.close()
        raise
    return ckpt, file, settings
