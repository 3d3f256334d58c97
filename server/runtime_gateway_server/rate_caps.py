"""Per-account caps on upstream requests, for the whole fleet of gateway replicas.

`RateLimiter` (watch.py) caps one process. With replicas sharing a Redis, `FleetRateLimiter`
keeps the account's budget in Redis instead: a GCRA (generic cell rate algorithm, the token
bucket expressed as one "theoretical arrival time") per account, checked and advanced by one
Lua script, so N replicas together send at most `rate` requests per second for an account
(plus the same initial burst a local bucket allows), not N times that.

The account key derives from credentials: Redis holds only its SHA-256. Redis's clock
(`TIME`) times the bucket, so replicas' clocks need not agree.

When Redis does not answer, a limiter falls back to a local `RateLimiter` at the same rate
(each replica then caps itself alone, as without Redis) and tries Redis again after
`RETRY_SECONDS`, so an outage costs no call more than one failed round trip per interval.
Outcomes are reported to the link (`redis_down` / `redis_up`, once per change).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

import redis

from runtime_gateway_server.metrics import RATE_LIMIT_WAIT_SECONDS, RATE_LIMIT_WAITS
from runtime_gateway_server.redis_link import RedisLink
from runtime_gateway_server.watch import RateLimiter

# After a failed Redis call, a limiter uses its local bucket this long before asking again.
RETRY_SECONDS = 2.0
CALL_TIMEOUT = 1.0  # seconds; a slower answer counts as Redis unavailable
MAX_ACCOUNTS = 10_000  # limiters a factory keeps (the least recently used go first)

# KEYS: the account's TAT key. ARGV: interval (µs per request), burst tolerance (µs).
# Reserves the next slot and returns how many µs to wait for it (0: go now). Reserving,
# rather than answering "not yet", means one round trip per request: waiters do not come
# back to ask again (a herd of them did, thousands of calls a second, under a tight cap).
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait < 0 then wait = 0 end
tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
return wait
"""


class Limiter(Protocol):
    async def acquire(self) -> None:
        """Waits until one more upstream request may be sent."""
        ...


class FleetRateLimiter:
    """One account's fleet-wide cap: `rate` requests per second over all replicas, with a
    burst of `max(1, rate)` (as `RateLimiter`). `acquire` waits on the event loop."""

    def __init__(
        self, link: RedisLink, account_key: str, rate: float, burst: float | None = None
    ) -> None:
        self.link = link
        self.rate = rate
        capacity = burst if burst is not None else max(1.0, rate)
        self.interval_us = max(1, round(1_000_000 / rate))
        self.tolerance_us = round((capacity - 1) * self.interval_us)
        self.key = link.key("rate", hashlib.sha256(account_key.encode()).hexdigest())
        self.local = RateLimiter(rate, burst)
        self._retry_at = 0.0  # monotonic: use the local bucket until then
        self._scripts: dict[int, Any] = {}  # per asyncio client (one per event loop)

    def _script(self) -> Any:
        client = self.link.aio
        found = self._scripts.get(id(client))
        if found is None:
            found = self._scripts[id(client)] = client.register_script(_GCRA)
        return found

    async def acquire(self) -> None:
        while True:
            if time.monotonic() < self._retry_at:
                await self.local.acquire()
                return
            try:
                # Bounded like every fleet call: a Redis that hangs must not hold the
                # watchers' polls (they fall back to the local bucket).
                wait_us = int(
                    await asyncio.wait_for(
                        self._script()(keys=[self.key], args=[self.interval_us, self.tolerance_us]),
                        CALL_TIMEOUT,
                    )
                )
            except (redis.RedisError, OSError, TimeoutError) as error:
                self.link.report(False, error)
                self._retry_at = time.monotonic() + RETRY_SECONDS
                continue
            self.link.report(True)
            if wait_us > 0:  # the slot is ours: wait for it, no need to ask again
                RATE_LIMIT_WAITS.inc()
                RATE_LIMIT_WAIT_SECONDS.inc(wait_us / 1_000_000)
                await asyncio.sleep(wait_us / 1_000_000)
            return


def limiter_factory(link: RedisLink, rate: float) -> Callable[[str], Limiter]:
    """`account key -> its limiter`, for `WatchHub(limiter_factory=...)`: one
    `FleetRateLimiter` per account (at most `MAX_ACCOUNTS` kept, least recently used
    dropped; a dropped account's budget lives on in Redis). `rate` is the fleet's
    requests per second per account (`--watch-account-rps`, not divided by replicas)."""
    limiters: OrderedDict[str, FleetRateLimiter] = OrderedDict()

    def limiter(account_key: str) -> Limiter:
        found = limiters.get(account_key)
        if found is None:
            found = limiters[account_key] = FleetRateLimiter(link, account_key, rate)
            while len(limiters) > MAX_ACCOUNTS:
                limiters.popitem(last=False)
        else:
            limiters.move_to_end(account_key)
        return found

    return limiter
