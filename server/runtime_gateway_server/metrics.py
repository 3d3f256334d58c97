"""Prometheus metrics: the standard gRPC server metrics and the gateway's own.

- gRPC: the names go-grpc-prometheus made standard (`grpc_server_started_total`,
  `grpc_server_handled_total`, `grpc_server_msg_received_total`, `grpc_server_msg_sent_total`,
  `grpc_server_handling_seconds`), labelled `grpc_type`, `grpc_service`, `grpc_method` (and
  `grpc_code` once handled). `MetricsInterceptor` records them; install it first (outermost),
  so calls refused by admission are counted with their code.
- The gateway's own, `runtime_gateway_*`: upstream HTTP requests by endpoint template, retries,
  token refreshes, cache hits and misses, watched jobs and open streams, updates delivered,
  coalesced updates, heartbeats, request-id outcomes, rate-limiter waits.

Every label value comes from a fixed vocabulary (method names, templates, codes): no job
ids, tokens or account names. The metrics are always recorded (a counter increment costs
about a microsecond); `serve_metrics` exposes them only when the operator asks for it.

With `serve --workers N`, the supervisor sets `PROMETHEUS_MULTIPROC_DIR` for its workers before
they start (prometheus-client's multiprocess mode) and serves the sum of all workers itself.

The same HTTP server answers `GET /healthz` for load balancers that cannot speak gRPC health
(HAProxy, nginx): 200 while the gRPC health is SERVING, 503 while the gateway starts or drains
(`set_serving`, called next to every change of the gRPC health status).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import grpc
from grpc_health.v1 import health, health_pb2
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    make_wsgi_app,
)
from prometheus_client.exposition import ThreadingWSGIServer

disable_created_metrics()  # the `_created` series double the page and no dashboard uses them

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# --- gRPC server (go-grpc-prometheus names) ---------------------------------------------------
_GRPC = ("grpc_type", "grpc_service", "grpc_method")
STARTED = Counter("grpc_server_started_total", "RPCs started on the server.", _GRPC)
HANDLED = Counter(
    "grpc_server_handled_total",
    "RPCs completed on the server, regardless of success or failure.",
    (*_GRPC, "grpc_code"),
)
MSG_RECEIVED = Counter(
    "grpc_server_msg_received_total", "RPC stream messages received on the server.", _GRPC
)
MSG_SENT = Counter("grpc_server_msg_sent_total", "gRPC stream messages sent on the server.", _GRPC)
HANDLING = Histogram(
    "grpc_server_handling_seconds",
    "Response latency (seconds) of gRPC that had been application-level handled by the server.",
    _GRPC,
)

# --- upstream HTTP -----------------------------------------------------------------------------
UPSTREAM_REQUESTS = Counter(
    "runtime_gateway_upstream_requests_total",
    "HTTP requests (attempts) to IBM or the local runtime, by endpoint template, method and "
    "status (the HTTP status, or `error` when no answer came).",
    ("endpoint", "method", "status"),
)
UPSTREAM_SECONDS = Histogram(
    "runtime_gateway_upstream_request_seconds",
    "Duration of one upstream HTTP attempt, by endpoint template and method.",
    ("endpoint", "method"),
)
UPSTREAM_RETRIES = Counter(
    "runtime_gateway_upstream_retries_total",
    "Upstream attempts retried after a transient failure, by endpoint template and method.",
    ("endpoint", "method"),
)
TOKEN_REFRESHES = Counter(
    "runtime_gateway_token_refreshes_total",
    "Upstream access tokens obtained, by reason (first, expiring, rejected).",
    ("reason",),
)

# --- caches ------------------------------------------------------------------------------------
CACHE_HITS = Counter("runtime_gateway_cache_hits_total", "Cache hits, by cache.", ("cache",))
CACHE_MISSES = Counter("runtime_gateway_cache_misses_total", "Cache misses, by cache.", ("cache",))

# --- job-update streams ------------------------------------------------------------------------
WATCHED_JOBS = Gauge(
    "runtime_gateway_watched_jobs",
    "Jobs polled for update streams right now (one watcher per job).",
    multiprocess_mode="livesum",
)
OPEN_STREAMS = Gauge(
    "runtime_gateway_open_streams",
    "Job-update streams (WatchJob, WatchJobs) open right now, by method.",
    ("grpc_method",),
    multiprocess_mode="livesum",
)
UPDATES_DELIVERED = Counter(
    "runtime_gateway_updates_delivered_total",
    "Job updates sent on streams, by kind (state, log, heartbeat, error).",
    ("kind",),
)
UPDATES_COALESCED = Counter(
    "runtime_gateway_updates_coalesced_total",
    "State updates replaced by a newer one before a slow stream sent them.",
)
HEARTBEATS = Counter(
    "runtime_gateway_heartbeats_total", "Heartbeats sent on idle job-update streams."
)
RATE_LIMIT_WAITS = Counter(
    "runtime_gateway_rate_limiter_waits_total",
    "Times a watcher waited for its account's upstream request budget.",
)
RATE_LIMIT_WAIT_SECONDS = Counter(
    "runtime_gateway_rate_limiter_wait_seconds_total",
    "Seconds watchers waited for their account's upstream request budget.",
)

# --- the fleet (Redis) -------------------------------------------------------------------------
REDIS_UP = Gauge(
    "runtime_gateway_redis_up",
    "1 while the fleet's Redis answers, 0 while it does not (absent without --redis-url).",
    multiprocess_mode="livemin",
)
WATCH_ROLES = Gauge(
    "runtime_gateway_watch_roles",
    "Watched jobs by this replica's role: leader (it polls), follower (another replica "
    "polls), alone (Redis unreachable: it polls on its own).",
    ("role",),
    multiprocess_mode="livesum",
)

# --- serving status (/healthz) -----------------------------------------------------------------
# `livemax` with `serve --workers N`: the supervisor's /healthz is 200 while any worker serves
# (the kernel only hands connections to workers that listen; a draining worker has stopped).
SERVING = Gauge(
    "runtime_gateway_serving",
    "1 while the gateway's gRPC health is SERVING, 0 while it starts or drains.",
    multiprocess_mode="livemax",
)
_serving = False


def set_serving(serving: bool) -> None:
    """Mirrors the gRPC health status (`""` service) for `/healthz` and the gauge."""
    global _serving
    _serving = serving
    SERVING.set(1 if serving else 0)


class MirroredHealthServicer(health.aio.HealthServicer):
    """grpc.health.v1 (asyncio) whose overall status (service `""`) `/healthz` mirrors:
    every `set` of it, and the drain (`enter_graceful_shutdown`), also calls `set_serving`."""

    _draining = False

    async def set(
        self, service: str, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType
    ) -> None:
        await super().set(service, status)
        if service == "" and not self._draining:  # after the drain started, set() is ignored
            set_serving(status == health_pb2.HealthCheckResponse.SERVING)

    async def enter_graceful_shutdown(self) -> None:
        self._draining = True
        set_serving(False)  # first: the load balancer's next check takes this replica out
        await super().enter_graceful_shutdown()


# --- RunJob request ids ------------------------------------------------------------------------
REQUEST_IDS = Counter(
    "runtime_gateway_request_ids_total",
    "RunJob calls with a request id, by outcome: new (submits), replayed (an earlier call's "
    "job is returned), reconciled (an earlier attempt may have created the job: looked for "
    "first).",
    ("outcome",),
)

# Path segments that stay in an endpoint template; every other segment (ids, names) is `*`,
# so the label's values are bounded whatever callers send.
_ENDPOINT_WORDS = frozenset(
    {
        "api", "v1", "v2", "v3", "v4", "jobs", "backends", "configuration", "properties",
        "status", "cancel", "logs", "metrics", "results", "tags", "identity", "token",
        "resources", "search", "users", "loginWithToken", "me", "Network", "network",
        "groups", "projects", "hubs", "sessions", "close", "programs", "interim_results",
        "transpiled_circuits", "usage", "instances", "versions", "defaults", "runtime",
        "catalog", "transpiled", "_local",
    }
)  # fmt: skip


@functools.lru_cache(maxsize=4096)
def endpoint_template(path: str) -> str:
    """`/api/v1/jobs/d4x9.../results` → `/api/v1/jobs/*/results` (a bounded label value)."""
    return "/".join(s if not s or s in _ENDPOINT_WORDS else "*" for s in path.split("/")[:12])


def observe_upstream(endpoint: str, method: str, status: str, seconds: float) -> None:
    """One upstream attempt (`status`: the HTTP status or `error`)."""
    UPSTREAM_REQUESTS.labels(endpoint, method, status).inc()
    UPSTREAM_SECONDS.labels(endpoint, method).observe(seconds)


def request_id_outcome(job_id: str | None, uncertain: object) -> None:
    """Counts a RunJob request-id claim: replayed (a job exists), reconciled, or new."""
    outcome = "replayed" if job_id else ("reconciled" if uncertain else "new")
    REQUEST_IDS.labels(outcome).inc()


# --- the interceptor ---------------------------------------------------------------------------
def _rpc_type(handler: grpc.RpcMethodHandler) -> str:
    if handler.request_streaming and handler.response_streaming:
        return "bidi_stream"
    if handler.request_streaming:
        return "client_stream"
    if handler.response_streaming:
        return "server_stream"
    return "unary"


def _code_of(context: grpc.aio.ServicerContext, default: str) -> str:
    """The status the call ended with (set by `abort` or `set_code`), by name."""
    try:
        code = context.code()
    except Exception:  # older grpc: no code() on aio contexts
        return default
    if code is None:
        return default
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    for member in grpc.StatusCode:  # an int from the C core
        if member.value[0] == code:
            return str(member.name)
    return default


class _Method:
    """The pre-bound metric children of one method (labels resolved once, not per call)."""

    def __init__(self, kind: str, service: str, method: str) -> None:
        self.labels = (kind, service, method)
        self.started = STARTED.labels(*self.labels)
        self.received = MSG_RECEIVED.labels(*self.labels)
        self.sent = MSG_SENT.labels(*self.labels)
        self.handling = HANDLING.labels(*self.labels)
        self._handled: dict[str, Any] = {}

    def done(self, code: str, started: float) -> None:
        child = self._handled.get(code)
        if child is None:
            child = self._handled[code] = HANDLED.labels(*self.labels, code)
        child.inc()
        self.handling.observe(time.perf_counter() - started)


def _observe_unary(behavior: Callable[..., Awaitable[Any]], m: _Method) -> Callable[..., Any]:
    async def observed(request: Any, context: grpc.aio.ServicerContext) -> Any:
        m.started.inc()
        m.received.inc()
        started = time.perf_counter()
        code = "OK"
        try:
            response = await behavior(request, context)
            m.sent.inc()
            code = _code_of(context, "OK")
            return response
        except asyncio.CancelledError:
            code = "CANCELLED"
            raise
        except BaseException:
            code = _code_of(context, "UNKNOWN")
            raise
        finally:
            m.done(code, started)

    return observed


def _observe_stream(behavior: Callable[..., Any], m: _Method) -> Callable[..., Any]:
    if not inspect.isasyncgenfunction(behavior):
        return _observe_unary(behavior, m)  # writes with context.write: not counted per message

    async def observed(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        m.started.inc()
        m.received.inc()
        started = time.perf_counter()
        code = "OK"
        try:
            async for response in behavior(request, context):
                m.sent.inc()
                yield response
            code = _code_of(context, "OK")
        except (asyncio.CancelledError, GeneratorExit):
            code = "CANCELLED"
            raise
        except BaseException:
            code = _code_of(context, "UNKNOWN")
            raise
        finally:
            m.done(code, started)

    return observed


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Records the go-grpc-prometheus server metrics for every unary-request method (the
    gateway's API, health's Check and Watch). Request-streaming methods (reflection) pass
    through uncounted. Install first, so it sees the codes of calls other interceptors refuse."""

    def __init__(self) -> None:
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_streaming:
            return handler
        method = handler_call_details.method
        wrapped = self._handlers.get(method)
        if wrapped is None or getattr(wrapped, "_inner", None) is not handler:
            wrapped = self._handlers[method] = self._wrap(handler, method)
        return wrapped

    @staticmethod
    def _wrap(handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        service, _, name = method.lstrip("/").rpartition("/")
        m = _Method(_rpc_type(handler), service, name)
        if handler.response_streaming:
            wrapped = grpc.unary_stream_rpc_method_handler(
                _observe_stream(handler.unary_stream, m),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        else:
            wrapped = grpc.unary_unary_rpc_method_handler(
                _observe_unary(handler.unary_unary, m),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        wrapped._inner = handler  # type: ignore[attr-defined]
        return wrapped


# --- exposition --------------------------------------------------------------------------------
class _SilentHandler(WSGIRequestHandler):
    """No access log line per scrape or health check (the gateway logs JSON on stderr)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _serving_of(registry: CollectorRegistry | None) -> bool:
    """This process's status, or with a multiprocess registry the workers' (livemax: any
    worker serving; none reported yet: not serving)."""
    if registry is None:
        return _serving
    for metric in registry.collect():
        if metric.name == "runtime_gateway_serving":
            return any(sample.value >= 1 for sample in metric.samples)
    return False


def _app(registry: CollectorRegistry, workers: CollectorRegistry | None) -> Callable[..., Any]:
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/healthz":
            result: Iterable[bytes] = metrics(environ, start_response)
            return result
        ok = _serving_of(workers)
        body = b"SERVING\n" if ok else b"NOT_SERVING\n"
        start_response(
            "200 OK" if ok else "503 Service Unavailable",
            [("Content-Type", "text/plain"), ("Content-Length", str(len(body))),
             ("Cache-Control", "no-store")],
        )  # fmt: skip
        return [body]

    return app


def serve_metrics(listen: str, multiprocess_dir: str | None = None) -> tuple[Any, int]:
    """Serves `/metrics` (Prometheus text) and `/healthz` (200 `SERVING` or 503 `NOT_SERVING`,
    see `set_serving`) on `listen` (HOST:PORT, port 0 picks one) from a daemon thread;
    returns (server, bound port). With `multiprocess_dir`, serves the sum of the processes
    writing there (the workers of `serve --workers N`) instead of this one's, and /healthz
    reports theirs: 200 while at least one worker serves.

    Raises OSError when the address cannot be bound."""
    import socket

    host, _, port_text = listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        raise OSError(f"--metrics-listen must be HOST:PORT, not {listen!r}") from None
    registry: CollectorRegistry = REGISTRY
    workers: CollectorRegistry | None = None
    if multiprocess_dir:
        from prometheus_client import multiprocess

        registry = workers = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=multiprocess_dir)

    class Server(ThreadingWSGIServer):
        address_family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]

    server = make_server(host, port, _app(registry, workers), Server, _SilentHandler)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server, int(server.server_port)
