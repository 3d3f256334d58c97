"""The gateway's state directory: what its worker processes (and restarts) must share.

- `page-token.key`: the secret that signs ListJobs page tokens, so a token issued by one
  worker is accepted by the others and survives a restart.
- `request-ids.sqlite3`: RunJob request ids (`SqliteRequestIdStore`), so a retry that
  reconnects to another worker still returns the first job.

The directory is private (0700) and its files 0600: the key signs tokens, and the request
ids are derived from account credentials. The SQLite database is created 0600 before SQLite
opens it (`idempotency.create_private`), whatever the umask; SQLite gives its -wal and -shm
files the database's mode.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

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
