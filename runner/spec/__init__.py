"""Workflow files: YAML with positions -> JSON Schema -> semantic checks -> frozen records. Pure: no asyncio."""

from __future__ import annotations

import hashlib
from pathlib import Path

from runner.errors import SpecError
from runner.spec.diagnostics import Diagnostic
from runner.spec.records import Workflow
from runner.spec.yamlpos import LoadError, decode, load_document

__all__ = ["check_file", "load_workflow"]


def check_file(path: str | Path, *, text: bytes | None = None) -> tuple[Workflow | None, list[Diagnostic]]:
    """Load and check one workflow file; return the records (None when it has errors) and every problem."""
    from runner.spec.build import build_workflow  # noqa: PLC0415
    from runner.spec.checks import check_workflow  # noqa: PLC0415
    from runner.spec.rules.limits import read_limited, too_large  # noqa: PLC0415
    from runner.spec.rules.secrets import secret_diagnostics  # noqa: PLC0415
    from runner.spec.schema import schema_diagnostics  # noqa: PLC0415

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
    problems = schema_diagnostics(doc)
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
