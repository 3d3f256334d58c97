"""The `runtime-gateway` command: `serve`, `local-runtime` and `health`.

Long-running commands print exactly one JSON line to stdout once they are ready to serve
(scripts and tests wait for it); logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ENV_PREFIX = "RUNTIME_GATEWAY_"


def _env(name: str, default: str) -> str:
    return os.environ.get(ENV_PREFIX + name, default)


class EnvError(ValueError):
    """An environment variable's value is not what its flag takes."""


def _number_env(name: str, default: str, kind: type[int] | type[float]) -> Any:
    """The variable as a number; EnvError naming it otherwise (one line, not a traceback)."""
    value = _env(name, default)
    try:
        return kind(value)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise EnvError(f"{ENV_PREFIX}{name}={value[:40]!r} is not {what}") from None


def _path_env(name: str) -> Path | None:
    value = os.environ.get(ENV_PREFIX + name)
    return Path(value) if value else None


def _print_ready(**fields: Any) -> None:
    print(json.dumps({"event": "ready", **fields}), flush=True)


def _add_logging_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-format",
        choices=("json", "console"),
        default=_env("LOG_FORMAT", "json"),
        help="log line format on stderr (env RUNTIME_GATEWAY_LOG_FORMAT; default: json)",
    )
    parser.add_argument(
        "--log-level",
        default=_env("LOG_LEVEL", "INFO"),
        help="DEBUG, INFO, WARNING or ERROR (env RUNTIME_GATEWAY_LOG_LEVEL; default: INFO)",
    )


