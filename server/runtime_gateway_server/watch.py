"""Job-update streams: one upstream watcher per job, shared by every subscriber.

- A `JobWatch` polls one job (adaptively: fast after a change, slower while it waits in
  the queue) and publishes each change with a per-job revision. Its last revision and state
  outlive it in a bounded `memory`, so a watcher started later continues the numbering and
  a reconnecting client gets no duplicates.
- A `Subscriber` is one stream's inbox. It coalesces state updates it has not sent yet (a
  slow client gets the newest state), never drops a terminal one, and never blocks a
  watcher: publishing is a list append on the event loop.
- Upstream requests per account are capped by a token bucket; 429, 5xx and connection
  errors back off and retry without ending any stream. Anything else ends streams instead
  of leaving them open on heartbeats: a 401/403 ends the subscribers of the account that
  lost access (others carry on with their own account), NOT_FOUND and errors that persist
  (`give_up_after` attempts in a row: 400, unreadable answers, an unknown job state) end
  every subscriber of the job with the mapped status.
- Every task started for a stream (its discovery loop, a late result delivery) belongs to
  its `Subscriber` and is cancelled when the stream ends; a watcher stops when its last
  subscriber leaves.
- `WatchHub` is the registry behind a small interface (subscribe / unsubscribe / shutdown);
  a later step can share watchers between gateway replicas behind the same calls.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
import structlog

from runtime_gateway_server.errors import GatewayError, invalid_argument
from runtime_gateway_server.ibm import AccountClient
from runtime_gateway_server.jobs import FINAL_STATES, JobOperations, created_of, state_of
from runtime_gateway_server.limits import (
    MAX_JOB_IDS,
    check_id,
    check_name,
    check_tags,
    excerpt,
)
from runtime_gateway_server.metrics import (
    RATE_LIMIT_WAIT_SECONDS,
    RATE_LIMIT_WAITS,
    UPDATES_COALESCED,
    WATCH_ROLES,
    WATCHED_JOBS,
)
from runtime_gateway_server.upstream import Deadline
from runtime_gateway_server.watch_fleet import (
    Entry,
    FleetUnavailable,
    FleetWatch,
    new_epoch,
)

log = structlog.get_logger("runtime_gateway_server.watch")


@dataclass(frozen=True)
class WatchSettings:
    fast_interval: float = 0.5  # after a change, and while the job runs
    max_interval: float = 10.0  # ceiling while a job waits unchanged in the queue
    heartbeat_seconds: float = 15.0  # idle streams send a heartbeat this often
    account_rps: float = 20.0  # upstream requests per second per account, all watchers
    history: int = 64  # updates kept per job for resuming clients
    memory_jobs: int = 100_000  # jobs whose last revision is remembered after their watch
    discovery_interval: float = 2.0  # WatchJobs: how often filters look for new jobs
    request_timeout: float = 30.0  # one upstream request of a watcher
    give_up_after: int = 5  # attempts in a row failing permanently (400, unknown state...)
    max_stream_jobs: int = MAX_JOB_IDS  # jobs one WatchJobs stream may follow in its life
    max_accounts: int = 10_000  # per-account rate limiters kept (least recently used go)


# Errors that say "try again later": retried without ending any stream.
TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
    }
)
# Errors that say "this account may not (any longer) read this job".
ACCESS_LOST = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED})


# Epochs are the gateway's own tokens (hex, or 'l' + hex for a replica's private history).
_EPOCH = re.compile(r"l?[0-9a-f]{1,64}")


def check_epoch(field_name: str, epoch: str) -> None:
    if epoch and not _EPOCH.fullmatch(epoch):
        raise invalid_argument(
            field_name, f"{excerpt(epoch)} is not an epoch this gateway sent (JobUpdate.epoch)"
        )


def check_watch_job(job_id: str, resume_after_revision: int, resume_epoch: str = "") -> None:
    """WatchJob's request, refused (INVALID_ARGUMENT naming the field) before any upstream
    call: the job id goes into IBM's URL path."""
    check_id("job_id", job_id)
    if resume_after_revision < 0:
        raise invalid_argument("resume_after_revision", "must not be negative")
    check_epoch("resume_epoch", resume_epoch)


def check_watch_jobs(
    job_ids: list[str],
    tags: list[str],
    session_id: str,
    backend: str,
    resume: dict[str, int],
    epochs: dict[str, str] | None = None,
) -> None:
    """WatchJobs' request, refused (INVALID_ARGUMENT naming the field) before any upstream
    call: at most MAX_JOB_IDS ids in IBM's alphabet, bounded tags, a session id and backend
    name that fit IBM's URLs, and resume entries only for jobs the stream may follow (the
    ids given, or any valid id when a filter discovers jobs), at most MAX_JOB_IDS of them."""
    if len(job_ids) > MAX_JOB_IDS:
        raise invalid_argument(
            "job_ids", f"has {len(job_ids)} entries; at most {MAX_JOB_IDS} are allowed"
        )
    for index, job_id in enumerate(job_ids):
        check_id(f"job_ids[{index}]", job_id)
    check_tags("tags", tags)
    check_id("session_id", session_id, required=False)
    check_name("backend", backend)
    filtered = bool(tags or session_id or backend)
    if not (job_ids or filtered):
        raise invalid_argument(
            "job_ids", "give job ids or at least one filter (tags, session_id, backend)"
        )
    if len(resume) > MAX_JOB_IDS:
        raise invalid_argument(
            "resume_after_revisions",
            f"has {len(resume)} entries; at most {MAX_JOB_IDS} are allowed",
        )
    given = set(job_ids)
    for job_id, revision in resume.items():
        check_id("resume_after_revisions", job_id)
        if not filtered and job_id not in given:
            raise invalid_argument(
                "resume_after_revisions", f"names job {excerpt(job_id)}, which is not in job_ids"
            )
        if revision < 0:
            raise invalid_argument("resume_after_revisions", "must not be negative")
    epochs = epochs or {}
    if len(epochs) > MAX_JOB_IDS:
        raise invalid_argument(
            "resume_epochs", f"has {len(epochs)} entries; at most {MAX_JOB_IDS} are allowed"
        )
    for job_id, epoch in epochs.items():
        check_id("resume_epochs", job_id)
        if job_id not in resume:
            raise invalid_argument(
                "resume_epochs",
                f"names job {excerpt(job_id)}, which is not in resume_after_revisions",
            )
        check_epoch("resume_epochs", epoch)


