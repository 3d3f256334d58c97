"""Sessions and batches of the local runtime (IBM's execution modes), persisted like jobs.

States follow IBM's `GET /sessions/{id}`:
- `open`: created; none of its jobs has started yet.
- `active`: a job of the session runs, or its last job finished less than the interactive TTL
  ago. A *dedicated* session (mode `dedicated`) holds its backend while active: other jobs on
  that backend wait (see `holder`), so the session's jobs run back to back. A batch does not.
- `inactive`: no job of the session ran within the interactive TTL; the backend is free. A new
  job re-activates the session when it starts.
- `closed` (terminal): closed by the user once its queued jobs ran (PATCH accepting_jobs=false),
  cancelled (DELETE /sessions/{id}/close, queued jobs cancelled), or past its maximum TTL,
  counted from its first job's start like IBM (queued jobs cancelled).

Times are wall-clock ISO strings, so a restart with `--data-dir` keeps counting.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from runtime_gateway_local.jobs import (
    COMPLETED,
    FAILED,
    PENDING_STATES,
    QUEUED,
    RUNNING,
    JobRecord,
    now_iso,
    utc_timestamp,
)
from runtime_gateway_local.records import load_records, save_record

log = structlog.get_logger("runtime_gateway_local.sessions")

OPEN, ACTIVE, INACTIVE, CLOSED = "open", "active", "inactive", "closed"
DEDICATED, BATCH = "dedicated", "batch"
MODES = (DEDICATED, BATCH)
DEFAULT_MAX_TTL = 28800  # IBM: 8 hours
DEFAULT_INTERACTIVE_TTL = 60.0  # IBM: 60 s between a session's jobs
REASON_MAX_TTL = "The session reached its maximum TTL."
REASON_CLOSED = "The session was closed by the user."
REASON_CANCELLED = "The session was cancelled by the user."


@dataclass
class SessionRecord:
    id: str
    backend_name: str
    mode: str
    user_id: str
    instance: str
    max_ttl: int  # seconds, from the first job's start
    interactive_ttl: float  # seconds
    started_at: str
    state: str = OPEN
    state_reason: str | None = None
    accepting_jobs: bool = True
    activated_at: str | None = None
    closed_at: str | None = None
    last_job_started: str | None = None
    last_job_completed: str | None = None
    elapsed_time: float = 0.0  # seconds; frozen when the session closes
    timestamps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def closed(self) -> bool:
        return self.state == CLOSED

    def to_json(self) -> dict[str, Any]:
        """The session as IBM's `GET /sessions/{id}` returns it."""
        now = datetime.now(UTC)
        active_ttl = self.max_ttl
        if self.activated_at and not self.closed:
            used = (now - utc_timestamp(self.activated_at)).total_seconds()
            active_ttl = max(0, int(self.max_ttl - used))
        elif self.closed:
            active_ttl = 0
        return {
            "id": self.id,
            "backend_name": self.backend_name,
            "mode": self.mode,
            "state": self.state,
            "state_reason": self.state_reason,
            "accepting_jobs": self.accepting_jobs,
            "interactive_ttl": int(self.interactive_ttl),
            "max_ttl": self.max_ttl,
            "active_ttl": active_ttl,
            "started_at": self.started_at,
            "activated_at": self.activated_at,
            "closed_at": self.closed_at,
            "last_job_started": self.last_job_started,
            "last_job_completed": self.last_job_completed,
            "elapsed_time": round(self.elapsed_time, 3),
            "user_id": self.user_id,
            "timestamps": list(self.timestamps),
        }


def _seconds_between(start: str, end: datetime) -> float:
    return max(0.0, (end - utc_timestamp(start)).total_seconds())


