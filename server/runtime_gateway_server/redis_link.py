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
import re
import threading
import time
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio
import redis.retry
import structlog
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff

from runtime_gateway_server.logs import SECRETS
from runtime_gateway_server.metrics import REDIS_UP

log = structlog.get_logger("runtime_gateway_server.redis")

# A call that gets no answer within this many seconds fails (and counts as Redis down).
SOCKET_TIMEOUT = 2.0
CONNECT_TIMEOUT = 2.0
MAX_CONNECTIONS = 64  # per event loop (asyncio client); calls beyond wait for one
SCHEMES = ("redis", "rediss", "unix")


# Everything between the scheme and the last '@' before the host is user information: read
# from the raw text, not from urlsplit, which ends the netloc at the first '/', '?' or '#'
# (characters a password may hold) and would then report no password at all.
_USERINFO = re.compile(
    r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>.*)@(?P<rest>[^@]*)$", re.S
)


# redis-py also reads a password from the query string (`?password=...`).
_QUERY_PASSWORD = re.compile(r"(?i)([?&]password=)[^&#]*")


def mask_url(url: str) -> str:
    """The URL without its password (`redis://user:***@host:6379/0`), for logs and errors.
    The user information ends at the last '@' (an unencoded '@' in a password is read so
    by redis-py too), and a `password=` query parameter is masked as well."""
    url = _QUERY_PASSWORD.sub(r"\1***", url)
    found = _USERINFO.match(url)
    if found is None:
        return url
    user, colon, _ = found["userinfo"].partition(":")
    if not colon:
        return url  # a user name only (`redis://user@host`): no secret in it
    return f"{found['scheme']}{user}:***@{found['rest']}"


def check_url(url: str) -> None:
    """Raises ValueError (with the URL masked) unless redis-py can use the URL. A password
    with '/', '?' or '#' must be percent-encoded (or given with --redis-password): redis-py
    would read the rest as the path and connect elsewhere."""
    found = _USERINFO.match(url)
    if found is not None and any(c in found["userinfo"] for c in "/?#"):
        raise ValueError(
            f"--redis-url {mask_url(url)}: the password holds '/', '?' or '#'; "
            "percent-encode it, or give it with --redis-password / RUNTIME_GATEWAY_REDIS_PASSWORD"
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        # The parser's own message quotes the text it could not read: it may hold a password.
        raise ValueError(f"--redis-url {mask_url(url)}: the port is not a number") from None
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
                # A blocking pool: with hundreds of watchers renewing leases at once, a
                # call waits for a free connection instead of failing (redis-py's default
                # pool raises MaxConnectionsError at 100, which read as "Redis is down").
                pool = redis.asyncio.BlockingConnectionPool.from_url(
                    self.url,
                    max_connections=MAX_CONNECTIONS,
                    timeout=SOCKET_TIMEOUT,
                    **self._options(),
                    retry=AsyncRetry(NoBackoff(), 1),
                )
                found = redis.asyncio.Redis.from_pool(pool)
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
            REDIS_UP.set(1 if ok else 0)
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
