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


class _Includes:
    """The child workflows (``workflow:``, issue 22) of one check, each read and checked once, in its own file:
    its problems are located there. ``chain`` is the files being read, outermost first: a file already in it
    closes an include cycle, reported at the include that closes it with the whole chain."""

    def __init__(self) -> None:
        self.seen: dict[str, Workflow | None] = {}
        self.chain: list[tuple[str, str]] = []  # (real path, the file as messages name it)

    def __call__(self, written: str, name: str, at: Diagnostic) -> tuple[Workflow | None, list[Diagnostic]]:
        import dataclasses  # noqa: PLC0415
        import os  # noqa: PLC0415

        key = os.path.realpath(name)
        for i, (seen, _) in enumerate(self.chain):
            if seen == key:
                cycle = " -> ".join([shown for _, shown in self.chain[i:]] + [name])
                message = f"include cycle: {cycle}"
                hint = "a workflow cannot run itself, directly or through others: remove one include of the chain"
                return None, [dataclasses.replace(at, rule="include-cycle", message=message, hint=hint)]
        if key in self.seen:
            return self.seen[key], []  # its problems are reported once, with its first include
        if not os.path.isfile(name):
            from runner.validate.rules.common import suggest  # noqa: PLC0415

            folder = os.path.dirname(name) or "."
            files = [f for f in os.listdir(folder) if f.endswith((".yaml", ".yml"))] if os.path.isdir(folder) else []
            close = suggest(os.path.basename(name), files, "workflow files")
            hint = f"no file at {name}"
            if close.startswith("did you mean"):  # the close name as the include would write it
                written_close = os.path.join(os.path.dirname(written), close.split("'")[1])
                hint = f"did you mean '{written_close}'?"
            message = f"workflow file {written} not found (paths are relative to the file that names them)"
            return None, [dataclasses.replace(at, rule="unknown-workflow", message=message, hint=hint)]
        wf, problems = check_file(name, includes=self)
        self.seen[key] = wf
        return wf, problems


def check_file(
    path: str | Path, *, text: bytes | None = None, includes: _Includes | None = None
) -> tuple[Workflow | None, list[Diagnostic]]:
    """Load and check one workflow file; return the records (None when it has errors) and every problem, its
    child workflows' included (located in their files). ``includes``: the children read so far (a child's own
    check shares its parent's)."""
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
    if includes is None:
        includes = _Includes()
    includes.chain.append((str(Path(file).resolve()) if file != "<string>" else file, file))
    try:
        wf = build_workflow(doc, hashlib.sha256(text).hexdigest(), settings, includes)
    finally:
        includes.chain.pop()
    problems = sorted(check_workflow(wf, doc) + settings + secrets)
    if "variants" in doc.data:  # issue 24: each variant checked as the file is, its own problems added
        wf, problems = _with_variants(doc, wf, problems)
    return (None if any(p.severity == "error" for p in problems) else wf), problems


def _with_variants(doc: Document, wf: Workflow, problems: list[Diagnostic]) -> tuple[Workflow, list[Diagnostic]]:
    """``wf`` with its variants' workflows, and the problems of the variants that the file as written has not."""
    import dataclasses  # noqa: PLC0415

    from runner.workflow.build import build_workflow  # noqa: PLC0415
    from runner.workflow.schema import schema_diagnostics  # noqa: PLC0415
    from runner.workflow.variants import Variant, in_variant, variant_documents  # noqa: PLC0415

    known = set(problems)
    found: list[Diagnostic] = []
    variants = []
    for name, description, merged, merging in variant_documents(doc):
        found.extend(merging)
        if merged is None:
            continue
        own = schema_diagnostics(merged)
        if not own:
            settings: list[Diagnostic] = []
            built = build_workflow(merged, wf.sha256, settings)
            own = check_workflow(built, merged) + settings
            variants.append(Variant(name, description, built))
        # a variant's warnings are the file's (a model only another variant uses is not unused): its errors only
        found.extend(in_variant(name, p) for p in own if p not in known and p.severity == "error")
    used = {agent.model for v in variants for agent in v.workflow.agents.values()}
    problems = [p for p in problems if not (p.rule == "unused-model" and _named(p.message) in used)]
    unique = sorted(set(found))
    return dataclasses.replace(wf, variants=tuple(variants)), sorted(problems + unique)


def _named(message: str) -> str | None:
    """The name an unused-model warning is about (``model 'x' is not used by any agent``)."""
    first, _, rest = message.partition("'")
    return rest.partition("'")[0] if first.endswith("model ") else None


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
        *_gate_checks(wf, source, walk),
        *_include_checks(wf, source, walk),
        *_mcp_checks(wf, source),
    ]


def _include_checks(wf: Workflow, source: Any, walk: Any) -> list[Diagnostic]:
    """The inputs given to child workflows (issue 22), only for a workflow that runs one."""
    from runner.stages import FanoutStage, WorkflowStage  # noqa: PLC0415

    if not any(isinstance(s, WorkflowStage) or (isinstance(s, FanoutStage) and s.workflow) for s, _ in walk.order):
        return []
    from runner.validate.rules.includes import check_includes  # noqa: PLC0415

    return check_includes(wf, source, walk)


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


def _gate_checks(wf: Workflow, source: Any, walk: Any) -> list[Diagnostic]:
    """Human gates' ``show`` and ``schema`` (issue 23): only a workflow with a gate imports the rules."""
    from runner.validate.rules.gates import check_gates, has_gates  # noqa: PLC0415

    return check_gates(wf, source, walk) if has_gates(wf) else []


def _typed_checks(wf: Workflow, source: Any, walk: Any) -> list[Diagnostic]:
    """The data flow of structured outputs and the switch cases read from them: only a workflow with an
    ``output:`` schema has typed values to check (and only then are those rules imported: 10 ms of a run)."""
    from runner.stages import AgentStage, AskStage, FanoutStage, WorkflowStage  # noqa: PLC0415
    from runner.stages import walk as all_stages

    typed = any(agent.output is not None for agent in wf.agents.values()) or any(
        (isinstance(stage, AgentStage) and stage.output is not None)
        or isinstance(stage, AskStage)
        or isinstance(stage, WorkflowStage)  # a sub-workflow's stages are read through it (issue 22)
        or (isinstance(stage, FanoutStage) and stage.workflow is not None)
        for stage in all_stages(wf.stages)
    )
    if not typed:
        return []
    from runner.validate.rules.cases import check_switch_cases  # noqa: PLC0415
    from runner.validate.rules.dataflow import check_data_flow  # noqa: PLC0415

    return [*check_data_flow(wf, source, walk), *check_switch_cases(wf, source, walk)]
