"""Job-update streams: one upstream watcher per job, shared by every subscriber.

- A `JobWatch` polls one job (adaptively: fast after a change, slower while it waits in
  the queue) and publishes each change with a per-job revision. Its last revision and state
  outlive it in a bounded `memory`, so a watcher started later continues the numbering and
  a reconnecting client gets no duplicates.
- A `Subscriber` is one stream's inbox. It coalesces state updates it has not sent yet (a
  slow client gets the newest state), never drops a terminal one, and never blocks a
  watcher: publishing is a list append on the event loop.
- Upstream requests per account are capped by a token bucket; 429, 5xx and connection
  errors back off and retry without ending any stream.
- `WatchHub` is the registry behind a small interface (subscribe / unsubscribe / shutdown);
  a later step can share watchers between gateway replicas behind the same calls.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import grpc
import structlog

from runtime_gateway_server.errors import GatewayError
from runtime_gateway_server.ibm import AccountClient
from runtime_gateway_server.jobs import FINAL_STATES, JobOperations, state_of
from runtime_gateway_server.upstream import Deadline

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
    # Response messages built from this update, shared by every subscriber (and by the
    # copies made without the result: the key says whether the result is in it).
    responses: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)


_HEARTBEATS: dict[tuple[str, int, int], Update] = {}


def heartbeat_update(job_id: str, revision: int) -> Update:
    """A heartbeat repeating the latest revision; one object per job, revision and second,
    so idle streams share one message instead of building one each."""
    now = int(time.time())
    key = (job_id, revision, now)
    found = _HEARTBEATS.get(key)
    if found is None:
        if len(_HEARTBEATS) > 100_000 or any(k[2] != now for k in list(_HEARTBEATS)[:1]):
            _HEARTBEATS.clear()  # keep only the current second
        found = _HEARTBEATS[key] = Update(job_id, revision, "heartbeat", observed=float(now))
    return found


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
            await asyncio.sleep((1 - self.tokens) / self.rate)


class Subscriber:
    """One stream's inbox: coalescing, never blocking the publisher."""

    MAX_PENDING = 256

    def __init__(self, want_result: bool, want_interim: bool, single_job: bool) -> None:
        self.want_result = want_result
        self.want_interim = want_interim
        self.single_job = single_job
        self.sent: dict[str, int] = {}  # job id -> last revision delivered (or resumed from)
        self._pending: list[Update] = []
        self._wake = asyncio.Event()
        self.closed: GatewayError | None = None
        self.finished = False  # single-job stream: the terminal update was queued

    def offer(self, update: Update) -> None:
        if update.kind != "heartbeat" and update.revision <= self.sent.get(update.job_id, 0):
            return  # already delivered, or seen before the client reconnected
        if update.kind == "log" and not self.want_interim:
            return
        if update.kind == "state" and not update.terminal:
            self._pending = [
                u
                for u in self._pending
                if not (u.kind == "state" and not u.terminal and u.job_id == update.job_id)
            ]
        if update.kind == "state" and update.terminal and not self.want_result:
            update = Update(**{**update.__dict__, "result_json": ""})
        self._pending.append(update)
        if len(self._pending) > self.MAX_PENDING:  # drop the oldest log or state, never a terminal
            for i, pending in enumerate(self._pending):
                if not pending.terminal:
                    del self._pending[i]
                    break
        self._wake.set()

    def close(self, error: GatewayError | None) -> None:
        self.closed = error
        self.finished = True
        self._wake.set()

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
                        yield heartbeat_update(job_id, revision)
                    else:
                        yield heartbeat_update("", 0)
                    continue
                continue
            update = self._pending.pop(0)
            if update.kind != "heartbeat":
                self.sent[update.job_id] = max(self.sent.get(update.job_id, 0), update.revision)
            yield update
            if update.terminal and self.single_job:
                return


@dataclass
class _Memory:
    revision: int
    state_key: tuple[Any, ...]
    snapshot: Update | None