@dataclass
class Update:
    job_id: str
    revision: int
    kind: str  # "state", "log", "heartbeat" or "error"
    observed: float = field(default_factory=time.time)
    job: dict[str, Any] | None = None
    terminal: bool = False
    result_json: str = ""
    text: str = ""
    reason: str = ""
    epoch: str = ""  # the history this revision belongs to (see JobUpdate.epoch)
    reset: bool = False  # set on a subscriber's copy: the history restarts here for it
    # Response messages built from this update, shared by every subscriber (and by the
    # copies made without the result: the key says whether the result is in it).
    responses: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    def to_data(self) -> dict[str, Any]:
        """The update as a fleet history entry stores it (no result: followers read it)."""
        return {
            "k": self.kind, "o": self.observed, "j": self.job, "t": self.terminal,
            "x": self.text, "r": self.reason,
        }  # fmt: skip

    @classmethod
    def from_entry(cls, job_id: str, entry: Entry) -> Update:
        data = entry.data
        return cls(
            job_id, entry.revision, str(data.get("k") or "state"),
            observed=float(data.get("o") or time.time()), job=data.get("j"),
            terminal=bool(data.get("t")), text=str(data.get("x") or ""),
            reason=str(data.get("r") or ""), epoch=entry.epoch,
        )  # fmt: skip


_HEARTBEATS: dict[tuple[str, int, str, int], Update] = {}


def heartbeat_update(job_id: str, revision: int, epoch: str = "") -> Update:
    """A heartbeat repeating the latest revision; one object per job, revision and second,
    so idle streams share one message instead of building one each."""
    now = int(time.time())
    key = (job_id, revision, epoch, now)
    found = _HEARTBEATS.get(key)
    if found is None:
        oldest = next(iter(_HEARTBEATS), None)
        if len(_HEARTBEATS) >= 100_000 or (oldest is not None and oldest[3] != now):
            _HEARTBEATS.clear()  # keep only the current second (and at most 100k of it)
        found = _HEARTBEATS[key] = Update(
            job_id, revision, "heartbeat", observed=float(now), epoch=epoch
        )
    return found


class Limiter(Protocol):
    """Upstream requests of one account: `acquire` waits until one may be sent."""

    async def acquire(self) -> None: ...


class RateLimiter:
    """A token bucket on the event loop: `acquire` waits until a request may be sent."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.capacity = burst if burst is not None else max(1.0, rate)
        self.tokens = self.capacity
        self.updated = time.monotonic()

    async def acquire(self) -> None:
        while True:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            if self.tokens >= 1:
                self.tokens -= 1
                return
            RATE_LIMIT_WAITS.inc()
            RATE_LIMIT_WAIT_SECONDS.inc((1 - self.tokens) / self.rate)
            await asyncio.sleep((1 - self.tokens) / self.rate)


class Subscriber:
    """One stream's inbox: coalescing, never blocking the publisher."""

    MAX_PENDING = 256

    def __init__(self, want_result: bool, want_interim: bool, single_job: bool) -> None:
        self.want_result = want_result
        self.want_interim = want_interim
        self.single_job = single_job
        self.sent: dict[str, int] = {}  # job id -> last revision delivered (or resumed from)
        self.epochs: dict[str, str] = {}  # job id -> epoch of the last update delivered
        # Jobs whose next state update restarts the history for this stream (`reset`).
        self.resets: set[str] = set()
        self._pending: list[Update] = []
        self._wake = asyncio.Event()
        self.closed: GatewayError | None = None
        self.finished = False  # single-job stream: the terminal update was queued
        self.account = ""  # key of the stream's account (one account per stream)
        self.watches: dict[str, JobWatch] = {}  # job id -> the watcher it is attached to
        self.tasks: set[asyncio.Task[Any]] = set()  # started for this stream, end with it
        self.gone = False  # the stream ended: nothing may be started for it any more
        self._ended = asyncio.Event()  # set by close()

    def offer(self, update: Update) -> None:
        if update.kind != "heartbeat" and update.revision <= self.sent.get(update.job_id, 0):
            return  # already delivered, or seen before the client reconnected
        if update.kind == "log" and not self.want_interim:
            return
        if update.kind == "state" and not update.terminal:
            before = len(self._pending)
            self._pending = [
                u
                for u in self._pending
                if not (u.kind == "state" and not u.terminal and u.job_id == update.job_id)
            ]
            UPDATES_COALESCED.inc(before - len(self._pending))
        if update.kind == "state" and update.terminal and not self.want_result:
            update = Update(**{**update.__dict__, "result_json": ""})
        if update.kind == "state" and update.job_id in self.resets:
            self.resets.discard(update.job_id)
            update = Update(**{**update.__dict__, "reset": True, "responses": {}})
        self._pending.append(update)
        if len(self._pending) > self.MAX_PENDING:  # drop the oldest log or state, never a terminal
            for i, pending in enumerate(self._pending):
                if not pending.terminal:
                    del self._pending[i]
                    break
        self._wake.set()

    def close(self, error: GatewayError | None) -> None:
        if self.closed is None:  # the first reason to end is the one the client gets
            self.closed = error
        self.finished = True
        self._wake.set()
        self._ended.set()

    async def until_closed(self, work: Awaitable[Any]) -> None:
        """Runs `work` (attaching the stream) unless the subscriber is closed first (the
        gateway shuts down): then `work` is cancelled, so an upstream request in flight
        never holds a stream past the shutdown grace."""
        task = asyncio.ensure_future(work)
        closed = asyncio.ensure_future(self._ended.wait())
        try:
            await asyncio.wait({task, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
            if not task.done():
                task.cancel()
        if task.done() and not task.cancelled():
            task.result()  # its error, if any

    async def updates(self, heartbeat: float) -> AsyncIterator[Update]:
        """Yields updates until the single job ends or the subscriber is closed."""
        while True:
            if not self._pending:
                if self.closed is not None or (self.finished and self.single_job):
                    return
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), heartbeat)
                except TimeoutError:
                    if self.single_job and self.sent:  # "nothing changed up to revision N"
                        job_id, revision = next(iter(self.sent.items()))
                        yield heartbeat_update(job_id, revision, self.epochs.get(job_id, ""))
                    else:
                        yield heartbeat_update("", 0)
                    continue
                continue
            update = self._pending.pop(0)
            if update.kind != "heartbeat":
                if update.epoch != self.epochs.get(update.job_id, update.epoch):
                    self.sent[update.job_id] = update.revision  # the stream moved on to a new epoch
                else:
                    self.sent[update.job_id] = max(self.sent.get(update.job_id, 0), update.revision)
                if update.epoch:
                    self.epochs[update.job_id] = update.epoch
            yield update
            if update.terminal and self.single_job:
                return


@dataclass
class _Memory:
    revision: int
    state_key: tuple[Any, ...]
    snapshot: Update | None
    epoch: str


_COUNTED_ROLES = ("leader", "follower", "alone")


def _progress(job: dict[str, Any] | None) -> int:
    """How far a job got (queued < running < final): states only move forward."""
    state = state_of(job or {})
    if state in FINAL_STATES:
        return 3
    return 2 if state == "RUNNING" else (1 if state else 0)


