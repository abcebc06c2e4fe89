"""``variants:`` (issue 24): other versions of one workflow, run over the same dataset rows and compared side by
side by ``runner eval``. A variant overrides keys of a declared model (``models: {m: {model: gpt-4o, params:
{temperature: 0}}}``), of an agent (``agents: {a: {model: other, sys_prompt: ...}}``: another model, another
prompt) or of a stage (``stages: {classify: {input: ...}}``); the rest is the workflow as written.

A variant is made on the YAML document, not on the records: its override replaces the key of the document and
takes the override's position, so the merged document goes through the same schema, records and rules as the
file itself, and every problem a variant brings is reported at the variant's own line and column.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from runner.diagnostics import Diagnostic
from runner.workflow.document import Document, Path

SECTIONS = ("models", "agents", "stages")
BASE = "base"  # the workflow as written, the first column of a comparison


@dataclass(frozen=True, slots=True)
class Variant:
    """One variant: its ``name``, its ``description`` and the workflow it makes (``runner.workflow.records
    .Workflow``, built and checked from the merged document)."""

    name: str
    description: str
    workflow: Any


def variant_documents(doc: Document) -> list[tuple[str, str, Document | None, list[Diagnostic]]]:
    """Each variant of a schema-valid document: its name, description, merged document (None when an override
    names what does not exist) and the problems found while merging (located at the variant's keys)."""
    out: list[tuple[str, str, Document | None, list[Diagnostic]]] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(doc.data.get("variants") or ()):
        name = raw["name"]
        problems: list[Diagnostic] = []
        if name in seen or name == BASE:
            why = (
                f"variant name '{name}' is used by variants[{seen[name]}]"
                if name in seen
                else f"variant name '{BASE}' is the workflow as written"
            )
            problems.append(
                _at(doc, ("variants", index, "name"), "invalid-setting", why, "give each variant its own name")
            )
        seen.setdefault(name, index)
        merged = _merge(doc, index, raw, problems)
        out.append((name, str(raw.get("description", "")), merged if not problems else None, problems))
    return out


def _merge(doc: Document, index: int, raw: dict[str, Any], problems: list[Diagnostic]) -> Document:
    data = copy.deepcopy(doc.data)
    values, keys = dict(doc.values), dict(doc.keys)
    for section in SECTIONS:
        for target, override in (raw.get(section) or {}).items():
            where: Path = ("variants", index, section, target)
            into = _find(data, section, target)
            if into is None:
                declared = _declared(data, section)
                problems.append(
                    _at(
                        doc,
                        where,
                        "unknown-" + {"models": "model", "agents": "agent", "stages": "stage"}[section],
                        f"variant '{raw['name']}': no {section[:-1]} '{target}' to override",
                        f"{section}: {', '.join(declared)}" if declared else f"the workflow declares no {section}",
                        key=True,
                    )
                )
                continue
            base_path, node = into
            for key, value in override.items():
                node[key] = copy.deepcopy(value)
                dest: Path = (*base_path, key)
                src: Path = (*where, key)
                for table in (values, keys):
                    for path in [p for p in table if p[: len(dest)] == dest]:
                        del table[path]
                for table, source in ((values, doc.values), (keys, doc.keys)):
                    for path, span in source.items():
                        if path[: len(src)] == src:
                            table[(*dest, *path[len(src) :])] = span
    return Document(doc.file, doc.text, data, values, keys)


def _find(data: dict[str, Any], section: str, target: str) -> tuple[Path, dict[str, Any]] | None:
    """The mapping an override goes into, and its path: ``models.<name>``, ``agents.<name>``, or the stage whose
    ``id`` it is (nested stages included)."""
    if section != "stages":
        node = (data.get(section) or {}).get(target)
        return ((section, target), node) if isinstance(node, dict) else None
    found: list[tuple[Path, dict[str, Any]]] = []

    def visit(node: Any, path: Path) -> None:
        if isinstance(node, dict):
            if node.get("id") == target:
                found.append((path, node))
            for key, value in node.items():
                if key not in ("vars", "output", "assert"):
                    visit(value, (*path, key))
        elif isinstance(node, list):
            for i, value in enumerate(node):
                visit(value, (*path, i))

    visit(data.get("stages"), ("stages",))
    return found[0] if found else None


def _declared(data: dict[str, Any], section: str) -> list[str]:
    if section != "stages":
        return sorted(data.get(section) or {})
    return [s["id"] for s in data.get("stages") or () if isinstance(s, dict) and isinstance(s.get("id"), str)]


def _at(doc: Document, path: Path, rule: str, message: str, hint: str, *, key: bool = False) -> Diagnostic:
    span = doc.span(path, key=key)
    return Diagnostic(doc.file, span.line, span.column, span.end_line, span.end_column, "error", rule, message, hint)


def in_variant(name: str, problem: Diagnostic) -> Diagnostic:
    """A problem that only a variant has, said as the variant's."""
    prefix = f"variant '{name}': "
    if problem.message.startswith(prefix):
        return problem
    return Diagnostic(
        problem.file,
        problem.line,
        problem.column,
        problem.end_line,
        problem.end_column,
        problem.severity,
        problem.rule,
        prefix + problem.message,
        problem.hint,
    )


def pick(wf: Any, name: str | None) -> Any:
    """The workflow of variant ``name`` (None or ``base``: the workflow as written); ``KeyError`` when none."""
    if name is None or name == BASE:
        return wf
    for variant in wf.variants:
        if variant.name == name:
            return variant.workflow
    raise KeyError(name)
