"""Human gates (issue 23): what ``runner validate`` checks of ``approve`` and ``ask`` stages besides their
templates (which every template rule checks), so that ``runner run`` does not stop on them:

- each id in an approve's ``show`` names a stage (``unknown-stage``) that has finished before the gate, on every
  path (``stage-not-ready``), as a template's ``stages.<id>`` would;
- an ask's ``schema`` is a JSON Schema (draft 2020-12): else ``invalid-setting`` at the offending key;
- an ask's ``default`` comes with a ``timeout`` and matches its schema: else ``invalid-setting`` at it.

Reads of an ask's answer (``stages.<id>.data.<field>``) are checked against its schema by the typed data flow
(``dataflow.py``, through :meth:`runner.stages.base.StageKind.data_schema`).
"""

from __future__ import annotations

from typing import Any

from runner.diagnostics import Diagnostic
from runner.stages import kind_of
from runner.validate.rules.common import diag, suggest
from runner.validate.rules.scope import Walk
from runner.validate.rules.source import Source
from runner.workflow.records import Workflow


def check_gates(wf: Workflow, source: Source, walk: Walk) -> list[Diagnostic]:
    from runner.stages.approve import ApproveStage  # noqa: PLC0415
    from runner.stages.ask import AskStage  # noqa: PLC0415

    out: list[Diagnostic] = []
    ready = {  # what has finished, on every path, where an approve's message renders: what it may show
        site.stage.id: site.scopes[0].ready
        for site in walk.sites
        if site.kind == "message" and site.scopes and site.stage is not None
    }
    ids = sorted({stage.id for stage, _ in walk.order})
    for stage, path in walk.order:
        if isinstance(stage, ApproveStage):
            seen = ready.get(stage.id, frozenset())
            for i, shown in enumerate(stage.show):
                at = source.value((*path, "approve", "show", i), stage.loc)
                if shown not in ids:
                    message = f"approve gate '{stage.id}' shows stage '{shown}', which does not exist"
                    out.append(diag(wf.file, at, "unknown-stage", message, suggest(shown, ids, "stages")))
                elif shown not in seen:
                    message = f"approve gate '{stage.id}' shows stage '{shown}', which has not finished before it"
                    hint = "show a stage that runs before the gate (and not only inside a fan-out's pipeline)"
                    out.append(diag(wf.file, at, "stage-not-ready", message, hint))
        elif isinstance(stage, AskStage):
            from runner.structured import schema_problem, schema_problem_path  # noqa: PLC0415 - jsonschema

            problem = schema_problem(stage.schema)
            if problem is not None:
                base = (*path, "ask", "schema")
                inside = schema_problem_path(stage.schema)
                at = source.key((*base, *inside), stage.loc) if inside else source.key(base, stage.loc)
                out.append(
                    diag(
                        wf.file,
                        at,
                        "invalid-setting",
                        f"the schema of ask gate '{stage.id}' is {problem}",
                        "write a JSON Schema (draft 2020-12) the answer must match, such as {type: object, "
                        "properties: {...}, required: [...]}",
                    )
                )
            elif stage.default:
                out.extend(_default_problems(wf, source, stage, path))
    return out


def _default_problems(wf: Workflow, source: Source, stage: Any, path: tuple[str | int, ...]) -> list[Diagnostic]:
    """An ask's ``default``: only with a ``timeout`` (nothing else uses it), and an answer its schema accepts (it
    is the answer when the time is up: a run must not fail on it then)."""
    from runner.structured import mismatches  # noqa: PLC0415 - jsonschema, only for a default

    at = source.key((*path, "ask", "default"), stage.loc)
    if stage.timeout is None:
        message = f"ask gate '{stage.id}' has a default answer but no timeout: the default is used only when one passes"
        return [diag(wf.file, at, "invalid-setting", message, "add `timeout: <seconds>` beside it, or remove it")]
    found = mismatches(stage.default[0], stage.schema, limit=3)
    if not found:
        return []
    problem = "; ".join(str(m) for m in found)
    message = f"the default answer of ask gate '{stage.id}' does not match its schema: {problem}"
    return [diag(wf.file, at, "invalid-setting", message, "give a default that the schema accepts")]


def has_gates(wf: Workflow) -> bool:
    """Whether the workflow has a human gate (the rules and their imports only then)."""
    from runner.stages import walk as all_stages  # noqa: PLC0415

    return any(kind_of(stage).name in ("approve", "ask") for stage in all_stages(wf.stages))
