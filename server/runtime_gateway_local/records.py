"""One JSON file per record (jobs, sessions) in a directory: loaded at start, written
atomically (a temporary file renamed into place), so a crash never leaves half a record."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import structlog

log = structlog.get_logger("runtime_gateway_local.records")
R = TypeVar("R")


def load_records(directory: Path, build: Callable[..., R], kind: str) -> list[R]:
    """Every `<id>.json` of `directory` (created if missing) as `build(**fields)`; unreadable
    files are logged (`<kind>_file_unreadable`) and skipped."""
    directory.mkdir(parents=True, exist_ok=True)
    found = []
    for path in sorted(directory.glob("*.json")):
        try:
            found.append(build(**json.loads(path.read_text())))
        except (OSError, ValueError, TypeError) as error:
            log.warning(f"{kind}_file_unreadable", path=str(path), error=str(error))
    return found


def save_record(directory: Path, record_id: str, record: Any) -> None:
    """Writes the dataclass `record` to `directory/<record_id>.json` atomically."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{record_id}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(asdict(record), handle)
        os.replace(tmp, directory / f"{record_id}.json")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
