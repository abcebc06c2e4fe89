"""The public API's functions: ``runner.load``, ``check``, ``run``, ``arun`` and ``stream``.

What a library call does and does not do, and why (as httpx, anyio and pre-commit draw the same line):

* It runs on the caller's terms. ``arun`` and ``stream`` run on the loop that is running (a notebook's, an
  async server's, asyncio's or uvloop's) and change nothing of the process: no signal handler, no loop policy
  or task factory, no garbage collector setting, nothing printed or logged. ``run`` is ``asyncio.run`` for a
  workflow: a loop of its own for the call (uvloop where installed, made by a factory, so the global policy
  is untouched), with asyncio's own Ctrl-C handling while it runs. The ``runner`` program adds what a program
  that owns its process may do: its signal handlers, a tuned collector, the terminal (``runner/commands``).
* A failed run is a :class:`~runner.result.Result` with ``status`` "failed", not an exception: its report is
  worth keeping. An invalid workflow or bad inputs raise before anything runs (:class:`SpecError`,
  :class:`RunnerError`), and a misused argument raises ``TypeError`` or ``ValueError``.
* Cancellation propagates. A cancelled ``arun`` cancels every task of the run, closes its connections and
  re-raises ``CancelledError`` (swallowing it would break ``asyncio.timeout`` and task groups around the call);
  Ctrl-C during ``run`` does the same and raises ``KeyboardInterrupt``, as ``asyncio.run`` does. The partial
  result is not lost: ``on_event`` receives :class:`~runner.live.events.RunFinished` with it before the exception
  propagates, and ``stream``'s ``result`` has it after the block.
* Seams for a program's tests, as ``httpx.AsyncClient(transport=...)``: ``providers`` replaces a model's
  provider by any object implementing :class:`~runner.providers.base.ChatProvider` (a fake), and ``transport``
  gives every OpenAI-compatible model an ``httpx`` transport (``httpx.MockTransport``). What the caller passes
  stays the caller's: runner never closes it, so it can serve several runs.

``import runner`` stays light (the CLI imports it on every start): this module imports the engine only when a
run is asked for, so ``runner.load`` and ``runner.check`` never import asyncio or the HTTP stack.

About 530 lines, most of them the public functions' documentation: the whole public surface in one module,
so its signatures and their docs cannot drift apart (``tests/test_public_api.py`` pins them).
"""

from __future__ import annotations

import difflib
import inspect
import os
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.diagnostics import Diagnostic
from runner.errors import SpecError
from runner.workflow.records import Workflow

if TYPE_CHECKING:
    import httpx

    from runner.dataset.batch import RowResult
    from runner.dataset.iterate import RowResults
    from runner.engine.checkpoint import Checkpoint
    from runner.engine.execute import TokenSinkFactory
    from runner.engine.session import RunOutcome, Session
    from runner.events import Recorder
    from runner.live.events import Event
    from runner.live.stream import RunStream
    from runner.plan.compile import Plan
    from runner.providers.base import ChatProvider
    from runner.report.otlp import OtelSettings
    from runner.result import Result
    from runner.stages.gating import GateRequest

__all__ = ["arun", "check", "each", "load", "run", "stream"]

Source = str | bytes | os.PathLike[str]
"""A workflow file's path, or its YAML text (a ``str`` with a line break, or ``bytes``)."""

TEXT_NAME = "<string>"
"""The file name of a workflow given as text, in messages (as Python's ``compile`` names it). Its folder, for
python stages and tools to import from and relative paths, is the current one."""


def _source(source: Source) -> tuple[str, bytes | None]:
    """(file name, text or None to read the file). Text is told from a path by a line break: a workflow has
    several lines and a path has none, which is unambiguous where guessing from the file's existence is not."""
    if isinstance(source, bytes):
        return TEXT_NAME, source
    if isinstance(source, str):
        if "\n" in source or "\r" in source:
            return TEXT_NAME, source.encode("utf-8")
        return source, None
    if isinstance(source, os.PathLike):
        return os.fspath(source), None
    raise TypeError(f"a workflow is a path or YAML text, not {type(source).__name__}")