def _state_key(job: dict[str, Any]) -> tuple[Any, ...]:
    """What makes two observations of a job different updates."""
    return (state_of(job), (job.get("state") or {}).get("reason"), tuple(job.get("tags") or ()))


class JobWatch:
    """Polls one job and publishes its changes to its subscribers.

    Alone (no fleet) it polls itself. In a fleet (`hub.fleet`) it takes one of three roles,
    decided again every `check_seconds`: the `leader` (it holds the job's Redis lease, polls
    and writes each update to the shared history before delivering it), a `follower`
    (another replica polls; it delivers what the history brings) or `alone` (Redis does not
    answer: it polls itself, in a private epoch, until Redis is back)."""

    def __init__(self, hub: WatchHub, key: tuple[str, str], client: AccountClient) -> None:
        self.hub = hub
        self.key = key
        self.job_id = key[1]
        self.clients: dict[str, AccountClient] = {client.account.key: client}
        self.subscribers: set[Subscriber] = set()
        remembered = hub.memory.get(key) if hub.fleet is None else None
        self.revision = remembered.revision if remembered else 0
        self.state_key: tuple[Any, ...] = remembered.state_key if remembered else ()
        self.current: Update | None = remembered.snapshot if remembered else None
        # A revision sequence this watcher starts afresh gets a new epoch, so a client's
        # point in an older sequence is never mistaken for one in this one.
        self.epoch = remembered.epoch if remembered else new_epoch()
        self.history: deque[Update] = deque(maxlen=hub.settings.history)
        if self.current is not None:
            self.history.append(self.current)
        self.want_result = False
        self.want_logs = False
        self.result_json: str | None = None
        self.log_length = 0
        self.done = False
        self.task: asyncio.Task[None] | None = None
        self.unknown_states = 0  # observations in a row of a state IBM has not documented
        # Fleet: the role, the Redis keys, updates waiting for the shared history, entries
        # the history brought, subscribers waiting for the first read of the history.
        fleet = hub.fleet
        self._role = "" if fleet is None else "new"
        self.synced = fleet is None
        self.keys = fleet.keys(key[0], key[1]) if fleet is not None else None
        self.holder = f"{fleet.replica}:{secrets.token_hex(3)}" if fleet is not None else ""
        self._outbox: list[Update] = []
        self._inbox: list[Entry] = []
        self._arrived = asyncio.Event()
        self._waiting: dict[Subscriber, tuple[int, str]] = {}
        self._republish = False  # the next observation goes into a new shared history
        self._resend = False  # ... and to these streams too (they were told to reset)
        self._redis_only: set[int] = set()  # revisions written there only (not news here)
        self.delivered = self.revision  # the last revision delivered to this replica's streams
        self._final: Update | None = None
        self._ahead: dict[Subscriber, int] = {}  # resumed past what this follower has read
        self.shown: Update | None = self.current  # the last state these streams were given

    @property
    def role(self) -> str:
        return self._role

    @role.setter
    def role(self, role: str) -> None:
        """Also counted by role (runtime_gateway_watch_roles) for operators."""
        if role == self._role:
            return
        if self._role in _COUNTED_ROLES:
            WATCH_ROLES.labels(self._role).dec()
        if role in _COUNTED_ROLES:
            WATCH_ROLES.labels(role).inc()
        self._role = role

    # --- subscribers ------------------------------------------------------------------------
    def attach(self, sub: Subscriber, resume_after: int, resume_epoch: str = "") -> None:
        sub.watches[self.job_id] = self
        self.subscribers.add(sub)
        self.want_result |= sub.want_result
        self.want_logs |= sub.want_interim
        if not self.synced:  # the shared history decides, once it has been read
            sub.sent[self.job_id] = resume_after
            self._waiting[sub] = (resume_after, resume_epoch)
            return
        self._catch_up(sub, resume_after, resume_epoch)

    def _catch_up(self, sub: Subscriber, resume_after: int, resume_epoch: str) -> None:
        """Sends `sub` what it missed after (resume_epoch, resume_after), per the rule in
        JobUpdate.epoch: exactly the missed updates, or the current state marked `reset`.

        Only what these streams were given counts (`shown`, `delivered`, `history`): a
        leader's newer observation may still be on its way to Redis (`_outbox`), without
        its epoch, and is delivered to every subscriber once written."""
        current = self.shown
        same_epoch = not resume_epoch or resume_epoch == self.epoch
        if resume_after > self.delivered and same_epoch and self.role == "follower":
            # The client saw a later revision on the leader's replica than this follower
            # has read: wait for the history rather than reset (`_settle_ahead` decides).
            sub.sent[self.job_id] = resume_after
            sub.epochs[self.job_id] = self.epoch
            self._ahead[sub] = resume_after
            return
        if resume_after and (
            not same_epoch
            or current is None
            or resume_after > self.delivered  # never numbered here
        ):
            resume_after = 0  # a point in a history this watcher does not continue
            sub.resets.add(self.job_id)
        sub.sent[self.job_id] = resume_after
        if resume_after:  # heartbeats before the next update name the epoch resumed in
            sub.epochs[self.job_id] = self.epoch
        if current is None:
            return  # the first observation reaches it
        if current.terminal and sub.want_result and current.revision > resume_after:
            if state_of(current.job or {}) == "COMPLETED" and not self.result_json:
                if resume_after:
                    missed = [u for u in self.history if u.revision > resume_after]
                    if not missed or missed[0].revision != resume_after + 1:
                        sub.resets.add(self.job_id)
                self.hub.spawn(self._deliver_with_result(sub), owner=sub)
                return
        missed = [u for u in self.history if u.revision > resume_after]
        if resume_after and missed and missed[0].revision == resume_after + 1:
            for update in missed:  # exactly what it missed
                sub.offer(update)
        elif current.revision > resume_after or not resume_after:
            if resume_after:
                sub.resets.add(self.job_id)  # it missed more than is kept
            sub.offer(current)
        else:
            sub.offer(heartbeat_update(self.job_id, self.delivered, self.epoch))
        if current.terminal and sub.single_job:
            sub.finished = True

    def detach(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)
        self._waiting.pop(sub, None)
        self._ahead.pop(sub, None)
        if sub.watches.get(self.job_id) is self:
            del sub.watches[self.job_id]
        if not self.subscribers and self.task is not None and not self.done:
            self.task.cancel()  # the last subscriber left: stop polling

    # --- publishing -------------------------------------------------------------------------
    def _publish(self, update: Update) -> None:
        if self.role == "leader":
            self._outbox.append(update)  # delivered once the shared history has it
            return
        if self.role == "alone" and not self.epoch.startswith("l"):
            # Revisions this replica numbers on its own while Redis is away belong to a
            # private epoch: another replica numbers its own, and a client must not mix them.
            self.epoch = "l" + new_epoch()
        self._deliver(update)

    def _deliver(self, update: Update) -> None:
        update.epoch = self.epoch
        self.delivered = update.revision
        if update.kind == "state":
            self.shown = update
        self.history.append(update)
        for sub in list(self.subscribers):
            sub.offer(update)

    def observe(self, job: dict[str, Any]) -> bool:
        """Records the job's state; publishes it when it changed. True when terminal."""
        state = state_of(job)
        key = _state_key(job)
        terminal = state in FINAL_STATES
        forced = self._republish or self._resend
        if key != self.state_key or self.current is None or forced:
            if key != self.state_key or forced:
                self.revision += 1
                if self._republish and not self._resend and key == self.state_key:
                    self._redis_only.add(self.revision)
                self._republish = self._resend = False
            self.state_key = key
            raw_state = (job.get("state") or {}).get("status")
            if not state:  # never mistake an undocumented state for "still running"
                self._publish(
                    Update(self.job_id, self.revision, "error", reason="UPSTREAM_ERROR",
                           text=f"IBM reported an unknown job state {raw_state!r}")
                )  # fmt: skip
            self.current = Update(
                self.job_id, self.revision, "state", job=job, terminal=terminal,
                result_json=(self.result_json or "") if terminal else "",
            )  # fmt: skip
            self._publish(self.current)
        return terminal

    async def run(self, first: dict[str, Any] | None) -> None:
        WATCHED_JOBS.inc()
        try:
            if self.hub.fleet is None:
                await self._poll_until_terminal(first)
            else:
                await self._run_in_fleet(first)
        except asyncio.CancelledError:
            pass
        except Exception:  # a bug must not leave the streams open on heartbeats
            log.exception("watch_failed", job_id=self.job_id)
            self._end(
                GatewayError(
                    grpc.StatusCode.INTERNAL,
                    "UPSTREAM_ERROR",
                    f"watching job {self.job_id} failed in the gateway",
                )
            )
        finally:
            WATCHED_JOBS.dec()
            self.done = True
            if self.hub.fleet is not None:
                self._leave_fleet()
                self.role = "done"
            self.hub.retire(self)

    async def _poll_until_terminal(self, first: dict[str, Any] | None) -> None:
        interval = self.hub.settings.fast_interval
        job = first
        while True:
            outcome = await self._poll_once(job)
            if outcome is None:
                return
            interval = outcome if outcome > 0 else interval
            if outcome < 0:
                return
            job = None
            await asyncio.sleep(interval)

    async def _poll_once(self, job: dict[str, Any] | None, interval: float = 0.0) -> float | None:
        """One observation: None when the watcher ends without a terminal state (gone, no
        access, unknown states), -1 after a terminal state, else the next poll interval."""
        settings = self.hub.settings
        if job is None:
            job = await self._fetch()
            if job is None:  # gone, or every subscriber lost access
                if self.subscribers:  # never leave one waiting on heartbeats
                    self._end(
                        GatewayError(
                            grpc.StatusCode.PERMISSION_DENIED,
                            "UPSTREAM_PERMISSION_DENIED",
                            f"no subscriber's account may read job {self.job_id} any more",
                        )
                    )
                return None
        changed_before = self.revision
        state = state_of(job)
        self.unknown_states = 0 if state else self.unknown_states + 1
        if self.unknown_states >= settings.give_up_after:
            raw = (job.get("state") or {}).get("status") or job.get("status")
            self._end(
                GatewayError(
                    grpc.StatusCode.UNKNOWN,
                    "UPSTREAM_ERROR",
                    f"IBM keeps reporting job {self.job_id} in a state the gateway "
                    f"does not know: {str(raw)[:40]!r}",
                )
            )
            return None
        if state == "COMPLETED" and self.want_result and not job.get("private"):
            await self._fetch_result()  # before the terminal update: it carries it
        terminal = self.observe(job)
        if await self._want_logs() and (self.revision != changed_before or terminal):
            await self._logs()
        await self._flush()
        if terminal and self.role in ("", "leader", "alone"):
            return -1.0
        if terminal:  # the write was refused: another replica polls, the history will tell
            return settings.fast_interval
        if self.revision != changed_before or state_of(job) == "RUNNING":
            return settings.fast_interval
        # unchanged in the queue: back off
        return min(settings.max_interval, max(interval, settings.fast_interval) * 1.5)

    async def _want_logs(self) -> bool:
        if self.want_logs:
            return True
        if self.role != "leader" or self.hub.fleet is None or self.keys is None:
            return False
        try:  # a follower's subscriber asked for logs
            return await self.hub.fleet.logs_wanted(self.keys)
        except FleetUnavailable:
            return False

    # --- the fleet ----------------------------------------------------------------------------
    async def _run_in_fleet(self, first: dict[str, Any] | None) -> None:
        fleet = self.hub.fleet
        assert fleet is not None and self.keys is not None
        check = fleet.settings.check_seconds
        interval = self.hub.settings.fast_interval
        next_poll = 0.0
        while True:
            try:
                mine, epoch = await fleet.claim(self.keys, self.holder)
            except FleetUnavailable:
                mine, epoch = None, ""
            if mine is None:
                self._become_alone()
            elif mine:
                if self.role != "leader" or epoch != self.epoch:
                    await self._become_leader(epoch)
                    next_poll = 0.0
            elif self.role != "follower" or epoch != self.epoch:
                await self._become_follower()
            if self.role == "follower":
                if self.want_logs:
                    try:
                        await fleet.want_logs(self.keys)
                    except FleetUnavailable:
                        pass
                if await self._follow_for(check):
                    return  # the leader published the terminal state
                if self._ahead:
                    await self._settle_ahead()
                first = None
                continue
            # The leader, or alone: poll when due, and come back to renew the lease.
            now = time.monotonic()
            if now >= next_poll:
                keeper = None
                if self.role == "leader":  # a slow upstream call must not lose the lease
                    keeper = asyncio.get_running_loop().create_task(self._keep_lease(check))
                try:
                    outcome = await self._poll_once(first, interval)
                finally:
                    if keeper is not None:
                        keeper.cancel()
                first = None
                if outcome is None or outcome < 0:
                    return  # ended here (delivered), or with an error streams were told
                interval = outcome
                next_poll = time.monotonic() + interval
            await asyncio.sleep(max(0.0, min(check, next_poll - time.monotonic())))

    async def _keep_lease(self, every: float) -> None:
        fleet = self.hub.fleet
        assert fleet is not None and self.keys is not None
        while True:
            await asyncio.sleep(every)
            try:
                mine, _ = await fleet.claim(self.keys, self.holder)
            except FleetUnavailable:
                continue
            if not mine:
                return  # taken over: this round's writes will be refused

    async def _flush(self) -> None:
        """Leader: writes the updates of this round to the shared history, then delivers
        them here. A lost lease or a revision taken by another writer means another replica
        polls now: nothing is delivered, and the history brings its updates instead."""
        fleet = self.hub.fleet
        if not self._outbox or fleet is None or self.keys is None:
            return
        outbox, self._outbox = self._outbox, []
        for position, update in enumerate(outbox):
            try:
                written = await fleet.publish(
                    self.keys, self.holder, update.revision, update.to_data()
                )
            except FleetUnavailable:
                self.role = "alone"
                for rest in outbox[position:]:
                    self._publish(rest)
                return
            if not written.ok:
                log.info("watch_lead_lost", job_id=self.job_id, conflict=written.conflict)
                self.role = "new"  # the next round follows whoever writes now
                # What was not written was never news here: forget it, so the next
                # observation (if this watcher leads again) publishes it.
                self.revision = self.delivered
                self.current = self.shown
                self.state_key = _state_key(self.shown.job or {}) if self.shown else ()
                self._redis_only.clear()
                return
            self.epoch = written.epoch
            if update.revision in self._redis_only:
                self._redis_only.discard(update.revision)
                self.delivered = update.revision
                continue  # the same state, for the new history only; these streams have it
            self._deliver(update)

    def _become_alone(self) -> None:
        if self.role == "alone":
            return
        if self.hub.fleet is not None and self.keys is not None:
            self.hub.fleet.reader.unfollow(self.keys.history)
        if not self.synced:
            self._sync_waiting()
        self.role = "alone"

    async def _become_leader(self, epoch: str) -> None:
        fleet = self.hub.fleet
        assert fleet is not None and self.keys is not None
        fleet.reader.unfollow(self.keys.history)
        try:
            await self._adopt(leading=True)  # whatever the reader has not brought yet
        except FleetUnavailable:
            self._become_alone()
            return
        self.role = "leader"
        if not epoch:
            # No shared history (new, or Redis lost it): the next observation writes the
            # current state into a new one, even if it has not changed.
            self._republish = self.current is not None

    async def _become_follower(self) -> None:
        fleet = self.hub.fleet
        assert fleet is not None and self.keys is not None
        try:
            await self._adopt()
        except FleetUnavailable:
            self._become_alone()
            return
        self.role = "follower"
        fleet.reader.follow(self.keys.history, self.delivered, self._on_entry)

    async def _adopt(self, leading: bool = False) -> None:
        """Reads the shared history and takes it as this watcher's. Updates this watcher's
        subscribers missed are delivered when they follow on from what it delivered; if
        they do not (another epoch, or trimmed), the subscribers get the current state
        marked `reset`.

        Subscribers that arrived before any history existed wait for the first one (a
        follower) or are answered from this watcher's own numbering (`leading`)."""
        fleet = self.hub.fleet
        assert fleet is not None and self.keys is not None
        epoch, entries, last_state = await fleet.history(self.keys)
        self._inbox.clear()
        if not epoch:
            if leading and not self.synced:
                self._sync_waiting()
            return  # nothing shared yet: keep what this watcher knows
        updates = [Update.from_entry(self.job_id, e) for e in entries if e.epoch == epoch]
        state = Update.from_entry(self.job_id, last_state) if last_state else None
        newest = max([u.revision for u in updates] + [state.revision if state else 0])
        continuous = (
            self.synced
            and epoch == self.epoch
            and (not updates or updates[0].revision <= self.delivered + 1)
        )
        if continuous:
            for update in updates:
                if update.revision > self.delivered:
                    self._take(update)
            self.revision = max(newest, self.delivered)
            known = self.current.revision if self.current else 0
            if state is not None and state.revision >= known:
                self.current = state
                self.state_key = _state_key(state.job or {})
                if state.revision <= self.delivered:
                    self.shown = state
            return
        previous = self.shown
        self.epoch = epoch
        self.history.clear()
        self.history.extend(updates)
        self.revision = self.delivered = newest
        if state is not None:
            self.current = self.shown = state
            self.state_key = _state_key(state.job or {})
        if not self.synced:
            self._sync_waiting()
            return
        # This replica may have shown a later state (it polled alone while Redis was away)
        # than the history it joins holds: its streams must not go back to the older one.
        # The job really is at least that far, so the leader's next observation differs
        # from the stored state and is written: that entry reaches them, marked reset.
        behind = (
            previous is not None
            and self.shown is not None
            and _progress(previous.job) > _progress(self.shown.job)
        )
        for sub in list(self.subscribers):  # it cannot know what it missed
            sub.sent[self.job_id] = 0
            sub.resets.add(self.job_id)
            if self.shown is not None and not leading and not behind:
                sub.offer(self.shown)
        if leading:
            # The stored state may be older than what these streams saw (this replica
            # polled alone): they get the state observed next, marked reset, instead.
            self._resend = True

    def _sync_waiting(self) -> None:
        self.synced = True
        waiting, self._waiting = self._waiting, {}
        for sub, (resume_after, resume_epoch) in waiting.items():
            if sub in self.subscribers:
                self._catch_up(sub, resume_after, resume_epoch)

    def _take(self, update: Update) -> None:
        """An update from the shared history, delivered here as the leader delivered it."""
        self.revision = max(self.revision, update.revision)
        self.delivered = update.revision
        if update.kind == "state":
            self.shown = update
            self.current = update
            self.state_key = _state_key(update.job or {})
        self.history.append(update)
        for sub in list(self.subscribers):
            sub.offer(update)

    def _on_entry(self, entry: Entry) -> None:
        self._inbox.append(entry)
        self._arrived.set()

    def _apply_inbox(self) -> bool:
        """Delivers the entries the reader brought; True after a terminal state. An entry
        that does not follow on (another epoch, or a gap) makes the watcher read the whole
        history again (`role` goes back to "new")."""
        entries, self._inbox = self._inbox, []
        for entry in entries:
            if entry.revision <= self.delivered and entry.epoch == self.epoch:
                continue
            if entry.epoch != self.epoch or entry.revision != self.delivered + 1:
                self.role = "new"
                return False
            update = Update.from_entry(self.job_id, entry)
            if update.terminal:
                self._final = update
                return True
            self._take(update)
        return False

    async def _settle_ahead(self) -> None:
        """Subscribers that resumed past what this follower had read: once it has read that
        far they simply go on; a point beyond the whole shared history (or in another
        epoch by now) was never numbered there, and gets the current state marked reset."""
        fleet = self.hub.fleet
        assert fleet is not None and self.keys is not None
        for sub, point in list(self._ahead.items()):
            if self.delivered >= point or sub not in self.subscribers:
                del self._ahead[sub]
        if not self._ahead:
            return
        try:
            epoch, entries, state = await fleet.history(self.keys)
        except FleetUnavailable:
            return
        newest = max([e.revision for e in entries] + [state.revision if state else 0])
        for sub, point in list(self._ahead.items()):
            if epoch == self.epoch and point <= newest:
                continue  # the reader brings it
            del self._ahead[sub]
            sub.sent[self.job_id] = 0
            sub.resets.add(self.job_id)
            if self.shown is not None:
                sub.offer(self.shown)

    async def _follow_for(self, seconds: float) -> bool:
        """Follower: waits up to `seconds` for the history, delivering what it brings.
        True once the terminal state was delivered (with the result, read here, for
        subscribers that asked for it)."""
        if not self._inbox:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), seconds)
            except TimeoutError:
                return False
        if not self._apply_inbox() or self._final is None:
            return False
        final = self._final
        if (
            state_of(final.job or {}) == "COMPLETED"
            and self.want_result
            and not (final.job or {}).get("private")
        ):
            await self._fetch_result()
            final.result_json = self.result_json or ""
        self._take(final)
        return True

    def _leave_fleet(self) -> None:
        fleet = self.hub.fleet
        if fleet is None or self.keys is None:
            return
        fleet.reader.unfollow(self.keys.history)
        if self.role == "leader":  # let another replica's watcher take over at once
            self.hub.spawn(self._release(fleet, self.keys, self.holder))

    @staticmethod
    async def _release(fleet: FleetWatch, keys: Any, holder: str) -> None:
        try:
            await fleet.release(keys, holder)
        except FleetUnavailable:
            pass  # the lease runs out by itself

    async def _call(
        self, work: Callable[[AccountClient, Deadline], Any], *, essential: bool = True
    ) -> Any:
        """One upstream call with the account's rate limit. Transient errors (429, 5xx,
        connection) are retried without end, the streams staying open. A 401/403 ends the
        subscribers of the account that got it and the call goes on with another
        subscriber's account; None when no subscriber is left. NOT_FOUND, and other errors
        once they failed `give_up_after` attempts in a row, are raised.

        `essential=False` (logs, results): a 401/403 is raised like any other error and
        ends no stream; the job's own polls decide about access."""
        settings = self.hub.settings
        delay = settings.fast_interval
        failures = 0
        while self.clients and self.subscribers:
            account_key, client = next(iter(self.clients.items()))
            await self.hub.limiter(account_key).acquire()
            deadline = Deadline.after(settings.request_timeout)
            try:
                return await asyncio.get_running_loop().run_in_executor(
                    self.hub.executor, work, client, deadline
                )
            except GatewayError as error:
                if error.code == grpc.StatusCode.NOT_FOUND:
                    raise
                if error.code in ACCESS_LOST:
                    if not essential:
                        raise
                    self._lose_access(account_key, error)
                    continue
                if error.code not in TRANSIENT:
                    failures += 1
                    if failures >= settings.give_up_after:
                        raise
                wait = error.retry_after if error.retry_after is not None else delay
                log.debug("watch_retry", job_id=self.job_id, code=error.code.name, wait=wait)
            except Exception as error:  # an answer that could not be read (not JSON...)
                failures += 1
                log.warning("watch_bad_answer", job_id=self.job_id, error=type(error).__name__)
                if failures >= settings.give_up_after:
                    raise GatewayError(
                        grpc.StatusCode.UNKNOWN,
                        "UPSTREAM_ERROR",
                        f"IBM's answers about job {self.job_id} could not be read",
                    ) from error
                wait = delay
            await asyncio.sleep(wait)
            delay = min(settings.max_interval, delay * 2)
        return None

    def _lose_access(self, account_key: str, error: GatewayError) -> None:
        """The account may no longer read the job: its subscribers end (a WatchJobs stream
        loses this job with an error update, unless its credentials are rejected outright),
        the others keep the watcher with their own accounts."""
        self.clients.pop(account_key, None)
        self.hub.forget_grant(account_key, self.job_id)  # the next subscriber is re-checked
        log.info("watch_access_lost", job_id=self.job_id, code=error.code.name)
        for sub in list(self.subscribers):
            if sub.account != account_key:
                continue
            self.subscribers.discard(sub)
            if sub.watches.get(self.job_id) is self:
                del sub.watches[self.job_id]
            if sub.single_job or error.code == grpc.StatusCode.UNAUTHENTICATED:
                sub.close(error)
            else:
                sub.offer(self._error_update(error))

    async def _fetch(self) -> dict[str, Any] | None:
        try:
            job: dict[str, Any] | None = await self._call(
                lambda client, deadline: self.hub.jobs.get(client, self.job_id, False, deadline)
            )
            return job
        except GatewayError as error:  # NOT_FOUND: the job was deleted
            self._end(error)
            return None

    async def _logs(self) -> None:
        try:
            text: str | None = await self._call(
                lambda client, deadline: self.hub.jobs.logs(client, self.job_id, deadline),
                essential=False,
            )
        except GatewayError:
            return
        if text and len(text) > self.log_length:
            self.revision += 1
            self._publish(Update(self.job_id, self.revision, "log", text=text[self.log_length :]))
            self.log_length = len(text)

    async def _fetch_result(self) -> None:
        if self.result_json is not None:
            return
        try:
            self.result_json = await self._call(
                lambda client, deadline: self.hub.jobs.result(client, self.job_id, deadline),
                essential=False,
            )
        except GatewayError as error:  # the terminal state still goes out, without a result
            log.info("watch_result_failed", job_id=self.job_id, error=error.message)

    async def _deliver_with_result(self, sub: Subscriber) -> None:
        """A subscriber that came after the end and asked for the result."""
        await self._fetch_result()
        if self.shown is not None:
            sub.offer(Update(**{**self.shown.__dict__, "result_json": self.result_json or ""}))
        if sub.single_job:
            sub.finished = True

    def _error_update(self, error: GatewayError) -> Update:
        return Update(self.job_id, self.revision + 1, "error", reason=error.reason,
                      text=error.message)  # fmt: skip

    def _end(self, error: GatewayError) -> None:
        """The watcher gives up: single-job streams end with `error`, WatchJobs streams get
        an error update for this job and go on with their other jobs."""
        log.info("watch_ended", job_id=self.job_id, code=error.code.name, reason=error.reason)
        for sub in list(self.subscribers):
            if sub.single_job:
                sub.close(error)
            else:
                sub.offer(self._error_update(error))
            if sub.watches.get(self.job_id) is self:
                del sub.watches[self.job_id]
        self.subscribers.clear()  # each was told once; the watcher stops


