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
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from runtime_gateway_local import programs
from runtime_gateway_local import sessions as session_states
from runtime_gateway_local.auth import Principal
from runtime_gateway_local.backends import TEST_DEVICES
from runtime_gateway_local.http import HttpError, Request, Response, Router
from runtime_gateway_local.jobs import (
    CANCELLED,
    COMPLETED,
    FAILED,
    FINAL_STATES,
    PENDING_STATES,
    QUEUED,
    RUNNING,
    JobRecord,
    cancel,
    new_id,
    now_iso,
    to_job_json,
    utc_timestamp,
)

if TYPE_CHECKING:
    from runtime_gateway_local.backends import BackendEntry
    from runtime_gateway_local.instances import CloudInstance
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
    cloud: CloudInstance | None = None  # the instance named by Service-CRN

    def sees_backend(self, name: str) -> bool:
        """Per-instance backend visibility: IBM allocates devices per instance; test devices
        belong to internal instances only (never to the ibm_quantum projects)."""
        if self.cloud is not None:
            return self.cloud.sees(name)
        return name not in TEST_DEVICES

    def sees(self, record: JobRecord) -> bool:
        if record.user_id != self.principal.user_id:
            return False
        if self.crn is not None:
            return record.instance == self.crn
        return record.instance in self.hgps


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


CODE_RAN_TOO_LONG = 1305  # IBM: cancelled for exceeding max_execution_time (`cost`)


def _cancel_ran_too_long(record: JobRecord) -> bool:
    """IBM's answer to a job past its max execution time: Cancelled, reason "Ran too long",
    code 1305 (the 0.51 SDK turns that into ERROR and RuntimeJobMaxTimeoutError; 0.21 reads
    the reason), with the error text under `/results` as the SDK fetches it."""
    if record.status != RUNNING:
        return False
    record.status = CANCELLED
    record.reason = "Ran too long"
    record.reason_code = CODE_RAN_TOO_LONG
    record.finished = now_iso()
    message = f"Job {record.id} ran longer than its maximum execution time of {record.cost} s."
    record.result = f"Traceback (most recent call last):\nJobRanTooLong: {message}\n"
    record.add_log(f"Job cancelled: {message}", "ERROR")
    return True


def _over_time(record: JobRecord, now: datetime) -> bool:
    # The local runtime has no QPU clock: time spent RUNNING (simulation plus the configured
    # job duration) stands in for the quantum time IBM compares with max_execution_time.
    if record.status != RUNNING or not record.cost or not record.running:
        return False
    return (now - utc_timestamp(record.running)).total_seconds() > record.cost