class _Parser(argparse.ArgumentParser):
    """A bad flag is one line naming it (argparse would print the whole usage first)."""

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="runtime-gateway",
        description="A gRPC gateway to IBM Quantum's Qiskit Runtime, and its local runtime.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the gRPC gateway",
        description="Run the gRPC gateway (health and reflection included). Prints one JSON "
        'line {"event": "ready", "address": ...} on stdout once it serves.',
    )
    serve.add_argument(
        "--listen",
        default=_env("LISTEN", "127.0.0.1:50051"),
        help="HOST:PORT to listen on; port 0 picks a free port "
        "(env RUNTIME_GATEWAY_LISTEN; default: 127.0.0.1:50051)",
    )
    serve.add_argument(
        "--grace-seconds",
        type=float,
        default=_number_env("GRACE_SECONDS", "10", float),
        help="how long in-flight calls may finish after SIGTERM/SIGINT (default: 10)",
    )
    serve.add_argument(
        "--tls-cert", type=Path, default=_path_env("TLS_CERT"), help="PEM certificate chain"
    )
    serve.add_argument("--tls-key", type=Path, default=_path_env("TLS_KEY"), help="PEM private key")
    serve.add_argument(
        "--tls-client-ca",
        type=Path,
        default=_path_env("TLS_CLIENT_CA"),
        help="PEM CA bundle; when given, clients must present a certificate it signed (mTLS)",
    )
    serve.add_argument(
        "--insecure",
        action="store_true",
        default=_env("INSECURE", "0") in ("1", "true", "yes"),
        help="allow plaintext on a non-loopback address (behind a trusted TLS proxy only)",
    )
    serve.add_argument(
        "--accounts-dir",
        type=Path,
        default=_path_env("ACCOUNTS_DIR"),
        help="directory of server-held account files, one per API key, in the SDK's "
        "qiskit-ibm.json layout (<dir>/<key id>.json); default: server-held accounts off",
    )
    serve.add_argument(
        "--api-key",
        action="append",
        default=[v for v in [os.environ.get(ENV_PREFIX + "API_KEYS")] if v],
        metavar="ID=SHA256",
        help="a gateway API key allowed to use server-held accounts: its id and the SHA-256 "
        "hex digest of the key (repeatable; env RUNTIME_GATEWAY_API_KEYS, comma-separated)",
    )
    serve.add_argument(
        "--allow-upstream",
        action="append",
        default=[v for v in [os.environ.get(ENV_PREFIX + "ALLOW_UPSTREAM")] if v],
        metavar="HOST[:PORT]",
        help="an upstream host the gateway may contact besides IBM's hosts (https only), the "
        "local runtime and IAM_URL/GLOBAL_SEARCH_URL/GLOBAL_CATALOG_URL: HOST exactly or "
        "*.HOST for its subdomains, over http or https, on any port unless :PORT is given "
        "(repeatable; env RUNTIME_GATEWAY_ALLOW_UPSTREAM, comma-separated)",
    )
    serve.add_argument(
        "--backend-cache-seconds",
        type=float,
        default=_number_env("BACKEND_CACHE_SECONDS", "60", float),
        help="how long backend lists are cached per account (configurations: 5x longer; "
        "status: at most 2 s); 0 turns caching off (default: 60)",
    )
    serve.add_argument(
        "--upstream-threads",
        type=int,
        default=_number_env("UPSTREAM_THREADS", "32", int),
        help="concurrent HTTP calls to IBM (default: 32)",
    )
    serve.add_argument(
        "--upstream-timeout",
        type=float,
        default=_number_env("UPSTREAM_TIMEOUT", "60", float),
        help="read timeout of one HTTP call to IBM, in seconds (default: 60)",
    )
    serve.add_argument(
        "--max-inflight-bytes",
        type=int,
        default=_number_env("MAX_INFLIGHT_BYTES", str(512 * 1024 * 1024), int),
        help="memory the requests in flight may hold in a gateway process, counted as eight "
        "times their serialized size; beyond it calls get RESOURCE_EXHAUSTED "
        "(GATEWAY_OVERLOADED) with a retry delay (per worker; "
        "env RUNTIME_GATEWAY_MAX_INFLIGHT_BYTES; default: 536870912)",
    )
    serve.add_argument(
        "--watch-poll-seconds",
        type=float,
        default=_number_env("WATCH_POLL_SECONDS", "0.5", float),
        help="job-update streams poll a watched job this often after a change and while it "
        "runs; unchanged queued jobs back off to --watch-max-poll-seconds (default: 0.5)",
    )
    serve.add_argument(
        "--watch-max-poll-seconds",
        type=float,
        default=_number_env("WATCH_MAX_POLL_SECONDS", "10", float),
        help="the slowest poll of a job waiting unchanged in the queue (default: 10)",
    )
    serve.add_argument(
        "--watch-heartbeat-seconds",
        type=float,
        default=_number_env("WATCH_HEARTBEAT_SECONDS", "15", float),
        help="idle job-update streams send a heartbeat this often (default: 15)",
    )
    serve.add_argument(
        "--watch-account-rps",
        type=float,
        default=_number_env("WATCH_ACCOUNT_RPS", "20", float),
        help="upstream requests per second per account, for all watched jobs (default: 20)",
    )
    serve.add_argument(
        "--no-local-runtime",
        dest="local_runtime",
        action="store_false",
        default=_env("LOCAL_RUNTIME", "1") not in ("0", "false", "no"),
        help="do not start the embedded local runtime (the default upstream for calls without "
        "IBM credentials; env RUNTIME_GATEWAY_LOCAL_RUNTIME=0)",
    )
    serve.add_argument(
        "--local-runtime-listen",
        default=_env("LOCAL_RUNTIME_LISTEN", "127.0.0.1:0"),
        help="where the embedded local runtime listens (loopback; default: a free port)",
    )
    serve.add_argument(
        "--local-data-dir",
        default=os.environ.get(ENV_PREFIX + "LOCAL_DATA_DIR"),
        help="keep the embedded local runtime's jobs here across restarts (default: in memory)",
    )
    serve.add_argument(
        "--local-workers",
        type=int,
        default=_number_env("LOCAL_WORKERS", "2", int),
        help="jobs the embedded local runtime runs at once (default: 2)",
    )
    serve.add_argument(
        "--local-job-memory-mb",
        type=int,
        default=_number_env("LOCAL_JOB_MEMORY_MB", "4096", int),
        help="memory one job of the embedded local runtime may use, in MB; a job needing more "
        "fails as IBM fails a job it cannot run (env RUNTIME_GATEWAY_LOCAL_JOB_MEMORY_MB; "
        "default: 4096)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=_number_env("WORKERS", "1", int),
        help="gateway processes sharing the port, to use more than one core; they share "
        "request ids and page tokens through the state directory (env RUNTIME_GATEWAY_WORKERS; "
        "default: 1)",
    )
    serve.add_argument(
        "--state-dir",
        type=Path,
        default=_path_env("STATE_DIR"),
        help="private directory for state that workers and restarts share: RunJob request ids "
        "and the page-token key (env RUNTIME_GATEWAY_STATE_DIR; default: in memory, or a "
        "temporary directory with --workers above 1)",
    )
    serve.add_argument(
        "--metrics-listen",
        default=_env("METRICS_LISTEN", "") or None,
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (plain HTTP: loopback "
        "unless --insecure; with --workers N the supervisor serves all workers' sum; env "
        "RUNTIME_GATEWAY_METRICS_LISTEN; default: off)",
    )
    # --- the fleet: replicas sharing state through Redis, and one local runtime ---
    serve.add_argument(
        "--redis-url",
        default=_env("REDIS_URL", "") or None,
        metavar="URL",
        help="share request ids, the page-token key, per-account rate caps and job watchers "
        "with the other replicas through this Redis: redis://[:PASSWORD@]HOST:PORT/DB, "
        "rediss:// for TLS, unix:///PATH (env RUNTIME_GATEWAY_REDIS_URL; default: no Redis, "
        "state in this process or --state-dir). A starting gateway waits for it "
        "(--redis-wait-seconds)",
    )
    serve.add_argument(
        "--redis-password",
        default=_env("REDIS_PASSWORD", "") or None,
        metavar="PASSWORD",
        help="the Redis password, when it is not in the URL (prefer the environment: env "
        "RUNTIME_GATEWAY_REDIS_PASSWORD)",
    )
    serve.add_argument(
        "--redis-prefix",
        default=_env("REDIS_PREFIX", "rg:"),
        help="prefix of every key the gateway writes, so fleets can share a Redis "
        "(env RUNTIME_GATEWAY_REDIS_PREFIX; default: rg:)",
    )
    serve.add_argument(
        "--redis-wait-seconds",
        type=float,
        default=_number_env("REDIS_WAIT_SECONDS", "30", float),
        help="how long a starting gateway waits for Redis before it exits with an error "
        "(env RUNTIME_GATEWAY_REDIS_WAIT_SECONDS; default: 30)",
    )
    serve.add_argument(
        "--redis-required",
        action="store_true",
        default=_env("REDIS_REQUIRED", "0") in ("1", "true", "yes"),
        help="report NOT_SERVING on the health service while Redis is unreachable (default: "
        "keep serving; RunJob with a request id is then refused with UNAVAILABLE)",
    )
    serve.add_argument(
        "--local-runtime-url",
        default=_env("LOCAL_RUNTIME_URL", "") or None,
        metavar="URL",
        help="use this running `runtime-gateway local-runtime` (its ready line's url) as the "
        "default upstream instead of starting one, so replicas share one local runtime "
        "(with --local-runtime-token; env RUNTIME_GATEWAY_LOCAL_RUNTIME_URL)",
    )
    serve.add_argument(
        "--local-runtime-token",
        default=_env("LOCAL_RUNTIME_TOKEN", "") or None,
        metavar="TOKEN",
        help="the token that local runtime accepts (its ready line's token; prefer the "
        "environment: env RUNTIME_GATEWAY_LOCAL_RUNTIME_TOKEN)",
    )
    # Set by the supervisor of `--workers N` on the processes it starts.
    serve.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    serve.add_argument("--worker-count", type=int, default=1, help=argparse.SUPPRESS)
    _add_logging_flags(serve)

    local = commands.add_parser(
        "local-runtime",
        help="run the local runtime (an emulator of IBM Runtime's HTTP API) alone",
        description="Run the local runtime alone. Prints one JSON line on stdout once it "
        "serves, with its base URL, the API token it accepts and the instances it serves.",
    )
    local.add_argument(
        "--listen",
        default=_env("LOCAL_LISTEN", "127.0.0.1:8765"),
        help="HOST:PORT to listen on; port 0 picks a free port (default: 127.0.0.1:8765)",
    )
    local.add_argument(
        "--token",
        default=os.environ.get(ENV_PREFIX + "LOCAL_TOKEN"),
        help="the API token (IBM Cloud API key / IBM Quantum token) it accepts; "
        "default: a random one, printed in the ready line",
    )
    local.add_argument(
        "--data-dir",
        default=os.environ.get(ENV_PREFIX + "LOCAL_DATA_DIR"),
        help="keep jobs in this directory so they survive a restart (default: in memory)",
    )
    local.add_argument(
        "--workers",
        type=int,
        default=_number_env("LOCAL_WORKERS", "2", int),
        help="jobs run at once, each in a simulation worker process (default: 2)",
    )
    local.add_argument(
        "--job-memory-mb",
        type=int,
        default=_number_env("LOCAL_JOB_MEMORY_MB", "4096", int),
        help="memory one job may use, in MB: Aer refuses circuits that need more and a "
        "watchdog kills a job that grows beyond it; the job fails as IBM fails a job it "
        "cannot run (env RUNTIME_GATEWAY_LOCAL_JOB_MEMORY_MB; default: 4096)",
    )
    local.add_argument(
        "--job-seconds",
        type=float,
        default=float(_env("LOCAL_JOB_SECONDS", "2")),
        help="the shortest a job takes on a device (not the simulator), so jobs are seen "
        "QUEUED and RUNNING and a device runs one at a time as on IBM; 0 for fast tests "
        "(env RUNTIME_GATEWAY_LOCAL_JOB_SECONDS; default: 2)",
    )
    # Set by `serve` on its embedded local runtime: stop when that gateway is gone.
    local.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)
    local.add_argument(
        "--token-ttl-seconds",
        type=int,
        default=_number_env("LOCAL_TOKEN_TTL_SECONDS", "3600", int),
        help="lifetime of issued access tokens; clients then re-authenticate (default: 3600)",
    )
    local.add_argument(
        "--job-rate-limit",
        type=int,
        default=_number_env("LOCAL_JOB_RATE_LIMIT", "0", int),
        help="jobs per minute per user before 429, as IBM's limit of 5 (default: 0, no limit)",
    )
    local.add_argument(
        "--usage-limit-seconds",
        type=int,
        default=None,
        help="quantum seconds an instance may use before job creation answers 409 (default: none)",
    )
    _add_logging_flags(local)

    check = commands.add_parser(
        "health",
        help="probe a gateway's grpc.health.v1 service (exit 0 when SERVING)",
        description="Ask a gateway's grpc.health.v1 service for a status. Exit status 0 when "
        "SERVING, 1 otherwise (NOT_SERVING, unreachable, timeout).",
    )
    check.add_argument(
        "--address",
        default=_env("ADDRESS", "127.0.0.1:50051"),
        help="HOST:PORT of the gateway (default: 127.0.0.1:50051)",
    )
    check.add_argument("--service", default="", help="service name to ask about (default: server)")
    check.add_argument("--timeout", type=float, default=3.0, help="seconds to wait (default: 3)")
    # A gateway serving TLS is probed over TLS. In the gateway's own container the defaults
    # come from its serve settings: its certificate (self-signed, or a file with its chain)
    # as the trust root, and for mutual TLS a client pair from the environment.
    check.add_argument(
        "--tls-ca",
        type=Path,
        default=_env("HEALTH_TLS_CA", "") or _env("TLS_CERT", "") or None,
        help="probe over TLS, trusting this CA file (env RUNTIME_GATEWAY_HEALTH_TLS_CA; default: "
        "the gateway's RUNTIME_GATEWAY_TLS_CERT when set, else plaintext)",
    )
    check.add_argument(
        "--tls-client-cert",
        type=Path,
        default=_env("HEALTH_TLS_CLIENT_CERT", "") or None,
        help="client certificate for a gateway that requires one (with --tls-client-key; env "
        "RUNTIME_GATEWAY_HEALTH_TLS_CLIENT_CERT)",
    )
    check.add_argument(
        "--tls-client-key",
        type=Path,
        default=_env("HEALTH_TLS_CLIENT_KEY", "") or None,
        help="the client certificate's key (env RUNTIME_GATEWAY_HEALTH_TLS_CLIENT_KEY)",
    )
    check.add_argument(
        "--tls-server-name",
        default=_env("HEALTH_TLS_SERVER_NAME", "") or None,
        help="the name the gateway's certificate carries, when it is not the address's host "
        "(env RUNTIME_GATEWAY_HEALTH_TLS_SERVER_NAME)",
    )
    return parser


