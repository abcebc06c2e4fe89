"""Semantic checks on a workflow, each problem with a stable rule id (:mod:`runner.spec.rules.catalog`).

Run after the schema passed, on the records plus the YAML document (for exact positions of values and
of names inside templates). ``secret_diagnostics`` runs on the document alone, before the schema.
"""

from __future__ import annotations

from runner.spec.diagnostics import Diagnostic
from runner.spec.records import Workflow
from runner.spec.yamlpos import Document

__all__ = ["check_workflow"]


def check_workflow(wf: Workflow, doc: Document | None = None) -> list[Diagnostic]:
    """Every semantic problem in ``wf``; ``doc`` (the file it was built from) makes positions exact."""
    from runner.spec.rules.imports import check_imports  # noqa: PLC0415
    from runner.spec.rules.refs import check_references  # noqa: PLC0415
    from runner.spec.rules.scope import Walk  # noqa: PLC0415
    from runner.spec.rules.source import Source  # noqa: PLC0415
    from runner.spec.rules.templating import check_templates  # noqa: PLC0415
    from runner.spec.rules.values import check_input_defaults  # noqa: PLC0415

    source = Source(doc)
    walk = Walk(wf)
    walk.run()
    return [
        *check_references(wf, source, walk),
        *check_imports(wf, source, walk),
        *check_input_defaults(wf, source),
        *check_templates(wf, source, walk),
    ]
