"""Job watchers shared by a fleet of gateways through Redis: one poller per job for the whole
fleet, and a per-job update history that any replica can resume from.

Per watched job (keys under the link's prefix; `jk` is a hash of the upstream's URL and the
job id, so no caller text other than a checked job id is stored):

- `watch:lease:{jk}`, a string naming the replica's watcher that polls the job, with a TTL
  (`lease_seconds`). The holder renews it while it polls; when it dies, the lease runs out
  and another replica's watcher takes it (followers try every `check_seconds`).
- `watch:hist:{jk}`, a Redis stream: one entry per update, with the revision as the entry id
  (`<revision>-0`, so ids increase with revisions and a second writer of the same revision
  is refused by Redis itself), trimmed to `history` entries, expiring `history_ttl` seconds
  after the last write. Each entry carries the epoch it was written in.
- `watch:epoch:{jk}`, the history's epoch: a random token created with the history. When
  Redis loses the data (a restart without persistence, expiry, eviction), the next write
  creates a new epoch, so a client's old (epoch, revision) is never mistaken for a point in
  the new history (Centrifugo's Redis engine uses the same offset-and-epoch rule).
- `watch:state:{jk}`, the last state update (its revision and payload), so the current
  state survives when log entries trim it from the history.
- `watch:logs:{jk}`, set (with a TTL) by followers whose subscribers want log text, so the
  leader fetches logs for the whole fleet.

Every write goes through one Lua script that checks the caller holds the lease, so a
replica that stalled past its lease cannot write after its successor. Followers read new
entries with XREAD BLOCK in one loop per process (`StreamReader`), whatever the number of
jobs, so an update reaches every replica within one Redis round trip of its write.

Redis errors surface as `FleetUnavailable`; the watcher then polls on its own (see watch.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
import structlog

from runtime_gateway_server.redis_link import UNAVAILABLE_ERRORS, RedisLink

log = structlog.get_logger("runtime_gateway_server.watch_fleet")


_REDIS_ERRORS: tuple[type[BaseException], ...] = (redis.RedisError, *UNAVAILABLE_ERRORS)


class FleetUnavailable(Exception):
    """Redis did not answer (or answered with an error): the caller works on its own."""


@dataclass(frozen=True)
class FleetSettings:
    lease_seconds: float = 5.0  # a dead poller's job is taken over within about this long
    check_seconds: float = 1.0  # followers try to take the lease this often
    history: int = 64  # entries kept per job
    history_ttl: float = 3600.0  # seconds a job's history lives after its last write
    read_block_seconds: float = 1.0  # one XREAD BLOCK (below the link's socket timeout)
    # A call that takes longer counts as Redis unavailable: a Redis that hangs must not
    # stall the watchers' own polling (they poll alone meanwhile).
    call_timeout: float = 1.0


@dataclass(frozen=True)
class JobKeys:
    lease: str
    history: str
    epoch: str
    logs: str
    state: str


@dataclass(frozen=True)
class Entry:
    """One history entry: an update as the leader published it."""

    revision: int
    epoch: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Published:
    """What a write found: `ok` (then `epoch` is the history's epoch, new if it was lost),
    or `not_leader` (another replica holds the lease), or `conflict` (the revision already
    exists: another writer got there first)."""

    ok: bool = False
    epoch: str = ""
    not_leader: bool = False
    conflict: bool = False


# KEYS: lease. ARGV: me, ms. 1 when `me` holds the lease (taken or renewed), else 0; and the
# history's epoch (empty when there is none), read in the same round trip.
_CLAIM = """
local held = redis.call('GET', KEYS[1])
local mine = 0
if not held then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  mine = 1
elseif held == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  mine = 1
end
local epoch = redis.call('GET', KEYS[2]) or ''
return {mine, epoch}
"""

# KEYS: lease. ARGV: me.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS: lease, history, epoch, state. ARGV: me, revision, payload, maxlen, ttl ms, proposed
# epoch, '1' for a state update.
# Returns {1, epoch} | {-1, ''} not the leader | {-2, epoch} the revision exists.
_PUBLISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return {-1, ''}
end
local epoch = redis.call('GET', KEYS[3])
if not epoch then
  epoch = ARGV[6]
  redis.call('DEL', KEYS[2], KEYS[4])
  redis.call('SET', KEYS[3], epoch)
end
local ok = redis.pcall('XADD', KEYS[2], 'MAXLEN', ARGV[4], ARGV[2] .. '-0',
  'e', epoch, 'd', ARGV[3])
if type(ok) == 'table' and ok.err then
  if string.find(ok.err, 'equal or smaller', 1, true) then
    return {-2, epoch}
  end
  return redis.error_reply(ok.err)
end
if ARGV[7] == '1' then
  redis.call('SET', KEYS[4], ARGV[2] .. ' ' .. ARGV[3], 'PX', ARGV[5])
end
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('PEXPIRE', KEYS[3], ARGV[5])
return {1, epoch}
"""


def _replica_name() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"


def new_epoch() -> str:
    return secrets.token_hex(8)


def _revision_of(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0])