def _serve_options(args: argparse.Namespace) -> Any:
    from runtime_gateway_server.app import ServeOptions

    return ServeOptions(
        listen=args.listen,
        grace_seconds=args.grace_seconds,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
        insecure=args.insecure,
        reuse_port=args.worker_index is not None,
        max_inflight_bytes=args.max_inflight_bytes,
        metrics=bool(args.metrics_listen),
    )


def _check_metrics_listen(args: argparse.Namespace) -> None:
    """Metrics are plain HTTP: beyond loopback only with --insecure (a trusted network)."""
    from runtime_gateway_server.app import _is_loopback

    listen = args.metrics_listen
    if listen and ":" not in listen:
        raise OSError(f"--metrics-listen must be HOST:PORT, not {listen!r}")
    if listen and not _is_loopback(listen) and not args.insecure:
        raise OSError(
            f"refusing to serve metrics on {listen}: beyond loopback they need --insecure "
            "(plain HTTP, for a trusted network or a scraping proxy)"
        )


def _log_configuration(args: argparse.Namespace, upstream: Any, tracing: bool) -> None:
    """One INFO line with the effective configuration; no secret (the API keys' digests, the
    local runtime's token and account files are left out)."""
    import structlog

    structlog.get_logger("runtime_gateway_server").info(
        "gateway_config",
        listen=args.listen,
        tls="mtls" if args.tls_client_ca else ("tls" if args.tls_cert else "off"),
        insecure=args.insecure,
        workers=args.worker_count if args.worker_index is not None else args.workers,
        worker=args.worker_index,
        upstream="local runtime" if upstream is not None else "IBM only",
        local_runtime_url=upstream.url if upstream is not None else None,
        allow_upstream=list(args.allow_upstream),
        accounts_dir=str(args.accounts_dir) if args.accounts_dir else None,
        api_keys=len(args.api_key),
        backend_cache_seconds=args.backend_cache_seconds,
        upstream_threads=args.upstream_threads,
        upstream_timeout=args.upstream_timeout,
        max_inflight_bytes=args.max_inflight_bytes,
        state_dir=str(args.state_dir) if args.state_dir else "memory",
        request_id_store="redis" if args.redis_url else ("sqlite" if args.state_dir else "memory"),
        redis=_masked_redis_url(args),
        # Whether a password reaches Redis (from the URL or --redis-password), never its value.
        redis_password=bool(args.redis_password or _url_password(args.redis_url)),
        redis_prefix=args.redis_prefix if args.redis_url else None,
        redis_required=args.redis_required,
        metrics=args.metrics_listen,
        tracing=tracing,
        log_level=args.log_level,
    )


