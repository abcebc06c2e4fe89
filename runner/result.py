"""What a run gives a program: :class:`Result` (``runner.run``, ``runner.arun``, ``runner.stream``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.errors import RunError, RunnerError

if TYPE_CHECKING:
    from runner.engine.session import RunOutcome
    from runner.report.document import RunInfo


@dataclass(frozen=True, eq=False, repr=False)
class Result:
    """The end of one run: how it ended, what it produced and its timing report.

    * ``status``: ``"ok"``, ``"failed"`` or ``"interrupted"`` (cancelled, or Ctrl-C), as the report says; with
      human gates also ``"rejected"`` (an ``approve`` was rejected: ``error`` is a
      :class:`~runner.errors.GateRejected`) or ``"waiting"`` (a gate with no ``on_gate`` to ask: ``error`` is a
      :class:`~runner.errors.GateWaiting` naming it).
    * ``output``: the last stage's output (None unless ok). An agent or a python stage returning text gives a
      message with ``content``, ``name`` (the agent or function), ``node``, ``usage``, ``error`` and ``data``
      (the value of a structured output, else None); a fan-out gives the list of its branches' outputs, in input
      order; a python stage may return any value.
    * ``stages``: every top-level stage's output by stage id, as templates see ``stages.<id>`` (a fan-out's as
      a list, a stage skipped by ``when`` as None; the stages of listed branches too). A failed or interrupted
      run keeps the outputs of the stages that ended before it stopped.
    * ``report``: the report document (``schemas/report.schema.json``): spans per node, per-model latency,
      the critical path and the bottlenecks; what :meth:`write_report` writes.
    * ``error``: why the run failed: a :class:`~runner.errors.RunnerError` whose message says what to fix
      (``StageTimeout``, ``ProviderHTTPError``, ...), or the exception a python stage or tool raised. For an
      interrupted run, the ``CancelledError`` or ``KeyboardInterrupt``.

    A failed run is a result, not an exception, as a response with an error status is in httpx: its report
    is worth keeping. :meth:`raise_for_status` turns it into one.
    """

    status: str
    output: Any
    stages: Mapping[str, Any]
    report: dict[str, Any]
    error: BaseException | None
    formats: tuple[str, ...] = ("json",)  # the workflow's report.formats: what write_report writes by default
    _info: RunInfo | None = field(default=None, repr=False)

    @classmethod
    def of(cls, outcome: RunOutcome, formats: Sequence[str] = ("json",)) -> Result:
        """The result of a session's outcome (its report built now)."""
        return cls(
            outcome.status,
            outcome.output,
            dict(outcome.stages),
            outcome.report(),
            outcome.error,
            tuple(formats),
            outcome.info,
        )

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def wall_s(self) -> float:
        """The run's wall time in seconds."""
        return float(self.report["run"]["wall_s"])

    def raise_for_status(self) -> Result:
        """Return the result when the run was ok; otherwise raise why it was not: the run's own error (a
        :class:`~runner.errors.RunnerError`, or what a python stage or tool raised), or :class:`RunError` for
        an interrupted run."""
        if self.status == "ok":
            return self
        if self.status == "interrupted" or self.error is None:
            raise RunError(f"the run of {self.report['workflow']['name']!r} was {self.status} before it finished")
        raise self.error

    def write_report(self, folder: str | Path, formats: Sequence[str] | None = None) -> list[Path]:
        """Write the report into ``folder`` (made if missing) as ``runner run`` does: ``<name>-<UTC stamp>.json``
        and, for each of ``formats`` (default: the workflow's ``report.formats``), the file beside it
        (``markdown``: ``.md``, ``trace``: ``.trace.json``, ``html``: ``.html``). Each file is written
        atomically, secrets redacted. Returns the paths written, the JSON report first.

        Raises :class:`~runner.fsutil.WriteError` (a :class:`RunError`) when the folder cannot be written, and
        :class:`~runner.report.files.ReportWriteError` naming each file that could not be, after writing the others.
        An unknown format is a ``ValueError``."""
        from runner.fsutil import ensure_writable_dir  # noqa: PLC0415 - the writers load when a report is written
        from runner.report.files import report_path, write_outputs  # noqa: PLC0415
        from runner.report.formats import EVAL_FORMATS  # noqa: PLC0415
        from runner.report.formats import RUN_FORMATS as FORMATS  # noqa: PLC0415

        if isinstance(formats, str):  # ("html") for ("html",): each letter would be a format
            raise TypeError(f"formats must be a list of format names, not the string {formats!r}")
        chosen = tuple(self.formats if formats is None else formats)
        unknown = [f for f in chosen if f not in FORMATS and f not in EVAL_FORMATS]  # junit: the eval writes it
        if unknown:
            raise ValueError(f"unknown report format {unknown[0]!r}: choose among {', '.join(FORMATS)}")
        assert self._info is not None, "a Result made by a run knows its run"
        ensure_writable_dir(folder)
        return write_outputs(self.report, report_path(folder, self._info), chosen)

    def __repr__(self) -> str:
        error = "" if self.error is None else f", error={_brief(self.error)!r}"
        return f"<Result {self.status} in {self.wall_s:.3f} s: stages {list(self.stages)}{error}>"


def _brief(error: BaseException) -> str:
    return str(error) if isinstance(error, RunnerError) else f"{type(error).__name__}: {error}"
