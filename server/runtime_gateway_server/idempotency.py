"""Request ids that make RunJob idempotent: a repeated submission returns the first job.

`RequestIdStore` is the interface; `InMemoryRequestIdStore` keeps ids for a bounded time in
this process. A shared implementation (Redis: `SET key pending NX EX ttl`, then the job id)
plugs in behind the same three calls so that gateway replicas agree.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

import grpc

from runtime_gateway_server.errors import GatewayError


@dataclass(frozen=True)
class Claim:
    """Either the job an earlier call created (`job_id`), or the right to submit (`owner`).

    `uncertain` (with `owner`): earlier attempts failed in a way that leaves open whether
    IBM created the job; the wall-clock window (start, end) they ran in. The owner must
    look for such a job before submitting again.
    """

    job_id: str | None
    owner: bool
    uncertain: tuple[float, float] | None = None


class RequestIdStore(Protocol):
    def claim(self, key: str, fingerprint: str, wait_seconds: float) -> Claim: ...
    def complete(self, key: str, job_id: str) -> None: ...
    def uncertain(self, key: str, window: tuple[float, float]) -> None: ...
    def abandon(self, key: str) -> None: ...
    def known(self, job_id: str) -> bool: ...


@dataclass
class _Entry:
    fingerprint: str
    expires: float
    job_id: str | None = None
    done: threading.Event | None = None  # set while a submission is in flight
    uncertain: tuple[float, float] | None = None


class InMemoryRequestIdStore:
    def __init__(self, ttl_seconds: float = 3600.0, max_entries: int = 100_000) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._job_ids: set[str] = set()
        self._lock = threading.Lock()

    def claim(self, key: str, fingerprint: str, wait_seconds: float) -> Claim:
        deadline = time.monotonic() + max(wait_seconds, 0.0)
        while True:
            with self._lock:
                self._expire()
                entry = self._entries.get(key)
                if entry is None:
                    self._entries[key] = _Entry(
                        fingerprint, time.monotonic() + self.ttl, done=threading.Event()
                    )
                    while len(self._entries) > self.max_entries:
                        self._entries.popitem(last=False)
                    return Claim(None, owner=True)
                if entry.fingerprint != fingerprint:
                    raise GatewayError(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        "INVALID_ARGUMENT",
                        "request_id: was already used for a different RunJob request",
                        field="request_id",
                    )
                if entry.job_id is not None:
                    return Claim(entry.job_id, owner=False)
                if entry.done is None:  # uncertain and nobody is resolving it: this call does
                    entry.done = threading.Event()
                    return Claim(None, owner=True, uncertain=entry.uncertain)
                done = entry.done
            # Another call with this id is submitting right now: wait for its outcome.
            remaining = deadline - time.monotonic()
            if done is None or remaining <= 0 or not done.wait(remaining):
                raise GatewayError(
                    grpc.StatusCode.ABORTED,
                    "INVALID_ARGUMENT",
                    "request_id: a RunJob with this id is still in progress; retry later",
                    field="request_id",
                )

    def known(self, job_id: str) -> bool:
        """Whether some request id already owns this job (it must not be adopted again)."""
        with self._lock:
            return job_id in self._job_ids

    def complete(self, key: str, job_id: str) -> None:
        with self._lock:
            self._job_ids.add(job_id)
            entry = self._entries.get(key)
            if entry is not None:
                entry.job_id = job_id
                if entry.done is not None:
                    entry.done.set()

    def uncertain(self, key: str, window: tuple[float, float]) -> None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return
            if entry.uncertain is not None:
                window = (min(window[0], entry.uncertain[0]), max(window[1], entry.uncertain[1]))
            entry.uncertain = window
            done, entry.done = entry.done, None
        if done is not None:
            done.set()  # waiters re-claim and one of them resolves the uncertainty

    def abandon(self, key: str) -> None:
        with self._lock:
            entry = self._entries.pop(key, None)
        if entry is not None and entry.done is not None:
            entry.done.set()

    def _expire(self) -> None:
        now = time.monotonic()
        while self._entries:
            entry = next(iter(self._entries.values()))
            if entry.expires > now:
                break
            self._entries.popitem(last=False)
            if entry.job_id is not None:
                self._job_ids.discard(entry.job_id)