def _serve(args: argparse.Namespace) -> int:
    if args.workers < 1:
        raise OSError("--workers must be at least 1")
    if args.max_inflight_bytes < 1:
        raise OSError("--max-inflight-bytes must be at least 1")
    from runtime_gateway_server.allowlist import parse_entries

    parse_entries(args.allow_upstream)  # OSError for a bad entry, before anything starts
    _check_metrics_listen(args)
    _check_fleet_flags(args)
    if args.workers > 1 and args.worker_index is None:
        return _supervise(args)
    from runtime_gateway_server.app import GatewayServer, serve_until_signalled
    from runtime_gateway_server.assembly import (
        GatewaySettings,
        LocalUpstream,
        build_gateway,
        parse_api_keys,
        register,
    )
    from runtime_gateway_server.logs import SECRETS, configure_logging
    from runtime_gateway_server.watch import WatchSettings
    from runtime_gateway_server.workers import LOCAL_UPSTREAM_ENV, SUPERVISOR_PID_ENV

    worker = args.worker_index is not None
    configure_logging(
        args.log_format, args.log_level, {"worker": args.worker_index} if worker else None
    )
    if worker and os.environ.get(SUPERVISOR_PID_ENV, "").isdigit():
        import signal

        from runtime_gateway_server.subprocesses import die_with_parent

        # Drain when the supervisor goes, however it went (no orphaned workers on the port).
        die_with_parent(signal.SIGTERM, int(os.environ[SUPERVISOR_PID_ENV]))
    settings = GatewaySettings(
        accounts_dir=args.accounts_dir,
        api_keys=parse_api_keys(args.api_key),
        backend_list_ttl=args.backend_cache_seconds,
        backend_config_ttl=args.backend_cache_seconds * 5,
        backend_status_ttl=min(2.0, args.backend_cache_seconds),
        upstream_threads=args.upstream_threads,
        upstream_timeout=args.upstream_timeout,
        watch=WatchSettings(
            fast_interval=args.watch_poll_seconds,
            max_interval=max(args.watch_max_poll_seconds, args.watch_poll_seconds),
            heartbeat_seconds=args.watch_heartbeat_seconds,
            # Workers split the account's budget: together they stay within it.
            account_rps=args.watch_account_rps / max(1, args.worker_count),
        ),
        state_dir=args.state_dir,
        allow_upstream=list(args.allow_upstream),
        redis_url=args.redis_url,
        redis_password=args.redis_password,
        redis_prefix=args.redis_prefix,
        redis_wait_seconds=args.redis_wait_seconds,
        fleet_account_rps=args.watch_account_rps,
    )
    options = _serve_options(args)
    embedded = args.local_runtime and not args.local_runtime_url
    local = _start_embedded_local_runtime(args) if embedded else None
    upstream = LocalUpstream(local.base_url, local.token, local.crn) if local else None
    if worker and os.environ.get(LOCAL_UPSTREAM_ENV):  # the supervisor's local runtime
        upstream = LocalUpstream(**json.loads(os.environ[LOCAL_UPSTREAM_ENV]))
        SECRETS.add(upstream.token)
    elif args.local_runtime_url:  # one the operator runs, shared by the replicas
        upstream = _attach_local_runtime(args)
    try:
        gateway = build_gateway(settings, upstream)  # waits for Redis (--redis-wait-seconds)
    except BaseException:
        if local is not None:
            local.stop()
        raise
    options.redis = gateway.redis
    options.redis_required = args.redis_required
    options.registrars = (lambda server: register(gateway, server),)
    options.shutdown_hooks = (gateway.watch.shutdown,)
    from runtime_gateway_server import tracing

    tracing_on = tracing.wanted()
    if tracing_on:
        options.interceptors = tuple(tracing.setup())
    metrics_address = None
    if args.metrics_listen and not worker:  # a supervisor serves its workers' metrics
        from runtime_gateway_server.metrics import serve_metrics

        _, metrics_port = serve_metrics(args.metrics_listen)
        metrics_address = f"{args.metrics_listen.rsplit(':', 1)[0]}:{metrics_port}"
    _log_configuration(args, upstream, tracing_on)

    async def run() -> None:
        server = GatewayServer(options)
        await serve_until_signalled(
            server,
            lambda: _print_ready(
                service="gateway",
                address=server.address,
                local_runtime_url=upstream.url if upstream else None,
                **({"metrics_address": metrics_address} if metrics_address else {}),
            ),
        )

    try:
        asyncio.run(run())
    finally:
        # The grace is over: nothing more goes upstream for calls already answered.
        gateway.clients.http.close()
        gateway.executor.shutdown(wait=False, cancel_futures=True)
        if local is not None:
            local.stop()
    _exit_without_waiting_for_upstream_calls()
    return 0


