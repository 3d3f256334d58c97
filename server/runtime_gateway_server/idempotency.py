"""Request ids that make RunJob idempotent: a repeated submission returns the first job.

Two layers:
- `RequestIdStore`, the record of request ids: five small, non-blocking calls (a claim never
  waits). `InMemoryRequestIdStore` keeps ids in this process; `SqliteRequestIdStore` shares
  them between the worker processes of a gateway (a state directory on one host). A store for
  replicas on several hosts (Redis: `SET key token NX PX lease`, then the job id, with the
  token compared on every update) plugs in behind the same calls.
- `RequestIds`, what RunJob uses: a retry of an id that is being submitted waits on the event
  loop (woken at once by a submission in this process, polling with backoff for one in
  another), so waiting never holds one of the gateway's upstream threads; store calls run in
  a small pool of their own; in-flight submissions renew their leases from a thread, so a
  process that dies mid-submission leaves its id uncertain within seconds, not stuck.

A submitter owns its id through a lease it renews. When the lease runs out (its process died)
the id turns uncertain: IBM may have created the job. So does any failure that does not prove
IBM created nothing. The next claimer of an uncertain id must look for the job before it
submits (`Claim.uncertain` gives the wall-clock window to search).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import secrets
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import grpc
import structlog

from runtime_gateway_server.errors import GatewayError
from runtime_gateway_server.metrics import request_id_outcome
from runtime_gateway_server.upstream import Deadline

log = structlog.get_logger("runtime_gateway_server.request_ids")
T = TypeVar("T")

# An owner renews its lease every LEASE_SECONDS / 4 while it submits; a lease left to run
# out means the owner's process died (or stalled that long), and the id turns uncertain.
LEASE_SECONDS = 6.0
DEFAULT_TTL = 3600.0  # how long a request id returns its job
DEFAULT_MAX_ENTRIES = 100_000  # per store; the oldest ids go first beyond it
DEFAULT_WAIT = 30.0  # how long a retry waits for an in-flight submission without a deadline
MAX_POLL = 0.5  # the longest pause between two looks at an id another process submits


@dataclass(frozen=True)
class Claim:
    """What `claim` found for a request id; exactly one of:

    - `job_id`: an earlier call created this job: return it.
    - `token` (`owner`): this call may submit. It must end with `complete`, `uncertain` or
      `abandon` (passing the token), and `renew` the lease while it works. With `uncertain`
      (a wall-clock window (start, end), seconds since the epoch) earlier attempts failed in
      a way that leaves open whether IBM created the job: look for it before submitting.
    - neither (`busy`): another call is submitting; ask again within `retry_in` seconds
      (when its lease runs out at the latest).
    """

    job_id: str | None = None
    token: str | None = None
    uncertain: tuple[float, float] | None = None
    retry_in: float = 0.0

    @property
    def owner(self) -> bool:
        return self.token is not None

    @property
    def busy(self) -> bool:
        return self.token is None and self.job_id is None


class RequestIdStore(Protocol):
    """The record of request ids. Every call is short and never waits for another caller;
    `key` is the account's key and the request id, `fingerprint` identifies the request."""

    lease_seconds: float

    def claim(self, key: str, fingerprint: str) -> Claim:
        """Raises INVALID_ARGUMENT (field request_id) when the key was used for another request."""
        ...

    def renew(self, key: str, token: str) -> bool:
        """Extends the owner's lease; False when the token no longer owns the key."""
        ...

    def complete(self, key: str, token: str, job_id: str) -> bool:
        """Records the job; False when the token no longer owns the key (nothing recorded)."""
        ...

    def uncertain(self, key: str, token: str, window: tuple[float, float]) -> None:
        """Releases the key as uncertain: a job may exist, created during `window`."""
        ...

    def abandon(self, key: str, token: str) -> None:
        """Releases the key: no job exists for it (the next claim submits afresh)."""
        ...

    def known(self, job_id: str) -> bool:
        """Whether some request id already owns this job (it must not be adopted again)."""
        ...


def _different_request() -> GatewayError:
    return GatewayError(
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        "request_id: was already used for a different RunJob request",
        field="request_id",
    )


