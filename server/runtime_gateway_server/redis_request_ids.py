"""RunJob request ids shared by gateway replicas on several hosts, in Redis.

The contract is `SqliteRequestIdStore`'s (idempotency.py): claim / renew / complete /
uncertain / abandon with owner tokens and leases, uncertain windows merged, a fingerprint
mismatch refused, `known(job_id)`, entries living `ttl_seconds`, at most `max_entries`.
Each call is one Lua script (one atomic round trip), so two replicas claiming one id at the
same instant cannot both own it.

Layout (every key under the link's prefix):
- `rid:<sha256 of the store key>`: a hash {fp, state (pending|uncertain|done), lease,
  token, claimed, ws, we, job} that expires with the entry. The store key derives from the
  account's credentials, so only its digest is stored.
- `rid-job:<job id>`: present while an entry names that job (`known`).
- `rid-index`: a sorted set of entry keys by expiry, to drop the oldest beyond
  `max_entries` (the entries' own TTLs do the rest). Scripts name keys they compute, so
  this needs one Redis (or Sentinel), not Redis Cluster.

Leases are timed by Redis's clock (`TIME`), so replicas with skewed clocks agree on when an
owner's lease ran out. The uncertain windows are the gateway's wall clock, as with SQLite:
they are compared with IBM's job creation times.

When Redis does not answer:
- `claim` raises UNAVAILABLE (a RunJob with a request id is refused: the gateway could not
  tell a retry from a first attempt; a RunJob without one still works);
- `renew` and `known` raise (the lease renewer keeps trying: a short outage does not cost a
  submission its lease; a failing `known` fails the search, which leaves the id uncertain);
- `complete`, `uncertain` and `abandon` record nothing and return as if the id were lost:
  the entry stays pending, its lease runs out and the next claimer looks for the job before
  submitting (the same path as an owner that died). The caller keeps its answer.
Every outcome is reported to the link (`redis_down` / `redis_up`, logged once per change).

When Redis loses its data (redis_data_loss.py): every claim compares the fleet marker this
process knows, so the first claim after a loss notices it even before the ping does. For the
TTL after the loss (`fleet:lost_at`), a claim of an id Redis does not know returns
`Claim(token, uncertain=(lost_at - ttl, now))`: the id may have named a job before the loss,
so RunJob searches for it before submitting. Other claims, and `known`, are unchanged (the
`rid-job` keys the loss erased are gone: a job adopted after the loss is recorded again).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

import grpc
import redis
import structlog

from runtime_gateway_server.errors import GatewayError
from runtime_gateway_server.idempotency import (
    DEFAULT_MAX_ENTRIES,
    DEFAULT_TTL,
    LEASE_SECONDS,
    Claim,
    _different_request,
)
from runtime_gateway_server.redis_data_loss import DataLossWatch
from runtime_gateway_server.redis_link import RedisLink

log = structlog.get_logger("runtime_gateway_server.request_ids")

# Redis's clock in milliseconds, inside a script (scripts replicate their effects, so TIME
# is allowed).
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# Merges the stored window (ws, we) with (start, end): the strings are kept as given, so no
# precision is lost to Lua's number formatting.
_MERGE = """
local function merge(ws, we, s, e)
  if not ws then return s, e end
  if tonumber(s) < tonumber(ws) then ws = s end
  if tonumber(e) > tonumber(we) then we = e end
  return ws, we
end
"""

# KEYS: entry, index, fleet marker, fleet lost_at. ARGV: fingerprint, token, ttl ms, lease
# ms, wall-clock now (seconds), max entries, job-key prefix, the marker this process knows.
# A marker other than the known one means Redis lost its data since this process last
# looked: {'lost'}, nothing written (the caller records the loss and claims again).
_CLAIM = (
    _NOW
    + _MERGE
    + """
