"""Routes of the runtime API (`/api/v1/...` for 0.51, `/runtime/...` or `/` for 0.21).

The dialect is chosen per request: with an `IBM-API-Version` header the 0.51 shapes
(`/backends` as objects, 0.51 result types), without it the 0.21 shapes.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from runtime_gateway_local import programs
from runtime_gateway_local.auth import Principal
from runtime_gateway_local.http import HttpError, Request, Response, Router
from runtime_gateway_local.jobs import (
    COMPLETED,
    FAILED,
    FINAL_STATES,
    PENDING_STATES,
    QUEUED,
    JobRecord,
    cancel,
    new_id,
    now_iso,
    to_job_json,
    utc_timestamp,
)

if TYPE_CHECKING:
    from runtime_gateway_local.backends import BackendEntry
    from runtime_gateway_local.runtime import LocalRuntime

DEFAULT_LIMIT = 200
MAX_LIMIT = 200
MAX_TAGS = 50
MAX_TAG_LENGTH = 255
LOG_LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}


@dataclass(frozen=True)
class Caller:
    principal: Principal
    crn: str | None  # cloud channels
    hgps: tuple[str, ...]  # ibm_quantum: the projects in scope
    api_version: bool  # sent IBM-API-Version: the 0.51 dialect

    def sees(self, record: JobRecord) -> bool:
        if record.user_id != self.principal.user_id:
            return False
        if self.crn is not None:
            return record.instance == self.crn
        return record.instance in self.hgps


@dataclass
class Session:
    id: str
    backend_name: str
    mode: str
    user_id: str
    instance: str
    max_ttl: int
    started_at: str
    state: str = "open"
    accepting_jobs: bool = True
    closed_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "backend_name": self.backend_name,
            "mode": self.mode,
            "state": self.state,
            "accepting_jobs": self.accepting_jobs,
            "interactive_ttl": 60,
            "max_ttl": self.max_ttl,
            "active_ttl": self.max_ttl,
            "started_at": self.started_at,
            "activated_at": self.started_at,
            "closed_at": self.closed_at,
            "last_job_started": None,
            "last_job_completed": None,
            "elapsed_time": 0,
            "timestamps": [],
        }


class RateLimiter:
    """IBM's job-creation limit: at most `per_minute` jobs per user in any 60 s window."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._lock = threading.Lock()
        self._times: dict[str, deque[float]] = defaultdict(deque)

    def check(self, user_id: str) -> None:
        if self.per_minute <= 0:
            return
        now = time.monotonic()
        with self._lock:
            times = self._times[user_id]
            while times and now - times[0] >= 60:
                times.popleft()
            if len(times) >= self.per_minute:
                retry_after = max(1, int(60 - (now - times[0])) + 1)
                raise HttpError(
                    429,
                    f"Rate limit exceeded: at most {self.per_minute} jobs per minute per user.",
                    "1204",
                    headers={"Retry-After": str(retry_after)},
                )
            times.append(now)


