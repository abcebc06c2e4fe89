"""Logging on the standard ``logging`` module, under the ``runner`` logger.

Records go through a :class:`logging.handlers.QueueHandler` to a :class:`~logging.handlers.QueueListener`
thread that formats and writes them, so a slow disk never blocks the event loop. The format is ``text`` or
``json`` (one object a line, with the run id and the node id). Secrets never reach the output: every
formatted line passes through :func:`runner.secrets.redact` (the values of the environment variables named
by any ``api_key_env``, proxy credentials, bearer and basic tokens, in every form they travel in). A text line
is one line: a multi-line message (a server's) is folded onto it.

The run's events become log records through :class:`EventLog`, a loop task that tails the recorder.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import queue
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from logging.handlers import QueueHandler, QueueListener
from typing import TYPE_CHECKING, Any, TextIO

from runner.calls import ChatResult
from runner.errors import RunnerError
from runner.events import Event, Recorder, tail
from runner.secrets import REDACTED, SECRETS, one_line

if TYPE_CHECKING:
    from runner.workflow.records import Workflow

LOGGER = "runner"
LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
__all__ = ["REDACTED", "Redactor", "configure_logging", "EventLog", "secret_env_names", "secret_values"]
_CONTEXT_FIELDS = ("run_id", "node_id", "event")
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class Redactor:
    """The log's redactor: registers ``secrets`` with :data:`runner.secrets.SECRETS` (values under 6
    characters are no secrets: they would blank ordinary words) and redacts with the whole registry, so a
    key an endpoint registered later is redacted too."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        for secret in secrets:
            SECRETS.add(secret)

    def __call__(self, text: str) -> str:
        return SECRETS.redact(text)


def secret_values(env_names: Iterable[str]) -> list[str]:
    return [value.strip() for name in env_names if (value := os.environ.get(name, "")).strip()]


def secret_env_names(wf: Workflow) -> list[str]:
    """The environment variables a workflow names with ``api_key_env``, for its models and embedders, and those
    of the child workflows it runs (issue 22)."""
    from runner.stages import included  # noqa: PLC0415

    names: set[str] = set()
    for one in (wf, *included(wf)):
        names |= {env for spec in one.models.values() if spec.config is not None and (env := spec.config.api_key_env)}
        names |= {
            env for spec in one.embeddings.values() if spec.config is not None and (env := spec.config.api_key_env)
        }
    return sorted(names)


class LogContext(logging.Filter):
    """Stamps records with the run id (settable once the run has one) and a ``node_id`` (None unless given)."""

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id

    def filter(self, record: logging.LogRecord) -> bool:
        record.run_id = self.run_id
        if not hasattr(record, "node_id"):
            record.node_id = None
        return True