class SessionStore:
    """Thread-safe sessions, optionally persisted to `data_dir/sessions/<id>.json`.

    `refresh` moves sessions along their states from the jobs' records and the clock; the
    job scheduler calls it before it picks a job, and every read calls it first."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        interactive_ttl: float = DEFAULT_INTERACTIVE_TTL,
    ) -> None:
        self.interactive_ttl = interactive_ttl
        self._lock = threading.RLock()
        self._sessions: dict[str, SessionRecord] = {}
        self._dir = Path(data_dir, "sessions") if data_dir else None
        if self._dir is not None:
            for record in load_records(self._dir, SessionRecord, "session"):
                self._sessions[record.id] = record

    def create(
        self, session_id: str, backend: str, mode: str, user_id: str, instance: str, max_ttl: int
    ) -> SessionRecord:
        record = SessionRecord(
            id=session_id,
            backend_name=backend,
            mode=mode,
            user_id=user_id,
            instance=instance,
            max_ttl=max_ttl,
            interactive_ttl=self.interactive_ttl,
            started_at=now_iso(),
        )
        with self._lock:
            self._sessions[record.id] = record
            self._save(record)
        return record

    def get(self, session_id: str) -> SessionRecord | None:
        with self._lock:
            return self._sessions.get(session_id)

    def close(self, session_id: str, jobs: Iterable[JobRecord]) -> None:
        """Stops accepting jobs; the session closes once its queued and running jobs ended."""
        with self._lock:
            record = self._sessions.get(session_id)
            if record is None or record.closed:
                return
            record.accepting_jobs = False
            self._save(record)
        self.refresh(jobs)

    def cancel(self, session_id: str) -> None:
        """Closes at once (its queued jobs are the caller's to cancel; running ones finish)."""
        with self._lock:
            record = self._sessions.get(session_id)
            if record is None or record.closed:
                return
            self._close(record, REASON_CANCELLED, datetime.now(UTC))
            self._save(record)

    def holder(self, backend: str) -> str | None:
        """The dedicated session that holds `backend` now (call `refresh` first), if any."""
        with self._lock:
            for record in self._sessions.values():
                if (
                    record.mode == DEDICATED
                    and record.state == ACTIVE
                    and record.backend_name == backend
                ):
                    return record.id
        return None

    def refresh(self, jobs: Iterable[JobRecord]) -> list[str]:
        """Moves every open session along its states; returns the ids of queued jobs to cancel
        (those of sessions that reached their maximum TTL)."""
        by_session: dict[str, list[JobRecord]] = {}
        for job in jobs:
            if job.session_id:
                by_session.setdefault(job.session_id, []).append(job)
        now = datetime.now(UTC)
        cancel: list[str] = []
        with self._lock:
            for record in self._sessions.values():
                if record.closed:
                    continue
                before = asdict(record)
                cancel += self._advance(record, by_session.get(record.id, []), now)
                if asdict(record) != before:
                    self._save(record)
        return cancel

    def _advance(self, record: SessionRecord, jobs: list[JobRecord], now: datetime) -> list[str]:
        started = [j.running for j in jobs if j.running]
        completed = [j.finished for j in jobs if j.finished and j.status in (COMPLETED, FAILED)]
        if started:
            if record.activated_at is None:
                record.activated_at = min(started)
            record.last_job_started = max(started)
        if completed:
            record.last_job_completed = max(completed)
        pending = [j for j in jobs if j.status in PENDING_STATES]
        running = any(j.status == RUNNING for j in pending)
        if record.activated_at and _seconds_between(record.activated_at, now) >= record.max_ttl:
            self._close(record, REASON_MAX_TTL, now, jobs)
            return [j.id for j in pending if j.status == QUEUED]
        if not record.accepting_jobs and not pending:
            self._close(record, REASON_CLOSED, now, jobs)
            return []
        if record.activated_at is None:
            record.state = OPEN
        elif running:
            record.state = ACTIVE
        else:
            last = max(
                filter(None, (record.last_job_completed, record.last_job_started)), default=None
            )
            idle = _seconds_between(last, now) if last else record.interactive_ttl
            record.state = ACTIVE if idle < record.interactive_ttl else INACTIVE
        record.elapsed_time = self._elapsed(record, jobs, now)
        return []

    def _close(
        self,
        record: SessionRecord,
        reason: str,
        now: datetime,
        jobs: list[JobRecord] | None = None,
    ) -> None:
        if jobs is not None:
            record.elapsed_time = self._elapsed(record, jobs, now)
        record.state = CLOSED
        record.state_reason = reason
        record.accepting_jobs = False
        record.closed_at = now.isoformat(timespec="microseconds").replace("+00:00", "Z")

    @staticmethod
    def _elapsed(record: SessionRecord, jobs: list[JobRecord], now: datetime) -> float:
        """IBM's `elapsed_time`: a batch's jobs' quantum time; a dedicated session's time
        from its first job's start to its last activity (now, while a job runs)."""
        if record.mode == BATCH:
            return float(sum(j.quantum_seconds for j in jobs))
        if record.activated_at is None:
            return 0.0
        if any(j.status == RUNNING for j in jobs):
            end = now
        else:
            last = max(filter(None, (record.last_job_completed, record.last_job_started)))
            end = utc_timestamp(last)
        return min(float(record.max_ttl), _seconds_between(record.activated_at, end))

    def _save(self, record: SessionRecord) -> None:
        if self._dir is not None:
            save_record(self._dir, record.id, record)