def _int_arg(request: Request, name: str, default: int, minimum: int, maximum: int) -> int:
    raw = request.arg(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HttpError(400, f"Query parameter {name} must be an integer, got {raw!r}.") from None
    if not minimum <= value <= maximum:
        raise HttpError(400, f"Query parameter {name} must be between {minimum} and {maximum}.")
    return value


def _bool_arg(request: Request, name: str) -> bool | None:
    raw = request.arg(name)
    if raw is None or raw == "":
        return None
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise HttpError(400, f"Query parameter {name} must be true or false, got {raw!r}.")


def _time_arg(request: Request, name: str) -> datetime | None:
    raw = request.arg(name)
    if not raw:
        return None
    try:
        return utc_timestamp(raw)
    except ValueError:
        raise HttpError(
            400, f"Query parameter {name} must be an ISO 8601 time, got {raw!r}."
        ) from None


def add_routes(router: Router, rt: LocalRuntime) -> None:
    sessions: dict[str, Session] = {}
    sessions_lock = threading.Lock()
    limiter = RateLimiter(rt.settings.job_rate_limit_per_minute)

    def caller(request: Request) -> Caller:
        principal = rt.authenticator.authenticate(request)
        api_version = request.header("ibm-api-version") is not None
        crn = request.header("service-crn")
        if crn is not None:
            if crn not in rt.instances.by_crn:
                raise HttpError(
                    403, f"The instance {crn} does not exist or is not accessible.", "forbidden"
                )
            return Caller(principal, crn, (), api_version)
        if request.header("x-access-token") is None:
            raise HttpError(400, "The Service-CRN header is required.", "bad_request")
        provider = request.arg("provider")
        if provider is not None and provider not in rt.instances.hgps:
            raise HttpError(403, f"The hub/group/project {provider} is not accessible.")
        return Caller(principal, None, (provider,) if provider else rt.instances.hgps, api_version)

    def backend_or_404(name: str) -> BackendEntry:
        entry = rt.catalog.get(name)
        if entry is None:
            raise HttpError(404, f"Backend {name} not found.", "1007")
        return entry

    def queue_length(name: str) -> int:
        return sum(1 for r in rt.store.all() if r.backend == name and r.status == QUEUED)

    def job_or_404(request: Request, who: Caller) -> JobRecord:
        job_id = request.params["job_id"]
        record = rt.store.get(job_id)
        if record is None or not who.sees(record):
            raise HttpError(404, f"Job not found: {job_id}", "1291")
        return record

    # --- backends ------------------------------------------------------------------------
    def list_backends(request: Request) -> Response:
        who = caller(request)
        names = rt.catalog.names()
        if not who.api_version:
            return Response.json({"devices": names})
        devices = []
        for name in names:
            entry = backend_or_404(name)
            config = entry.configuration
            devices.append(
                {
                    "name": name,
                    "status": {
                        "name": "online" if entry.operational else "offline",
                        "reason": "available" if entry.operational else entry.status_msg,
                    },
                    "qubits": entry.num_qubits,
                    "queue_length": queue_length(name),
                    "is_simulator": entry.simulator,
                    "processor_type": config.get("processor_type") or {},
                    "clops": {"type": "hpc", "value": (config.get("clops_h") or 0)},
                }
            )
        return Response.json({"devices": devices})

    def configuration(request: Request) -> Response:
        caller(request)
        return Response(200, backend_or_404(request.params["name"]).configuration_json)

    def properties(request: Request) -> Response:
        caller(request)
        entry = backend_or_404(request.params["name"])
        # Simulators have no calibration: an empty document, which both SDKs read as "none"
        # (0.21's SamplerV2 asks for it through `backend.target`).
        return Response(200, entry.properties_json)

    def status(request: Request) -> Response:
        caller(request)
        entry = backend_or_404(request.params["name"])
        return Response.json(
            {
                "backend_name": entry.name,
                "state": entry.operational,
                "status": entry.status_msg if entry.operational else "maintenance",
                "message": "available" if entry.operational else entry.status_msg,
                "length_queue": queue_length(entry.name),
                "backend_version": entry.configuration.get("backend_version", "0.0.0"),
            }
        )

    def defaults(request: Request) -> Response:
        caller(request)
        entry = backend_or_404(request.params["name"])
        raise HttpError(404, f"Pulse defaults are not available for {entry.name}.")

    router.add("runtime", "GET", "/backends", list_backends)
    router.add("runtime", "GET", "/backends/{name}/configuration", configuration)
    router.add("runtime", "GET", "/backends/{name}/properties", properties)
    router.add("runtime", "GET", "/backends/{name}/status", status)
    router.add("runtime", "GET", "/backends/{name}/defaults", defaults)

    # --- jobs ----------------------------------------------------------------------------
    def usage_consumed(crn: str) -> float:
        return sum(r.quantum_seconds for r in rt.store.all() if r.instance == crn)

    def create_job(request: Request) -> Response:
        who = caller(request)
        body = request.json()
        if not isinstance(body, dict):
            raise HttpError(400, "The request body must be a JSON object.")
        program_id = body.get("program_id")
        if not isinstance(program_id, str) or not program_id:
            raise HttpError(400, "program_id is required.", "1002")
        if program_id not in programs.SUPPORTED_PROGRAMS:
            raise HttpError(404, f"Program not found: {program_id}", "1000")
        params = body.get("params")
        if not isinstance(params, dict):
            raise HttpError(400, "params is required and must be a JSON object.", "1002")
        tags = body.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise HttpError(400, "tags must be a list of strings.", "1002")
        log_level = body.get("log_level")
        if log_level is not None and str(log_level).upper() not in LOG_LEVELS:
            raise HttpError(400, f"log_level {log_level!r} is not a valid log level.", "1002")
        cost = body.get("cost")
        if cost is not None and (not isinstance(cost, int) or isinstance(cost, bool) or cost <= 0):
            raise HttpError(400, "cost (max_execution_time) must be a positive integer.", "1002")
        instance = who.crn
        hgp = None
        if instance is None:
            hub, group, project = body.get("hub"), body.get("group"), body.get("project")
            hgp = f"{hub}/{group}/{project}" if hub else who.hgps[0]
            if hgp not in who.hgps:
                raise HttpError(403, f"The hub/group/project {hgp} is not accessible.")
            instance = hgp
        backend_name = body.get("backend")
        if not backend_name:
            candidates = [rt.catalog.get(n) for n in rt.catalog.names()]
            backend_name = min(
                (e for e in candidates if e is not None and e.operational and not e.simulator),
                key=lambda e: queue_length(e.name),
            ).name
        entry = rt.catalog.get(backend_name)
        if entry is None:
            raise HttpError(400, f"Backend {backend_name} not found.", "1007")
        if not entry.operational:
            raise HttpError(400, f"Backend {backend_name} is not operational.", "1004")
        session_id = body.get("session_id")
        if session_id:
            with sessions_lock:
                session = sessions.get(session_id)
            if session is None or session.user_id != who.principal.user_id:
                raise HttpError(404, f"Session not found: {session_id}", "1217")
            if not session.accepting_jobs:
                raise HttpError(400, f"Session {session_id} is closed.", "1217")
        inst = rt.instances.by_crn.get(instance)
        if inst is not None and inst.usage_limit_seconds is not None:
            if usage_consumed(instance) >= inst.usage_limit_seconds:
                raise HttpError(
                    409, "The instance has reached its usage limit for this period.", "1216"
                )
        params_text = json.dumps(params)
        try:
            prepared = programs.prepare(program_id, params_text, entry)
        except programs.InvalidParams as error:
            raise HttpError(400, str(error), str(programs.CODE_VALIDATION)) from None
        limiter.check(who.principal.user_id)
        record = JobRecord(
            id=new_id(),
            program_id=program_id,
            backend=backend_name,
            user_id=who.principal.user_id,
            instance=instance,
            params=params_text,
            created=now_iso(),
            tags=list(dict.fromkeys(tags)),
            session_id=session_id,
            private=bool(body.get("private", False)),
            cost=cost,
            log_level=str(log_level).upper() if log_level else None,
            runtime=str(body.get("runtime") or ""),
            num_circuits=prepared.num_circuits,
            num_qubits=prepared.num_qubits,
            hgp=hgp,
        )
        if body.get("start_session"):
            with sessions_lock:
                sessions[record.id] = Session(
                    id=record.id,
                    backend_name=backend_name,
                    mode="dedicated",
                    user_id=who.principal.user_id,
                    instance=instance,
                    max_ttl=int(body.get("session_time") or 28800),
                    started_at=record.created,
                )
            record.session_id = record.id
        record.add_log(f"Job {record.id} queued on {backend_name}")
        rt.store.add(record)
        rt.runner.submit(record.id)
        answer: dict[str, Any] = {"id": record.id, "backend": backend_name}
        if record.session_id:
            answer["session_id"] = record.session_id
        return Response.json(answer)

    def list_jobs(request: Request) -> Response:
        who = caller(request)
        limit = _int_arg(request, "limit", DEFAULT_LIMIT, 0, MAX_LIMIT) or DEFAULT_LIMIT
        offset = _int_arg(request, "offset", 0, 0, 10**9)
        pending = _bool_arg(request, "pending")
        exclude_params = _bool_arg(request, "exclude_params") or False
        program = request.arg("program")
        backend = request.arg("backend")
        session_id = request.arg("session_id")
        tags = request.args("tags")
        after = _time_arg(request, "created_after")
        before = _time_arg(request, "created_before")
        sort = (request.arg("sort") or "DESC").upper()
        if sort not in ("ASC", "DESC"):
            raise HttpError(400, f"Query parameter sort must be ASC or DESC, got {sort!r}.")
        matching = []
        for record in rt.store.all():
            if not who.sees(record):
                continue
            if pending is not None and (record.status in PENDING_STATES) != pending:
                continue
            if program and record.program_id != program:
                continue
            if backend and record.backend != backend:
                continue
            if session_id and record.session_id != session_id:
                continue
            if tags and not set(tags) <= set(record.tags):
                continue
            created = utc_timestamp(record.created)
            if after and created < after:
                continue
            if before and created > before:
                continue
            matching.append(record)
        matching.sort(key=lambda r: (r.created, r.id), reverse=sort == "DESC")
        page = matching[offset : offset + limit]
        return Response.json(
            {
                "jobs": [to_job_json(r, not exclude_params, who.api_version) for r in page],
                "count": len(matching),
                "offset": offset,
                "limit": limit,
            }
        )

    def get_job(request: Request) -> Response:
        who = caller(request)
        record = job_or_404(request, who)
        exclude = _bool_arg(request, "exclude_params") or False
        return Response.json(to_job_json(record, not exclude, who.api_version))

    def results(request: Request) -> Response:
        who = caller(request)
        record = job_or_404(request, who)
        if record.status not in (COMPLETED, FAILED) or record.result is None:
            raise HttpError(
                404, f"Results are not available for job {record.id} in state {record.status}."
            )
        if record.private:
            if record.result_read:
                raise HttpError(
                    404, f"The results of private job {record.id} have already been retrieved."
                )
            rt.store.update(record.id, lambda r: setattr(r, "result_read", True))
        if record.status == FAILED or who.api_version:
            return Response.text(record.result)
        return Response.text(programs.to_portable_result(record.result))

    def interim_results(request: Request) -> Response:
        job_or_404(request, caller(request))
        return Response.text("")  # the emulated programs publish no interim results

    def logs(request: Request) -> Response:
        record = job_or_404(request, caller(request))
        return Response.text(record.logs)

    def metrics(request: Request) -> Response:
        record = job_or_404(request, caller(request))
        queued = [
            r.id
            for r in sorted(rt.store.all(), key=lambda r: r.created)
            if r.backend == record.backend and r.status == QUEUED
        ]
        position = queued.index(record.id) + 1 if record.id in queued else None
        return Response.json(
            {
                "timestamps": {
                    "created": record.created,
                    "running": record.running,
                    "finished": record.finished,
                },
                "bss": {"seconds": record.quantum_seconds},
                "usage": {
                    "status": "final" if record.status in FINAL_STATES else "pending",
                    "quantum_seconds": record.quantum_seconds,
                    "seconds": record.quantum_seconds,
                    "qpu_charge_time_seconds": record.quantum_seconds,
                },
                "executions": record.num_circuits if record.status == COMPLETED else 0,
                "num_circuits": record.num_circuits,
                "num_qubits": record.num_qubits,
                "qiskit_version": rt.qiskit_version,
                "estimated_start_time": None,
                "estimated_completion_time": None,
                "position_in_queue": position,
                "position_in_provider": position,
            }
        )

    def replace_tags(request: Request) -> Response:
        record = job_or_404(request, caller(request))
        body = request.json()
        tags = body.get("tags") if isinstance(body, dict) else None
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise HttpError(400, "tags must be a list of strings.", "1206")
        if len(tags) > MAX_TAGS or any(len(t) > MAX_TAG_LENGTH or not t for t in tags):
            raise HttpError(
                400,
                f"At most {MAX_TAGS} tags of 1 to {MAX_TAG_LENGTH} characters are allowed.",
                "1206",
            )
        rt.store.update(record.id, lambda r: setattr(r, "tags", list(dict.fromkeys(tags))))
        return Response.empty()

    def cancel_job(request: Request) -> Response:
        record = job_or_404(request, caller(request))
        outcome: list[bool] = []

        def attempt(r: JobRecord) -> bool:
            outcome.append(cancel(r))
            return outcome[-1]

        rt.store.update(record.id, attempt)
        if not (outcome and outcome[0]):
            raise HttpError(
                409, f"Job {record.id} is in a final state and cannot be cancelled.", "1213"
            )
        return Response.empty()

    def delete_job(request: Request) -> Response:
        record = job_or_404(request, caller(request))
        if record.status not in FINAL_STATES:
            raise HttpError(
                409, f"Job {record.id} must be in a terminal state to be deleted.", "1214"
            )
        rt.store.delete(record.id)
        return Response.empty()

    router.add("runtime", "POST", "/jobs", create_job)
    router.add("runtime", "GET", "/jobs", list_jobs)
    router.add("runtime", "GET", "/jobs/{job_id}", get_job)
    router.add("runtime", "DELETE", "/jobs/{job_id}", delete_job)
    router.add("runtime", "GET", "/jobs/{job_id}/results", results)
    router.add("runtime", "GET", "/jobs/{job_id}/interim_results", interim_results)
    router.add("runtime", "GET", "/jobs/{job_id}/logs", logs)
    router.add("runtime", "GET", "/jobs/{job_id}/metrics", metrics)
    router.add("runtime", "PUT", "/jobs/{job_id}/tags", replace_tags)
    router.add("runtime", "POST", "/jobs/{job_id}/cancel", cancel_job)

    # --- sessions, usage -----------------------------------------------------------------
    def create_session(request: Request) -> Response:
        who = caller(request)
        body = request.json()
        if not isinstance(body, dict):
            raise HttpError(400, "The request body must be a JSON object.")
        backend_name = body.get("backend")
        if backend_name is not None:
            backend_or_404(backend_name)
        mode = body.get("mode") or "dedicated"
        if mode not in ("dedicated", "batch"):
            raise HttpError(400, f"mode must be dedicated or batch, got {mode!r}.")
        max_ttl = body.get("max_ttl") or body.get("max_session_ttl") or 28800
        session = Session(
            id=new_id("s"),
            backend_name=backend_name or "",
            mode=mode,
            user_id=who.principal.user_id,
            instance=who.crn or body.get("instance") or who.hgps[0],
            max_ttl=int(max_ttl),
            started_at=now_iso(),
        )
        with sessions_lock:
            sessions[session.id] = session
        return Response.json(session.to_json())

    def session_or_404(request: Request) -> Session:
        who = caller(request)
        with sessions_lock:
            session = sessions.get(request.params["session_id"])
        if session is None or session.user_id != who.principal.user_id:
            raise HttpError(404, f"Session not found: {request.params['session_id']}", "1217")
        return session

    def get_session(request: Request) -> Response:
        return Response.json(session_or_404(request).to_json())

    def update_session(request: Request) -> Response:
        session = session_or_404(request)
        body = request.json()
        if isinstance(body, dict) and body.get("accepting_jobs") is False:
            session.accepting_jobs = False
        return Response.empty()

    def close_session(request: Request) -> Response:
        session = session_or_404(request)
        session.accepting_jobs = False
        session.state = "closed"
        session.closed_at = now_iso()
        for record in rt.store.all():
            if record.session_id == session.id and record.status == QUEUED:
                rt.store.update(record.id, cancel)
        return Response.empty()

    def usage(request: Request) -> Response:
        who = caller(request)
        inst = rt.instances.by_crn.get(who.crn or "")
        if inst is None:
            raise HttpError(404, "Usage is reported for IBM Cloud instances only.")
        consumed = usage_consumed(inst.crn)
        now = datetime.now(UTC)
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        body: dict[str, Any] = {
            "instance_id": inst.crn,
            "plan_id": inst.plan_id,
            "usage_consumed_seconds": consumed,
            "usage_limit_reached": inst.usage_limit_seconds is not None
            and consumed >= inst.usage_limit_seconds,
            "usage_period": {"start_time": start.isoformat(), "end_time": None},
        }
        if inst.usage_limit_seconds is not None:  # omitted, not null, when unlimited
            body["usage_limit_seconds"] = inst.usage_limit_seconds
        return Response.json(body)

    def qctrl_instance(request: Request) -> Response:
        caller(request)
        return Response.json({"qctrl_enabled": False})

    router.add("runtime", "POST", "/sessions", create_session)
    router.add("runtime", "GET", "/sessions/{session_id}", get_session)
    router.add("runtime", "PATCH", "/sessions/{session_id}", update_session)
    router.add("runtime", "DELETE", "/sessions/{session_id}/close", close_session)
    router.add("runtime", "GET", "/instances/usage", usage)
    router.add("runtime", "GET", "/instance", qctrl_instance)
