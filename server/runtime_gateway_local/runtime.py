"""The local runtime: composes the emulated IBM services behind one HTTP server.

Routing, for proxy-form requests (`HTTP_PROXY` pointing here), by host-name prefix,
whatever the domain:
  iam.* → IAM · api.global-search-tagging.* → Global Search · globalcatalog.* → Global
  Catalog · resource-controller.* → Resource Controller · quantum.* and <region>.quantum.*
  → runtime under /api/v1 · <region>.quantum-computing.* → runtime at / (0.21 ibm_cloud)
  · auth.* and any other host → by path, as below.
By path (loopback and unknown hosts): /_local/* admin · /identity/token IAM ·
  /global-search/* · /global-catalog/* · /v2/resource_instances · /api/v1/* runtime ·
  /runtime/* runtime · /api/* legacy auth · anything else runtime at /.
"""

from __future__ import annotations

import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import structlog

from runtime_gateway_local import auth_routes, runtime_routes
from runtime_gateway_local.auth import Authenticator
from runtime_gateway_local.backends import BackendCatalog
from runtime_gateway_local.execution import (
    CODE_EXECUTION,
    DEFAULT_JOB_MEMORY_MB,
    JobAborted,
    JobFailure,
    WorkerPool,
    memory_failure,
)
from runtime_gateway_local.faults import (
    DROP,
    FaultConfig,
    FaultInjector,
    RequestCounts,
    RequestLog,
)
from runtime_gateway_local.http import (
    Dispatcher,
    HttpError,
    LocalHttpServer,
    Request,
    Response,
    Router,
)
from runtime_gateway_local.instances import Instances, default_instances
from runtime_gateway_local.jobs import JobRecord, JobRunner, JobStore, cancel
from runtime_gateway_local.sessions import DEFAULT_INTERACTIVE_TTL, SessionStore

log = structlog.get_logger("runtime_gateway_local")

LOCAL_USER = "local-user"
_REGIONAL_RUNTIME = re.compile(r"^[a-z0-9-]+\.quantum\.")
_LEGACY_RUNTIME = re.compile(r"^[a-z0-9-]+\.quantum-computing\.")


@dataclass
class LocalRuntimeSettings:
    host: str = "127.0.0.1"
    port: int = 0
    token: str | None = None  # None: a random token
    data_dir: str | None = None  # None: jobs in memory only
    workers: int = 2  # jobs run at once, each in a simulation worker process
    job_memory_mb: int = DEFAULT_JOB_MEMORY_MB  # a job using more fails (IBM code 1002)
    token_ttl_seconds: int = 3600
    job_rate_limit_per_minute: int = 0  # IBM: 5; 0 turns the limit off
    usage_limit_seconds: int | None = None  # instance usage limit (409 when reached)
    devices: dict[str, str] | None = None  # None: the default device set
    extra_tokens: dict[str, str] = field(default_factory=dict)  # token -> user id
    # The shortest a job takes on a device (not the simulator), in seconds, so QUEUED and
    # RUNNING are observable as on IBM (`--job-seconds`; the command's default is 2 s).
    job_seconds: float = 0.0
    session_interactive_ttl: float = DEFAULT_INTERACTIVE_TTL  # seconds (IBM: 60)