class WatchHub:
    """The registry of watchers (one per job) and the entry point for streams."""

    def __init__(
        self,
        jobs: JobOperations,
        executor: Executor,
        settings: WatchSettings | None = None,
        fleet: FleetWatch | None = None,
        limiter_factory: Callable[[str], Limiter] | None = None,
    ):
        """`fleet`: share watchers with the other replicas through Redis (watch_fleet.py);
        `limiter_factory(account_key)`: the account's rate limiter (default: a token
        bucket in this process; rate_caps.py shares one across the fleet)."""
        self.jobs = jobs
        self.executor = executor
        self.settings = settings or WatchSettings()
        self.fleet = fleet
        self._make_limiter = limiter_factory
        self.watches: dict[tuple[str, str], JobWatch] = {}
        self.memory: OrderedDict[tuple[str, str], _Memory] = OrderedDict()
        self._limiters: OrderedDict[str, Limiter] = OrderedDict()  # least recent first
        # (account, job) -> (allowed until, job is private); checks in flight
        self._allowed: OrderedDict[tuple[str, str], tuple[float, bool]] = OrderedDict()
        self._checks: dict[tuple[str, str], asyncio.Task[dict[str, Any]]] = {}
        # WatchJobs discovery in a fleet: filter key -> (fresh until, jobs found)
        self._discovered: OrderedDict[str, tuple[float, list[dict[str, Any]]]] = OrderedDict()
        self._discovery_rounds: dict[str, asyncio.Task[list[dict[str, Any]]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._subscribers: set[Subscriber] = set()
        self.closing = False

    def limiter(self, account_key: str) -> Limiter:
        found = self._limiters.get(account_key)
        if found is None:
            found = self._limiters[account_key] = (
                self._make_limiter(account_key)
                if self._make_limiter is not None
                else RateLimiter(self.settings.account_rps)
            )
            # Bounded: per-call tokens make new accounts without end. The one dropped is
            # the least recently used (its bucket has long refilled).
            while len(self._limiters) > self.settings.max_accounts:
                self._limiters.popitem(last=False)
        else:
            self._limiters.move_to_end(account_key)
        return found

    def spawn(self, coroutine: Coroutine[Any, Any, Any], owner: Subscriber | None = None) -> None:
        """Runs `coroutine` as a task; with an `owner`, the task ends with that stream."""
        if owner is not None and owner.gone:
            coroutine.close()  # the stream already ended
            return
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if owner is not None:
            owner.tasks.add(task)
            task.add_done_callback(owner.tasks.discard)

    def register(self, sub: Subscriber) -> None:
        """A stream starts: from now on shutdown ends it, even before it attaches to a job."""
        if self.closing:
            raise GatewayError(
                grpc.StatusCode.UNAVAILABLE, "UPSTREAM_UNAVAILABLE", "the gateway is shutting down"
            )
        self._subscribers.add(sub)

    def forget_grant(self, account_key: str, job_id: str) -> None:
        self._allowed.pop((account_key, job_id), None)

    async def subscribe(
        self,
        client: AccountClient,
        job_id: str,
        sub: Subscriber,
        resume_after: int = 0,
        resume_epoch: str = "",
    ) -> None:
        """Attaches `sub` to the job's watcher, starting one if needed. The caller's account
        is checked against the job first (once per account and job for a while), so a
        subscriber only ever sees jobs its own credentials can read."""
        if self.closing:
            raise GatewayError(
                grpc.StatusCode.UNAVAILABLE, "UPSTREAM_UNAVAILABLE", "the gateway is shutting down"
            )
        key = (client.endpoints.runtime or client.account.url, job_id)
        sub.account = client.account.key
        first = None
        grant = (client.account.key, job_id)
        allowed = self._allowed.get(grant)
        if allowed is None or allowed[0] < time.monotonic():
            # Subscribers arriving together share one check (a herd of them would otherwise
            # queue behind the account's rate limit, one request each).
            check = self._checks.get(grant)
            if check is None:
                check = asyncio.get_running_loop().create_task(self._check(client, job_id))
                self._checks[grant] = check
                check.add_done_callback(lambda _: self._checks.pop(grant, None))
                self._tasks.add(check)  # shutdown cancels it
                check.add_done_callback(self._tasks.discard)
            first = await asyncio.shield(check)  # NOT_FOUND and friends reach every caller
            if self.closing:
                raise GatewayError(grpc.StatusCode.UNAVAILABLE, "UPSTREAM_UNAVAILABLE",
                                   "the gateway is shutting down")  # fmt: skip
            allowed = self._allowed.get(grant) or (0.0, bool(first.get("private")))
        if sub.want_result and allowed[1]:
            raise GatewayError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "INVALID_ARGUMENT",
                "include_result: the results of a private job can be read only once; "
                "they are never read on a subscriber's behalf",
                field="include_result",
            )
        watch = self.watches.get(key)
        if watch is None or watch.done:
            watch = JobWatch(self, key, client)
            self.watches[key] = watch
            watch.attach(sub, resume_after, resume_epoch)
            watch.task = asyncio.get_running_loop().create_task(watch.run(first))
        else:
            watch.clients.setdefault(client.account.key, client)
            watch.attach(sub, resume_after, resume_epoch)
        self._subscribers.add(sub)

    async def discover(
        self,
        client: AccountClient,
        sub: Subscriber,
        list_jobs: Callable[[AccountClient, Deadline, bool], list[dict[str, Any]]],
        resume: dict[str, int],
        filter_field: str = "tags",
        epochs: dict[str, str] | None = None,
        filter_key: str = "",
    ) -> None:
        """WatchJobs by filter: attaches `sub` to every matching job, now and as new ones
        appear. `list_jobs(client, deadline, first)` lists candidates (pending ones first,
        then those created since the stream started). Runs as a task owned by `sub`
        (`spawn(..., owner=sub)`), so it ends with the stream.

        Ends the stream: INVALID_ARGUMENT naming `filter_field` when IBM rejects the filter
        (a 400 at once, other non-transient errors once they persist `give_up_after` rounds
        in a row); the error itself on 401/403; RESOURCE_EXHAUSTED (GATEWAY_OVERLOADED) when the
        stream would follow more than `max_stream_jobs` jobs (reconnecting starts afresh
        from the jobs still pending)."""
        attached: set[str] = set(sub.sent)  # the job ids given explicitly
        first = True
        failures = 0
        started = time.time()
        while not sub.finished and not sub.gone and not self.closing:
            try:
                if self.fleet is not None and filter_key:
                    found = await self._discover_in_fleet(
                        client, list_jobs, filter_key, first, started
                    )
                else:
                    await self.limiter(client.account.key).acquire()
                    found = await asyncio.get_running_loop().run_in_executor(
                        self.executor,
                        list_jobs,
                        client,
                        Deadline.after(self.settings.request_timeout),
                        first,
                    )
                failures = 0
            except GatewayError as error:
                if error.code in ACCESS_LOST:
                    sub.close(error)
                    return
                if error.code not in TRANSIENT:
                    # The filter is all the caller puts in this request: a 400 blames it at
                    # once, other refusals (414 for a URL too long...) once they persist.
                    failures += 1
                    if (
                        error.code == grpc.StatusCode.INVALID_ARGUMENT
                        or failures >= self.settings.give_up_after
                    ):
                        refused = f"IBM refused the job list for this filter: {error.message}"
                        sub.close(invalid_argument(filter_field, refused))
                        return
                found = []  # try again at the next round
            for job in found:
                job_id = str(job.get("id") or "")
                if not job_id or job_id in attached:
                    continue
                if len(attached) >= self.settings.max_stream_jobs:
                    sub.close(GatewayError(
                        grpc.StatusCode.RESOURCE_EXHAUSTED, "GATEWAY_OVERLOADED",
                        f"the filter matches more than {self.settings.max_stream_jobs} jobs, "
                        "the most one stream follows; narrow it, or reconnect to follow "
                        "the jobs still pending",
                    ))  # fmt: skip
                    return
                attached.add(job_id)
                try:
                    await self.subscribe(
                        client, job_id, sub, resume.get(job_id, 0), (epochs or {}).get(job_id, "")
                    )
                except GatewayError as error:
                    if error.code == grpc.StatusCode.UNAUTHENTICATED:
                        sub.close(error)  # the credentials are gone, not just this job
                        return
                    sub.offer(
                        Update(job_id, 1 << 62, "error", reason=error.reason, text=error.message)
                    )
            first = False
            await asyncio.sleep(self.settings.discovery_interval)

    async def _discover_in_fleet(
        self,
        client: AccountClient,
        list_jobs: Callable[[AccountClient, Deadline, bool], list[dict[str, Any]]],
        filter_key: str,
        first: bool,
        started: float,
    ) -> list[dict[str, Any]]:
        """One discovery round shared by the fleet: one replica lists the filter's jobs
        upstream (pending ones, and those created lately) and publishes them; the others,
        and other streams of the same account and filter here, read that list. A stream
        takes the pending jobs and those created since it started, as it would on its own.
        Without Redis, every stream lists for itself."""
        key = hashlib.sha256(f"{client.account.key}\n{filter_key}".encode()).hexdigest()[:32]
        cached = self._discovered.get(key)
        if cached is not None and cached[0] > time.monotonic():
            jobs = cached[1]
        else:  # one round at a time per filter in this process, shared by its streams
            round_ = self._discovery_rounds.get(key)
            if round_ is None:
                round_ = asyncio.get_running_loop().create_task(
                    self._discovery_round(client, list_jobs, key)
                )
                self._discovery_rounds[key] = round_
                round_.add_done_callback(lambda _: self._discovery_rounds.pop(key, None))
                self._tasks.add(round_)  # shutdown cancels it
                round_.add_done_callback(self._tasks.discard)
            jobs = await asyncio.shield(round_)
        return [
            job
            for job in jobs
            if (first and job.get("pending")) or float(job.get("created") or 0) >= started - 2
        ]

    async def _discovery_round(
        self,
        client: AccountClient,
        list_jobs: Callable[[AccountClient, Deadline, bool], list[dict[str, Any]]],
        key: str,
    ) -> list[dict[str, Any]]:
        fleet = self.fleet
        assert fleet is not None
        interval = self.settings.discovery_interval
        jobs: list[dict[str, Any]] | None = None
        try:
            if not await fleet.claim_discovery(key, interval * 3):
                jobs = await fleet.discovered(key) or []
        except FleetUnavailable:
            pass  # list here
        if jobs is None:
            await self.limiter(client.account.key).acquire()
            loop = asyncio.get_running_loop()
            found: dict[str, dict[str, Any]] = {}
            for pending in (True, False):  # False: created since the lister started
                listed = await loop.run_in_executor(
                    self.executor, list_jobs, client,
                    Deadline.after(self.settings.request_timeout), pending,
                )  # fmt: skip
                for job in listed:
                    job_id = str(job.get("id") or "")
                    if job_id and job_id not in found:
                        found[job_id] = {
                            "id": job_id,
                            "created": created_of(job).timestamp(),
                            "pending": pending,
                        }
            jobs = list(found.values())
            try:
                await fleet.share_discovery(key, jobs, interval * 3)
            except FleetUnavailable:
                pass
        self._discovered[key] = (time.monotonic() + interval * 0.9, jobs)
        while len(self._discovered) > self.settings.max_accounts:
            self._discovered.popitem(last=False)
        return jobs

    async def _check(self, client: AccountClient, job_id: str) -> dict[str, Any]:
        """The account may read the job: one GET, remembered for five minutes."""
        await self.limiter(client.account.key).acquire()
        job: dict[str, Any] = await asyncio.get_running_loop().run_in_executor(
            self.executor,
            self.jobs.get,
            client,
            job_id,
            False,
            Deadline.after(self.settings.request_timeout),
        )
        self._allowed[(client.account.key, job_id)] = (
            time.monotonic() + 300,
            bool(job.get("private")),
        )
        while len(self._allowed) > self.settings.memory_jobs:
            self._allowed.popitem(last=False)
        return job

    def unsubscribe(self, sub: Subscriber) -> None:
        """The stream ended: its tasks stop, and so does every watcher it was the last
        subscriber of."""
        sub.gone = True
        self._subscribers.discard(sub)
        for task in list(sub.tasks):
            task.cancel()
        for watch in list(sub.watches.values()):
            watch.detach(sub)
        sub.watches.clear()

    def retire(self, watch: JobWatch) -> None:
        if self.watches.get(watch.key) is watch:
            del self.watches[watch.key]
        for sub in watch.subscribers:  # they keep no reference to a finished watcher
            if sub.watches.get(watch.job_id) is watch:
                del sub.watches[watch.job_id]
        if watch.current is not None:
            # Without the result and the messages built from it: `memory` holds up to
            # `memory_jobs` entries, so each stays small (a later subscriber that asks for
            # the result gets it read again, see `JobWatch.attach`).
            snapshot = watch.current
            if snapshot.result_json or snapshot.responses:
                snapshot = Update(**{**snapshot.__dict__, "result_json": "", "responses": {}})
            self.memory[watch.key] = _Memory(
                watch.delivered, watch.state_key, snapshot, watch.epoch
            )
            self.memory.move_to_end(watch.key)
            while len(self.memory) > self.settings.memory_jobs:
                self.memory.popitem(last=False)

    async def shutdown(self) -> None:
        """Ends every stream with UNAVAILABLE so clients reconnect elsewhere."""
        self.closing = True
        error = GatewayError(
            grpc.StatusCode.UNAVAILABLE,
            "UPSTREAM_UNAVAILABLE",
            "the gateway is shutting down; reconnect with resume_epoch and resume_after_revision",
        )
        for sub in list(self._subscribers):
            sub.close(error)
        for watch in list(self.watches.values()):
            if watch.task is not None:
                watch.task.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.sleep(0)
        if self.fleet is not None:
            await self.fleet.close()
