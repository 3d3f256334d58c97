"""OpenTelemetry: the span tree of a RunJob and a GetJob, W3C trace context from the caller,
and no secret in any attribute.

The gateway runs in this process (an in-memory exporter cannot cross processes), assembled
as `serve` assembles it, with the official instrumentations; its upstream is the real local
runtime process playing IBM, reached over HTTP through the proxy as in the other tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from runtime_gateway.v1 import jobs_pb2, jobs_pb2_grpc
from tests.gateway.conftest import (
    API_KEYS,
    UPSTREAM_TOKEN,
    GatewayClient,
    Upstream,
    bell_inputs,
    upstream_env,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


class _InProcess:
    """A GatewayServer on its own event loop thread."""

    def __init__(self, options: Any) -> None:
        from runtime_gateway_server.app import GatewayServer

        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.options = options
        self.server: GatewayServer | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(30)

    def _run(self) -> None:
        from runtime_gateway_server.app import GatewayServer

        async def main() -> None:
            self.server = GatewayServer(self.options)
            await self.server.start()
            self.stopped = asyncio.Event()
            self.ready.set()
            await self.stopped.wait()
            await self.server.stop()

        self.loop.run_until_complete(main())

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.stopped.set)
        self.thread.join(30)


@pytest.fixture(scope="module")
def traced(upstream: Upstream) -> Iterator[tuple[GatewayClient, Any]]:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from runtime_gateway_server import tracing
    from runtime_gateway_server.app import ServeOptions
    from runtime_gateway_server.assembly import GatewaySettings, build_gateway, register

    patch = pytest.MonkeyPatch()
    for key, value in upstream_env(upstream).items():
        patch.setenv(key, value)
    exporter = InMemorySpanExporter()
    interceptors = tracing.setup(exporter)
    allow = upstream_env(upstream)["RUNTIME_GATEWAY_ALLOW_UPSTREAM"].split(",")
    gateway = build_gateway(GatewaySettings(allow_upstream=allow), None)
    options = ServeOptions(
        listen="127.0.0.1:0",
        registrars=(lambda server: register(gateway, server),),
        shutdown_hooks=(gateway.watch.shutdown,),
        interceptors=tuple(interceptors),
    )
    running = _InProcess(options)
    assert running.server is not None
    proc: Any = type("P", (), {"ready": {"address": running.server.address}})()
    client = GatewayClient(proc, upstream)
    yield client, exporter
    client.channel.close()
    running.stop()
    gateway.executor.shutdown(wait=False, cancel_futures=True)
    patch.undo()
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    RequestsInstrumentor().uninstrument()


def _tree(exporter: Any, method: str) -> tuple[Any, list[Any]]:
    """The server span of the last call of `method`, and its children."""
    spans = exporter.get_finished_spans()
    servers = [s for s in spans if s.name.endswith(f"/{method}")]
    assert servers, [s.name for s in spans]
    root = servers[-1]
    children = [
        s for s in spans if s.parent is not None and s.parent.span_id == root.context.span_id
    ]
    return root, children


def test_run_and_get_job_spans_have_their_upstream_calls_as_children(
    traced: tuple[GatewayClient, Any],
) -> None:
    client, exporter = traced
    md = client.cloud()
    traceparent = ("traceparent", f"00-{TRACE_ID}-{PARENT_ID}-01")
    job = client.jobs.RunJob(
        jobs_pb2.RunJobRequest(
            program_id="sampler", backend="ibmq_qasm_simulator", inputs_json=bell_inputs()
        ),
        metadata=[*md, traceparent],
        timeout=60,
    ).job
    root, children = _tree(exporter, "RunJob")
    # The caller's trace continues: same trace id, the caller's span as parent.
    assert format(root.context.trace_id, "032x") == TRACE_ID
    assert root.parent is not None and format(root.parent.span_id, "016x") == PARENT_ID
    names = [c.name for c in children]
    assert "POST /api/v1/jobs" in names, names
    assert all(c.context.trace_id == root.context.trace_id for c in children)

    client.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job.id), metadata=md, timeout=30)
    root, children = _tree(exporter, "GetJob")
    assert root.parent is None  # no traceparent sent: a new trace
    names = [c.name for c in children]
    assert "GET /api/v1/jobs/*" in names, names
    # The upstream spans carry the endpoint template and the HTTP status, not the job id.
    (get,) = [c for c in children if c.name == "GET /api/v1/jobs/*"]
    attributes = dict(get.attributes or {})
    assert job.id not in str(attributes)
    assert 200 in (attributes.get("http.status_code"), attributes.get("http.response.status_code"))


def test_no_secret_in_any_span(traced: tuple[GatewayClient, Any]) -> None:
    client, exporter = traced
    md = [*client.cloud(), ("x-request-id", "trace-secrets-1")]
    stub = jobs_pb2_grpc.JobServiceStub(client.channel)
    with pytest.raises(grpc.RpcError):
        stub.GetJob(jobs_pb2.GetJobRequest(job_id="nosuchjob1"), metadata=md, timeout=30)
    text = ""
    for span in exporter.get_finished_spans():
        text += span.name + repr(dict(span.attributes or {}))
        for event in span.events:
            text += repr(dict(event.attributes or {}))
    assert text
    for secret in (UPSTREAM_TOKEN, *API_KEYS.values(), "Bearer"):
        assert secret not in text
