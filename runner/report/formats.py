"""The report formats: one entry per format, shared by the workflow's ``report: {formats: [...]}`` (the schema's
enum), ``runner run`` (the files it writes beside the JSON report, and the label it prints for each) and
``runner report FILE --format`` (its choices).

A writer is a function from the report document to the text of its file. Entries name it as
``module:function`` and load it when first used: the CLI reads this registry to build its parser, and loading
every writer would slow every command down. A test pins the registry to the workflow schema's enum, to the
CLI's choices, and every entry to a writer that loads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any, cast

Writer = Callable[[Mapping[str, Any]], str]


@dataclass(frozen=True, slots=True)
class ReportFormat:
    """One report format. ``writer``: its function, as ``module:function``; ``suffix``: its file's ending beside
    the JSON report, or None for a format that is only printed (``runner run`` cannot write it as a file);
    ``label``: what ``runner run`` prints before the file's path (``summary: reports/wf-....md``); ``noun``:
    the file in an error message (``could not write the trace ...``)."""

    name: str
    writer: str
    suffix: str | None = None
    label: str | None = None
    noun: str = ""

    @property
    def written_by_run(self) -> bool:
        """Whether ``runner run`` writes it as a file (``report: {formats: [...]}`` can name it)."""
        return self.suffix is not None

    def render(self, report: Mapping[str, Any]) -> str:
        """The format's text of ``report`` (not yet redacted: the caller redacts what it writes or prints)."""
        module, _, function = self.writer.partition(":")
        writer = cast(Writer, getattr(import_module(module), function))
        return writer(report)

    def path_beside(self, json_path: Path) -> Path:
        """Its file beside the JSON report: ``wf-<stamp>.json`` -> ``wf-<stamp>.md``."""
        if self.suffix is None:
            raise ValueError(f"the {self.name} format is not written as a file")
        base = json_path.with_suffix("")
        return base.with_name(base.name + self.suffix)


# In the order `runner report --format` lists them (the summary first: its default).
FORMATS_BY_NAME: Mapping[str, ReportFormat] = {
    f.name: f
    for f in (
        ReportFormat("text", "runner.report.summary:to_text", noun="the summary"),
        ReportFormat("markdown", "runner.report.markdown:to_markdown", ".md", "summary", "the Markdown summary"),
        ReportFormat("json", "runner.report.document:to_json", ".json", "report", "the report"),
        ReportFormat("trace", "runner.report.trace:to_trace_json", ".trace.json", "trace", "the trace"),
        ReportFormat("html", "runner.report.html:to_html", ".html", "waterfall", "the waterfall"),
    )
}
# What `report: {formats}` can name, in the order `runner run` writes them: the JSON report (always written,
# and the document every other format is drawn from) first.
RUN_FORMATS = ("json", *(name for name, f in FORMATS_BY_NAME.items() if f.written_by_run and name != "json"))
# What `report: {formats}` can also name that is not drawn from the timing report: the assertions' verdicts as JUnit
# XML, which the evaluation writes (runner/commands/evals.py, issue 24) when the workflow has assertions.
EVAL_FORMATS = ("junit",)


# Longest ending first: a trace (`.trace.json`) is no JSON report.
_BY_SUFFIX = sorted(
    ((f.suffix, f) for f in FORMATS_BY_NAME.values() if f.suffix is not None), key=lambda entry: -len(entry[0])
)


def format_of(path: Path) -> ReportFormat:
    """The format of a file that ``runner run`` wrote, by its name's ending."""
    for suffix, fmt in _BY_SUFFIX:
        if path.name.endswith(suffix):
            return fmt
    endings = ", ".join(FORMATS_BY_NAME[name].suffix or "" for name in RUN_FORMATS)
    raise ValueError(f"{path.name} is not named like a report file (its name ends in none of {endings})")
