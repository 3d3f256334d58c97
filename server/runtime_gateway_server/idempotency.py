"""Request ids that make RunJob idempotent: a repeated submission returns the first job.

`RequestIdStore` is the interface; `InMemoryRequestIdStore` keeps ids for a bounded time in
this process, `SqliteRequestIdStore` shares them between the worker processes of a gateway
(a state directory on one host). A store for replicas on several hosts (Redis: `SET key
pending NX EX ttl`, then the job id) plugs in behind the same calls.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import grpc

from runtime_gateway_server.errors import GatewayError


@dataclass(frozen=True)
class Claim:
    """Either the job an earlier call created (`job_id`), or the right to submit (`owner`).

    `uncertain` (with `owner`): earlier attempts failed in a way that leaves open whether
    IBM created the job; the wall-clock window (start, end) they ran in. The owner must
    look for such a job before submitting again.
    """

    job_id: str | None
    owner: bool
    uncertain: tuple[float, float] | None = None


class RequestIdStore(Protocol):
    def claim(self, key: str, fingerprint: str, wait_seconds: float) -> Claim: ...
    def complete(self, key: str, job_id: str) -> None: ...
    def uncertain(self, key: str, window: tuple[float, float]) -> None: ...
    def abandon(self, key: str) -> None: ...
    def known(self, job_id: str) -> bool: ...


@dataclass
class _Entry:
    fingerprint: str
    expires: float
    job_id: str | None = None
    done: threading.Event | None = None  # set while a submission is in flight
    uncertain: tuple[float, float] | None = None


class InMemoryRequestIdStore:
    def __init__(self, ttl_seconds: float = 3600.0, max_entries: int = 100_000) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._job_ids: set[str] = set()
        self._lock = threading.Lock()

    def claim(self, key: str, fingerprint: str, wait_seconds: float) -> Claim:
        deadline = time.monotonic() + max(wait_seconds, 0.0)
        while True:
            with self._lock:
                self._expire()
                entry = self._entries.get(key)
                if entry is None:
                    self._entries[key] = _Entry(
                        fingerprint, time.monotonic() + self.ttl, done=threading.Event()
                    )
                    while len(self._entries) > self.max_entries:
                        self._entries.popitem(last=False)
                    return Claim(None, owner=True)
                if entry.fingerprint != fingerprint:
                    raise GatewayError(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        "INVALID_ARGUMENT",
                        "request_id: was already used for a different RunJob request",
                        field="request_id",
                    )
                if entry.job_id is not None:
                    return Claim(entry.job_id, owner=False)
                if entry.done is None:  # uncertain and nobody is resolving it: this call does
                    entry.done = threading.Event()
                    return Claim(None, owner=True, uncertain=entry.uncertain)
                done = entry.done
            # Another call with this id is submitting right now: wait for its outcome.
            remaining = deadline - time.monotonic()
            if done is None or remaining <= 0 or not done.wait(remaining):
                raise GatewayError(
                    grpc.StatusCode.ABORTED,
                    "INVALID_ARGUMENT",
                    "request_id: a RunJob with this id is still in progress; retry later",
                    field="request_id",
                )

    def known(self, job_id: str) -> bool:
        """Whether some request id already owns this job (it must not be adopted again)."""
        with self._lock:
            return job_id in self._job_ids

    def complete(self, key: str, job_id: str) -> None:
        with self._lock:
            self._job_ids.add(job_id)
            entry = self._entries.get(key)
            if entry is not None:
                entry.job_id = job_id
                if entry.done is not None:
                    entry.done.set()

    def uncertain(self, key: str, window: tuple[float, float]) -> None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return
            if entry.uncertain is not None:
                window = (min(window[0], entry.uncertain[0]), max(window[1], entry.uncertain[1]))
            entry.uncertain = window
            done, entry.done = entry.done, None
        if done is not None:
            done.set()  # waiters re-claim and one of them resolves the uncertainty

    def abandon(self, key: str) -> None:
        with self._lock:
            entry = self._entries.pop(key, None)
        if entry is not None and entry.done is not None:
            entry.done.set()

    def _expire(self) -> None:
        now = time.monotonic()
        while self._entries:
            entry = next(iter(self._entries.values()))
            if entry.expires > now:
                break
            self._entries.popitem(last=False)
            if entry.job_id is not None:
                self._job_ids.discard(entry.job_id)


# A pending claim older than this is presumed abandoned by a worker that died mid-submission;
# the next claim treats it as uncertain (the job may exist) and reconciles before submitting.
PENDING_LEASE_SECONDS = 300.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS request_ids (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    expires REAL NOT NULL,
    claimed_at REAL NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'uncertain', 'done')),
    lease REAL NOT NULL DEFAULT 0,
    job_id TEXT,
    window_start REAL,
    window_end REAL
);
CREATE INDEX IF NOT EXISTS request_ids_expires ON request_ids (expires);
CREATE INDEX IF NOT EXISTS request_ids_job ON request_ids (job_id);
"""


