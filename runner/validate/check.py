"""Checking a workflow file: YAML with positions -> JSON Schema -> records -> semantic rules, every problem
located and reported at once (``runner validate``, and ``runner run`` before it runs). Pure: no asyncio.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from runner.diagnostics import Diagnostic
from runner.errors import SpecError
from runner.workflow.document import Document, LoadError, decode, load_document
from runner.workflow.records import Workflow


def check_file(path: str | Path, *, text: bytes | None = None) -> tuple[Workflow | None, list[Diagnostic]]:
    """Load and check one workflow file; return the records (None when it has errors) and every problem."""
    from runner.validate.rules.secrets import secret_diagnostics  # noqa: PLC0415
    from runner.workflow.build import build_workflow  # noqa: PLC0415
    from runner.workflow.limits import read_limited, too_large  # noqa: PLC0415
    from runner.workflow.schema import check_schema  # noqa: PLC0415

    file = str(path)
    size = len(text) if text is not None else 0
    if text is None:
        try:
            text, size = read_limited(path)
        except OSError as exc:
            return None, [Diagnostic(file, 1, 1, 1, 1, "error", "io", f"cannot read the file: {exc.strerror}")]
    big = too_large(file, text, size)
    if big is not None:  # refused before parsing: PyYAML would take minutes on a huge file
        return None, [big]
    try:
        doc = load_document(decode(text, file), file)
    except LoadError as exc:
        return None, sorted(exc.diagnostics)
    if not isinstance(doc.data, dict):
        kind = "a list" if isinstance(doc.data, list) else "a single value"
        return None, [
            Diagnostic(
                file,
                1,
                1,
                1,
                2,
                "error",
                "schema",
                f"a workflow must be a mapping, not {kind}",
                "start with 'version: 1', 'name: ...' and 'stages:'",
            )
        ]
    secrets = secret_diagnostics(doc)  # on the document: also under keys the schema refuses
    problems = check_schema(doc, text)
    if problems:
        return None, sorted(problems + secrets)
    settings: list[Diagnostic] = []  # what the sections' parsers refuse, beside what the rules find
    wf = build_workflow(doc, hashlib.sha256(text).hexdigest(), settings)
    problems = sorted(check_workflow(wf, doc) + settings + secrets)
    return (None if any(p.severity == "error" for p in problems) else wf), problems


def load_workflow(path: str | Path) -> Workflow:
    """The workflow's records; :class:`SpecError` with every problem when the file is not valid."""
    wf, problems = check_file(path)
    if wf is None:
        raise SpecError(problems)
    return wf


def check_workflow(wf: Workflow, doc: Document | None = None) -> list[Diagnostic]:
    """Every semantic problem in ``wf``; ``doc`` (the file it was built from) makes positions exact."""
    from runner.validate.rules.imports import check_imports  # noqa: PLC0415
    from runner.validate.rules.refs import check_references  # noqa: PLC0415
    from runner.validate.rules.scope import Walk  # noqa: PLC0415
    from runner.validate.rules.source import Source  # noqa: PLC0415
    from runner.validate.rules.templating import check_templates  # noqa: PLC0415
    from runner.validate.rules.values import check_input_defaults  # noqa: PLC0415

    source = Source(doc)
    walk = Walk(wf)
    walk.run()
    return [
        *check_references(wf, source, walk),
        *check_imports(wf, source, walk),
        *check_input_defaults(wf, source),
        *check_templates(wf, source, walk),
        *_typed_checks(wf, source, walk),
        *_budget_checks(wf, source, walk),
        *_assert_checks(wf, source, walk),
        *_mcp_checks(wf, source),
    ]


def _mcp_checks(wf: Workflow, source: Any) -> list[Diagnostic]:
    """MCP servers and the agents' MCP tools (issue 22), for a file that has them."""
    if not wf.mcp_servers and not any(agent.mcp_tools for agent in wf.agents.values()):
        return []
    from runner.validate.rules.mcp import check_mcp  # noqa: PLC0415

    return check_mcp(wf, source)


def _budget_checks(wf: Workflow, source: Any, walk: Any) -> list[Diagnostic]:
    """``limits`` and models' ``fallback`` (issue 23): their rules are imported only for a file that has them."""
    if wf.limits is None and not any(spec.fallback is not None for spec in wf.models.values()):
        return []
    from runner.validate.rules.fallbacks import check_fallbacks, check_limits  # noqa: PLC0415

    return [*check_limits(wf, source), *check_fallbacks(wf, source, walk)]


def _assert_checks(wf: Workflow, source: Any, walk: Any) -> list[Diagnostic]:
    """The assert: lists' templates, judges and Python functions (issue 24), only for a workflow with them."""
    if not wf.asserts:
        return []
    from runner.validate.rules.asserts import check_asserts  # noqa: PLC0415

    return check_asserts(wf, source, walk)


def _typed_checks(wf: Workflow, source: Any, walk: Any) -> list[Diagnostic]:
    """The data flow of structured outputs and the switch cases read from them: only a workflow with an
    ``output:`` schema has typed values to check (and only then are those rules imported: 10 ms of a run)."""
    from runner.stages import AgentStage  # noqa: PLC0415
    from runner.stages import walk as all_stages

    typed = any(agent.output is not None for agent in wf.agents.values()) or any(
        isinstance(stage, AgentStage) and stage.output is not None for stage in all_stages(wf.stages)
    )
    if not typed:
        return []
    from runner.validate.rules.cases import check_switch_cases  # noqa: PLC0415
    from runner.validate.rules.dataflow import check_data_flow  # noqa: PLC0415

    return [*check_data_flow(wf, source, walk), *check_switch_cases(wf, source, walk)]