def _exit_without_waiting_for_upstream_calls() -> None:
    """Python joins executor threads at exit, so a request still waiting on a slow upstream
    (up to --upstream-timeout) would hold the process long past --grace-seconds. Its call was
    answered when the grace ended; the process leaves without it."""
    import threading
    import time

    until = time.monotonic() + 1.0  # idle threads leave at once; busy ones do not
    busy = [t for t in threading.enumerate() if t.name.startswith("upstream")]
    for thread in busy:
        thread.join(max(0.0, until - time.monotonic()))
    busy = [t for t in busy if t.is_alive()]
    if not busy:
        return
    import structlog

    structlog.get_logger("runtime_gateway_server").warning(
        "exit_abandons_upstream_requests", requests=len(busy)
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _supervise(args: argparse.Namespace) -> int:
    """`serve --workers N`: reserve the port, start the workers, restart any that die, and
    drain them all on SIGTERM/SIGINT (see `runtime_gateway_server.workers`)."""
    import shutil
    import signal
    import tempfile
    from dataclasses import asdict

    from runtime_gateway_server.app import credentials_for
    from runtime_gateway_server.assembly import LocalUpstream
    from runtime_gateway_server.logs import configure_logging
    from runtime_gateway_server.state import StateDir
    from runtime_gateway_server.workers import LOCAL_UPSTREAM_ENV, Supervisor, reserve_port

    configure_logging(args.log_format, args.log_level, {"worker": "supervisor"})
    credentials_for(_serve_options(args))  # TLS and loopback rules, before anything starts
    holder, address = reserve_port(args.listen)
    temporary = args.state_dir is None
    state_dir = Path(tempfile.mkdtemp(prefix="runtime-gateway-")) if temporary else args.state_dir
    local = None
    stop = False

    def on_signal(_signum: int, _frame: Any) -> None:
        nonlocal stop
        stop = True

    try:
        StateDir.open(state_dir).page_token_key()  # one key, made before any worker reads it
        embedded = args.local_runtime and not args.local_runtime_url
        local = _start_embedded_local_runtime(args) if embedded else None
        env = _secret_flags_env(args)  # never in the workers' argv (`ps` shows it to all)
        metrics_address = None
        if args.metrics_listen:
            # prometheus-client's multiprocess mode: each worker writes its values under this
            # directory; the supervisor serves their sum (see runtime_gateway_server.metrics).
            from runtime_gateway_server.metrics import MULTIPROC_ENV, serve_metrics

            metrics_dir = state_dir / "metrics"
            shutil.rmtree(metrics_dir, ignore_errors=True)  # a restart starts from zero
            metrics_dir.mkdir(mode=0o700)
            env[MULTIPROC_ENV] = str(metrics_dir)
            _, metrics_port = serve_metrics(args.metrics_listen, str(metrics_dir))
            metrics_address = f"{args.metrics_listen.rsplit(':', 1)[0]}:{metrics_port}"
        upstream = _attach_local_runtime(args) if args.local_runtime_url else None
        if local is not None:
            upstream = LocalUpstream(local.base_url, local.token, local.crn)
        if upstream is not None:
            env[LOCAL_UPSTREAM_ENV] = json.dumps(asdict(upstream))
        supervisor = Supervisor(
            [*_without_secret_flags(args.argv), "--state-dir", str(state_dir)],
            args.workers,
            address,
            args.grace_seconds,
            env,
        )
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, on_signal)
        supervisor.start()
        try:
            _print_ready(
                service="gateway",
                address=address,
                workers=args.workers,
                pids=supervisor.pids(),
                local_runtime_url=local.base_url if local else args.local_runtime_url,
                **({"metrics_address": metrics_address} if metrics_address else {}),
            )
            return supervisor.watch(lambda: stop)
        finally:
            supervisor.stop()
    finally:
        holder.close()
        if local is not None:
            local.stop()
        if temporary:
            shutil.rmtree(state_dir, ignore_errors=True)