class TextFormatter(logging.Formatter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        # redacted before the message is folded onto one line: a secret split by a line fold is still found
        message = one_line(self.redact(record.getMessage()))
        text = f"{self.formatTime(record)} {record.levelname:<7} {record.name}: "
        node = getattr(record, "node_id", None)
        if node:
            text += f"[{node}] "
        text += message
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            text += "\n" + record.exc_text
        if record.stack_info:
            text += "\n" + self.formatStack(record.stack_info)
        return self.redact(text)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, ``run_id``,
    ``node_id``, and any extra fields the record carries (``event``, ``at_s``, ...)."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "run_id": getattr(record, "run_id", None),
            "node_id": getattr(record, "node_id", None),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in out:
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return self.redact(json.dumps(out, ensure_ascii=False, default=str))


@contextlib.contextmanager
def configure_logging(
    *,
    level: str = "warning",
    file: str | None = None,
    fmt: str = "text",
    run_id: str = "",
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> Iterator[LogContext]:
    """Route the ``runner`` logger through a queue to ``file`` (appended) or ``stream`` (stderr) for the
    duration of the block; restores the logger as it was afterwards. Yields the context filter, whose
    ``run_id`` may be set once known."""
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, not {level!r}")
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    redact = Redactor(secrets)
    handler: logging.Handler
    if file is not None:
        try:
            os.makedirs(os.path.dirname(os.path.abspath(file)), exist_ok=True)
            handler = logging.FileHandler(file, encoding="utf-8")
        except OSError as exc:
            raise RunnerError(f"cannot open the log file {file}: {exc.strerror or exc}") from exc
    else:
        handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter(redact) if fmt == "json" else TextFormatter(redact))
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    front = QueueHandler(records)
    context = LogContext(run_id)
    front.addFilter(context)
    listener = QueueListener(records, handler)
    logger = logging.getLogger(LOGGER)
    saved = (logger.level, list(logger.handlers), logger.propagate)
    logger.handlers = [front]
    logger.setLevel(level.upper())
    logger.propagate = False
    listener.start()
    try:
        yield context
    finally:
        listener.stop()  # writes what is queued, then ends the thread
        logger.setLevel(saved[0])
        logger.handlers = saved[1]
        logger.propagate = saved[2]
        handler.close()


class EventLog:
    """Turns a run's events into log records (with ``node_id``, ``event`` and ``at_s``), tailing the recorder
    from a loop task every ``interval`` seconds and once more at the end."""

    def __init__(self, logger: logging.Logger, t0: float, *, interval: float = 0.1) -> None:
        self.logger = logger
        self.t0 = t0
        self.interval = interval
        self._cursor = 0
        self._started: dict[str, float] = {}

    def feed(self, events: Iterable[Event]) -> None:
        log = self.logger
        if not log.isEnabledFor(logging.WARNING):
            return
        if not log.isEnabledFor(logging.INFO):  # the default: only failures and retries, found cheaply
            for event in events:
                if event[1] == "failed" or event[1] == "retry" or event[1] == "stream_diverged":
                    self._log(event, debug=False, info=False)
            return
        debug = log.isEnabledFor(logging.DEBUG)
        for event in events:
            self._log(event, debug=debug, info=True)

    def _log(self, event: Event, *, debug: bool, info: bool) -> None:
        log = self.logger
        at, kind, node, data = event
        extra = {"node_id": node, "event": kind, "at_s": round(at - self.t0, 6)}
        if kind == "started":
            self._started[node] = at
            if debug:
                what = ", ".join(
                    f"{k} {v}" for k, v in (data or {}).items() if k in ("kind", "agent", "model", "tool", "function")
                )
                log.debug("started" + (f" ({what})" if what else ""), extra=extra)
        elif kind == "queued":
            if debug:
                log.debug("queued for a fan-out slot", extra=extra)
        elif kind == "finished":
            if info:
                took = at - self._started.pop(node, at)
                usage = (
                    f", tokens {data.usage.prompt_tokens} in / {data.usage.completion_tokens} out"
                    if isinstance(data, ChatResult)
                    else ""
                )
                log.info(f"finished in {took:.3f} s{usage}", extra=extra)
        elif kind == "failed":
            log.warning(f"failed: {(data or {}).get('error', '')}", extra=extra)
        elif kind in ("cancelled", "skipped"):
            if info:
                reason = (data or {}).get("reason") or (data or {}).get("error") or ""
                log.info(kind + (f": {reason}" if reason else ""), extra=extra)
        elif kind == "retry":
            d = data or {}
            delay = float(d.get("delay") or 0)
            log.warning(
                f"attempt {d.get('attempt')} failed ({d.get('cause')}); retrying in {delay:.2f} s"
                + (f": {d['error']}" if d.get("error") else ""),
                extra=extra,
            )
        elif kind == "stream_diverged":
            shown = int((data or {}).get("shown_chars") or 0)
            log.warning(
                f"the answer restarted: the retry's answer differs from the {shown} character"
                f"{'' if shown == 1 else 's'} already streamed, which are void",
                extra=extra,
            )
        elif kind in ("pool_wait", "rate_wait") and debug:
            what = "a pool connection" if kind == "pool_wait" else f"the rate limiter ({data.get('limit')})"
            log.debug(f"waited {float(data.get('wait') or 0):.3f} s for {what}", extra=extra)

    def tick(self, recorder: Recorder) -> None:
        events, self._cursor = tail(recorder, self._cursor)
        if events:
            self.feed(events)

    async def run(self, recorder: Recorder) -> None:
        try:
            while True:
                await asyncio.sleep(self.interval)
                self.tick(recorder)
        finally:
            self.tick(recorder)