def _entry(entry_id: bytes | str, fields: dict[bytes, bytes]) -> Entry:
    return Entry(
        _revision_of(entry_id),
        fields.get(b"e", b"").decode(),
        json.loads(fields.get(b"d", b"{}")),
    )


class FleetWatch:
    """The Redis side of shared watchers, used by `watch.JobWatch` (one per process)."""

    def __init__(self, link: RedisLink, settings: FleetSettings | None = None) -> None:
        self.link = link
        self.settings = settings or FleetSettings()
        self.replica = _replica_name()
        self._scripts: dict[int, tuple[Any, Any, Any]] = {}
        self.reader = StreamReader(self)

    def keys(self, url: str, job_id: str) -> JobKeys:
        jk = hashlib.sha256(url.encode()).hexdigest()[:16] + ":" + job_id
        return JobKeys(
            lease=self.link.key("watch", "lease", jk),
            history=self.link.key("watch", "hist", jk),
            epoch=self.link.key("watch", "epoch", jk),
            logs=self.link.key("watch", "logs", jk),
            state=self.link.key("watch", "state", jk),
        )

    def _client_scripts(self) -> tuple[Any, Any, Any]:
        client = self.link.aio
        found = self._scripts.get(id(client))
        if found is None:
            found = (
                client.register_script(_CLAIM),
                client.register_script(_RELEASE),
                client.register_script(_PUBLISH),
            )
            self._scripts[id(client)] = found
        return found

    async def _run(self, call: Callable[[], Any]) -> Any:
        try:
            result = await asyncio.wait_for(call(), self.settings.call_timeout)
        except TimeoutError as error:
            self.link.report(False, error)
            raise FleetUnavailable("Redis did not answer in time") from None
        except _REDIS_ERRORS as error:
            self.link.report(False, error)
            raise FleetUnavailable(str(error)[:200]) from None
        self.link.report(True)
        return result

    async def claim(self, keys: JobKeys, holder: str) -> tuple[bool, str]:
        """Takes or renews the job's lease for `holder`: (holds it, the history's epoch)."""
        script = self._client_scripts()[0]
        ms = int(self.settings.lease_seconds * 1000)
        mine, epoch = await self._run(
            lambda: script(keys=[keys.lease, keys.epoch], args=[holder, ms])
        )
        return bool(mine), epoch.decode() if isinstance(epoch, bytes) else str(epoch)

    async def release(self, keys: JobKeys, holder: str) -> None:
        script = self._client_scripts()[1]
        await self._run(lambda: script(keys=[keys.lease], args=[holder]))

    async def holder(self, keys: JobKeys) -> str:
        """Who polls the job now ('' when nobody): for operators and tests."""
        value = await self._run(lambda: self.link.aio.get(keys.lease))
        return value.decode() if value else ""

    async def publish(
        self, keys: JobKeys, holder: str, revision: int, data: dict[str, Any]
    ) -> Published:
        script = self._client_scripts()[2]
        args = [
            holder,
            revision,
            json.dumps(data, separators=(",", ":")),
            self.settings.history,
            int(self.settings.history_ttl * 1000),
            new_epoch(),
            "1" if data.get("k") == "state" else "0",
        ]
        code, epoch = await self._run(
            lambda: script(keys=[keys.lease, keys.history, keys.epoch, keys.state], args=args)
        )
        epoch = epoch.decode() if isinstance(epoch, bytes) else str(epoch)
        if code == -1:
            return Published(not_leader=True)
        if code == -2:
            return Published(conflict=True, epoch=epoch)
        return Published(ok=True, epoch=epoch)

    async def history(self, keys: JobKeys) -> tuple[str, list[Entry], Entry | None]:
        """The history's epoch ('' when there is none), its entries (oldest first) and the
        last state entry (None when there is none), read at one point in time."""
        client = self.link.aio

        async def read() -> Any:
            async with client.pipeline(transaction=True) as pipe:
                pipe.get(keys.epoch)
                pipe.xrange(keys.history, "-", "+")
                pipe.get(keys.state)
                return await pipe.execute()

        epoch, entries, state = await self._run(read)
        epoch_text = epoch.decode() if epoch else ""
        last_state = None
        if state:
            revision, _, payload = state.partition(b" ")
            last_state = Entry(int(revision), epoch_text, json.loads(payload))
        return epoch_text, [_entry(i, f) for i, f in entries], last_state

    # --- WatchJobs discovery: one lister per account and filter for the whole fleet ----------
    def _discovery_keys(self, filter_key: str) -> tuple[str, str]:
        return (
            self.link.key("discover", "lease", filter_key),
            self.link.key("discover", "found", filter_key),
        )

    async def claim_discovery(self, filter_key: str, seconds: float) -> bool:
        """Takes or renews the right to list jobs for this filter (one replica at a time)."""
        lease, found = self._discovery_keys(filter_key)
        script = self._client_scripts()[0]
        mine, _ = await self._run(
            lambda: script(keys=[lease, found], args=[self.replica, int(seconds * 1000)])
        )
        return bool(mine)

    async def share_discovery(
        self, filter_key: str, jobs: list[dict[str, Any]], seconds: float
    ) -> None:
        """Publishes what the lister found: each job's id, creation time and whether it
        was pending, for `seconds`."""
        _, found = self._discovery_keys(filter_key)
        payload = json.dumps(jobs, separators=(",", ":"))
        await self._run(lambda: self.link.aio.set(found, payload, px=int(seconds * 1000)))

    async def discovered(self, filter_key: str) -> list[dict[str, Any]] | None:
        """What the lister last found (None when it has not published, or it expired)."""
        _, found = self._discovery_keys(filter_key)
        raw = await self._run(lambda: self.link.aio.get(found))
        if not raw:
            return None
        jobs = json.loads(raw)
        return jobs if isinstance(jobs, list) else None

    async def want_logs(self, keys: JobKeys) -> None:
        ms = int(self.settings.lease_seconds * 2000)
        await self._run(lambda: self.link.aio.set(keys.logs, b"1", px=ms))

    async def logs_wanted(self, keys: JobKeys) -> bool:
        return bool(await self._run(lambda: self.link.aio.exists(keys.logs)))

    async def close(self) -> None:
        await self.reader.close()


