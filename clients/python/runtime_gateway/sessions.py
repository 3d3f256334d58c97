"""`Session` and `Batch`: qiskit-ibm-runtime's execution modes over the gateway's SessionService.

The upstream session is created through the gateway (`CreateSession`); every job a primitive
runs in the mode carries its id, so it joins the session. No Qiskit import here: a mode only
needs a backend name (a backend object or a string) and the service.
"""

from __future__ import annotations

import contextvars
import json
import re
from types import TracebackType
from typing import TYPE_CHECKING, Any

from runtime_gateway.exceptions import IBMInputValueError, IBMRuntimeError

if TYPE_CHECKING:
    from runtime_gateway.service import QiskitRuntimeService, RuntimeJob

# The mode opened by `with Session(...)`/`with Batch(...)`: primitives made with mode=None
# inside the block run in it, as in the SDK.
_ACTIVE: contextvars.ContextVar[Session | None] = contextvars.ContextVar(
    "runtime_gateway_session", default=None
)

_STATE_NAMES = {0: None, 1: "open", 2: "active", 3: "inactive", 4: "closed"}


def active_mode() -> Session | None:
    return _ACTIVE.get()


def _seconds(max_time: int | str | None) -> int | None:
    """`max_time` as seconds: an int, or the SDK's '1h 30m 15s' form."""
    if max_time is None:
        return None
    if isinstance(max_time, bool) or not isinstance(max_time, (int, str)):
        raise IBMInputValueError(f"max_time must be an int or a string like '1h 30m': {max_time!r}")
    if isinstance(max_time, int):
        if max_time <= 0:
            raise IBMInputValueError("max_time must be a positive number of seconds.")
        return max_time
    parts = re.fullmatch(r"\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?\s*", max_time)
    if not parts or not any(parts.groups()):
        raise IBMInputValueError(f"Invalid max_time value: {max_time!r} (e.g. '1h 30m 15s').")
    hours, minutes, seconds = (int(g or 0) for g in parts.groups())
    return hours * 3600 + minutes * 60 + seconds


