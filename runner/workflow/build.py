"""From a schema-valid document to frozen records."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, TypeVar

from runner.config.fallback import parse_fallback
from runner.config.limits import parse_limits
from runner.config.mcp import parse_server, split_tools
from runner.config.models import MODEL_SETTINGS
from runner.config.source import Loc, TemplateSrc
from runner.diagnostics import Diagnostic
from runner.errors import ConfigError, SpecError
from runner.stages import kind_for
from runner.stages.base import Common, StageRecord
from runner.workflow.document import Document, Path
from runner.workflow.records import (
    NO_POLICY,
    AgentSpec,
    EmbeddingSpec,
    InputSpec,
    LoggingSpec,
    MemorySpec,
    ModelSpec,
    ReportSpec,
    RetryPolicy,
    StagePolicy,
    ToolSpec,
    Workflow,
)

T = TypeVar("T")

IncludeLoader = Callable[[str, str, Diagnostic], tuple[Any, list[Diagnostic]]]
"""How the builder reads a child workflow (``runner/validate/check.py`` gives one): (the file as written, the
child's file as the run names it, a diagnostic located at the ``workflow:`` value, whose message and rule it
fills in) -> (the child's records or None, the problems to report: the child's own, in its file, or one at
the include)."""


class _Builder:
    def __init__(self, doc: Document, include: IncludeLoader | None = None) -> None:
        self.doc = doc
        self.problems: list[Diagnostic] = []
        self._include = include

    def setting(self, base: Path, parse: Callable[..., T], *args: Any) -> T | None:
        """What a section's parser makes of the mapping at ``base``; None, with a diagnostic at the offending
        key, when it refuses a setting (issue 14: a bare ValueError from a parser was an exit 3)."""
        try:
            return parse(*args)
        except ConfigError as exc:
            from runner.workflow.schema import describe_path  # noqa: PLC0415 - only for a refused setting

            span = self.doc.span((*base, *exc.key), key=True)
            where = describe_path(base, self.doc.data)
            self.problems.append(
                Diagnostic(
                    self.doc.file,
                    span.line,
                    span.column,
                    span.end_line,
                    span.end_column,
                    "error",
                    "invalid-setting",
                    f"{where}: {exc}",
                    exc.hint,
                )
            )
            return None

    def include(self, file: str, path: Path) -> tuple[str, Any]:
        """A child workflow (``runner.stages.base.BuildContext``): relative to this file's folder (the current
        one for YAML text), read by the loader; None without one (records built without checking children)."""
        import os  # noqa: PLC0415 - only for a workflow that includes another

        folder = os.path.dirname(self.doc.file) if self.doc.file != "<string>" else ""
        name = os.path.normpath(os.path.join(folder, file))
        if self._include is None:
            return name, None
        span = self.doc.span(path)
        at = Diagnostic(self.doc.file, span.line, span.column, span.end_line, span.end_column, "error", "", "")
        child, problems = self._include(file, name, at)
        self.problems.extend(problems)
        return name, child

    def loc(self, path: Path, *, key: bool = False) -> Loc:
        span = self.doc.span(path, key=key)
        return Loc(self.doc.file, span.line, span.column)

    def template(self, path: Path) -> TemplateSrc:
        return template_src(self.doc, path)

    def _templates_under(self, base: Path) -> Callable[[Path], TemplateSrc]:
        def template(rel: Path) -> TemplateSrc:
            return self.template((*base, *rel))

        return template

    def _get(self, path: Path) -> Any:
        node: Any = self.doc.data
        for part in path:
            node = node[part]
        return node

    def policy(self, raw: Mapping[str, Any], path: Path) -> StagePolicy:
        if not any(key in raw for key in ("timeout", "retry", "when")):
            return NO_POLICY
        retry = raw.get("retry") or {}
        return StagePolicy(
            timeout=raw.get("timeout"),
            retry=RetryPolicy(
                max_attempts=retry.get("max_attempts", 1),
                initial_delay=retry.get("initial_delay", 0.5),
                max_delay=retry.get("max_delay", 8.0),
            ),
            when=self.template((*path, "when")) if "when" in raw else None,
        )

    def common(self, raw: Mapping[str, Any], path: Path) -> Common:
        """The keys every stage kind has (``runner.stages.base.BuildContext``)."""
        return Common(
            id=raw["id"],
            input=self.template((*path, "input")) if "input" in raw else None,
            vars=MappingProxyType(dict(raw.get("vars") or {})),
            loc=self.loc((*path, "id")),
            policy=self.policy(raw, path),
        )

    def output(self, raw: Mapping[str, Any], path: Path, name: str) -> Any:
        """The structured output of an agent or an agent stage (``output:``), or None (issue 16)."""
        from pathlib import Path as FilePath  # noqa: PLC0415

        from runner.config.output import parse_output  # noqa: PLC0415 - only for workflows with one

        if "output" not in raw:
            return None
        folder = FilePath(self.doc.file).parent  # "<string>" (YAML text given to runner.load): the current folder
        return self.setting((*path, "output"), parse_output, raw["output"], folder, name)

    def stage(self, raw: Mapping[str, Any], path: Path) -> StageRecord:
        """A stage's record, built by its kind (nested stages come back here)."""
        record: StageRecord = kind_for(raw).build(raw, path, self)
        return record

    def build(self, sha256: str) -> Workflow:
        data = self.doc.data
        inputs = tuple(
            InputSpec(
                name=name,
                type=spec["type"],
                items=spec.get("items"),
                default=spec.get("default"),
                required="default" not in spec,
                description=spec.get("description", ""),
                loc=self.loc(("inputs", name), key=True),
            )
            for name, spec in (data.get("inputs") or {}).items()
        )
        models = {}
        for name, spec in (data.get("models") or {}).items():
            kind = MODEL_SETTINGS[spec["provider"]]
            base: Path = ("models", name)
            config = self.setting(base, kind.parse, spec, self._templates_under(base), self.loc(base, key=True))
            models[name] = ModelSpec(
                name, spec["provider"], config, self.loc(base, key=True), parse_fallback(spec.get("fallback"))
            )
        tool_lists = {name: split_tools(spec.get("tools") or ()) for name, spec in (data.get("agents") or {}).items()}
        agents = {
            name: AgentSpec(
                name=name,
                model=spec["model"],
                sys_prompt=self.template(("agents", name, "sys_prompt")) if "sys_prompt" in spec else None,
                vars=MappingProxyType(dict(spec.get("vars") or {})),
                description=spec.get("description", ""),
                loc=self.loc(("agents", name), key=True),
                tools=tool_lists[name][0],
                tool_positions=tool_lists[name][1],
                mcp_tools=tool_lists[name][2],
                max_iters=spec.get("max_iters", 10),
                max_parallel_tools=spec.get("max_parallel_tools", 4),
                memory=spec.get("memory"),
                output=self.output(spec, ("agents", name), name),
            )
            for name, spec in (data.get("agents") or {}).items()
        }
        embeddings = {
            name: self.embedding(name, spec, self.loc(("embeddings", name), key=True))
            for name, spec in (data.get("embeddings") or {}).items()
        }
        memory = {
            name: self.memory(name, spec, self.loc(("memory", name), key=True))
            for name, spec in (data.get("memory") or {}).items()
        }
        tools = {
            name: ToolSpec(
                name=name,
                function=spec["function"],
                timeout=spec.get("timeout"),
                description=spec.get("description"),
                parameters=MappingProxyType(dict(spec["parameters"])) if "parameters" in spec else None,
                loc=self.loc(("tools", name), key=True),
            )
            for name, spec in (data.get("tools") or {}).items()
        }
        stages = tuple(self.stage(s, ("stages", i)) for i, s in enumerate(data["stages"]))
        report_raw = data.get("report") or {}
        report = ReportSpec(dir=report_raw.get("dir", "reports"), formats=tuple(report_raw.get("formats", ("json",))))
        return Workflow(
            file=self.doc.file,
            sha256=sha256,
            version=data["version"],
            name=data["name"],
            description=data.get("description", ""),
            inputs=inputs,
            models=MappingProxyType(models),
            agents=MappingProxyType(agents),
            stages=stages,
            report=report,
            tools=MappingProxyType(tools),
            timeout=data.get("timeout"),
            embeddings=MappingProxyType(embeddings),
            memory=MappingProxyType(memory),
            logging=LoggingSpec(**(data.get("logging") or {})),
            limits=parse_limits(data.get("limits")),
            asserts=self.asserts(data),
            repeat=data.get("repeat", 1),
            mcp_servers=MappingProxyType(
                {
                    name: parse_server(name, spec, self.loc(("mcp_servers", name), key=True))
                    for name, spec in (data.get("mcp_servers") or {}).items()
                }
            ),
        )

    def asserts(self, data: Mapping[str, Any]) -> tuple[Any, ...]:
        """The ``assert:`` lists of the top level and of every stage, nested ones included (issue 24)."""
        if "assert" not in self.doc.text and "threshold" not in self.doc.text and "repeat" not in self.doc.text:
            return ()  # most workflows: no walk of the stages
        from runner.workflow.asserts import AssertList, parse_assert  # noqa: PLC0415 - only with assertions

        found: list[tuple[Path, Mapping[str, Any], str | None]] = []
        if "assert" in data:
            found.append(((), data, None))

        def visit(node: Any, path: Path) -> None:
            if isinstance(node, dict):
                if isinstance(node.get("id"), str) and "assert" in node:
                    found.append((path, node, node["id"]))
                elif isinstance(node.get("id"), str) and "threshold" in node:
                    self.setting(
                        path,
                        _refuse,
                        "threshold is the share of rows that must pass an assert: list, and this stage has none",
                        ("threshold",),
                        "add assert: [...] beside it, or remove it",
                    )
                for key, value in node.items():
                    if key not in ("vars", "output", "assert"):
                        visit(value, (*path, key))
            elif isinstance(node, list):
                for i, value in enumerate(node):
                    visit(value, (*path, i))

        visit(data["stages"], ("stages",))
        if "repeat" in data and not found:
            self.setting(
                (),
                _refuse,
                "repeat runs each dataset row again for its assertions' verdicts, and the workflow has no assert: list",
                ("repeat",),
                "add assert: [...] (top level or on a stage), or remove repeat",
            )
        if "threshold" in data and "assert" not in data:
            self.setting(
                (),
                _refuse,
                "threshold is the share of rows that must pass an assert: list, and the workflow has no top-level one",
                ("threshold",),
                "add assert: [...] beside it, or remove it",
            )
        lists = []
        for path, raw, stage in found:
            if "fanout" in path:  # a fan-out's branches keep their outputs to themselves: nothing per row to check
                self.setting(
                    path,
                    _refuse,
                    f"stage '{stage}' runs inside a fan-out, whose inner outputs a row does not keep",
                    ("assert",),
                    "check the fan-out's output instead: put the assert: list on "
                    "the fan-out stage (output: the list of its branches' outputs)",
                )
                continue
            items = []
            for i, item in enumerate(raw["assert"]):
                where: Path = (*path, "assert", i)
                spec = self.setting(
                    where, parse_assert, item, i, stage, self._templates_under(where), self.loc(where), where
                )
                if spec is not None:
                    items.append(spec)
            lists.append(
                AssertList(stage, float(raw.get("threshold", 1.0)), tuple(items), self.loc((*path, "assert"), key=True))
            )
        return tuple(lists)

    def embedding(self, name: str, raw: dict[str, Any], loc: Loc) -> EmbeddingSpec:
        from runner.config.embeddings import EMBEDDER_SETTINGS, parse_embedding_config  # noqa: PLC0415

        base: Path = ("embeddings", name)
        common_raw = {k: v for k, v in raw.items() if k in _COMMON_EMBEDDING_KEYS}
        common = self.setting(base, parse_embedding_config, common_raw)
        parse_own = EMBEDDER_SETTINGS[raw["provider"]].parse
        own = None
        if parse_own is not None:
            own = self.setting(base, parse_own, {k: v for k, v in raw.items() if k != "cache"})
        return EmbeddingSpec(name, raw["provider"], common, own, loc)

    def memory(self, name: str, raw: dict[str, Any], loc: Loc) -> MemorySpec:
        from runner.config.embeddings import parse_long_term  # noqa: PLC0415
        from runner.config.memory import parse_working_memory  # noqa: PLC0415

        base: Path = ("memory", name)
        working_raw = {k: v for k, v in raw.items() if k != "long_term"}
        working = self.setting(base, parse_working_memory, working_raw) if "max_total_tokens" in raw else None
        long_term = None
        if "long_term" in raw:
            long_term = self.setting((*base, "long_term"), parse_long_term, raw["long_term"])
        return MemorySpec(name, working, long_term, loc)