# Flags whose values may hold secrets (a password in the Redis URL, tokens): the supervisor
# of `--workers N` hands them to its workers in the environment, not on their command line.
SECRET_FLAGS = {
    "--redis-url": "REDIS_URL",
    "--redis-password": "REDIS_PASSWORD",
    "--local-runtime-url": "LOCAL_RUNTIME_URL",
    "--local-runtime-token": "LOCAL_RUNTIME_TOKEN",
}


def _url_password(url: str | None) -> bool:
    from urllib.parse import urlsplit

    try:
        return bool(url and urlsplit(url).password)
    except ValueError:
        return False


def _masked_redis_url(args: argparse.Namespace) -> str | None:
    from runtime_gateway_server.redis_link import mask_url

    return mask_url(args.redis_url) if args.redis_url else None


def _check_fleet_flags(args: argparse.Namespace) -> None:
    """OSError (one line, exit 2) for a Redis URL redis-py cannot use or a local runtime URL
    without its token; the messages never carry the URL's password."""
    from urllib.parse import urlsplit

    from runtime_gateway_server.logs import SECRETS
    from runtime_gateway_server.redis_link import check_url

    if args.redis_password:
        SECRETS.add(args.redis_password)
    if args.redis_url:
        try:
            check_url(args.redis_url)
        except ValueError as error:
            raise OSError(str(error)) from None
        if not args.redis_prefix:
            raise OSError("--redis-prefix must not be empty")
        if not args.redis_wait_seconds >= 0:
            raise OSError("--redis-wait-seconds must be at least 0")
    elif args.redis_required:
        raise OSError("--redis-required needs --redis-url")
    if args.local_runtime_token:
        SECRETS.add(args.local_runtime_token)
    if args.local_runtime_url:
        parts = urlsplit(args.local_runtime_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.password:
            raise OSError(
                "--local-runtime-url must be http(s)://HOST:PORT (the url in the local "
                "runtime's ready line)"
            )
        if not args.local_runtime_token:
            raise OSError(
                "--local-runtime-url needs --local-runtime-token (its ready line's token)"
            )


def _without_secret_flags(argv: Sequence[str]) -> list[str]:
    """`argv` without SECRET_FLAGS and their values (`--flag VALUE`, `--flag=VALUE`, and the
    unambiguous abbreviations argparse accepted)."""
    kept: list[str] = []
    skip = False
    for item in argv:
        if skip:
            skip = False
            continue
        name, equals, _ = item.partition("=")
        secret = any(flag.startswith(name) for flag in SECRET_FLAGS)
        if secret and len(name) > 2 and name.startswith("--"):
            skip = not equals
            continue
        kept.append(item)
    return kept


def _secret_flags_env(args: argparse.Namespace) -> dict[str, str]:
    """The workers' environment for SECRET_FLAGS (the values this process resolved)."""
    env = {}
    for flag, name in SECRET_FLAGS.items():
        value = getattr(args, flag[2:].replace("-", "_"))
        if value:
            env[ENV_PREFIX + name] = str(value)
    return env


def _attach_local_runtime(args: argparse.Namespace) -> Any:
    """A running local runtime (`--local-runtime-url`) as the default upstream: its first
    IBM Cloud instance's CRN, asked of its Global Search endpoint as the SDK asks IBM's. It may
    still be starting: waits up to 30 s. OSError (one line) when it is not there or refuses
    the token."""
    import time

    import requests
    import structlog

    from runtime_gateway_server.assembly import LocalUpstream

    url = args.local_runtime_url.rstrip("/")
    token = args.local_runtime_token
    deadline = time.monotonic() + 30.0
    waiting = False
    while True:
        try:
            reply = requests.post(
                f"{url}/global-search/v3/resources/search",
                headers={"Authorization": f"apikey {token}"},
                json={"query": "service_name:quantum-computing"},
                timeout=5.0,
            )
            break
        except requests.RequestException as error:
            if time.monotonic() > deadline:
                raise OSError(
                    f"--local-runtime-url {url}: no answer in 30 s ({type(error).__name__})"
                ) from None
            if not waiting:
                structlog.get_logger("runtime_gateway_server").warning(
                    "local_runtime_waiting", url=url, seconds=30
                )
                waiting = True
            time.sleep(0.5)
    if reply.status_code in (401, 403):
        raise OSError(f"--local-runtime-token: the local runtime at {url} refused it")
    try:
        crn = str(reply.json()["items"][0]["crn"])
    except (ValueError, KeyError, IndexError, TypeError):
        raise OSError(
            f"--local-runtime-url {url}: not a local runtime (HTTP {reply.status_code})"
        ) from None
    return LocalUpstream(url, token, crn)


def _start_embedded_local_runtime(args: argparse.Namespace) -> Any:
    """The local runtime as a child process (`runtime_gateway_local.embedded`), on loopback;
    None (with a warning) if it cannot run. Its simulations never share the gateway's GIL."""
    import structlog

    from runtime_gateway_local.backends import SnapshotsUnavailable, _snapshot_root
    from runtime_gateway_local.embedded import EmbeddedLocalRuntime
    from runtime_gateway_local.main import parse_listen

    host, _ = parse_listen(args.local_runtime_listen)
    if host not in ("127.0.0.1", "::1", "localhost"):
        raise OSError("--local-runtime-listen must be a loopback address")
    if args.local_workers < 1:
        raise OSError("--local-workers must be at least 1")
    if args.local_job_memory_mb < 1:
        raise OSError("--local-job-memory-mb must be at least 1")
    try:
        _snapshot_root()
    except SnapshotsUnavailable as error:
        structlog.get_logger("runtime_gateway_server").warning(
            "local_runtime_unavailable", reason=str(error)
        )
        return None
    runtime = EmbeddedLocalRuntime.start(
        args.local_runtime_listen,
        data_dir=args.local_data_dir,
        workers=args.local_workers,
        job_memory_mb=args.local_job_memory_mb,
        log_format=args.log_format,
        log_level=args.log_level,
    )
    from runtime_gateway_server.logs import SECRETS

    SECRETS.add(runtime.token)
    return runtime


def _local_runtime(args: argparse.Namespace) -> int:
    from runtime_gateway_local.main import parse_listen, run_local_runtime
    from runtime_gateway_local.runtime import LocalRuntimeSettings
    from runtime_gateway_server.logs import configure_logging

    configure_logging(args.log_format, args.log_level)
    if args.workers < 1:
        raise OSError("--workers must be at least 1")
    if args.job_memory_mb < 1:
        raise OSError("--job-memory-mb must be at least 1")
    if args.token:
        from runtime_gateway_server.logs import SECRETS

        SECRETS.add(args.token)  # printed in the ready line, never logged
    host, port = parse_listen(args.listen)
    settings = LocalRuntimeSettings(
        host=host,
        port=port,
        token=args.token,
        data_dir=args.data_dir,
        workers=args.workers,
        job_memory_mb=args.job_memory_mb,
        token_ttl_seconds=args.token_ttl_seconds,
        job_rate_limit_per_minute=args.job_rate_limit,
        usage_limit_seconds=args.usage_limit_seconds,
        job_seconds=args.job_seconds,
    )
    return run_local_runtime(
        settings,
        on_ready=lambda info: _print_ready(service="local-runtime", **info),
        parent_pid=args.parent_pid,
    )


def _health(args: argparse.Namespace) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    try:
        channel = _health_channel(args)
    except OSError as error:
        print(f"unhealthy: cannot read TLS files: {error}", file=sys.stderr)
        return 1
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
        except grpc.RpcError as error:
            print(f"unhealthy: {error.code().name}: {error.details()}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(status)
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


def _health_channel(args: argparse.Namespace) -> Any:
    """Plaintext, or TLS (mutual when a client pair is given) as the probe's flags say."""
    import grpc

    if args.tls_ca is None and args.tls_client_cert is None:
        return grpc.insecure_channel(args.address)
    if (args.tls_client_cert is None) != (args.tls_client_key is None):
        raise OSError("--tls-client-cert and --tls-client-key go together")
    credentials = grpc.ssl_channel_credentials(
        root_certificates=args.tls_ca.read_bytes() if args.tls_ca else None,
        private_key=args.tls_client_key.read_bytes() if args.tls_client_key else None,
        certificate_chain=args.tls_client_cert.read_bytes() if args.tls_client_cert else None,
    )
    options = (
        [("grpc.ssl_target_name_override", args.tls_server_name)] if args.tls_server_name else []
    )
    return grpc.secure_channel(args.address, credentials, options=options)


def main(argv: Sequence[str] | None = None) -> int:
    faulthandler.enable()  # a crash in a C extension (Aer, qiskit) prints its Python stack
    # gRPC's C core writes INFO lines of its own (a client's failed TLS handshake) straight
    # to stderr, outside the JSON log; errors only, unless the operator asks for more.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except EnvError as error:
        print(f"runtime-gateway: {error}", file=sys.stderr)
        return 2
    args.argv = argv  # `serve --workers N` passes the same flags on to its workers
    handlers = {"serve": _serve, "local-runtime": _local_runtime, "health": _health}
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        return 130
    except OSError as error:  # cannot listen, data directory unusable, ...
        print(f"runtime-gateway {args.command}: {error}", file=sys.stderr)
        return 2