class SqliteRequestIdStore:
    """The request-id store shared by the worker processes of one gateway (or gateways that
    share a state directory on one host): SQLite in WAL mode, one connection per thread.

    Same contract as the in-memory store. Times are wall-clock (processes share no monotonic
    clock). A pending claim carries a lease, so a worker that dies mid-submission does not
    block its request id until it expires: after the lease the id turns uncertain and the
    next claimer looks for the job before submitting.
    """

    def __init__(
        self,
        path: str,
        ttl_seconds: float = 3600.0,
        lease_seconds: float = PENDING_LEASE_SECONDS,
        poll_seconds: float = 0.05,
    ) -> None:
        self.path = path
        self.ttl = ttl_seconds
        self.lease = lease_seconds
        self.poll = poll_seconds
        self._local = threading.local()
        with self._db() as db:
            db.executescript(_SCHEMA)

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")  # one writer at a time: claims are check-then-set
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def claim(self, key: str, fingerprint: str, wait_seconds: float) -> Claim:
        deadline = time.monotonic() + max(wait_seconds, 0.0)
        delay = self.poll
        while True:
            with self._transaction() as db:
                now = time.time()
                db.execute("DELETE FROM request_ids WHERE expires <= ?", (now,))
                row = db.execute(
                    "SELECT fingerprint, state, lease, job_id, claimed_at, window_start, "
                    "window_end FROM request_ids WHERE key = ?",
                    (key,),
                ).fetchone()
                if row is None:
                    db.execute(
                        "INSERT INTO request_ids (key, fingerprint, expires, claimed_at, state, "
                        "lease) VALUES (?, ?, ?, ?, 'pending', ?)",
                        (key, fingerprint, now + self.ttl, now, now + self.lease),
                    )
                    return Claim(None, owner=True)
                stored, state, lease, job_id, claimed_at, start, end = row
                if stored != fingerprint:
                    raise GatewayError(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        "INVALID_ARGUMENT",
                        "request_id: was already used for a different RunJob request",
                        field="request_id",
                    )
                if job_id is not None:
                    return Claim(job_id, owner=False)
                if state == "pending" and lease <= now:  # its owner died mid-submission
                    state, start, end = "uncertain", claimed_at, now
                if state == "uncertain":
                    db.execute(
                        "UPDATE request_ids SET state = 'pending', lease = ?, claimed_at = ? "
                        "WHERE key = ?",
                        (now + self.lease, now, key),
                    )
                    return Claim(None, owner=True, uncertain=(start, end))
            # Another call (maybe in another worker) is submitting: poll for its outcome.
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise GatewayError(
                    grpc.StatusCode.ABORTED,
                    "INVALID_ARGUMENT",
                    "request_id: a RunJob with this id is still in progress; retry later",
                    field="request_id",
                )
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.5)

    def known(self, job_id: str) -> bool:
        row = (
            self._db()
            .execute(
                "SELECT 1 FROM request_ids WHERE job_id = ? AND expires > ? LIMIT 1",
                (job_id, time.time()),
            )
            .fetchone()
        )
        return row is not None

    def complete(self, key: str, job_id: str) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE request_ids SET state = 'done', job_id = ? WHERE key = ?", (job_id, key)
            )

    def uncertain(self, key: str, window: tuple[float, float]) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE request_ids SET state = 'uncertain', lease = 0, "
                "window_start = min(coalesce(window_start, ?1), ?1), "
                "window_end = max(coalesce(window_end, ?2), ?2) WHERE key = ?3",
                (window[0], window[1], key),
            )

    def abandon(self, key: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM request_ids WHERE key = ?", (key,))