if redis.call('GET', KEYS[3]) ~= ARGV[8] then return {'lost'} end
local ttl, lease_ms, max = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[6])
local e = redis.call('HMGET', KEYS[1], 'fp', 'state', 'lease', 'job', 'claimed', 'ws', 'we')
if not e[1] then
  redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'state', 'pending', 'lease', now + lease_ms,
             'token', ARGV[2], 'claimed', ARGV[5])
  -- Within the TTL after a data loss, an id Redis does not know may have been used before
  -- the loss: uncertain from the oldest id the loss could have erased up to now. Stored, so
  -- a claimer after this owner's death searches as far back.
  local lost = redis.call('GET', KEYS[4])
  local ws = false
  if lost and tonumber(ARGV[5]) < tonumber(lost) + ttl / 1000 then
    ws = string.format('%.6f', tonumber(lost) - ttl / 1000)
    redis.call('HSET', KEYS[1], 'ws', ws, 'we', ARGV[5])
  end
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('ZADD', KEYS[2], now + ttl, KEYS[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  local excess = redis.call('ZCARD', KEYS[2]) - max
  if excess > 0 then
    local old = redis.call('ZPOPMIN', KEYS[2], excess)
    for i = 1, #old, 2 do
      local job = redis.call('HGET', old[i], 'job')
      if job then redis.call('DEL', ARGV[7] .. job) end
      redis.call('DEL', old[i])
    end
  end
  if ws then return {'own', ARGV[2], ws, ARGV[5]} end
  return {'own', ARGV[2]}
end
if e[1] ~= ARGV[1] then return {'mismatch'} end
if e[4] then return {'job', e[4]} end
local ws, we = e[6], e[7]
if e[2] == 'pending' then
  local lease = tonumber(e[3])
  if lease > now then return {'busy', tostring(lease - now)} end
  -- Its owner stopped renewing (its process died): the job may exist.
  ws, we = merge(ws, we, e[5], ARGV[5])
end
redis.call('HSET', KEYS[1], 'state', 'pending', 'lease', now + lease_ms, 'token', ARGV[2],
           'claimed', ARGV[5])
if ws then redis.call('HSET', KEYS[1], 'ws', ws, 'we', we) end
return {'own', ARGV[2], ws or false, we or false}
"""
)

# KEYS: entry. ARGV: token, lease ms.
_RENEW = (
    _NOW
    + """
local e = redis.call('HMGET', KEYS[1], 'token', 'state')
if e[1] ~= ARGV[1] or e[2] ~= 'pending' then return 0 end
redis.call('HSET', KEYS[1], 'lease', now + tonumber(ARGV[2]))
return 1
"""
)

# KEYS: entry, job key. ARGV: token, job id.
_COMPLETE = """
local e = redis.call('HMGET', KEYS[1], 'token', 'state')
if e[1] ~= ARGV[1] or e[2] ~= 'pending' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'done', 'job', ARGV[2])
redis.call('HDEL', KEYS[1], 'token')
local left = redis.call('PTTL', KEYS[1])
if left > 0 then redis.call('SET', KEYS[2], '1', 'PX', left) end
return 1
"""

# KEYS: entry. ARGV: token, window start, window end (seconds, as strings).
_UNCERTAIN = (
    _MERGE
    + """
local e = redis.call('HMGET', KEYS[1], 'token', 'state', 'ws', 'we')
if e[1] ~= ARGV[1] or e[2] ~= 'pending' then return 0 end
local ws, we = merge(e[3], e[4], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[1], 'state', 'uncertain', 'lease', 0, 'ws', ws, 'we', we)
redis.call('HDEL', KEYS[1], 'token')
return 1
"""
)

# KEYS: entry, index. ARGV: token.
_ABANDON = """
local e = redis.call('HMGET', KEYS[1], 'token', 'state')
if e[1] ~= ARGV[1] or e[2] ~= 'pending' then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], KEYS[1])
return 1
"""


def unavailable() -> GatewayError:
    """What a RunJob with a request id gets while Redis does not answer."""
    return GatewayError(
        grpc.StatusCode.UNAVAILABLE,
        "UPSTREAM_UNAVAILABLE",
        "request ids cannot be recorded: the gateway's Redis is unreachable; retry",
        retry_after=1.0,
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _seconds(value: Any) -> str:
    # repr keeps every digit of a float; Lua compares them as numbers.
    return repr(float(value))


class RedisRequestIdStore:
    """The request-id store of gateway replicas sharing one Redis (see the module docstring).
    Thread-safe (redis-py's client pools its connections); every call is one round trip."""

    def __init__(
        self,
        link: RedisLink,
        ttl_seconds: float = DEFAULT_TTL,
        lease_seconds: float = LEASE_SECONDS,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        self.link = link
        self.ttl = ttl_seconds
        self.lease_seconds = lease_seconds
        self.max_entries = max_entries
        self._index = link.key("rid-index")
        # The fleet marker: claims compare it, and read when Redis last lost its data.
        self.fleet = DataLossWatch.of(link)
        self.fleet.ttl = ttl_seconds
        self._job_prefix = link.key("rid-job", "")
        client = link.sync
        self._claim = client.register_script(_CLAIM)
        self._renew = client.register_script(_RENEW)
        self._complete = client.register_script(_COMPLETE)
        self._uncertain = client.register_script(_UNCERTAIN)
        self._abandon = client.register_script(_ABANDON)

    def _entry(self, key: str) -> str:
        return self.link.key("rid", hashlib.sha256(key.encode()).hexdigest())

    def _run(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        """Runs a script; reports the link's health. Raises redis.RedisError / OSError."""
        try:
            result = script(keys=keys, args=args)
        except (redis.RedisError, OSError) as error:
            self.link.report(False, error)
            raise
        self.link.report(True)
        return result

    def claim(self, key: str, fingerprint: str) -> Claim:
        """Raises INVALID_ARGUMENT (field request_id) for another request's key, UNAVAILABLE
        when Redis does not answer."""
        token = secrets.token_hex(8)
        keys = [self._entry(key), self._index, self.fleet.marker_key, self.fleet.lost_at_key]
        reply: Any = None
        for _ in range(2):  # a loss found by the claim is recorded, then the claim is redone
            try:
                if not self.fleet.known:
                    self.fleet.check()
                args = [
                    fingerprint,
                    token,
                    max(1, int(self.ttl * 1000)),
                    max(1, int(self.lease_seconds * 1000)),
                    _seconds(time.time()),
                    self.max_entries,
                    self._job_prefix,
                    self.fleet.known,
                ]
                reply = self._run(self._claim, keys, args)
                if _text(reply[0]) != "lost":
                    break
                self.fleet.check()
            except (redis.RedisError, OSError) as error:
                self.link.report(False, error)
                raise unavailable() from None
        kind = _text(reply[0])
        if kind == "lost":  # lost again at once: Redis is flapping; the client retries
            raise unavailable()
        if kind == "mismatch":
            raise _different_request()
        if kind == "job":
            return Claim(job_id=_text(reply[1]))
        if kind == "busy":
            return Claim(retry_in=int(_text(reply[1])) / 1000)
        window = None
        if len(reply) > 2 and reply[2]:
            window = (float(_text(reply[2])), float(_text(reply[3])))
        return Claim(token=_text(reply[1]), uncertain=window)

    def renew(self, key: str, token: str) -> bool:
        """False when the token no longer owns the key; raises UNAVAILABLE when Redis does not
        answer (the renewer tries again: the lease is not known to be lost)."""
        try:
            reply = self._run(
                self._renew, [self._entry(key)], [token, max(1, int(self.lease_seconds * 1000))]
            )
        except (redis.RedisError, OSError):
            raise unavailable() from None
        return bool(reply)

    def complete(self, key: str, token: str, job_id: str) -> bool:
        """False when the token no longer owns the key, or when Redis does not answer (then
        the entry's lease runs out and the next claimer finds this job by searching)."""
        try:
            reply = self._run(
                self._complete, [self._entry(key), self._job_prefix + job_id], [token, job_id]
            )
        except (redis.RedisError, OSError):
            log.warning("request_id_not_recorded", job_id=job_id, reason="redis unreachable")
            return False
        return bool(reply)

    def uncertain(self, key: str, token: str, window: tuple[float, float]) -> None:
        try:
            self._run(
                self._uncertain,
                [self._entry(key)],
                [token, _seconds(window[0]), _seconds(window[1])],
            )
        except (redis.RedisError, OSError):
            # The entry stays pending; when its lease runs out it turns uncertain with a
            # window from its claim to then, which holds this one.
            log.warning("request_id_release_not_recorded", reason="redis unreachable")

    def abandon(self, key: str, token: str) -> None:
        try:
            self._run(self._abandon, [self._entry(key), self._index], [token])
        except (redis.RedisError, OSError):
            # Left pending: after its lease the next claimer searches (finds nothing) first.
            log.warning("request_id_release_not_recorded", reason="redis unreachable")

    def known(self, job_id: str) -> bool:
        """Raises UNAVAILABLE when Redis does not answer (a search must not adopt a job that
        may belong to another id)."""
        try:
            found = self.link.sync.exists(self._job_prefix + job_id)
        except (redis.RedisError, OSError) as error:
            self.link.report(False, error)
            raise unavailable() from error
        self.link.report(True)
        return bool(found)