def check(source: Source) -> list[Diagnostic]:
    """Every problem in a workflow, as ``runner validate`` finds them: located (``file:line:column``, a rule id,
    a hint), sorted, warnings included. Never raises for an invalid workflow; an empty list means it is
    clean. ``source``: a file's path, or YAML text (named ``<string>`` in the diagnostics)."""
    from runner.validate.check import check_file  # noqa: PLC0415 - the validator loads when used

    file, text = _source(source)
    return check_file(file, text=text)[1]


def load(source: Source, *, offline: bool = False) -> Workflow:
    """The workflow, validated and ready to run; raises :class:`SpecError` (its ``diagnostics`` holds every
    problem, as :func:`check` returns them) when it is not valid. Warnings do not stop it.

    ``offline``: every remote model replaced by a scripted one and every remote embedder by the hashing one,
    as ``runner run --offline`` does: the workflow runs without network or key."""
    from runner.validate.check import check_file  # noqa: PLC0415

    file, text = _source(source)
    wf, problems = check_file(file, text=text)
    if wf is None:
        raise SpecError(problems)
    if offline:
        from runner.workflow.offline import offline_workflow  # noqa: PLC0415

        wf = offline_workflow(wf)
    return wf


class _Job:
    """A workflow ready to run: loaded, inputs resolved, compiled, the caller's seams checked. Everything that
    can be wrong before the run is found here, when ``run``, ``arun`` or ``stream`` is called."""

    def __init__(
        self,
        workflow: Workflow | Source,
        inputs: Mapping[str, Any] | None,
        providers: Mapping[str, ChatProvider] | None,
        transport: httpx.AsyncBaseTransport | None,
        run_dir: str | os.PathLike[str] | None,
        otel: bool | str | None = None,
        otel_content: bool = False,
        on_gate: GateHandler | None = None,
        checkpoint: bool = False,
        resume: str | os.PathLike[str] | None = None,
        force: bool = False,
    ) -> None:
        from runner.plan.compile import compile_workflow  # noqa: PLC0415 - templates compile when a run is asked for
        from runner.workflow.inputs import resolve_inputs  # noqa: PLC0415

        wf = workflow if isinstance(workflow, Workflow) else load(workflow)
        if inputs is not None and not isinstance(inputs, Mapping):
            raise TypeError(f"inputs must be a mapping of input names to values, not {type(inputs).__name__}")
        if (checkpoint or resume is not None) and not os.path.isfile(wf.file):
            raise ValueError("checkpoint/resume: a checkpoint is kept for a workflow read from a file, not from text")
        if resume is not None:
            if inputs is not None or run_dir is not None:
                raise ValueError("resume: a resumed run keeps the inputs and the folder it started with; pass neither")
            if checkpoint:
                raise ValueError("resume: a resumed run goes on with its checkpoint; drop checkpoint=True")
        self.checkpoint: Checkpoint | None = None
        if resume is not None:
            self.checkpoint = _reopened(Path(resume), wf, force)
            inputs = self.checkpoint.settings["inputs"]
        self.inputs = resolve_inputs(wf, [], inputs, how="inputs={{{name!r}: ...}}")
        self.providers = _checked_providers(wf, providers)
        self.transport = None if transport is None else _borrowed(transport)
        self.run_dir = None if run_dir is None else Path(run_dir)
        if on_gate is not None and not callable(on_gate):
            raise TypeError(f"on_gate must be a function of a runner.GateRequest, not {type(on_gate).__name__}")
        self.on_gate = on_gate
        self.plan: Plan = compile_workflow(wf)
        self.otel = _otel_settings(otel, otel_content)
        if checkpoint:
            from runner.engine.checkpoint import Checkpoint  # noqa: PLC0415
            from runner.report.document import now_utc  # noqa: PLC0415

            stamp = now_utc().strftime("%Y%m%dT%H%M%S.%fZ")
            folder = self.run_dir or Path(wf.report.dir) / "runs" / f"{wf.name}-{stamp}"
            self.checkpoint = Checkpoint.start(folder, wf, self.inputs)

    def close(self) -> None:
        """Let go of the run's checkpoint (written, its folder's lock released); once, however often called (a
        stream's block and ``arun`` both close the job they ran)."""
        checkpoint, self.checkpoint = self.checkpoint, None
        if checkpoint is not None:
            checkpoint.close()

    def session(self, *, sink: TokenSinkFactory | None = None, recorder: Recorder | None = None) -> Session:
        from runner.engine.session import Session  # noqa: PLC0415

        return Session(
            self.plan,
            self.inputs,
            sink=sink,
            recorder=recorder,
            run_dir=self.run_dir,
            providers=self.providers,
            transport=self.transport,
            traced=self.otel is not None,
            gatekeeper=self._gatekeeper(),
            checkpoint=self.checkpoint,
        )

    def _gatekeeper(self) -> Any:
        if self.on_gate is None:
            return None  # a gate makes the run wait (status "waiting")
        from functools import partial  # noqa: PLC0415

        from runner.engine.gates import Gates, call_back  # noqa: PLC0415

        return Gates(None, partial(call_back, self.on_gate), by="on_gate")

    def result(self, outcome: RunOutcome) -> Result:
        from runner.result import Result  # noqa: PLC0415

        result = Result.of(outcome, self.plan.workflow.report.formats)
        if self.otel is not None:
            # when the call returns, its spans are at the receiver (or a RuntimeWarning says why not); an
            # interrupted run's partial report exports what it has
            from runner.report.otlp import export_run  # noqa: PLC0415 - OpenTelemetry loads only when asked for

            problem = export_run(result.report, outcome.info.layout, outcome.recorder.events, self.otel)
            if problem is not None:
                import warnings  # noqa: PLC0415

                warnings.warn(problem, RuntimeWarning, stacklevel=2)
        return result