def _refuse(message: str, key: tuple[str | int, ...], hint: str) -> None:
    raise ConfigError(message, key, hint)


_COMMON_EMBEDDING_KEYS = ("provider", "dimensions", "batch_size", "model", "cache", "base_url", "api_key_env")


def template_src(doc: Document, path: Path) -> TemplateSrc:
    """The string at ``path`` as a template located in the file, character by character (issue 14: a
    folded block's third line was reported on its first line, past its end)."""
    value: Any = doc.data
    for part in path:
        value = value[part]
    span = doc.span(path)
    segments = doc.segments(path)
    if segments:
        _, line, column = segments[0]
        return TemplateSrc(str(value), Loc(doc.file, line, column), 0, segments)
    # Not re-readable (never seen; kept so that a surprise costs a column, not the run): the scalar's start.
    start = doc.offset(span.line, span.column)
    first = doc.text[start : start + 1]
    if first in ("|", ">") and span.line < len(doc.line_starts):  # the text starts on the next line
        body = doc.text[doc.line_starts[span.line] :].split("\n", 1)[0]
        return TemplateSrc(str(value), Loc(doc.file, span.line, len(body) - len(body.lstrip(" ")) + 1), 1)
    return TemplateSrc(str(value), Loc(doc.file, span.line, span.column + (first in ("'", '"'))))


def build_workflow(
    doc: Document, sha256: str, problems: list[Diagnostic] | None = None, include: IncludeLoader | None = None
) -> Workflow:
    """The records of a schema-valid document. A setting a section's parser refuses is a located
    diagnostic: added to ``problems`` when given (the records then hold None for that section's config, and
    must not be run), else raised as :class:`SpecError`. ``include`` reads the child workflows it names."""
    builder = _Builder(doc, include)
    wf = builder.build(sha256)
    if problems is not None:
        problems.extend(builder.problems)
    elif builder.problems:
        raise SpecError(sorted(builder.problems))
    return wf
