"""OpenTelemetry tracing (the optional `runtime-gateway[otel]` extra).

On when `OTEL_TRACES_EXPORTER` names an exporter (`otlp`, `console`) or an OTLP endpoint is
set (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), and not when
`OTEL_SDK_DISABLED=true`. The exporter reads the standard `OTEL_*` variables itself (endpoint,
headers, timeout); `OTEL_SERVICE_NAME` defaults to `runtime-gateway`.

- Each RPC gets a server span from the official grpc.aio server interceptor, which continues
  the caller's W3C trace context (`traceparent` metadata).
- Each upstream HTTP attempt gets a child span from the official `requests` instrumentation
  (the servicers carry the RPC's context into their worker threads).
- No secret in any attribute: gRPC metadata is never recorded, and the upstream spans carry
  the method and the endpoint template (`/api/v1/jobs/*`), never a query string or userinfo.
"""

from __future__ import annotations

import os
import sys
from typing import Any
from urllib.parse import urlsplit

from runtime_gateway_server.metrics import endpoint_template

EXPORTERS = ("otlp", "console")


def wanted() -> bool:
    """Whether the standard `OTEL_*` variables ask for traces."""
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


class TracingUnavailable(OSError):
    """Tracing was asked for but the `otel` extra is not installed, or is misconfigured."""


def _exporter_from_env() -> Any:
    name = (os.environ.get("OTEL_TRACES_EXPORTER") or "otlp").split(",")[0].strip().lower()
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter(out=sys.stderr)  # stdout carries the ready line only
    if name == "otlp":
        protocol = os.environ.get(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
        )
        if protocol and protocol != "http/protobuf":
            raise TracingUnavailable(
                f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: the gateway exports http/protobuf"
            )
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    raise TracingUnavailable(f"OTEL_TRACES_EXPORTER={name!r}: use one of {', '.join(EXPORTERS)}")


def _request_hook(span: Any, request: Any) -> None:
    """Names the upstream span by endpoint template; keeps only scheme, host and template
    of the URL (the query string and userinfo could carry what callers consider secret)."""
    if span is None or not span.is_recording():
        return
    parts = urlsplit(str(getattr(request, "url", "")))
    template = endpoint_template(parts.path)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    safe = f"{parts.scheme}://{host}{port}{template}"
    span.update_name(f"{getattr(request, 'method', 'HTTP')} {template}")
    for key in ("http.url", "url.full"):
        span.set_attribute(key, safe)


def setup(exporter: Any = None) -> list[Any]:
    """Installs the tracer provider and the `requests` instrumentation; returns the grpc.aio
    server interceptors to install (outside admission). `exporter` (tests: an in-memory one)
    replaces the one the environment names, and is flushed span by span.

    Raises TracingUnavailable when the `otel` extra is missing."""
    try:
        from opentelemetry import trace
        from opentelemetry.instrumentation.grpc import aio_server_interceptor
        from opentelemetry.instrumentation.requests import RequestsInstrumentor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError as error:
        raise TracingUnavailable(
            f"tracing needs the otel extra (pip install 'runtime-gateway[otel]'): {error}"
        ) from None
    os.environ.setdefault("OTEL_SERVICE_NAME", "runtime-gateway")
    provider = TracerProvider(resource=Resource.create())
    if exporter is None:
        provider.add_span_processor(BatchSpanProcessor(_exporter_from_env()))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    instrumentor = RequestsInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
    instrumentor.instrument(tracer_provider=provider, request_hook=_request_hook)
    return [aio_server_interceptor(tracer_provider=provider)]
