"""The gateway's state directory: what its worker processes (and restarts) must share.

- `page-token.key`: the secret that signs ListJobs page tokens, so a token issued by one
  worker is accepted by the others and survives a restart.
- `request-ids.sqlite3`: RunJob request ids (`SqliteRequestIdStore`), so a retry that
  reconnects to another worker still returns the first job.

The directory is private (0700) and its files 0600: the key signs tokens, and the request
ids are derived from account credentials. The SQLite database is created 0600 before SQLite
opens it (`idempotency.create_private`), whatever the umask; SQLite gives its -wal and -shm
files the database's mode.

With replicas on several hosts (`--redis-url`) the page-token key lives in Redis instead
(`redis_page_token_key`): the first replica sets it, every other one reads the same key.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runtime_gateway_server.redis_link import RedisLink

KEY_FILE = "page-token.key"
REQUEST_IDS_FILE = "request-ids.sqlite3"


@dataclass(frozen=True)
class StateDir:
    path: Path

    @classmethod
    def open(cls, path: Path) -> StateDir:
        """Creates the directory if needed; refuses one that others can read or write."""
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            mode = path.stat().st_mode & 0o777
        except OSError as error:
            raise OSError(f"state directory {path}: {error.strerror or error}") from error
        if mode & 0o077:
            raise OSError(
                f"state directory {path} is open to other users (mode {mode:o}); "
                "chmod 700 it or choose another"
            )
        return cls(path)

    def page_token_key(self) -> bytes:
        """The signing key, created once. It is written to a private temporary file and
        linked into place, so concurrent workers agree on one key and never read half of it."""
        target = self.path / KEY_FILE
        if not target.exists():
            temporary = self.path / f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, secrets.token_bytes(32))
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(temporary, target)
            except FileExistsError:
                pass  # another process won; use its key
            finally:
                temporary.unlink()
        key = target.read_bytes()
        if len(key) < 32:
            raise OSError(f"{target} holds fewer than 32 bytes; delete it to make a new key")
        return key

    @property
    def request_ids_path(self) -> str:
        return str(self.path / REQUEST_IDS_FILE)


REDIS_WAIT_SECONDS = 30.0  # how long a starting gateway waits for its Redis


def redis_page_token_key(link: RedisLink, wait_seconds: float = REDIS_WAIT_SECONDS) -> bytes:
    """The fleet's page-token signing key: `SET key <32 random bytes> NX`, then `GET`, so
    every replica signs with the key the first one set. Called once at start (the caller
    keeps it for the life of the process); waits up to `wait_seconds` for Redis, logging
    `redis_waiting` once, then raises OSError (one line, password masked). A Redis that
    refuses the password fails at once.

    A Redis that loses its data (no persistence, failover to an empty replica) keeps the
    key: the key is registered with the fleet's data-loss watch (redis_data_loss.py), so
    running replicas re-assert it (`SET NX`) when they notice the loss, and a replica started
    afterwards reads it. A replica that finds Redis empty (a new fleet, or a loss not noticed
    yet) waits `SETTLE_SECONDS` first, so the running replicas' key wins."""
    import redis
    import structlog

    from runtime_gateway_server.redis_data_loss import SETTLE_SECONDS, DataLossWatch

    fleet = DataLossWatch.of(link)
    key = link.key("page-token-key")
    deadline = time.monotonic() + wait_seconds
    waiting = False
    settled = False
    while True:
        try:
            fleet.check()
            if fleet.created_marker and not settled:
                settled = True
                structlog.get_logger("runtime_gateway_server").info(
                    "redis_fleet_settling", redis=link.describe(), seconds=SETTLE_SECONDS
                )
                time.sleep(SETTLE_SECONDS)
                fleet.check()
            link.sync.set(key, secrets.token_bytes(32), nx=True)
            value = link.sync.get(key)
        except redis.AuthenticationError as error:
            link.report(False, error)
            raise OSError(f"Redis {link.describe()} refused the password: {error}") from None
        except (redis.RedisError, OSError) as error:
            link.report(False, error)
            if time.monotonic() >= deadline:
                raise OSError(
                    f"Redis {link.describe()} did not answer in {wait_seconds:g} s "
                    f"({type(error).__name__}); start it or fix --redis-url"
                ) from None
            if not waiting:
                structlog.get_logger("runtime_gateway_server").warning(
                    "redis_waiting", redis=link.describe(), seconds=wait_seconds
                )
                waiting = True
            time.sleep(0.5)
            continue
        link.report(True)
        if not isinstance(value, bytes) or len(value) < 32:
            raise OSError(f"Redis key {key} holds fewer than 32 bytes; delete it to make a new key")
        fleet.keep(key, value)
        return value