def _otel_settings(otel: bool | str | None, content: bool) -> OtelSettings | None:
    """``otel``: None or False, no export; True, to the endpoint the OpenTelemetry environment variables name
    (``OTEL_EXPORTER_OTLP_ENDPOINT``); a string, to that OTLP base URL. A library call never exports because of
    the environment alone (the ``runner`` program does). Raises at once when the ``otel`` extra is missing."""
    if otel is None or otel is False:
        if content:
            raise ValueError("otel_content=True is for an OpenTelemetry export: pass otel=True or otel=URL too")
        return None
    if not isinstance(otel, bool | str) or (isinstance(otel, str) and not otel.startswith(("http://", "https://"))):
        raise ValueError(f"otel must be True or an http:// or https:// URL, not {otel!r}")
    from runner.report.otlp import OtelSettings, check_installed  # noqa: PLC0415 - imports no OpenTelemetry

    check_installed(f"otel={otel!r}")
    return OtelSettings(otel if isinstance(otel, str) else None, content)


def _reopened(folder: Path, wf: Workflow, force: bool) -> Checkpoint:
    """The checkpoint of ``folder``, for a run of ``wf`` (the same file) as it is now."""
    from runner.engine.checkpoint import Checkpoint  # noqa: PLC0415

    ckpt = Checkpoint.open(folder)
    try:
        if ckpt.settings["workflow"] != os.path.abspath(wf.file):
            raise ValueError(f"resume: the run in {folder} is of {ckpt.settings['workflow']}, not {wf.file}")
        ckpt.ready(force=force)
    except BaseException:
        ckpt.close()
        raise
    return ckpt


def _checked_providers(wf: Workflow, providers: Mapping[str, Any] | None) -> dict[str, ChatProvider]:
    if providers is None:
        return {}
    if not isinstance(providers, Mapping):
        raise TypeError(f"providers must map model names to providers, not {type(providers).__name__}")
    for name, provider in providers.items():
        if name not in wf.models:
            close = difflib.get_close_matches(str(name), list(wf.models), n=1)
            known = ", ".join(sorted(wf.models)) or "none"
            hint = f"did you mean {close[0]!r}?" if close else f"its models: {known}"
            raise ValueError(f"providers: {name!r} is not a model of workflow {wf.name!r} ({hint})")
        if not callable(getattr(provider, "chat", None)):
            raise TypeError(
                f"providers[{name!r}] has no chat() method ({type(provider).__name__}); "
                "a provider implements runner.ChatProvider"
            )
    return dict(providers)