class JobWatch:
    """Polls one job and publishes its changes to its subscribers."""

    def __init__(self, hub: WatchHub, key: tuple[str, str], client: AccountClient) -> None:
        self.hub = hub
        self.key = key
        self.job_id = key[1]
        self.clients: dict[str, AccountClient] = {client.account.key: client}
        self.subscribers: set[Subscriber] = set()
        remembered = hub.memory.get(key)
        self.revision = remembered.revision if remembered else 0
        self.state_key: tuple[Any, ...] = remembered.state_key if remembered else ()
        self.current: Update | None = remembered.snapshot if remembered else None
        self.history: deque[Update] = deque(maxlen=hub.settings.history)
        if self.current is not None:
            self.history.append(self.current)
        self.want_result = False
        self.want_logs = False
        self.result_json: str | None = None
        self.log_length = 0
        self.done = False
        self.task: asyncio.Task[None] | None = None

    # --- subscribers ------------------------------------------------------------------------
    def attach(self, sub: Subscriber, resume_after: int) -> None:
        sub.sent[self.job_id] = resume_after
        self.subscribers.add(sub)
        self.want_result |= sub.want_result
        self.want_logs |= sub.want_interim
        if self.current is None:
            return  # the first observation reaches it
        if self.current.terminal and sub.want_result and self.current.revision > resume_after:
            if state_of(self.current.job or {}) == "COMPLETED" and not self.result_json:
                self.hub.spawn(self._deliver_with_result(sub))
                return
        missed = [u for u in self.history if u.revision > resume_after]
        if resume_after and missed and missed[0].revision == resume_after + 1:
            for update in missed:  # exactly what it missed
                sub.offer(update)
        elif self.current.revision > resume_after or not resume_after:
            sub.offer(self.current)  # the current state (it missed more than is kept)
        else:
            sub.offer(heartbeat_update(self.job_id, self.revision))
        if self.current.terminal and sub.single_job:
            sub.finished = True

    def detach(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)
        if not self.subscribers and self.task is not None and not self.done:
            self.task.cancel()  # the last subscriber left: stop polling

    # --- publishing -------------------------------------------------------------------------
    def _publish(self, update: Update) -> None:
        self.history.append(update)
        for sub in list(self.subscribers):
            sub.offer(update)

    def observe(self, job: dict[str, Any]) -> bool:
        """Records the job's state; publishes it when it changed. True when terminal."""
        state = state_of(job)
        reason = (job.get("state") or {}).get("reason")
        key = (state, reason, tuple(job.get("tags") or ()))
        terminal = state in FINAL_STATES
        if key != self.state_key or self.current is None:
            if key != self.state_key:
                self.revision += 1
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
        settings = self.hub.settings
        interval = settings.fast_interval
        job = first
        try:
            while True:
                if job is None:
                    job = await self._fetch()
                    if job is None:  # gone, or every subscriber lost access
                        return
                changed_before = self.revision
                state = state_of(job)
                if state == "COMPLETED" and self.want_result and not job.get("private"):
                    await self._fetch_result()  # before the terminal update: it carries it
                terminal = self.observe(job)
                if self.want_logs and (self.revision != changed_before or terminal):
                    await self._logs()
                if terminal:
                    return
                if self.revision != changed_before or state_of(job) == "RUNNING":
                    interval = settings.fast_interval
                else:  # unchanged in the queue: back off
                    interval = min(settings.max_interval, interval * 1.5)
                job = None
                await asyncio.sleep(interval)
        except asyncio.CancelledError:
            pass
        finally:
            self.done = True
            self.hub.retire(self)

    async def _call(self, work: Callable[[AccountClient, Deadline], Any]) -> Any:
        """One upstream call with the account's rate limit and retries that never give up
        on transient errors (the streams stay open); None when no subscriber may see the job."""
        delay = self.hub.settings.fast_interval
        while self.clients:
            account_key, client = next(iter(self.clients.items()))
            await self.hub.limiter(account_key).acquire()
            deadline = Deadline.after(self.hub.settings.request_timeout)
            try:
                return await asyncio.get_running_loop().run_in_executor(
                    self.hub.executor, work, client, deadline
                )
            except GatewayError as error:
                if error.code == grpc.StatusCode.NOT_FOUND:
                    raise
                if error.code in (
                    grpc.StatusCode.UNAUTHENTICATED,
                    grpc.StatusCode.PERMISSION_DENIED,
                ):
                    self.clients.pop(account_key, None)  # try another subscriber's account
                    continue
                wait = error.retry_after if error.retry_after is not None else delay
                log.debug("watch_retry", job_id=self.job_id, code=error.code.name, wait=wait)
                await asyncio.sleep(wait)
                delay = min(self.hub.settings.max_interval, delay * 2)
        return None

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
                lambda client, deadline: self.hub.jobs.logs(client, self.job_id, deadline)
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
                lambda client, deadline: self.hub.jobs.result(client, self.job_id, deadline)
            )
        except GatewayError as error:  # the terminal state still goes out, without a result
            log.info("watch_result_failed", job_id=self.job_id, error=error.message)

    async def _deliver_with_result(self, sub: Subscriber) -> None:
        """A subscriber that came after the end and asked for the result."""
        await self._fetch_result()
        if self.current is not None:
            sub.offer(Update(**{**self.current.__dict__, "result_json": self.result_json or ""}))
        if sub.single_job:
            sub.finished = True

    def _end(self, error: GatewayError) -> None:
        for sub in list(self.subscribers):
            if sub.single_job:
                sub.close(error)
            else:
                sub.offer(
                    Update(
                        self.job_id,
                        self.revision + 1,
                        "error",
                        reason=error.reason,
                        text=error.message,
                    )
                )


