"""Fault injection and a request log, switchable at run time through `/_local/*`.

Faults apply to the emulated IBM services (never to the admin endpoints): added latency, a
fraction of 5xx answers, 429 answers with `Retry-After`, and dropped connections.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, fields
from typing import Any

from runtime_gateway_local.http import HttpError, Request


@dataclass
class FaultConfig:
    latency_ms: float = 0.0  # added to every matching request
    error_rate: float = 0.0  # fraction answered with `error_status`
    error_status: int = 503
    rate_limit_rate: float = 0.0  # fraction answered 429
    retry_after_seconds: float = 1.0  # sent with 429
    drop_rate: float = 0.0  # fraction whose connection is closed without an answer
    path_pattern: str = ""  # regex on the path; empty matches all
    methods: tuple[str, ...] = ()  # empty matches all
    max_faults: int = -1  # stop injecting after this many faults; -1: no limit
    after_handler: bool = False  # handle the request first, then lose or replace the answer

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaultConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise HttpError(400, f"Unknown fault settings: {', '.join(unknown)}")
        config = cls(**{**data, "methods": tuple(m.upper() for m in data.get("methods", ()))})
        for name in ("error_rate", "rate_limit_rate", "drop_rate"):
            if not 0.0 <= getattr(config, name) <= 1.0:
                raise HttpError(400, f"{name} must be between 0 and 1")
        try:
            re.compile(config.path_pattern)
        except re.error as error:
            raise HttpError(400, f"path_pattern is not a valid regex: {error}") from None
        return config


DROP = object()  # returned by `apply` when the connection must be dropped


class FaultInjector:
    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._config = FaultConfig()
        self._random = random.Random(seed)  # noqa: S311 - fault sampling, not security
        self.injected = 0

    @property
    def config(self) -> FaultConfig:
        return self._config

    def configure(self, config: FaultConfig) -> None:
        with self._lock:
            self._config = config
            self.injected = 0

    def apply(self, request: Request) -> object | None:
        """Sleeps, raises an HttpError, returns DROP, or returns None (no fault)."""
        config = self._config
        if config.path_pattern and not re.search(config.path_pattern, request.path):
            return None
        if config.methods and request.method not in config.methods:
            return None
        with self._lock:
            # `max_faults` bounds latency too: each faulted request counts once.
            if config.max_faults >= 0 and self.injected >= config.max_faults:
                return None
            if config.latency_ms:
                self.injected += 1
        if config.latency_ms:
            time.sleep(config.latency_ms / 1000)
        with self._lock:
            draw = self._random.random()
            fault: object | None = None
            if draw < config.drop_rate:
                fault = DROP
            elif draw < config.drop_rate + config.error_rate:
                fault = HttpError(config.error_status, "Injected server error (local runtime).")
            elif draw < config.drop_rate + config.error_rate + config.rate_limit_rate:
                fault = HttpError(
                    429,
                    "Too many requests (injected by the local runtime).",
                    headers={"Retry-After": f"{config.retry_after_seconds:g}"},
                )
            if fault is not None and not config.latency_ms:
                self.injected += 1
        if isinstance(fault, HttpError):
            raise fault
        return fault


@dataclass
class LoggedRequest:
    time: float
    service: str
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # credentials masked
    body: str
    status: int


_SECRET_HEADERS = {"authorization", "x-access-token"}


def _mask(name: str, value: str) -> str:
    if name not in _SECRET_HEADERS:
        return value
    scheme, _, credential = value.partition(" ")
    return f"{scheme} ***" if credential else "***"


class RequestLog:
    """The last `capacity` requests to the emulated services, for tests and benchmarks."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._entries: deque[LoggedRequest] = deque(maxlen=capacity)
        self._lock = threading.Lock()

    def record(self, service: str, request: Request, status: int) -> None:
        body = request.body.decode("utf-8", "replace")
        if service in ("iam", "auth"):
            body = "***"  # carries API keys
        entry = LoggedRequest(
            time=time.time(),
            service=service,
            method=request.method,
            path=request.path,
            query=request.query,
            headers={k: _mask(k, v) for k, v in request.headers.items()},
            body=body[:100_000],
            status=status,
        )
        with self._lock:
            self._entries.append(entry)

    def entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(e) for e in self._entries]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class RequestCounts:
    """How many requests each `METHOD path` received since the last `clear`, unbounded in
    time (the request log keeps only the last entries): what the fleet tests and benchmark
    count upstream GETs per job with. Paths are the emulated services' (ids included)."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def record(self, request: Request) -> None:
        key = f"{request.method} {request.path}"
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()