def _merge(
    a: tuple[float, float] | None, b: tuple[float, float] | None
) -> tuple[float, float] | None:
    if a is None or b is None:
        return a or b
    return (min(a[0], b[0]), max(a[1], b[1]))


# --- in this process -------------------------------------------------------------------------
@dataclass
class _Entry:
    fingerprint: str
    expires: float  # monotonic
    job_id: str | None = None
    token: str | None = None  # the owner's, while a submission is in flight
    lease: float = 0.0  # monotonic: the owner's lease runs out then
    claimed_at: float = 0.0  # wall clock: when the owner claimed
    uncertain: tuple[float, float] | None = None


class InMemoryRequestIdStore:
    """Request ids of one process, at most `max_entries` (the oldest go first) for `ttl_seconds`."""

    def __init__(
        self,
        ttl_seconds: float = DEFAULT_TTL,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self.lease_seconds = lease_seconds
        self._entries: OrderedDict[str, _Entry] = OrderedDict()  # oldest first
        self._job_ids: set[str] = set()  # of the entries above: `known` in O(1)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def claim(self, key: str, fingerprint: str) -> Claim:
        with self._lock:
            now = time.monotonic()
            self._expire(now)
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry(fingerprint, now + self.ttl)
                while len(self._entries) > self.max_entries:
                    self._drop(next(iter(self._entries)))
                return self._own(entry, now)
            if entry.fingerprint != fingerprint:
                raise _different_request()
            if entry.job_id is not None:
                return Claim(job_id=entry.job_id)
            if entry.token is not None:
                if entry.lease > now:
                    return Claim(retry_in=entry.lease - now)
                # Its owner stopped renewing: the submission may or may not have happened.
                entry.uncertain = _merge(entry.uncertain, (entry.claimed_at, time.time()))
            return self._own(entry, now)

    def _own(self, entry: _Entry, now: float) -> Claim:
        entry.token = secrets.token_hex(8)
        entry.lease = now + self.lease_seconds
        entry.claimed_at = time.time()
        return Claim(token=entry.token, uncertain=entry.uncertain)

    def renew(self, key: str, token: str) -> bool:
        with self._lock:
            entry = self._owned(key, token)
            if entry is not None:
                entry.lease = time.monotonic() + self.lease_seconds
            return entry is not None

    def complete(self, key: str, token: str, job_id: str) -> bool:
        with self._lock:
            entry = self._owned(key, token)
            if entry is None:
                return False
            entry.job_id, entry.token, entry.uncertain = job_id, None, None
            self._job_ids.add(job_id)
            return True

    def uncertain(self, key: str, token: str, window: tuple[float, float]) -> None:
        with self._lock:
            entry = self._owned(key, token)
            if entry is not None:
                entry.uncertain = _merge(entry.uncertain, window)
                entry.token = None

    def abandon(self, key: str, token: str) -> None:
        with self._lock:
            if self._owned(key, token) is not None:
                self._drop(key)

    def known(self, job_id: str) -> bool:
        with self._lock:
            self._expire(time.monotonic())
            return job_id in self._job_ids

    def _owned(self, key: str, token: str) -> _Entry | None:
        entry = self._entries.get(key)
        return entry if entry is not None and entry.token == token else None

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key)
        if entry.job_id is not None:
            self._job_ids.discard(entry.job_id)

    def _expire(self, now: float) -> None:
        # Entries are kept in claim order and all live `ttl`: the expired ones lead.
        while self._entries:
            key, entry = next(iter(self._entries.items()))
            if entry.expires > now:
                break
            self._drop(key)


# --- shared by the processes of one host -----------------------------------------------------
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
    window_end REAL,
    token TEXT
);
CREATE INDEX IF NOT EXISTS request_ids_expires ON request_ids (expires);
CREATE INDEX IF NOT EXISTS request_ids_job ON request_ids (job_id);
"""
PRUNE_EVERY = 256  # claims between two checks of the table's size (a count scans the table)


def create_private(path: str) -> None:
    """Creates the file with mode 0600 if it is missing, and makes an existing one 0600.

    SQLite creates the -wal and -shm files with the database file's permissions, so making
    the database private first keeps all three private whatever the process umask is."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(path + suffix, 0o600)


