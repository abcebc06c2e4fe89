"""A run's report files: the JSON report, and beside it the file of each format the workflow asks for
(:mod:`runner.report.formats`). Every file is written atomically (a temporary file renamed into place) and
redacted (:func:`runner.secrets.redact`); one that cannot be written never stops the others."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from runner.errors import RunError
from runner.fsutil import atomic_write_text
from runner.report.document import RunInfo, report_json
from runner.report.formats import EVAL_FORMATS, FORMATS_BY_NAME, RUN_FORMATS, format_of
from runner.secrets import redact


def report_path(directory: str | Path, info: RunInfo) -> Path:
    """Where a run's JSON report goes: ``<directory>/<workflow>-<UTC start, to the millisecond>Z.json``."""
    stamp = info.started_at.strftime("%Y%m%dT%H%M%S") + f".{info.started_at.microsecond // 1000:03d}Z"
    return Path(directory) / f"{info.workflow}-{stamp}.json"


def write_report(report: Mapping[str, Any], path: Path) -> Path:
    """The JSON report at ``path``, atomically; raises :class:`~runner.fsutil.WriteError` when it cannot be."""
    atomic_write_text(path, redact(report_json(report)) + "\n")  # every writer redacts what it writes
    return path


class ReportWriteError(RunError):
    """Some of a run's report files could not be written; the others were. ``written`` lists the files
    written (the JSON report first when it was), ``failures`` each file that was not with its cause."""

    def __init__(self, written: Sequence[Path], failures: Sequence[tuple[Path, BaseException]]) -> None:
        self.written = list(written)
        self.failures = list(failures)
        super().__init__("\n".join(_failure_message(path, exc) for path, exc in self.failures))

    @property
    def is_bug(self) -> bool:
        """Whether a writer failed with something other than the file system's error: a bug in runner."""
        return any(not isinstance(exc, OSError) for _, exc in self.failures)


def _failure_message(path: Path, exc: BaseException) -> str:
    what = format_of(path).noun
    if isinstance(exc, OSError):
        cause = exc.strerror or str(exc)
        return f"could not write {what} {path}: {cause}"
    return f"could not write {what} {path}: {type(exc).__name__}: {exc} (a bug in runner; please report it)"


def write_outputs(report: Mapping[str, Any], path: Path, formats: Sequence[str] = ("json",)) -> list[Path]:
    """The JSON report at ``path`` (always) and, beside it with the same base name, the file of each other
    format named (``.md`` for ``markdown``, ...: :data:`~runner.report.formats.FORMATS_BY_NAME`). Returns the
    paths written, the JSON first, the others in the order of :data:`~runner.report.formats.RUN_FORMATS`.

    Each file is made and written on its own: one that fails (a full disk, a crash in its writer) never stops
    the others. When any failed, raises :class:`ReportWriteError` after writing all the others."""
    unknown = [name for name in formats if name not in RUN_FORMATS and name not in EVAL_FORMATS]
    if unknown:
        raise ValueError(f"runner run writes no {unknown[0]!r} file; choose from: {', '.join(RUN_FORMATS)}")
    wanted = [FORMATS_BY_NAME[name] for name in RUN_FORMATS[1:] if name in formats]
    jobs = [(path, FORMATS_BY_NAME["json"]), *((fmt.path_beside(path), fmt) for fmt in wanted)]
    written: list[Path] = []
    failures: list[tuple[Path, BaseException]] = []
    for target, fmt in jobs:
        try:
            # every writer's text is redacted (runner/secrets.py) before it reaches the disk
            atomic_write_text(target, redact(fmt.render(report)))
        except Exception as exc:  # noqa: BLE001 - each writer on its own; every failure is reported below
            failures.append((target, exc))
        else:
            written.append(target)
    if failures:
        raise ReportWriteError(written, failures)
    return written
