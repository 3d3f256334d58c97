"""Jobs of the local runtime: records, persistence, and the queue that runs them.

States follow IBM's `state.status`: Queued → Running → Completed | Failed | Cancelled.
With a data directory, every change is written atomically (one JSON file per job), and a
restart re-queues jobs that had not finished.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import string
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from runtime_gateway_local.execution import JobAborted, JobFailure
from runtime_gateway_local.records import load_records, save_record

log = structlog.get_logger("runtime_gateway_local.jobs")

QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED = (
    "Queued", "Running", "Completed", "Failed", "Cancelled",
)  # fmt: skip
PENDING_STATES = (QUEUED, RUNNING)
FINAL_STATES = (COMPLETED, FAILED, CANCELLED)
_ID_ALPHABET = string.ascii_lowercase + string.digits


def new_id(prefix: str = "d") -> str:
    """A job or session id shaped like IBM's: 20 lower-case letters and digits."""
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(19))


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class JobRecord:
    id: str
    program_id: str
    backend: str
    user_id: str
    instance: str  # CRN or hub/group/project
    params: str  # the inputs exactly as submitted (JSON text)
    created: str
    status: str = QUEUED
    reason: str | None = None
    reason_code: int | None = None
    tags: list[str] = field(default_factory=list)
    session_id: str | None = None
    private: bool = False
    cost: int | None = None
    log_level: str | None = None
    runtime: str = ""
    running: str | None = None
    finished: str | None = None
    result: str | None = None  # encoded result (0.51 form), or the failure text
    result_read: bool = False  # private jobs' results can be read once
    logs: str = ""
    quantum_seconds: float = 0.0
    num_circuits: int = 0
    num_qubits: list[int] = field(default_factory=list)
    hgp: str | None = None  # hub/group/project for the ibm_quantum channel
    calibration_id: str | None = None  # the calibration the job was asked to run with

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATES

    def add_log(self, message: str, level: str = "INFO") -> None:
        self.logs += f"{now_iso()} {level}: {message}\n"


class JobStore:
    """Thread-safe job records, optionally persisted to `data_dir/jobs/<id>.json`."""

    def __init__(self, data_dir: str | os.PathLike[str] | None = None) -> None:
        self._lock = threading.RLock()
        self._jobs: dict[str, JobRecord] = {}
        self._dir = Path(data_dir, "jobs") if data_dir else None
        if self._dir is not None:
            for record in load_records(self._dir, JobRecord, "job"):
                self._jobs[record.id] = record

    def add(self, record: JobRecord) -> None:
        with self._lock:
            self._jobs[record.id] = record
            self._save(record)

    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            return self._jobs.get(job_id)

    def update(self, job_id: str, change: Callable[[JobRecord], bool | None]) -> JobRecord | None:
        """Applies `change` under the lock and persists; `change` returning False skips saving."""
        with self._lock:
            record = self._jobs.get(job_id)
            if record is None:
                return None
            if change(record) is not False:
                self._save(record)
            return record

    def delete(self, job_id: str) -> bool:
        with self._lock:
            record = self._jobs.pop(job_id, None)
            if record is not None and self._dir is not None:
                (self._dir / f"{job_id}.json").unlink(missing_ok=True)
            return record is not None

    def all(self) -> list[JobRecord]:
        with self._lock:
            return list(self._jobs.values())

    def __iter__(self) -> Iterator[JobRecord]:
        return iter(self.all())

    def _save(self, record: JobRecord) -> None:
        if self._dir is not None:
            save_record(self._dir, record.id, record)


# (record, runner thread index, aborted) -> (result, seconds, log lines). `aborted()` turns
# true when the job was cancelled or deleted while running, or the runner stops; the executor
# then stops the job's work and raises JobAborted. JobFailure fails the job with IBM's reason.
Executor = Callable[[JobRecord, int, Callable[[], bool]], tuple[str, float, list[str]]]


