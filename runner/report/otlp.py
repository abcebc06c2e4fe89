"""Export a finished run's spans over OTLP (HTTP/protobuf) with the OpenTelemetry SDK (``runner[otel]``).

Spans are exported once, from the run's records, when its report is made (also for a failed or interrupted
run: its partial report's spans go out), not live as they end. Why: the records already hold every span with
its exact times, so the run's hot path does nothing more when tracing is on (a live exporter would make an SDK
span per node and per tool call while the run goes, on the loop), and the ids are derived (see
:mod:`runner.report.otel`), so a request made during the run can already name its span. What a live exporter
would give, spans of a run killed by SIGKILL, a run loses here as it loses its report.

Only this module imports OpenTelemetry, and only when an export is asked for (``tests/test_cold_start.py``).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runner.errors import RunnerError
from runner.events import Event
from runner.report.layout import Layout
from runner.report.otel import SCOPE, AttributeValue, OtelSpan, otel_spans, replies, response_models

INSTALL_HINT = "pip install 'runner[otel]'"
ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
TRACES_ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
BATCH = 512  # spans a request: a 10,000-node run goes in 20-odd requests, none of them huge
_REQUIRED = ("opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http.trace_exporter")


@dataclass(frozen=True, slots=True)
class OtelSettings:
    """Where and what to export: ``endpoint`` is the OTLP base URL (``/v1/traces`` is added, as the
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` variable is read) or None to let the SDK read the environment's variables;
    ``content``: put reply text in spans (``--otel-content``)."""

    endpoint: str | None = None
    content: bool = False


class OtelMissing(RunnerError):
    """OpenTelemetry export was asked for but the ``otel`` extra is not installed."""


def check_installed(why: str) -> None:
    """Raise :class:`OtelMissing` (exit 1, with the install command) unless the SDK and the exporter import.
    Called before the run starts, so a run never spends its calls to fail at the export."""
    for module in _REQUIRED:
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            raise OtelMissing(
                f"{why}: exporting the run's spans needs OpenTelemetry, which is not installed; "
                f"install it with: {INSTALL_HINT}"
            )


def settings_from(
    option: str | bool | None, *, content: bool = False, env: Mapping[str, str] | None = None
) -> OtelSettings | None:
    """What ``--otel [ENDPOINT]`` (``option``: None when not given, True without an endpoint, or the endpoint)
    and the environment ask for: None when neither asks for an export."""
    env = os.environ if env is None else env
    if isinstance(option, str) and option:
        return OtelSettings(option, content)
    if option:
        return OtelSettings(None, content)
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":  # the SDK's own switch turns it off
        return None
    if env.get(ENDPOINT_ENV) or env.get(TRACES_ENDPOINT_ENV):
        return OtelSettings(None, content)
    return None


def traces_url(endpoint: str) -> str:
    """The traces URL of an OTLP base endpoint: ``http://host:4318`` -> ``http://host:4318/v1/traces``."""
    base = endpoint.rstrip("/")
    return base if base.endswith("/v1/traces") else base + "/v1/traces"


def export(spans: Sequence[OtelSpan], settings: OtelSettings) -> str | None:
    """Send ``spans`` to the OTLP endpoint, in batches; returns None, or a one-line problem (the receiver
    could not be reached or refused them) for the caller to warn about: a trace that did not arrive never
    fails a run that did its work."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: PLC0415
    from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
    from opentelemetry.sdk.trace import ReadableSpan  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import SpanExportResult  # noqa: PLC0415
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope  # noqa: PLC0415
    from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags  # noqa: PLC0415

    from runner.version import __version__  # noqa: PLC0415

    own = {"telemetry.sdk.name": "opentelemetry", "service.version": __version__}
    if not os.environ.get("OTEL_SERVICE_NAME"):
        own["service.name"] = "runner"
    resource = Resource.create(own)
    scope = InstrumentationScope(SCOPE, __version__)
    flags = TraceFlags(TraceFlags.SAMPLED)
    kinds = {"internal": SpanKind.INTERNAL, "client": SpanKind.CLIENT}
    ok, failed = Status(StatusCode.OK), Status(StatusCode.ERROR)
    readable = []
    for s in spans:
        context = SpanContext(s.trace_id, s.span_id, is_remote=False, trace_flags=flags)
        parent = None if s.parent_id is None else SpanContext(s.trace_id, s.parent_id, False, flags)
        attributes = dict(s.attributes)
        if s.error is not None:
            attributes["error.type"] = s.error
        readable.append(
            ReadableSpan(
                s.name,
                context,
                parent,
                resource,
                attributes,
                kind=kinds[s.kind],
                status=ok
                if s.error is None
                else (failed if s.message is None else Status(StatusCode.ERROR, s.message)),
                start_time=s.start_ns,
                end_time=s.end_ns,
                instrumentation_scope=scope,
            )
        )
    url = traces_url(settings.endpoint) if settings.endpoint else None
    exporter = OTLPSpanExporter(endpoint=url)
    where = url or os.environ.get(TRACES_ENDPOINT_ENV) or traces_url(os.environ.get(ENDPOINT_ENV, ""))
    # the exporter logs its failures with a traceback; the caller says it once, in one line
    quiet = logging.getLogger("opentelemetry.exporter.otlp.proto.http")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        for i in range(0, len(readable), BATCH):
            if exporter.export(readable[i : i + BATCH]) is not SpanExportResult.SUCCESS:
                sent = i
                return f"OpenTelemetry export to {where} failed: {sent} of {len(readable)} spans sent"
    finally:
        quiet.setLevel(level)
        exporter.shutdown()  # type: ignore[no-untyped-call]
    return None


def export_run(
    report: Mapping[str, Any],
    layout: Layout,
    events: Iterable[Event],
    settings: OtelSettings,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> str | None:
    """Export one run's spans (its report, its workflow's layout, and its events for reply text when
    ``settings.content``); None or the problem, as :func:`export` says."""
    events = list(events)
    content = replies(events) if settings.content else None
    spans = otel_spans(report, layout, content=content, attributes=attributes, answered_by=response_models(events))
    return export(spans, settings)