class LocalRuntime(Dispatcher):
    """An emulator of IBM Runtime's HTTP API. `start()` serves on a background thread."""

    def __init__(self, settings: LocalRuntimeSettings | None = None) -> None:
        self.settings = settings or LocalRuntimeSettings()
        self.token = self.settings.token or f"local-{secrets.token_urlsafe(24)}"
        self.authenticator = Authenticator(
            {self.token: LOCAL_USER, **self.settings.extra_tokens},
            self.settings.token_ttl_seconds,
        )
        self.instances: Instances = default_instances(self.settings.usage_limit_seconds)
        self.catalog = BackendCatalog(self.settings.devices)
        self.store = JobStore(self.settings.data_dir)
        self.sessions = SessionStore(self.settings.data_dir, self.settings.session_interactive_ttl)
        # A device runs one job at a time (simulators several); a dedicated session holding
        # a device lets only its own jobs start there.
        self.runner = JobRunner(
            self.store,
            self._execute,
            self.settings.workers,
            exclusive=self._is_device,
            admit=self._admit,
            before_pick=self.refresh_sessions,
        )
        self.pool = WorkerPool(self.runner.workers, self.settings.devices)
        self.faults = FaultInjector()
        self.min_job_seconds = 0.0  # every job, simulators too: PUT /_local/execution
        self.job_seconds = self.settings.job_seconds  # devices only: PUT /_local/execution
        self.requests = RequestLog()
        self.request_counts = RequestCounts()  # GET/DELETE /_local/request-counts
        self.router = Router()
        auth_routes.add_routes(self.router, self)
        runtime_routes.add_routes(self.router, self)
        self._add_admin_routes()
        try:
            self.qiskit_version = metadata.version("qiskit")
        except metadata.PackageNotFoundError:
            self.qiskit_version = "unknown"
        self._http: LocalHttpServer | None = None

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> LocalRuntime:
        self._http = LocalHttpServer((self.settings.host, self.settings.port), self)
        self.runner.start()
        self._http.start_background()
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.stop()
        self.runner.stop()  # running jobs see `aborted`: their workers are killed
        self.pool.close()

    def __enter__(self) -> LocalRuntime:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._http is not None, "not started"
        return self._http.port

    @property
    def base_url(self) -> str:
        host = self.settings.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    def info(self) -> dict[str, Any]:
        """What the ready line prints: how to reach and use this local runtime."""
        base = self.base_url
        return {
            "url": base,
            "token": self.token,
            "runtime_url": f"{base}/api/v1",
            "legacy_runtime_url": f"{base}/runtime",
            "auth_url": f"{base}/api",
            "iam_url": base,
            "instances": {
                "crns": [i.crn for i in self.instances.cloud],
                "hgps": list(self.instances.hgps),
            },
            "backends": self.catalog.names(),
        }

    # --- scheduling ----------------------------------------------------------------------
    def _is_device(self, backend: str) -> bool:
        entry = self.catalog.get(backend)
        return entry is None or not entry.simulator

    def refresh_sessions(self) -> None:
        """Moves sessions along their states; cancels the queued jobs of expired ones."""
        for job_id in self.sessions.refresh(self.store.all()):
            self.store.update(job_id, _cancel_expired)

    def _admit(self, record: JobRecord) -> bool:
        holder = self.sessions.holder(record.backend)
        return holder is None or holder == record.session_id

    # --- jobs ----------------------------------------------------------------------------
    def _execute(
        self, record: JobRecord, index: int, aborted: Callable[[], bool]
    ) -> tuple[str, float, list[str]]:
        """Runs a job in runner `index`'s simulation worker process (see `execution.py`)."""
        started = time.monotonic()
        backend = self.catalog.get(record.backend)
        if backend is None:
            raise RuntimeError(f"backend {record.backend} is no longer available")
        task = {
            "program_id": record.program_id,
            "params": record.params,
            "backend": record.backend,
            "max_memory_mb": self.settings.job_memory_mb,
        }
        # One job at a time per device is the runner's scheduling (JobRunner).
        if aborted():
            raise JobAborted
        reply = self.pool.run(index, task, aborted, self.settings.job_memory_mb)
        if not reply.get("ok"):
            message = str(reply.get("message") or "the simulation failed")
            if reply.get("kind") == "memory":
                raise memory_failure(self.settings.job_memory_mb, message)
            raise JobFailure(message, f"Error running the program: {message}", CODE_EXECUTION)
        # Real devices take seconds: a floor keeps jobs observably RUNNING (and QUEUED behind).
        floor = max(self.min_job_seconds, 0.0 if backend.simulator else self.job_seconds)
        while (remaining := floor - (time.monotonic() - started)) > 0:
            if aborted():
                raise JobAborted
            time.sleep(min(0.05, remaining))
        return str(reply["result"]), float(reply["seconds"]), list(reply["lines"])

    # --- dispatch ------------------------------------------------------------------------
    def _service(self, request: Request) -> tuple[str, str]:
        host, path = request.host, request.path
        if host.startswith("iam."):
            return "iam", path
        if host.startswith("api.global-search-tagging."):
            return "search", path
        if host.startswith("globalcatalog."):
            return "catalog", path
        if host.startswith("resource-controller."):
            return "rc", path
        if host.startswith("quantum.") or _REGIONAL_RUNTIME.match(host):
            return "runtime", _strip(path, "/api/v1")
        if _LEGACY_RUNTIME.match(host) and not host.startswith("auth."):
            return "runtime", path
        for prefix, service in (
            ("/_local", "admin"),
            ("/global-search", "search"),
            ("/global-catalog", "catalog"),
            ("/api/v1", "runtime"),
            ("/runtime", "runtime"),
            ("/api", "auth"),
        ):
            if path == prefix or path.startswith(prefix + "/"):
                return service, _strip(path, prefix)
        if path.startswith("/identity/"):
            return "iam", path
        if path.startswith("/v2/resource_instances"):
            return "rc", path
        return "runtime", path

    def dispatch(self, request: Request) -> Response | None:
        started = time.perf_counter()
        service, path = self._service(request)
        trace = secrets.token_hex(8)
        response: Response | None
        injects = service != "admin"
        after = self.faults.config.after_handler
        try:
            if injects and not after and self.faults.apply(request) is DROP:
                self.requests.record(service, request, 0)
                return None
            handler, params = self.router.match(service, request.method, path)
            request.params = params
            response = handler(request)
            if injects and after and self.faults.apply(request) is DROP:
                self.requests.record(service, request, 0)  # handled, but the answer is lost
                return None
        except HttpError as error:
            response = error.response(trace)
        except Exception:
            log.exception("local_runtime_error", service=service, path=path, trace=trace)
            response = HttpError(500, "Internal error in the local runtime.").response(trace)
        if service != "admin":
            self.requests.record(service, request, response.status)
            self.request_counts.record(request)
        log.debug(
            "http_request",
            service=service,
            method=request.method,
            path=path,
            status=response.status,
            ms=round((time.perf_counter() - started) * 1000, 2),
        )
        return response

    # --- admin ---------------------------------------------------------------------------
    def _add_admin_routes(self) -> None:
        def check(request: Request) -> None:
            given = request.header("x-local-admin-token") or ""
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                raise HttpError(401, "The admin endpoints need X-Local-Admin-Token.")

        def admin(handler: Any) -> Any:
            def wrapped(request: Request) -> Response:
                check(request)
                result: Response = handler(request)
                return result

            return wrapped

        def get_info(_: Request) -> Response:
            return Response.json(self.info())

        def get_faults(_: Request) -> Response:
            return Response.json({**vars(self.faults.config), "injected": self.faults.injected})

        def put_faults(request: Request) -> Response:
            body = request.json()
            if not isinstance(body, dict):
                raise HttpError(400, "The fault configuration must be a JSON object.")
            self.faults.configure(FaultConfig.from_json(body))
            return get_faults(request)

        def expire_tokens(_: Request) -> Response:
            self.authenticator.expire_all()
            return Response.empty()

        def get_requests(_: Request) -> Response:
            return Response.json({"requests": self.requests.entries()})

        def clear_requests(_: Request) -> Response:
            self.requests.clear()
            return Response.empty()

        def get_request_counts(_: Request) -> Response:
            return Response.json({"counts": self.request_counts.snapshot()})

        def clear_request_counts(_: Request) -> Response:
            self.request_counts.clear()
            return Response.empty()

        def pause(_: Request) -> Response:
            self.runner.paused.set()
            return Response.empty()

        def resume(_: Request) -> Response:
            self.runner.paused.clear()
            return Response.empty()

        def execution(request: Request) -> Response:
            body = request.json()
            if not isinstance(body, dict) or not body:
                raise HttpError(
                    400, 'The body must be {"min_seconds": 0..600, "job_seconds": 0..600}.'
                )
            for key in body:
                value = body[key]
                if key not in ("min_seconds", "job_seconds") or not (
                    isinstance(value, (int, float)) and 0 <= value <= 600
                ):
                    raise HttpError(
                        400, 'The body must be {"min_seconds": 0..600, "job_seconds": 0..600}.'
                    )
            if "min_seconds" in body:
                self.min_job_seconds = float(body["min_seconds"])
            if "job_seconds" in body:
                self.job_seconds = float(body["job_seconds"])
            return Response.empty()

        def session_settings(request: Request) -> Response:
            body = request.json()
            ttl = body.get("interactive_ttl") if isinstance(body, dict) else None
            if not isinstance(ttl, (int, float)) or not 0 < ttl <= 3600:
                raise HttpError(400, 'The body must be {"interactive_ttl": 0..3600}.')
            self.sessions.interactive_ttl = float(ttl)  # for sessions created from now on
            return Response.empty()

        def backend_status(request: Request) -> Response:
            body = request.json()
            name = request.params["name"]
            if self.catalog.get(name) is None:
                raise HttpError(404, f"Backend {name} not found.")
            if not isinstance(body, dict) or not isinstance(body.get("operational"), bool):
                raise HttpError(400, 'The body must be {"operational": true|false, ...}.')
            self.catalog.set_operational(
                name, body["operational"], str(body.get("status_msg") or "maintenance")
            )
            return Response.empty()

        for method, pattern, handler in (
            ("GET", "/info", get_info),
            ("GET", "/faults", get_faults),
            ("PUT", "/faults", put_faults),
            ("POST", "/tokens/expire", expire_tokens),
            ("GET", "/requests", get_requests),
            ("DELETE", "/requests", clear_requests),
            ("GET", "/request-counts", get_request_counts),
            ("DELETE", "/request-counts", clear_request_counts),
            ("POST", "/queue/pause", pause),
            ("POST", "/queue/resume", resume),
            ("PUT", "/backends/{name}/status", backend_status),
            ("PUT", "/execution", execution),
            ("PUT", "/sessions", session_settings),
        ):
            self.router.add("admin", method, pattern, admin(handler))


def _cancel_expired(record: JobRecord) -> bool:
    if not cancel(record):
        return False
    record.reason = "Job cancelled: its session reached its maximum TTL"
    return True


def _strip(path: str, prefix: str) -> str:
    rest = path[len(prefix) :] if path.startswith(prefix) else path
    return rest or "/"