class WatchHub:
    """The registry of watchers (one per job) and the entry point for streams."""

    def __init__(
        self, jobs: JobOperations, executor: Executor, settings: WatchSettings | None = None
    ):
        self.jobs = jobs
        self.executor = executor
        self.settings = settings or WatchSettings()
        self.watches: dict[tuple[str, str], JobWatch] = {}
        self.memory: OrderedDict[tuple[str, str], _Memory] = OrderedDict()
        self._limiters: dict[str, RateLimiter] = {}
        # (account, job) -> (allowed until, job is private); checks in flight
        self._allowed: OrderedDict[tuple[str, str], tuple[float, bool]] = OrderedDict()
        self._checks: dict[tuple[str, str], asyncio.Task[dict[str, Any]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._subscribers: set[Subscriber] = set()
        self.closing = False

    def limiter(self, account_key: str) -> RateLimiter:
        found = self._limiters.get(account_key)
        if found is None:
            found = self._limiters[account_key] = RateLimiter(self.settings.account_rps)
        return found

    def spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def subscribe(
        self, client: AccountClient, job_id: str, sub: Subscriber, resume_after: int = 0
    ) -> None:
        """Attaches `sub` to the job's watcher, starting one if needed. The caller's account
        is checked against the job first (once per account and job for a while), so a
        subscriber only ever sees jobs its own credentials can read."""
        if self.closing:
            raise GatewayError(
                grpc.StatusCode.UNAVAILABLE, "UPSTREAM_UNAVAILABLE", "the gateway is shutting down"
            )
        key = (client.endpoints.runtime or client.account.url, job_id)
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
            first = await asyncio.shield(check)  # NOT_FOUND and friends reach every caller
            allowed = self._allowed[grant]
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
            watch.attach(sub, resume_after)
            watch.task = asyncio.get_running_loop().create_task(watch.run(first))
        else:
            watch.clients.setdefault(client.account.key, client)
            watch.attach(sub, resume_after)
        self._subscribers.add(sub)

    async def discover(
        self,
        client: AccountClient,
        sub: Subscriber,
        list_jobs: Callable[[AccountClient, Deadline, bool], list[dict[str, Any]]],
        resume: dict[str, int],
    ) -> None:
        """WatchJobs by filter: attaches `sub` to every matching job, now and as new ones
        appear. `list_jobs(client, deadline, first)` lists candidates (pending ones first,
        then those created since the stream started)."""
        attached: set[str] = set()
        first = True
        while not sub.finished and not self.closing:
            await self.limiter(client.account.key).acquire()
            try:
                found = await asyncio.get_running_loop().run_in_executor(
                    self.executor,
                    list_jobs,
                    client,
                    Deadline.after(self.settings.request_timeout),
                    first,
                )
            except GatewayError as error:
                final = (
                    grpc.StatusCode.UNAUTHENTICATED,
                    grpc.StatusCode.PERMISSION_DENIED,
                    grpc.StatusCode.INVALID_ARGUMENT,
                )
                if error.code in final:
                    sub.close(error)
                    return
                found = []  # transient: try again at the next round
            for job in found:
                job_id = str(job.get("id"))
                if job_id and job_id not in attached:
                    attached.add(job_id)
                    try:
                        await self.subscribe(client, job_id, sub, resume.get(job_id, 0))
                    except GatewayError as error:
                        sub.offer(
                            Update(
                                job_id, 1 << 62, "error", reason=error.reason, text=error.message
                            )
                        )
            first = False
            await asyncio.sleep(self.settings.discovery_interval)

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
        self._subscribers.discard(sub)
        for watch in list(self.watches.values()):
            if sub in watch.subscribers:
                watch.detach(sub)

    def retire(self, watch: JobWatch) -> None:
        if self.watches.get(watch.key) is watch:
            del self.watches[watch.key]
        if watch.current is not None:
            self.memory[watch.key] = _Memory(watch.revision, watch.state_key, watch.current)
            self.memory.move_to_end(watch.key)
            while len(self.memory) > self.settings.memory_jobs:
                self.memory.popitem(last=False)

    async def shutdown(self) -> None:
        """Ends every stream with UNAVAILABLE so clients reconnect elsewhere."""
        self.closing = True
        error = GatewayError(
            grpc.StatusCode.UNAVAILABLE,
            "UPSTREAM_UNAVAILABLE",
            "the gateway is shutting down; reconnect with resume_after_revision",
        )
        for sub in list(self._subscribers):
            sub.close(error)
        for watch in list(self.watches.values()):
            if watch.task is not None:
                watch.task.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.sleep(0)