class SqliteRequestIdStore:
    """The request-id store shared by the worker processes of one gateway (or gateways that
    share a state directory on one host): SQLite in WAL mode, one connection per thread,
    files 0600. Rows live `ttl_seconds`; beyond `max_entries` the oldest go first.

    Same contract as the in-memory store. Times are wall-clock (processes share no monotonic
    clock).
    """

    def __init__(
        self,
        path: str,
        ttl_seconds: float = DEFAULT_TTL,
        lease_seconds: float = LEASE_SECONDS,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        self.path = path
        self.ttl = ttl_seconds
        self.lease_seconds = lease_seconds
        self.max_entries = max_entries
        self._local = threading.local()
        self._claims = 0
        create_private(path)
        db = self._db()
        db.executescript(_SCHEMA)
        columns = {row[1] for row in db.execute("PRAGMA table_info(request_ids)")}
        if "token" not in columns:  # a state directory from before owner tokens
            with contextlib.suppress(sqlite3.OperationalError):  # another worker added it
                db.execute("ALTER TABLE request_ids ADD COLUMN token TEXT")

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

    def claim(self, key: str, fingerprint: str) -> Claim:
        self._claims += 1
        prune = self._claims % PRUNE_EVERY == 0
        with self._transaction() as db:
            now = time.time()
            db.execute("DELETE FROM request_ids WHERE expires <= ?", (now,))
            if prune:
                db.execute(
                    "DELETE FROM request_ids WHERE key IN (SELECT key FROM request_ids "
                    "ORDER BY expires DESC LIMIT -1 OFFSET ?)",
                    (self.max_entries - 1,),
                )
            row = db.execute(
                "SELECT fingerprint, state, lease, job_id, claimed_at, window_start, "
                "window_end FROM request_ids WHERE key = ?",
                (key,),
            ).fetchone()
            token = secrets.token_hex(8)
            if row is None:
                db.execute(
                    "INSERT INTO request_ids (key, fingerprint, expires, claimed_at, state, "
                    "lease, token) VALUES (?, ?, ?, ?, 'pending', ?, ?)",
                    (key, fingerprint, now + self.ttl, now, now + self.lease_seconds, token),
                )
                return Claim(token=token)
            stored, state, lease, job_id, claimed_at, start, end = row
            if stored != fingerprint:
                raise _different_request()
            if job_id is not None:
                return Claim(job_id=job_id)
            window = None if start is None else (start, end)
            if state == "pending":
                if lease > now:
                    return Claim(retry_in=lease - now)
                # Its owner stopped renewing (its process died): the job may exist.
                window = _merge(window, (claimed_at, now))
            db.execute(
                "UPDATE request_ids SET state = 'pending', lease = ?, claimed_at = ?, token = ?, "
                "window_start = ?, window_end = ? WHERE key = ?",
                (
                    now + self.lease_seconds,
                    now,
                    token,
                    None if window is None else window[0],
                    None if window is None else window[1],
                    key,
                ),
            )
            return Claim(token=token, uncertain=window)

    def renew(self, key: str, token: str) -> bool:
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE request_ids SET lease = ? "
                "WHERE key = ? AND token = ? AND state = 'pending'",
                (time.time() + self.lease_seconds, key, token),
            )
            return cursor.rowcount > 0

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

    def complete(self, key: str, token: str, job_id: str) -> bool:
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE request_ids SET state = 'done', job_id = ?, token = NULL "
                "WHERE key = ? AND token = ? AND state = 'pending'",
                (job_id, key, token),
            )
            return cursor.rowcount > 0

    def uncertain(self, key: str, token: str, window: tuple[float, float]) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE request_ids SET state = 'uncertain', lease = 0, token = NULL, "
                "window_start = min(coalesce(window_start, ?1), ?1), "
                "window_end = max(coalesce(window_end, ?2), ?2) "
                "WHERE key = ?3 AND token = ?4 AND state = 'pending'",
                (window[0], window[1], key, token),
            )

    def abandon(self, key: str, token: str) -> None:
        with self._transaction() as db:
            db.execute(
                "DELETE FROM request_ids WHERE key = ? AND token = ? AND state = 'pending'",
                (key, token),
            )