def _borrowed(transport: Any) -> httpx.AsyncBaseTransport:
    """``transport`` behind a wrapper that runner's clients may close without closing it: the caller owns it."""
    import httpx  # noqa: PLC0415 - only when a transport is given

    if not isinstance(transport, httpx.AsyncBaseTransport):
        raise TypeError(f"transport must be an httpx.AsyncBaseTransport, not {type(transport).__name__}")

    inner: httpx.AsyncBaseTransport = transport

    class Borrowed(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            return await inner.handle_async_request(request)

    return Borrowed()


GateHandler = Callable[["GateRequest"], "Awaitable[object] | object"]
"""``on_gate``: called at each human gate (an ``approve`` or ``ask`` stage) with a :class:`~runner.GateRequest`,
on the run's loop; may be ``async def``. For an ``approve`` it returns True (approve), False (reject) or a
:class:`~runner.Decision` with a reason, within the gate's ``timeout`` if it has one (then its ``on_timeout``
decides); for an ``ask``, the answer, which must match the gate's schema (else the run fails, saying where the
answer does not). Without ``on_gate`` a gate stops the run: its status is ``waiting`` (``error`` is a
:class:`~runner.GateWaiting` naming the gate). A rejection ends it as ``rejected`` (``error``:
:class:`~runner.GateRejected`)."""

EventHandler = Callable[["Event"], "Awaitable[object] | object"]
"""``on_event``: called with each event as it happens, on the run's loop; may be ``async def`` (then awaited,
which delays the next events but never the run)."""


async def arun(
    workflow: Workflow | Source,
    inputs: Mapping[str, Any] | None = None,
    *,
    providers: Mapping[str, ChatProvider] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    run_dir: str | os.PathLike[str] | None = None,
    on_event: EventHandler | None = None,
    otel: bool | str | None = None,
    otel_content: bool = False,
    on_gate: GateHandler | None = None,
    checkpoint: bool = False,
    resume: str | os.PathLike[str] | None = None,
    force: bool = False,
) -> Result:
    """Run ``workflow`` on the running loop and return its :class:`~runner.result.Result` (ok, failed or
    interrupted: a failed run does not raise). For a program that already runs an event loop::

        result = await runner.arun(workflow, {"topic": "uvloop"})

    ``workflow``: a :class:`Workflow` from :func:`load`, or what :func:`load` takes. ``inputs``: values by input
    name, checked against the declared types, defaults filled in. ``providers``: model name -> a provider object
    (:class:`~runner.providers.base.ChatProvider`) used instead of the one the workflow declares, never closed
    by runner. ``transport``: an ``httpx`` transport for every OpenAI-compatible model (``httpx.MockTransport``
    in tests). ``run_dir``: where the run keeps files besides its report (working memory's history), by default
    ``<report.dir>/runs/<name>-<UTC stamp>``. ``on_event``: each :class:`~runner.live.events.Event` as it happens,
    streamed tokens included, the last one :class:`~runner.live.events.RunFinished`; an exception it raises stops the
    run and propagates. ``otel``: export the run's spans over OTLP when it ends (True: to the endpoint of
    ``OTEL_EXPORTER_OTLP_ENDPOINT``; a URL: there; needs ``runner[otel]``), with the replies' text in them when
    ``otel_content`` (see :mod:`runner.report.otlp`). ``on_gate``: the decisions and answers of the workflow's human
    gates (:data:`GateHandler`); without it a gate stops the run with status ``waiting``.

    Checkpoints (README "Checkpoints and resume"): ``checkpoint=True`` keeps the run's checkpoint in its run folder
    (``run_dir``, or the default above), each node's output committed as it ends; ``resume=<run folder>`` goes on
    with such a run (after a failure, an interruption, a kill or a budget's stop) with the inputs it started with:
    the nodes that finished come from the checkpoint and are never sent to a model again (``inputs`` and
    ``run_dir`` are then not given). A workflow whose stages were edited since is refused (:class:`RunnerError`
    naming them) unless ``force=True``; resuming a run that finished returns its result again without a call.

    Cancelling the calling task cancels the run and raises ``CancelledError`` once the run has wound down;
    ``on_event`` has then received the partial result.
    """
    return await _arun(
        _Job(workflow, inputs, providers, transport, run_dir, otel, otel_content, on_gate, checkpoint, resume, force),
        on_event,
    )


async def _arun(job: _Job, on_event: EventHandler | None) -> Result:
    try:
        return await _arun_job(job, on_event)
    finally:
        job.close()


async def _arun_job(job: _Job, on_event: EventHandler | None) -> Result:
    if on_event is None:
        return job.result(await job.session().run())
    import asyncio  # noqa: PLC0415 - loaded already: this runs on a loop

    from runner.live.stream import RunStream  # noqa: PLC0415

    events = RunStream(job)
    try:
        async with events:
            async for event in events:
                returned = on_event(event)
                if inspect.isawaitable(returned):
                    await returned
    except (asyncio.CancelledError, KeyboardInterrupt):
        # A cancelled run ends too: the handler gets the rest of its events and its partial result first.
        for event in events.remaining():
            returned = on_event(event)
            if inspect.isawaitable(returned):
                await returned
        raise
    return events.result


def run(
    workflow: Workflow | Source,
    inputs: Mapping[str, Any] | None = None,
    *,
    providers: Mapping[str, ChatProvider] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    run_dir: str | os.PathLike[str] | None = None,
    on_event: EventHandler | None = None,
    otel: bool | str | None = None,
    otel_content: bool = False,
    on_gate: GateHandler | None = None,
    checkpoint: bool = False,
    resume: str | os.PathLike[str] | None = None,
    force: bool = False,
) -> Result:
    """:func:`arun` on an event loop of its own, for scripts: uvloop where it is installed. Returns the
    :class:`~runner.result.Result`; Ctrl-C cancels the run and raises ``KeyboardInterrupt``, as
    ``asyncio.run`` does. Inside a running loop (a notebook, an async server) use ``await runner.arun(...)``.
    """
    import asyncio  # noqa: PLC0415

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(
            "runner.run() cannot be called from a running event loop; use `await runner.arun(...)` there"
        )
    from runner.engine import loop as loops  # noqa: PLC0415

    # what is wrong is said before a loop is made
    job = _Job(workflow, inputs, providers, transport, run_dir, otel, otel_content, on_gate, checkpoint, resume, force)
    return loops.run(lambda: _arun(job, on_event), quiet=True)


def stream(
    workflow: Workflow | Source,
    inputs: Mapping[str, Any] | None = None,
    *,
    providers: Mapping[str, ChatProvider] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    run_dir: str | os.PathLike[str] | None = None,
    token_buffer: int = 1000,
    otel: bool | str | None = None,
    otel_content: bool = False,
    on_gate: GateHandler | None = None,
    checkpoint: bool = False,
    resume: str | os.PathLike[str] | None = None,
    force: bool = False,
) -> RunStream:
    """A run and its events as they happen, to use as ``async with runner.stream(...) as run: async for event
    in run: ...``; the run's :class:`~runner.result.Result` is ``run.result`` after the block. Arguments as for
    :func:`arun`; ``token_buffer``: how many :class:`~runner.live.events.Token` events may wait for a slow consumer
    before a node's further text joins its waiting one (nothing is dropped; see :mod:`runner.live`). The
    workflow and inputs are checked now; the run starts when the block is entered. ``on_gate``, ``checkpoint``,
    ``resume`` and ``force`` as for :func:`arun`: the checkpoint is opened now (a resumed run's is checked against
    the workflow now) and let go of when the block is left."""
    from runner.live.stream import RunStream  # noqa: PLC0415

    job = _Job(workflow, inputs, providers, transport, run_dir, otel, otel_content, on_gate, checkpoint, resume, force)
    return RunStream(job, token_buffer=token_buffer)


def each(
    workflow: Workflow | Source,
    rows: Iterable[Mapping[str, Any]],
    *,
    concurrency: int = 8,
    providers: Mapping[str, ChatProvider] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    run_dir: str | os.PathLike[str] | None = None,
    otel: bool | str | None = None,
    otel_content: bool = False,
) -> RowResults:
    """Run ``workflow`` once per mapping of inputs in ``rows`` and give each row's
    :class:`~runner.dataset.batch.RowResult` as it finishes (not in input order: ``result.index`` says which),
    with ``async for`` inside a running loop, or ``for`` in a script (:class:`~runner.dataset.iterate.RowResults`)::

        async for row in runner.each("classify.yaml", ({"text": t} for t in tickets), concurrency=16):
            print(row.index, row.status, row.output)

    ``rows`` is read one row at a time, only when a slot is free (at most ``concurrency`` rows in flight), so it
    may be a generator over a file of any size. Each row is checked against the workflow's ``inputs:`` as
    ``runner.run``'s inputs are (keys that are no input are ignored, as a dataset's extra columns); a bad row or
    a failed run is a result with status "failed" and ``error``, never an exception. One provider per model
    serves every row (its connections, rate limit and pool shared by all); ``providers``, ``transport`` and
    ``run_dir`` as for :func:`arun`; ``otel`` and ``otel_content`` too, with a trace per row, sent when the
    iteration ends (a failed export is a ``RuntimeWarning``). Leaving a ``for`` early (``break``) cancels the rows
    in flight; after an ``async for``, ``aclose()`` (or ``contextlib.aclosing``) does it at once."""
    wf = workflow if isinstance(workflow, Workflow) else load(workflow)
    if isinstance(rows, Mapping) or not isinstance(rows, Iterable):
        raise TypeError(f"rows must be an iterable of input mappings, not {type(rows).__name__}")
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise ValueError(f"concurrency must be a whole number, 1 or more, not {concurrency!r}")
    given = _checked_providers(wf, providers)
    borrowed = None if transport is None else _borrowed(transport)
    settings = _otel_settings(otel, otel_content)
    from runner.dataset.iterate import RowResults  # noqa: PLC0415 - the engine loads when a run is asked for

    folder = None if run_dir is None else Path(run_dir)
    return RowResults(lambda: _each(wf, rows, concurrency, given, borrowed, folder, settings))


async def _each(
    wf: Workflow,
    rows: Iterable[Mapping[str, Any]],
    concurrency: int,
    providers: dict[str, ChatProvider],
    transport: httpx.AsyncBaseTransport | None,
    run_dir: Path | None,
    otel: OtelSettings | None = None,
) -> AsyncGenerator[RowResult, None]:
    import contextlib  # noqa: PLC0415

    from runner.dataset.batch import Batch, RowInput  # noqa: PLC0415 - the engine loads when a run is asked for
    from runner.dataset.rows import RowInputs  # noqa: PLC0415
    from runner.plan.compile import compile_workflow  # noqa: PLC0415
    from runner.report.document import now_utc  # noqa: PLC0415

    plan = compile_workflow(wf)
    prepare = RowInputs(wf)
    batch_id = f"{wf.name}-{now_utc().strftime('%Y%m%dT%H%M%S.%fZ')}"

    def inputs() -> Iterable[RowInput]:
        for index, values in enumerate(rows):
            if not isinstance(values, Mapping):
                problem = f"row {index}: a row is a mapping of input names to values, not {type(values).__name__}"
                yield RowInput(index, str(index), None, problem)
                continue
            prepared = prepare.prepare(index, None, values, from_text=False)
            yield RowInput(index, prepared.key, prepared.inputs, prepared.error)

    folder = run_dir if run_dir is not None else Path(wf.report.dir) / "runs" / batch_id
    tracer = None
    if otel is not None:
        from runner.report.layout import describe_workflow  # noqa: PLC0415
        from runner.report.otel import RowTracer  # noqa: PLC0415

        tracer = RowTracer(describe_workflow(wf), wf.name, wf.sha256, batch_id, content=otel.content)
    try:
        async with Batch(
            plan,
            concurrency=concurrency,
            providers=providers,
            transport=transport,
            run_dir=folder,
            batch_id=batch_id,
            tracer=tracer,
        ) as batch:
            # Closed at once when the caller leaves early: its rows in flight are cancelled before the batch closes.
            async with contextlib.aclosing(batch.results(inputs())) as results:
                async for result in results:
                    yield result
    finally:
        if tracer is not None and otel is not None and tracer.spans:
            _export_rows(tracer.spans, otel)


def _export_rows(spans: list[Any], otel: OtelSettings) -> None:
    """Send the rows' spans (on the caller's loop: this is the end of the iteration, nothing else waits on it)."""
    from runner.report.otlp import export  # noqa: PLC0415 - OpenTelemetry loads only when asked for

    problem = export(spans, otel)
    if problem is not None:
        import warnings  # noqa: PLC0415

        warnings.warn(problem, RuntimeWarning, stacklevel=2)
