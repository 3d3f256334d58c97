"""Noticing that the fleet's Redis lost its data (it restarted without persistence, or failed
over to an empty replica), so that what the fleet shares through it survives the loss.

- A fleet marker, `{prefix}fleet:marker` (a random token, set with NX, no TTL), is read by each
  process at start. Each process re-checks it every second (the ping task in app.py, whose
  PING it replaces) and in every request-id claim (the claim script compares it: a retry that
  lands in the second before the ping notices cannot slip through). A marker missing or
  changed means Redis lost data.
- The process that notices records `{prefix}fleet:lost_at = <its wall clock, seconds>` (NX,
  TTL = the request-id TTL), re-creates the marker, and re-asserts with `SET NX` the values it
  holds that the fleet shares (`keep`: the page-token key), all in one script. Every running
  replica holds the same values, so the first one to notice wins and the fleet stays
  consistent. It logs `redis_data_lost` once per loss.
- Request-id claims read `lost_at` (redis_request_ids.py): for the TTL after a loss, an id
  Redis does not know is uncertain over `(lost_at - ttl, now)`, so RunJob searches for the
  job an earlier attempt may have created before it submits.

A process that starts while Redis is empty creates the marker itself: it cannot tell a new
fleet from a loss the running replicas have not noticed yet. `created_marker` tells the page
token key to wait `SETTLE_SECONDS` (two pings) before it sets a key of its own, so running
replicas re-assert theirs first.

`DataLossWatch.of(link)` gives the one watch of a `RedisLink` (the store, the page-token key
and the ping task share it without more wiring).
"""

from __future__ import annotations

import secrets
import threading
import time
import weakref
from typing import Any

import redis
import structlog

from runtime_gateway_server.idempotency import DEFAULT_TTL
from runtime_gateway_server.redis_link import RedisLink

log = structlog.get_logger("runtime_gateway_server.redis")

# How long a process that created the marker waits before it sets shared values of its own:
# two of the running replicas' checks (one per second).
SETTLE_SECONDS = 2.5

# KEYS: marker, lost_at, then the kept keys. ARGV: the marker this process knows ('' at
# start), a new marker, wall-clock now (seconds), lost_at TTL (ms), then the kept values.
# Returns {marker, lost_at or false, 1 when this call found the loss, 1 when it created the
# marker}.
_CHECK = """
local m = redis.call('GET', KEYS[1])
if m and m == ARGV[1] then return {m, redis.call('GET', KEYS[2]) or false, 0, 0} end
local lost, created = 0, 0
if ARGV[1] ~= '' then
  -- A marker this process knew is gone or replaced: Redis lost its data.
  lost = 1
  redis.call('SET', KEYS[2], ARGV[3], 'NX', 'PX', ARGV[4])
  for i = 3, #KEYS do redis.call('SET', KEYS[i], ARGV[i + 2], 'NX') end
end
if not m then
  redis.call('SET', KEYS[1], ARGV[2])
  m, created = ARGV[2], 1
end
return {m, redis.call('GET', KEYS[2]) or false, lost, created}
"""

_watches: weakref.WeakKeyDictionary[RedisLink, DataLossWatch] = weakref.WeakKeyDictionary()
_watches_lock = threading.Lock()


class DataLossWatch:
    """The fleet marker of one process (see the module docstring). Thread-safe."""

    def __init__(self, link: RedisLink, ttl_seconds: float = DEFAULT_TTL) -> None:
        self.link = link
        self.ttl = ttl_seconds  # how long `lost_at` lives: the request-id TTL
        self.marker_key = link.key("fleet", "marker")
        self.lost_at_key = link.key("fleet", "lost_at")
        self.known = ""  # the marker this process knows ('' until the first check)
        self.created_marker = False  # this process found Redis without a marker
        self.losses = 0  # losses this process noticed
        self._kept: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._script = link.sync.register_script(_CHECK)

    @classmethod
    def of(cls, link: RedisLink) -> DataLossWatch:
        """The watch of `link`, made on first use."""
        with _watches_lock:
            found = _watches.get(link)
            if found is None:
                found = _watches[link] = cls(link)
            return found

    def keep(self, key: str, value: bytes) -> None:
        """A value this process holds for the fleet: re-asserted (`SET NX`) after a loss."""
        with self._lock:
            self._kept[key] = value

    def _call(self) -> tuple[list[str], list[Any]]:
        with self._lock:
            kept = dict(self._kept)
            known = self.known
        keys = [self.marker_key, self.lost_at_key, *kept]
        args: list[Any] = [
            known,
            secrets.token_hex(16),
            repr(time.time()),
            max(1, int(self.ttl * 1000)),
            *kept.values(),
        ]
        return keys, args

    def _record(self, reply: Any) -> None:
        marker = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
        lost_at = reply[1]
        with self._lock:
            self.known = marker
            if int(reply[3]):
                self.created_marker = True
            if int(reply[2]):
                self.losses += 1
        if int(reply[2]):
            log.warning(
                "redis_data_lost",
                redis=self.link.describe(),
                lost_at=float(lost_at) if lost_at else None,
                reasserted=len(self._kept),
                note="request ids claimed before are searched for upstream until the TTL ends",
            )

    def check(self) -> None:
        """One look at the marker (synchronous). Raises redis.RedisError / OSError."""
        keys, args = self._call()
        self._record(self._script(keys=keys, args=args))

    async def acheck(self) -> bool:
        """One look at the marker on the event loop (it doubles as the ping): records and
        returns whether Redis answered."""
        keys, args = self._call()
        try:
            reply = await self.link.aio.eval(_CHECK, len(keys), *keys, *args)
        except (redis.RedisError, OSError) as error:
            self.link.report(False, error)
            return False
        self.link.report(True)
        self._record(reply)
        return True