# Whether a queued job may start now (besides its device being free): the sessions' say
# (a dedicated session holding the device lets only its own jobs start).
Admit = Callable[[JobRecord], bool]
SCHEDULE_POLL_SECONDS = 0.1  # how often waiting runners look again (TTLs expire by the clock)


class JobRunner:
    """Runs queued jobs on `workers` threads; `execute` returns (result, seconds, log lines).

    The scheduler: jobs start in submission order, except that a device (`exclusive(backend)`
    is true for anything but a simulator) runs one job at a time, like the real one, and
    `admit` may hold a job back (sessions). A job that cannot start yet does not block the
    jobs behind it on other backends."""

    def __init__(
        self,
        store: JobStore,
        execute: Executor,
        workers: int = 2,
        *,
        exclusive: Callable[[str], bool] = lambda backend: True,
        admit: Admit | None = None,
        before_pick: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._execute = execute
        self._exclusive = exclusive
        self._admit = admit
        self._before_pick = before_pick
        self._pending: list[str] = []  # queued job ids, in submission order
        self._busy: dict[str, int] = {}  # backend -> jobs running on it
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self.workers = max(1, workers)
        self._threads = [
            threading.Thread(
                target=self._work, args=(i,), name=f"local-runtime-worker-{i}", daemon=True
            )
            for i in range(self.workers)
        ]
        self.paused = threading.Event()  # set: workers take no new job (tests hold jobs QUEUED)

    def start(self) -> None:
        for record in sorted(self._store.all(), key=lambda r: r.created):
            if record.status in PENDING_STATES:  # interrupted by a restart: run again
                self._store.update(record.id, _requeue)
                self._pending.append(record.id)
        for thread in self._threads:
            thread.start()

    def submit(self, job_id: str) -> None:
        with self._cond:
            self._pending.append(job_id)
            self._cond.notify_all()

    def wake(self) -> None:
        """Look at the queue again now (a session closed, a setting changed)."""
        with self._cond:
            self._cond.notify_all()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def running_on(self, backend: str) -> int:
        with self._cond:
            return self._busy.get(backend, 0)

    def aborted(self, job_id: str) -> bool:
        """True when a running job's work should stop: it is no longer RUNNING (cancelled,
        deleted) or the runner stops (the job stays RUNNING and is re-queued on restart)."""
        if self._stopping.is_set():
            return True
        record = self._store.get(job_id)
        return record is None or record.status != RUNNING

    def stop(self) -> None:
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(10)

    def _pick(self) -> JobRecord | None:
        """The first queued job that may start now, marked RUNNING; None if there is none.
        Called with the condition held."""
        if self._before_pick is not None:
            self._before_pick()
        for job_id in list(self._pending):
            record = self._store.get(job_id)
            if record is None or record.status != QUEUED:  # cancelled or deleted while queued
                self._pending.remove(job_id)
                continue
            if self._exclusive(record.backend) and self._busy.get(record.backend, 0):
                continue
            if self._admit is not None and not self._admit(record):
                continue
            self._pending.remove(job_id)
            started = self._store.update(job_id, _start)
            if started is None or started.status != RUNNING:
                continue
            self._busy[record.backend] = self._busy.get(record.backend, 0) + 1
            return started
        return None

    def _next(self) -> JobRecord | None:
        with self._cond:
            while not self._stopping.is_set():
                if not self.paused.is_set():
                    record = self._pick()
                    if record is not None:
                        return record
                self._cond.wait(SCHEDULE_POLL_SECONDS)
        return None

    def _work(self, index: int) -> None:
        while not self._stopping.is_set():
            record = self._next()
            if record is None:
                return
            try:
                self._run(index, record)
            finally:
                with self._cond:
                    self._busy[record.backend] -= 1
                    self._cond.notify_all()

    def _run(self, index: int, record: JobRecord) -> None:
        job_id = record.id
        try:
            result, seconds, lines = self._execute(
                record, index, functools.partial(self.aborted, job_id)
            )
        except JobAborted:
            log.info("job_aborted", job_id=job_id)
            return
        except JobFailure as failure:
            log.info("job_failed", job_id=job_id, error=str(failure), code=failure.code)
            self._store.update(
                job_id,
                functools.partial(
                    _fail, message=str(failure), reason=failure.reason, code=failure.code
                ),
            )
            return
        except Exception as error:
            if self._stopping.is_set():  # torn down mid-run: re-queued on restart
                log.info("job_aborted", job_id=job_id, error=str(error))
                return
            message = str(error) or type(error).__name__
            log.info("job_failed", job_id=job_id, error=message)
            self._store.update(
                job_id,
                functools.partial(
                    _fail,
                    message=message,
                    reason=f"Error running the program: {message}",
                    code=1000,
                    kind=type(error).__name__,
                ),
            )
            return
        self._store.update(
            job_id, functools.partial(_complete, result=result, seconds=seconds, lines=lines)
        )


def _requeue(record: JobRecord) -> None:
    record.status = QUEUED
    record.running = None
    record.add_log("Job re-queued after a restart of the local runtime")


def _start(record: JobRecord) -> bool:
    if record.status != QUEUED:
        return False
    record.status = RUNNING
    record.running = now_iso()
    record.add_log(f"Job started on {record.backend}")
    return True


def _complete(record: JobRecord, result: str, seconds: float, lines: list[str]) -> bool:
    if record.status != RUNNING:  # cancelled while running: the result is discarded
        return False
    for line in lines:
        record.add_log(line)
    record.status = COMPLETED
    record.finished = now_iso()
    record.result = result
    record.quantum_seconds = seconds
    return True


def _fail(record: JobRecord, message: str, reason: str, code: int, kind: str = "JobError") -> bool:
    if record.status != RUNNING:
        return False
    record.add_log(f"Job failed: {message}", "ERROR")
    record.status = FAILED
    record.reason = reason
    record.reason_code = code
    record.finished = now_iso()
    record.result = f"Traceback (most recent call last):\n{kind}: {message}\n"
    return True


def cancel(record: JobRecord) -> bool:
    """Cancels a pending job; False if it is already final."""
    if record.final:
        return False
    record.status = CANCELLED
    record.reason = "Job cancelled by the user"
    record.finished = now_iso()
    record.add_log("Job cancelled")
    return True


def utc_timestamp(value: str) -> datetime:
    """Parses IBM's ISO timestamps (with or without a zone; none means UTC)."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def to_job_json(record: JobRecord, include_params: bool, api_version: bool) -> dict[str, Any]:
    """The job as IBM's `GET /jobs/{id}` returns it."""
    state: dict[str, Any] = {"status": record.status}
    if record.reason:
        state["reason"] = record.reason
    if record.reason_code is not None:
        state["reason_code"] = record.reason_code
    body: dict[str, Any] = {
        "id": record.id,
        "backend": record.backend,
        "program": {"id": record.program_id},
        "created": record.created,
        "session_id": record.session_id,
        "tags": list(record.tags),
        "cost": record.cost or 0,
        "state": state,
        # IBM's top-level status spells out a max-execution-time cancellation.
        "status": "Cancelled - Ran too long" if record.reason_code == 1305 else record.status,
        "runtime": record.runtime,
        "private": record.private,
        "user_id": record.user_id,
        "usage": {"seconds": record.quantum_seconds, "quantum_seconds": record.quantum_seconds},
    }
    if record.finished:
        body["ended"] = record.finished
    if record.hgp:
        body["hub"], body["group"], body["project"] = record.hgp.split("/")
    if record.calibration_id:
        body["calibration_id"] = record.calibration_id
    if include_params and not record.private:  # IBM never hands a private job's inputs back
        body["params"] = json.loads(record.params)
    if not api_version:  # the 0.21 dialect has no `usage` / `private` fields
        body.pop("private")
    return body