def _mark_result_read(record: JobRecord) -> None:
    record.result_read = True
    if record.status == COMPLETED:
        record.result = ""


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


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def add_routes(router: Router, rt: LocalRuntime) -> None:
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
            return Caller(principal, crn, (), api_version, rt.instances.by_crn[crn])
        if request.header("x-access-token") is None:
            raise HttpError(400, "The Service-CRN header is required.", "bad_request")
        provider = request.arg("provider")
        if provider is not None and provider not in rt.instances.hgps:
            raise HttpError(403, f"The hub/group/project {provider} is not accessible.")
        return Caller(principal, None, (provider,) if provider else rt.instances.hgps, api_version)

    def backend_or_404(name: str, who: Caller | None = None) -> BackendEntry:
        entry = rt.catalog.get(name)
        if entry is None or (who is not None and not who.sees_backend(name)):
            raise HttpError(404, f"Backend {name} not found.", "1007")
        return entry

    def calibration_or_404(entry: BackendEntry, request: Request) -> None:
        # IBM keeps every calibration by id; here only the snapshot's is known.
        wanted = request.arg("calibration_id")
        if wanted is not None and wanted != entry.calibration_id:
            raise HttpError(
                404, f"Calibration {wanted} not found for backend {entry.name}.", "1007"
            )

    def queue_length(name: str) -> int:
        return sum(1 for r in rt.store.all() if r.backend == name and r.status == QUEUED)

    def enforce_max_execution_time() -> None:
        """Cancels running jobs past their `cost`; done when jobs are read, which is when an
        SDK (polling every 0.5 s while waiting) could observe it. The runner then sees the job
        is no longer RUNNING and stops its simulation."""
        now = datetime.now(UTC)
        for record in rt.store.all():
            if _over_time(record, now):
                rt.store.update(record.id, _cancel_ran_too_long)

    def job_or_404(request: Request, who: Caller) -> JobRecord:
        enforce_max_execution_time()
        job_id = request.params["job_id"]
        record = rt.store.get(job_id)
        if record is None or not who.sees(record):
            raise HttpError(404, f"Job not found: {job_id}", "1291")
        return record

    # --- backends ------------------------------------------------------------------------
    def list_backends(request: Request) -> Response:
        who = caller(request)
        names = [n for n in rt.catalog.names() if who.sees_backend(n)]
        if not who.api_version:
            return Response.json({"devices": names})
        devices = [backend_or_404(n).list_entry(queue_length(n)) for n in names]
        return Response.json({"devices": devices})

    def configuration(request: Request) -> Response:
        entry = backend_or_404(request.params["name"], caller(request))
        calibration_or_404(entry, request)
        return Response(200, entry.configuration_json)

    def properties(request: Request) -> Response:
        entry = backend_or_404(request.params["name"], caller(request))
        calibration_or_404(entry, request)
        # `updated_before` (the SDK's `properties(datetime=...)`; `datetime` accepted too):
        # the calibration in force then. Before the snapshot's there was none here; IBM then
        # answers an empty document, which the SDK reads as "no properties".
        before = _time_arg(request, "updated_before") or _time_arg(request, "datetime")
        if before is not None and entry.calibrated_at is not None:
            if before < entry.calibrated_at:
                return Response.json({})
        # Simulators have no calibration: an empty document, which both SDKs read as "none"
        # (0.21's SamplerV2 asks for it through `backend.target`).
        return Response(200, entry.properties_json)

    def status(request: Request) -> Response:
        entry = backend_or_404(request.params["name"], caller(request))
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
        entry = backend_or_404(request.params["name"], caller(request))
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
        if program_id in programs.UNAVAILABLE_PROGRAMS:
            # IBM's answer for a program the instance may not run (403, code 1214).
            raise HttpError(
                403,
                f"You are not authorized to run program {program_id}.",
                str(programs.CODE_NOT_AUTHORIZED),
            )
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
            candidates = [rt.catalog.get(n) for n in rt.catalog.names() if who.sees_backend(n)]
            backend_name = min(
                (e for e in candidates if e is not None and e.operational and not e.simulator),
                key=lambda e: queue_length(e.name),
            ).name
        entry = rt.catalog.get(backend_name)
        if entry is None or not who.sees_backend(backend_name):
            raise HttpError(400, f"Backend {backend_name} not found.", "1007")
        calibration_id = body.get("calibration_id")
        if calibration_id is not None and calibration_id != entry.calibration_id:
            raise HttpError(
                400, f"Calibration {calibration_id} not found for backend {backend_name}.", "1007"
            )
        if not entry.operational:
            raise HttpError(400, f"Backend {backend_name} is not operational.", "1004")
        session_id = body.get("session_id")
        if session_id:
            rt.refresh_sessions()  # a session past its maximum TTL is closed now
            session = rt.sessions.get(str(session_id))
            if session is None or not _owns(who, session, instance):
                raise HttpError(404, f"Session not found: {session_id}", "1217")
            if session.backend_name and session.backend_name != backend_name:
                raise HttpError(
                    400,
                    f"The job's backend {backend_name} is not the session's backend "
                    f"{session.backend_name}.",
                )
            if not session.accepting_jobs:
                raise HttpError(
                    400,
                    f"Session {session_id} is closed and no longer accepting jobs.",
                    "1217",
                )
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
            calibration_id=calibration_id,
        )
        if body.get("start_session"):  # 0.21: the job starts a dedicated session of its id
            session_time: int = session_states.DEFAULT_MAX_TTL
            if _positive_int(body.get("session_time")):
                # Bounded as CreateSession's max_ttl: a session cannot hold a device for years.
                session_time = min(int(body["session_time"]), session_states.DEFAULT_MAX_TTL)
            rt.sessions.create(
                record.id,
                backend_name,
                session_states.DEDICATED,
                who.principal.user_id,
                instance,
                session_time,
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
        enforce_max_execution_time()
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
        ran_too_long = record.status == CANCELLED and record.reason_code == CODE_RAN_TOO_LONG
        if (record.status not in (COMPLETED, FAILED) and not ran_too_long) or record.result is None:
            raise HttpError(
                404, f"Results are not available for job {record.id} in state {record.status}."
            )
        text = record.result
        if record.private:
            # IBM hands a private job's results out once, then answers an empty body (the
            # SDK's `job.result()` is then None); the local copy is dropped with it.
            if record.result_read:
                return Response.text("")
            rt.store.update(record.id, _mark_result_read)
        if record.status != COMPLETED or who.api_version:
            return Response.text(text)
        return Response.text(programs.to_portable_result(text))

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
            if not isinstance(backend_name, str):
                raise HttpError(400, "backend must be a string.")
            backend_or_404(backend_name)
        mode = body.get("mode") or session_states.DEDICATED
        if mode not in session_states.MODES:
            raise HttpError(400, f"mode must be dedicated or batch, got {mode!r}.")
        # 0.51 and ibm_cloud send `max_ttl`, 0.21's ibm_quantum `max_session_ttl`.
        max_ttl = body.get("max_ttl", body.get("max_session_ttl"))
        if max_ttl is None:
            max_ttl = session_states.DEFAULT_MAX_TTL
        if not _positive_int(max_ttl) or max_ttl > session_states.DEFAULT_MAX_TTL:
            raise HttpError(
                400,
                f"max_ttl must be a whole number of seconds from 1 to "
                f"{session_states.DEFAULT_MAX_TTL}, got {max_ttl!r}.",
            )
        instance = who.crn
        if instance is None:
            instance = body.get("instance") or who.hgps[0]
            if instance not in who.hgps:
                raise HttpError(403, f"The hub/group/project {instance} is not accessible.")
        session = rt.sessions.create(
            new_id("s"), backend_name or "", mode, who.principal.user_id, instance, max_ttl
        )
        return Response.json(session.to_json())

    def session_or_404(request: Request) -> session_states.SessionRecord:
        who = caller(request)
        session_id = request.params["session_id"]
        session = rt.sessions.get(session_id)
        if session is None or not _owns(who, session, who.crn):
            raise HttpError(404, f"Session not found: {session_id}", "1217")
        return session

    def get_session(request: Request) -> Response:
        session = session_or_404(request)
        rt.refresh_sessions()
        return Response.json(session.to_json())

    def update_session(request: Request) -> Response:
        session = session_or_404(request)
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("accepting_jobs"), bool):
            raise HttpError(400, 'The body must be {"accepting_jobs": false}.')
        if body["accepting_jobs"] is False:  # close: queued jobs still run
            rt.sessions.close(session.id, rt.store.all())
            rt.runner.wake()
        elif session.closed:
            raise HttpError(409, f"Session {session.id} is closed.")
        return Response.empty()

    def close_session(request: Request) -> Response:
        """Cancel: closes at once and cancels the session's queued jobs (running ones end)."""
        session = session_or_404(request)
        rt.sessions.cancel(session.id)
        for record in rt.store.all():
            if record.session_id == session.id and record.status == QUEUED:
                rt.store.update(record.id, cancel)
        rt.runner.wake()
        return Response.empty()

    def usage(request: Request) -> Response:
        """IBM's `GET /instances/usage` (section 3.8 of the contract): null keys omitted."""
        who = caller(request)
        inst = rt.instances.by_crn.get(who.crn or "")
        if inst is None:
            raise HttpError(404, "Usage is reported for IBM Cloud instances only.")
        consumed = usage_consumed(inst.crn)
        now = datetime.now(UTC)
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = (start + timedelta(days=32)).replace(day=1) - timedelta(microseconds=1)
        limit = inst.usage_limit_seconds
        body: dict[str, Any] = {
            "instance_id": inst.crn,
            "plan_id": inst.plan_id,
            "usage_consumed_seconds": round(consumed),  # IBM reports whole seconds (an int)
            "usage_limit_reached": limit is not None and consumed >= limit,
            "usage_period": {
                "start_time": start.isoformat().replace("+00:00", "Z"),
                "end_time": end.isoformat().replace("+00:00", "Z"),
            },
        }
        # Omitted, not null, when absent: the SDK's usage() fails on a null next to a value.
        if limit is not None:
            body["usage_limit_seconds"] = limit
        allocation = getattr(inst, "usage_allocation_seconds", None)
        if allocation is not None:
            body["usage_allocation_seconds"] = allocation
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


def _owns(who: Any, session: session_states.SessionRecord, instance: str | None) -> bool:
    """A session is visible to its user within its instance only, as jobs are: a cloud call
    names its instance (CRN); an ibm_quantum call sees its hub/group/projects."""
    if session.user_id != who.principal.user_id:
        return False
    if who.crn is not None:
        return session.instance == who.crn
    return session.instance in (instance, *who.hgps) if instance else session.instance in who.hgps