# --- what RunJob uses ------------------------------------------------------------------------
@dataclass
class Admission:
    """A RunJob call's standing on its request id, from `RequestIds.admit` (on the event loop)
    to the submission (in an upstream thread). An owner's claim is handed over exactly once:
    `take` (the submission starts) or `drop` (the call ended before it could start)."""

    key: str
    fingerprint: str
    claim: Claim
    _state: str = "waiting"  # then "taken" or "dropped"
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def take(self) -> bool:
        with self._lock:
            if self._state == "waiting":
                self._state = "taken"
                return True
            return False

    def drop(self) -> bool:
        with self._lock:
            if self._state == "waiting":
                self._state = "dropped"
                return True
            return False


@dataclass
class _Waiting:
    event: asyncio.Event
    count: int = 0


class RequestIds:
    """Request ids as RunJob uses them (one instance per process and event loop).

    `admit` runs on the event loop; the rest is thread-safe and meant for the thread that
    submits. Owners' leases are renewed by one thread while their claims are held.
    """

    def __init__(self, store: RequestIdStore, max_wait: float = DEFAULT_WAIT) -> None:
        self.store = store
        self.max_wait = max_wait
        # Store calls are short, but SQLite's (and a network store's) block: never on the loop,
        # never in the upstream pool (where they would queue behind slow upstream calls).
        self._pool = ThreadPoolExecutor(2, thread_name_prefix="request-ids")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: dict[str, _Waiting] = {}
        self._held: dict[str, str] = {}  # key → token of the claims this process owns
        self._held_lock = threading.Condition()
        self._renewer: threading.Thread | None = None

    # --- on the event loop -----------------------------------------------------------------
    async def admit(
        self, key: str, fingerprint_of: Callable[[], str], deadline: Deadline
    ) -> Admission:
        """Waits, on the event loop, until this call owns `key` or its job is known.

        `fingerprint_of` is called once, off the loop (it hashes the job's inputs). Raises
        INVALID_ARGUMENT when the key was used for another request, ABORTED when the
        deadline (or `max_wait` without one) comes first.
        """
        loop = asyncio.get_running_loop()
        self._loop = loop
        fingerprint = await loop.run_in_executor(self._pool, fingerprint_of)
        remaining = deadline.remaining()
        if remaining is None:
            remaining = self.max_wait
        else:  # answer ABORTED (retry) a little before the caller's deadline, not after it
            remaining -= min(0.5, remaining / 10)
        give_up = time.monotonic() + remaining
        pause = 0.01
        while True:
            claim = await self._claim(loop, key, fingerprint)
            if claim.owner:
                assert claim.token is not None
                self._hold(key, claim.token)
                request_id_outcome(None, claim.uncertain)
                return Admission(key, fingerprint, claim)
            if claim.job_id is not None:
                request_id_outcome(claim.job_id, None)
                return Admission(key, fingerprint, claim)
            left = give_up - time.monotonic()
            if left <= 0:
                raise GatewayError(
                    grpc.StatusCode.ABORTED,
                    "INVALID_ARGUMENT",
                    "request_id: a RunJob with this id is still in progress; retry later",
                    field="request_id",
                )
            # Woken at once when this process settles the key; another process's outcome is
            # seen at the next look, and a dead owner's claim as soon as its lease runs out.
            await self._wait(key, min(pause, left, max(claim.retry_in, 0.001)))
            pause = min(pause * 2, MAX_POLL)

    async def _claim(self, loop: asyncio.AbstractEventLoop, key: str, fingerprint: str) -> Claim:
        future = loop.run_in_executor(self._pool, self.store.claim, key, fingerprint)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:  # the call ended: give back a claim it may have won
            future.add_done_callback(lambda done: self._unclaim(key, fingerprint, done))
            raise

    def _unclaim(self, key: str, fingerprint: str, done: asyncio.Future[Claim]) -> None:
        if done.cancelled() or done.exception() is not None or not done.result().owner:
            return
        claim = done.result()
        admission = Admission(key, fingerprint, claim)
        self._pool.submit(self.settle, admission, None, claim.uncertain is None)

    async def _wait(self, key: str, seconds: float) -> None:
        waiting = self._waiting.get(key)
        if waiting is None:
            waiting = self._waiting[key] = _Waiting(asyncio.Event())
        waiting.count += 1
        try:
            await asyncio.wait_for(waiting.event.wait(), seconds)
        except TimeoutError:
            pass
        finally:
            waiting.count -= 1
            if waiting.count == 0 and self._waiting.get(key) is waiting:
                del self._waiting[key]

    def _wake(self, key: str) -> None:
        waiting = self._waiting.pop(key, None)
        if waiting is not None:
            waiting.event.set()

    async def release_unused(self, admission: Admission) -> None:
        """Gives back an owner's claim the call never used (it ended before submitting):
        nothing was sent, so the id is as it was (uncertain, if it was)."""
        if admission.claim.token is None:
            return
        nothing_exists = admission.claim.uncertain is None
        await asyncio.get_running_loop().run_in_executor(
            self._pool, self.settle, admission, None, nothing_exists
        )

    # --- in the submitting thread ----------------------------------------------------------
    def claim_now(self, key: str, fingerprint: str) -> Admission:
        """`admit` for callers off the event loop: no waiting (ABORTED when busy)."""
        claim = self.store.claim(key, fingerprint)
        if claim.busy:
            raise GatewayError(
                grpc.StatusCode.ABORTED,
                "INVALID_ARGUMENT",
                "request_id: a RunJob with this id is still in progress; retry later",
                field="request_id",
            )
        if claim.token is not None:
            self._hold(key, claim.token)
        return Admission(key, fingerprint, claim)

    def known(self, job_id: str) -> bool:
        return self.store.known(job_id)

    def settle(
        self,
        admission: Admission,
        job_id: str | None,
        nothing_exists: bool,
        window: tuple[float, float] | None = None,
    ) -> None:
        """Ends an owner's claim: with the job it created or found (`job_id`); else released,
        as absent (`nothing_exists`: IBM created nothing for it, and no earlier attempt's job
        remains to look for) or as uncertain (`window`: when this attempt may have created
        it, merged with earlier attempts' windows). Wakes this process's waiters."""
        key, token = admission.key, admission.claim.token
        if token is None:
            return
        self._release(key, token)
        try:
            if job_id is not None:
                if not self.store.complete(key, token, job_id):
                    # Our lease ran out (a stall) and another call took the id over: it may
                    # have submitted too. Nothing to undo; say so for the operator.
                    log.warning("request_id_lease_lost", job_id=job_id)
            else:
                merged = _merge(admission.claim.uncertain, window)
                if nothing_exists or merged is None:
                    self.store.abandon(key, token)
                else:
                    self.store.uncertain(key, token, merged)
        finally:
            loop = self._loop
            if loop is not None and not loop.is_closed():
                with contextlib.suppress(RuntimeError):  # the loop stopped meanwhile
                    loop.call_soon_threadsafe(self._wake, key)

    # --- leases ----------------------------------------------------------------------------
    def _hold(self, key: str, token: str) -> None:
        if not math.isfinite(self.store.lease_seconds):
            return
        with self._held_lock:
            self._held[key] = token
            if self._renewer is None:
                self._renewer = threading.Thread(
                    target=self._renew_forever, name="request-id-leases", daemon=True
                )
                self._renewer.start()
            self._held_lock.notify()

    def _release(self, key: str, token: str) -> None:
        with self._held_lock:
            if self._held.get(key) == token:
                del self._held[key]

    def _renew_forever(self) -> None:
        interval = self.store.lease_seconds / 4
        while True:
            with self._held_lock:
                while not self._held:
                    self._held_lock.wait()
                held = list(self._held.items())
            for key, token in held:
                try:
                    if not self.store.renew(key, token):
                        self._release(key, token)  # lost (a stall): settling will say so
                except Exception as error:  # a locked or broken store: the lease may run out
                    # One line, no traceback: during a Redis outage this repeats for every
                    # submission in flight (the link logs the outage itself once).
                    log.warning("request_id_renew_failed", error=type(error).__name__)
            time.sleep(interval)
