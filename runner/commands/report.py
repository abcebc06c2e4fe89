"""``runner report FILE`` prints a saved report in any writer's format (the summary by default);
``runner report diff A B`` compares two runs of one workflow and exits 1 when the wall time regressed by more
than ``--threshold`` percent (or B failed where A succeeded).

The formats are those of :mod:`runner.report.formats`, the registry ``runner run`` writes its files with. Light at
import (the CLI reads :data:`REPORT_FORMATS` to build its parser): the writers load when used.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO

from runner.errors import RunnerError, UsageError
from runner.report.formats import FORMATS_BY_NAME
from runner.secrets import redact

# What `runner report FILE --format` prints: the summary `runner run` prints after a run (text), or the content
# of a file `report: {formats: [...]}` writes beside the JSON report.
REPORT_FORMATS = tuple(FORMATS_BY_NAME)


def load_report(path: str) -> dict[str, Any]:
    """A saved report, checked against ``schemas/report.schema.json``; a user error when it is not one."""
    from jsonschema import Draft202012Validator  # noqa: PLC0415

    from runner.report.document import REPORT_VERSION  # noqa: PLC0415
    from runner.resources import load_schema  # noqa: PLC0415

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RunnerError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise RunnerError(f"{path} is not JSON: it is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise RunnerError(f"{path} is not JSON: {exc}") from exc
    if not isinstance(data, dict) or "report_version" not in data:
        raise RunnerError(f"{path} is not a runner report (no report_version)")
    if data["report_version"] != REPORT_VERSION:
        raise RunnerError(
            f"{path} is a report of version {data['report_version']}; this runner reads version {REPORT_VERSION}"
        )
    errors = sorted(Draft202012Validator(load_schema("report.schema.json")).iter_errors(data), key=lambda e: e.path)
    if errors:
        where = "/".join(str(p) for p in errors[0].absolute_path) or "(top)"
        raise RunnerError(f"{path} is not a valid report: at {where}: {errors[0].message}")
    return data


def report_command(path: str, *, fmt: str = "text", out: TextIO) -> int:
    report_format = FORMATS_BY_NAME.get(fmt)
    if report_format is None:
        raise UsageError(f"unknown format {fmt!r}; choose from: {', '.join(REPORT_FORMATS)}")
    report = load_report(path)
    # a report written by an older runner may hold a credential: what is printed is redacted all the same
    out.write(redact(report_format.render(report)))
    return 0


def newest_report(path: str) -> str:
    """``path`` itself, or when it is a folder (a ``--report-dir``), the newest JSON report in it: a CI job
    diffs the run it just made without knowing its stamped name."""
    folder = Path(path)
    if not folder.is_dir():
        return path
    others = tuple(f.suffix for f in FORMATS_BY_NAME.values() if f.suffix and f.suffix != ".json")
    reports = [p for p in folder.glob("*.json") if not p.name.endswith(others) and p.is_file()]
    if not reports:
        raise RunnerError(f"{path} holds no report (*.json); pass a report file or the --report-dir of a run")
    return str(max(reports, key=lambda p: (p.stat().st_mtime_ns, p.name)))


def diff_command(path_a: str, path_b: str, *, threshold: float = 10.0, out: TextIO) -> int:
    from runner.report.diff import format_diff  # noqa: PLC0415

    path_a, path_b = newest_report(path_a), newest_report(path_b)
    a, b = load_report(path_a), load_report(path_b)
    if a["workflow"]["name"] != b["workflow"]["name"]:
        raise UsageError(
            f"{path_a} and {path_b} are runs of different workflows "
            f"({a['workflow']['name']!r} and {b['workflow']['name']!r})"
        )
    text, regressed = format_diff(a, b, threshold=threshold)
    out.write(text + "\n")
    return 1 if regressed else 0
