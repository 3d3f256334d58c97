"""The gateway's connection to Redis, shared by the fleet's parts (request ids, watcher
leases and update history, rate caps, the page-token key, caches).

- Clients come from redis-py: a synchronous one for code that runs in threads (the
  request-id store's pool) and an asyncio one for the event loop (watchers). Both are made
  from the operator's URL (`redis://`, `rediss://` for TLS, `unix://`; a password in the URL
  or in `REDISCLI_AUTH`-style `RUNTIME_GATEWAY_REDIS_PASSWORD`), with short timeouts so a
  Redis that stops answering fails calls in about a second instead of hanging them.
- `RedisLink.report(ok)` records whether the last call worked. The first failure after a
  success (and the first success after failures) is logged once, with the URL's password
  masked, so an outage gives two log lines, not one per call. `up` is what health reports
  when the operator asks for it (`--redis-required`).
- Every key starts with `prefix` (default `rg:`), so one Redis can serve several fleets.

The password is registered with the log scrubber and never appears in `describe()`, logs or
errors: redis-py's own error messages carry host and port only.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import redis
import redis.asyncio
import redis.retry
import structlog
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff

from runtime_gateway_server.logs import SECRETS

log = structlog.get_logger("runtime_gateway_server.redis")

# A call that gets no answer within this many seconds fails (and counts as Redis down).
SOCKET_TIMEOUT = 2.0
CONNECT_TIMEOUT = 2.0
SCHEMES = ("redis", "rediss", "unix")


def mask_url(url: str) -> str:
    """The URL without its password (`redis://user:***@host:6379/0`), for logs and errors."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unreadable Redis URL>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    try:
        port: object = parts.port
    except ValueError:  # a bad port: keep the text as given (it holds no password)
        port = parts.netloc.rpartition("@")[2].rpartition(":")[2] or None
    if port is not None:
        host = f"{host}:{port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def check_url(url: str) -> None:
    """Raises ValueError (with the URL masked) unless redis-py can use the URL."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as error:
        raise ValueError(f"--redis-url {mask_url(url)}: {error}") from None
    if parts.scheme not in SCHEMES:
        raise ValueError(
            f"--redis-url {mask_url(url)}: the scheme must be one of {', '.join(SCHEMES)}"
        )
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError(f"--redis-url {mask_url(url)}: no host")


class RedisLink:
    """One Redis for the whole gateway process: its clients, its key prefix and its health."""

    def __init__(self, url: str, prefix: str = "rg:", password: str | None = None) -> None:
        check_url(url)
        self.url = url
        self.prefix = prefix
        parts = urlsplit(url)
        self._password = password
        for secret in (parts.password and unquote(parts.password), password):
            if secret:
                SECRETS.add(secret)
        self.sync: redis.Redis = redis.Redis.from_url(
            url, **self._options(), retry=redis.retry.Retry(NoBackoff(), 1)
        )
        self._aio: dict[int, redis.asyncio.Redis] = {}  # per event loop (workers have one each)
        self._lock = threading.Lock()
        self._report_lock = threading.Lock()
        self.up: bool | None = None  # unknown until the first call
        self.changed_at = time.monotonic()

    def _options(self) -> dict[str, Any]:
        options: dict[str, Any] = {
            "socket_timeout": SOCKET_TIMEOUT,
            "socket_connect_timeout": CONNECT_TIMEOUT,
            "health_check_interval": 10,
            "decode_responses": False,
            # A pooled connection that Redis closed (it restarted) is retried once on a new
            # one, instead of failing the call and flapping the link's up/down state.
            "retry_on_error": [redis.ConnectionError],
        }
        if self._password:
            options["password"] = self._password
        return options

    @property
    def aio(self) -> redis.asyncio.Redis:
        """The asyncio client of the running event loop."""
        import asyncio

        loop = asyncio.get_running_loop()
        with self._lock:
            found = self._aio.get(id(loop))
            if found is None:
                found = redis.asyncio.Redis.from_url(
                    self.url, **self._options(), retry=AsyncRetry(NoBackoff(), 1)
                )
                self._aio[id(loop)] = found
            return found

    def blocking_client(self) -> redis.asyncio.Redis:
        """A new asyncio client for blocking reads (XREAD BLOCK holds its connection): its
        socket timeout leaves room for a block of up to `SOCKET_TIMEOUT` seconds."""
        options = self._options()
        options["socket_timeout"] = SOCKET_TIMEOUT * 3
        return redis.asyncio.Redis.from_url(self.url, **options)

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def describe(self) -> str:
        return mask_url(self.url)

    def report(self, ok: bool, error: BaseException | None = None) -> None:
        """Records the outcome of a Redis call; logs only changes (down, then up again)."""
        if ok == self.up:
            return
        with self._report_lock:  # threads (request ids) and the loop (pings) report at once
            if ok == self.up:
                return
            was = self.up
            self.up = ok
            self.changed_at = time.monotonic()
        if ok:
            if was is not None:
                log.info("redis_up", redis=self.describe())
            else:
                log.info("redis_connected", redis=self.describe())
        else:
            log.warning(
                "redis_down",
                redis=self.describe(),
                error=type(error).__name__ if error is not None else "unknown",
                detail=str(error)[:200] if error is not None else "",
            )

    def ping(self) -> bool:
        """One PING (synchronous); records and returns the outcome."""
        try:
            self.sync.ping()
        except redis.RedisError as error:
            self.report(False, error)
            return False
        self.report(True)
        return True

    async def aping(self) -> bool:
        try:
            await self.aio.ping()
        except redis.RedisError as error:
            self.report(False, error)
            return False
        self.report(True)
        return True

    async def aclose(self) -> None:
        for client in list(self._aio.values()):
            with contextlib.suppress(Exception):  # closing on the way out; nothing to do
                await client.aclose()
        self._aio.clear()

    def close(self) -> None:
        self.sync.close()


# Errors that mean "Redis is not there (now)", as opposed to a bug in a script.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.BusyLoadingError,
    redis.ReadOnlyError,
    OSError,
)
