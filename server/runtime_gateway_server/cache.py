"""A TTL cache whose concurrent misses share one load (single flight)."""

from __future__ import annotations

import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from runtime_gateway_server.metrics import CACHE_HITS, CACHE_MISSES

V = TypeVar("V")

# Modules whose caches hold the RPC answers (the gateway's `answers` cache).
_NAMES = {"assembly": "answers", "servicers": "answers"}


class TTLCache(Generic[V]):
    def __init__(self, ttl_seconds: float, max_entries: int = 10_000, name: str = "") -> None:
        # The metric label: `name`, else after the module that made the cache ("backends", ...).
        maker = str(sys._getframe(1).f_globals.get("__name__", "cache")).rsplit(".", 1)[-1]
        self.name = name or _NAMES.get(maker, maker)
        self._hit = CACHE_HITS.labels(self.name)
        self._miss = CACHE_MISSES.labels(self.name)
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()
        self._loading: dict[Hashable, threading.Lock] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_or_load(self, key: Hashable, load: Callable[[], V]) -> V:
        if self.ttl <= 0:
            return load()
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] > now:
                self.hits += 1
                self._hit.inc()
                return entry[1]
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:  # one loader per key; the others wait for its value
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None and entry[0] > time.monotonic():
                    self.hits += 1
                    self._hit.inc()
                    return entry[1]
            self.misses += 1
            self._miss.inc()
            value = load()  # an exception propagates and caches nothing
            with self._lock:
                self._entries[key] = (time.monotonic() + self.ttl, value)
                self._entries.move_to_end(key)
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
                self._loading.pop(key, None)
            return value

    def peek(self, key: Hashable) -> V | None:
        """The live value, or None; never loads."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] > time.monotonic():
                self.hits += 1
                self._hit.inc()
                return entry[1]
        self._miss.inc()
        return None

    def put(self, key: Hashable, value: V) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            self._entries[key] = (time.monotonic() + self.ttl, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def invalidate(self, key: Hashable) -> None:
        with self._lock:
            self._entries.pop(key, None)