class Session:
    """A dedicated session on one backend (the SDK's `Session`): a context manager that closes
    the session on exit. `max_time` is seconds or '1h 30m'."""

    _mode_number = 1  # SESSION_MODE_DEDICATED
    _mode_name = "dedicated"

    def __init__(
        self,
        backend: Any,
        max_time: int | str | None = None,
        *,
        create_new: bool | None = True,
    ) -> None:
        service = getattr(backend, "service", None)
        if service is None or not hasattr(service, "_gateway"):
            raise ValueError(
                "backend must be a backend of runtime_gateway.QiskitRuntimeService "
                "(e.g. service.backend('ibm_brisbane'))."
            )
        self._service: QiskitRuntimeService = service
        self._backend = backend
        self._max_time = _seconds(max_time)
        self._session_id: str | None = None
        self._active = True
        self._token: contextvars.Token[Session | None] | None = None
        self._session: Any = None
        if create_new:
            self._create()

    def _create(self) -> None:
        from runtime_gateway.service import _api

        api = _api()
        request = api.sessions_pb2.CreateSessionRequest(
            backend=self._backend.name, mode=self._mode_number
        )
        if self._max_time is not None:
            request.max_ttl.seconds = self._max_time
        gateway = self._service._gateway
        reply = gateway.call(gateway.sessions.CreateSession, request, IBMInputValueError)
        self._session = reply.session
        self._session_id = reply.session.id

    # --- the SDK's surface ------------------------------------------------------------------
    @property
    def session_id(self) -> str | None:
        return self._session_id

    @property
    def service(self) -> QiskitRuntimeService:
        return self._service

    def backend(self) -> str | None:
        """The backend's name, as the SDK's `Session.backend()`."""
        return str(self._backend.name) if self._backend is not None else None

    def _get(self) -> Any:
        from runtime_gateway.service import _api

        gateway = self._service._gateway
        reply = gateway.call(
            gateway.sessions.GetSession,
            _api().sessions_pb2.GetSessionRequest(session_id=self._session_id or ""),
        )
        self._session = reply.session
        return reply.session

    def details(self) -> dict[str, Any] | None:
        """The session's details, with the SDK's keys (id, backend_name, interactive_timeout,
        max_time, active_timeout, state, accepting_jobs, last_job_started, last_job_completed,
        started_at, closed_at, activated_at, mode, usage_time)."""
        if not self._session_id:
            return None
        session = self._get()
        raw: dict[str, Any] = json.loads(session.raw_json) if session.raw_json else {}

        def stamp(field: str) -> str | None:
            return (
                session.__getattribute__(field).ToJsonString() if session.HasField(field) else None
            )

        return {
            "id": session.id,
            "backend_name": raw.get("backend_name", session.backend),
            "interactive_timeout": raw.get("interactive_ttl", session.interactive_ttl.seconds),
            "max_time": raw.get("max_ttl", session.max_ttl.seconds),
            "active_timeout": raw.get("active_ttl", session.active_ttl.seconds),
            "state": raw.get("state", _STATE_NAMES.get(session.state)),
            "accepting_jobs": raw.get("accepting_jobs", session.accepting_jobs),
            "last_job_started": raw.get("last_job_started", stamp("last_job_start_time")),
            "last_job_completed": raw.get("last_job_completed", stamp("last_job_complete_time")),
            "started_at": raw.get("started_at", stamp("start_time")),
            "closed_at": raw.get("closed_at", stamp("close_time")),
            "activated_at": raw.get("activated_at", stamp("activate_time")),
            "mode": raw.get("mode", self._mode_name),
            "usage_time": raw.get("elapsed_time", session.usage_seconds),
        }

    def status(self) -> str | None:
        """'Pending', 'In progress, accepting new jobs', 'In progress, not accepting new jobs'
        or 'Closed' (the SDK's strings); None without details."""
        details = self.details()
        if not details:
            return None
        state, accepting = details["state"], details["accepting_jobs"]
        if state in ("open", "inactive"):
            return "Pending"
        if (state == "active" and accepting) or state == "pending_inactive":
            return "In progress, accepting new jobs"
        if (state == "active" and not accepting) or state == "pending_closed":
            return "In progress, not accepting new jobs"
        return str(state).capitalize()

    def usage(self) -> float | None:
        """Seconds of usage so far (the SDK's `elapsed_time`)."""
        if not self._session_id:
            return None
        session = self._get()
        raw = json.loads(session.raw_json) if session.raw_json else {}
        value = raw.get("elapsed_time", session.usage_seconds)
        return None if value is None else float(value)

    def close(self) -> None:
        """Stops the session accepting new jobs; queued and running jobs finish."""
        self._active = False
        if self._session_id:
            from runtime_gateway.service import _api

            gateway = self._service._gateway
            gateway.call(
                gateway.sessions.CloseSession,
                _api().sessions_pb2.CloseSessionRequest(session_id=self._session_id),
            )

    def cancel(self) -> None:
        """Closes the session and cancels its queued jobs."""
        self._active = False
        if self._session_id:
            from runtime_gateway.service import _api

            gateway = self._service._gateway
            gateway.call(
                gateway.sessions.CancelSession,
                _api().sessions_pb2.CancelSessionRequest(session_id=self._session_id),
            )

    @classmethod
    def from_id(cls, session_id: str, service: QiskitRuntimeService) -> Session:
        """The session `session_id` (of the same kind: a batch comes back as a Batch)."""
        from runtime_gateway.service import _api

        gateway = service._gateway
        reply = gateway.call(
            gateway.sessions.GetSession,
            _api().sessions_pb2.GetSessionRequest(session_id=session_id),
        )
        kind: type[Session] = Batch if reply.session.mode == Batch._mode_number else Session
        if cls is Batch:
            kind = Batch
        backend = service.backend(reply.session.backend) if reply.session.backend else None
        mode = kind.__new__(kind)
        mode._service = service
        mode._backend = backend
        mode._max_time = reply.session.max_ttl.seconds or None
        mode._session_id = reply.session.id
        mode._active = reply.session.state != 4
        mode._token = None
        mode._session = reply.session
        return mode

    # --- running jobs in the mode -----------------------------------------------------------
    def _run(
        self,
        program_id: str,
        inputs: dict[str, Any],
        options: dict[str, Any] | None = None,
        result_decoder: Any = None,
        calibration_id: str | None = None,
        dry_run: bool = False,
    ) -> RuntimeJob:
        """Runs a job in this session (what the primitives call)."""
        if not self._active:
            raise IBMRuntimeError("The session is closed.")
        options = dict(options or {})
        options["backend"] = self._backend
        return self._service._run(
            program_id,
            inputs,
            options,
            result_decoder=result_decoder,
            session_id=self._session_id,
            start_session=False,
            calibration_id=calibration_id,
            dry_run=dry_run,
        )

    def __enter__(self) -> Session:
        self._token = _ACTIVE.set(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._token is not None:
            _ACTIVE.reset(self._token)
            self._token = None
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__}('{self._session_id}', backend='{self.backend()}')>"


class Batch(Session):
    """A batch of jobs on one backend (the SDK's `Batch`): jobs may run in parallel."""

    _mode_number = 2  # SESSION_MODE_BATCH
    _mode_name = "batch"
