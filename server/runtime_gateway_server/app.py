"""Assembles the gateway's grpc.aio server: API services, health, reflection, shutdown."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from runtime_gateway.v1 import accounts_pb2, backends_pb2, jobs_pb2, sessions_pb2
from runtime_gateway_server.admission import (
    DEFAULT_MAX_INFLIGHT_BYTES,
    AdmissionInterceptor,
    tune_malloc,
)
from runtime_gateway_server.metrics import MirroredHealthServicer
from runtime_gateway_server.reflection import enable_reflection

log = structlog.get_logger("runtime_gateway_server")


class ListenError(OSError):
    """The gateway cannot bind its listen address."""


API_SERVICE_NAMES: tuple[str, ...] = (
    accounts_pb2.DESCRIPTOR.services_by_name["AccountService"].full_name,
    backends_pb2.DESCRIPTOR.services_by_name["BackendService"].full_name,
    jobs_pb2.DESCRIPTOR.services_by_name["JobService"].full_name,
    sessions_pb2.DESCRIPTOR.services_by_name["SessionService"].full_name,
)

# Job inputs and results of large circuits reach tens of MB.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


Registrar = Callable[[grpc.aio.Server], None]


@dataclass
class ServeOptions:
    """What `runtime-gateway serve` was asked for."""

    listen: str = "127.0.0.1:50051"
    grace_seconds: float = 10.0
    registrars: Sequence[Registrar] = field(default_factory=tuple)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None  # set: clients must present a certificate it signed
    insecure: bool = False  # allow plaintext on a non-loopback address
    # Set only for the workers of `serve --workers N`, which share the supervisor's port.
    reuse_port: bool = False
    # Run when draining starts, before in-flight calls get their grace (streams end first).
    shutdown_hooks: Sequence[Callable[[], Awaitable[None]]] = field(default_factory=tuple)
    # Bytes of serialized requests in flight before new ones get GATEWAY_OVERLOADED.
    max_inflight_bytes: int = DEFAULT_MAX_INFLIGHT_BYTES
    # Record the gRPC server metrics (`serve --metrics-listen`); extra interceptors (tracing)
    # go outside admission too, so refused calls are seen.
    metrics: bool = False
    interceptors: Sequence[grpc.aio.ServerInterceptor] = field(default_factory=tuple)
    # The fleet's Redis (a `RedisLink`, `serve --redis-url`), pinged every REDIS_PING_SECONDS
    # so an outage and the recovery are logged (`redis_down`, `redis_up`) without waiting
    # for a call; with `redis_required`, health is NOT_SERVING while it does not answer.
    redis: Any = None
    redis_required: bool = False


REDIS_PING_SECONDS = 1.0


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")


def _is_loopback(listen: str) -> bool:
    host = listen.rsplit(":", 1)[0]
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def credentials_for(options: ServeOptions) -> grpc.ServerCredentials | None:
    if not options.tls_cert and not options.tls_key:
        if options.tls_client_ca:
            raise ListenError("--tls-client-ca needs --tls-cert and --tls-key")
        if not _is_loopback(options.listen) and not options.insecure:
            raise ListenError(
                f"refusing to serve plaintext on {options.listen}: beyond loopback the gateway "
                "needs --tls-cert and --tls-key (or --insecure, behind a trusted proxy)"
            )
        return None
    if not (options.tls_cert and options.tls_key):
        raise ListenError("--tls-cert and --tls-key go together")
    try:
        pair = (options.tls_key.read_bytes(), options.tls_cert.read_bytes())
        client_ca = options.tls_client_ca.read_bytes() if options.tls_client_ca else None
    except OSError as error:
        raise ListenError(f"cannot read TLS files: {error}") from error
    return grpc.ssl_server_credentials(
        [pair], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


class GatewayServer:
    """A started gateway; `port` is the bound port (useful when listening on port 0)."""

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        tune_malloc()  # large requests hand their memory back when they end
        self.admission = AdmissionInterceptor(options.max_inflight_bytes)
        outer: list[grpc.aio.ServerInterceptor] = list(options.interceptors)
        if options.metrics:
            from runtime_gateway_server.metrics import MetricsInterceptor

            outer.insert(0, MetricsInterceptor())  # outermost: sees admission's refusals
        self.server = grpc.aio.server(
            interceptors=[*outer, self.admission],
            options=[
                # A second gateway on a busy port must fail, not silently share it; workers
                # share their supervisor's port on purpose (it checked the port was free).
                ("grpc.so_reuseport", 1 if options.reuse_port else 0),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.keepalive_time_ms", 60_000),
                ("grpc.keepalive_timeout_ms", 20_000),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
                ("grpc.keepalive_permit_without_calls", 1),
            ],
        )
        self.health = MirroredHealthServicer()  # /healthz (metrics port) mirrors its status
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        for register in options.registrars:
            register(self.server)
        enable_reflection(self.server, (*API_SERVICE_NAMES, health.SERVICE_NAME))
        credentials = credentials_for(options)
        try:
            if credentials is None:
                self.port = self.server.add_insecure_port(options.listen)
            else:
                self.port = self.server.add_secure_port(options.listen, credentials)
        except RuntimeError as error:  # grpc reports bind failures as RuntimeError
            raise ListenError(
                f"cannot listen on {options.listen!r}: address in use or invalid"
            ) from error

    @property
    def address(self) -> str:
        host = self.options.listen.rsplit(":", 1)[0]
        return f"{host}:{self.port}"

    async def start(self) -> None:
        await self.server.start()
        serving = health_pb2.HealthCheckResponse.SERVING
        await self.health.set("", serving)
        for name in API_SERVICE_NAMES:
            await self.health.set(name, serving)
        if self.options.redis is not None:
            self._redis_watch = asyncio.create_task(self._watch_redis())

    async def _watch_redis(self) -> None:
        """Pings the fleet's Redis; with `redis_required`, health follows its answers. The
        ping is a look at the fleet marker (redis_data_loss.py), so a Redis that lost its data
        is noticed within a second: logged, recorded, shared values re-asserted."""
        from runtime_gateway_server.redis_data_loss import DataLossWatch

        link = self.options.redis
        fleet = DataLossWatch.of(link)
        serving = True
        while True:
            try:
                up = bool(await fleet.acheck())
            except Exception as error:  # anything unexpected counts as down
                link.report(False, error)
                up = False
            if self.options.redis_required and up != serving:
                serving = up
                status = (
                    health_pb2.HealthCheckResponse.SERVING
                    if up
                    else health_pb2.HealthCheckResponse.NOT_SERVING
                )
                for name in ("", *API_SERVICE_NAMES):
                    await self.health.set(name, status)
            await asyncio.sleep(REDIS_PING_SECONDS)

    async def stop(self) -> None:
        """Drains: health says NOT_SERVING, new calls are refused, in-flight ones get the grace."""
        watch: asyncio.Task[None] | None = getattr(self, "_redis_watch", None)
        if watch is not None:  # it must not turn health back to SERVING while draining
            watch.cancel()
        await self.health.enter_graceful_shutdown()
        for hook in self.options.shutdown_hooks:
            await hook()
        await self.server.stop(self.options.grace_seconds)


async def serve_until_signalled(server: GatewayServer, on_ready: Callable[[], None]) -> None:
    """Runs until SIGTERM or SIGINT, then shuts down gracefully."""
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    on_ready()
    await stop.wait()
    log.info("shutdown_started", grace_seconds=server.options.grace_seconds)
    await server.stop()
    log.info("shutdown_complete")