class StreamReader:
    """One XREAD BLOCK loop per process over the histories of every job this replica
    follows; each new entry goes to the follower's callback."""

    def __init__(self, fleet: FleetWatch) -> None:
        self.fleet = fleet
        # history key -> (last revision read, callback)
        self.follows: dict[str, tuple[int, Callable[[Entry], None]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._client: Any = None
        self._changed = asyncio.Event()
        self._closing = False

    def follow(self, history_key: str, after: int, callback: Callable[[Entry], None]) -> None:
        self.follows[history_key] = (after, callback)
        self._changed.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._loop())

    def unfollow(self, history_key: str) -> None:
        self.follows.pop(history_key, None)

    def moved(self, history_key: str, after: int) -> None:
        """The follower caught up by itself (it read the history): read after `after`."""
        found = self.follows.get(history_key)
        if found is not None:
            self.follows[history_key] = (after, found[1])

    async def _loop(self) -> None:
        block_ms = int(self.fleet.settings.read_block_seconds * 1000)
        # Not `while True`: redis-py may turn the cancellation of a blocked XREAD into a
        # connection error, which the loop would otherwise take for an outage.
        while not self._closing:
            if not self.follows:
                self._changed.clear()
                try:
                    await asyncio.wait_for(self._changed.wait(), 30)
                except TimeoutError:
                    if not self.follows:
                        return  # idle: the next follow starts a new loop
                continue
            if self._client is None:
                self._client = self.fleet.link.blocking_client()
            streams = {key: f"{after}-0" for key, (after, _) in self.follows.items()}
            try:
                answer = await self._client.xread(streams, block=block_ms, count=100)
                self.fleet.link.report(True)
            except asyncio.CancelledError:
                raise
            except _REDIS_ERRORS as error:
                self.fleet.link.report(False, error)
                await asyncio.sleep(self.fleet.settings.check_seconds)
                continue
            except Exception:  # a bug must not stop every follower
                log.exception("watch_reader_failed")
                await asyncio.sleep(self.fleet.settings.check_seconds)
                continue
            for raw_key, entries in answer or []:
                key = raw_key.decode() if isinstance(raw_key, bytes) else raw_key
                for entry_id, fields in entries:
                    found = self.follows.get(key)
                    if found is None:
                        break
                    entry = _entry(entry_id, fields)
                    if entry.revision <= found[0]:
                        continue
                    self.follows[key] = (entry.revision, found[1])
                    try:
                        found[1](entry)
                    except Exception:  # one job's bug must not stop the others
                        log.exception("watch_follow_failed", key=key)

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # on the way out
                await self._task
        if self._client is not None:
            with contextlib.suppress(Exception):  # on the way out
                await self._client.aclose()
