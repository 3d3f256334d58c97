"""A second cache tier in Redis for the backend answers replicas would each fetch: backend
lists (per account and instance) and configurations (per upstream and backend).

A process's own `TTLCache` stays the first tier. On its miss, `RedisTieredCache` looks in
Redis before loading from the upstream, and stores what it loaded there for the tier's TTL
(at most `MAX_SHARED_SECONDS`), so N replicas cost the upstream about one request per entry
instead of N. Keys are `cache:<namespace>:<SHA-256 of the cache key>` (cache keys hold
account keys, which derive from credentials).

Redis is only an accelerator here: when it does not answer, the load goes upstream as
without Redis, and the tier is skipped for `RETRY_SECONDS` so an outage adds no Redis wait
to every miss. Outcomes are reported to the link.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import redis

from runtime_gateway_server.backends import BackendDirectory
from runtime_gateway_server.cache import TTLCache
from runtime_gateway_server.redis_link import RedisLink

V = TypeVar("V")
MAX_SHARED_SECONDS = 60.0  # shared entries stay short-lived: Redis survives restarts
RETRY_SECONDS = 2.0  # after a failed Redis call, misses go straight upstream this long


class RedisTieredCache(TTLCache[V]):
    """`TTLCache` (single flight per process) with Redis between it and the loader."""

    def __init__(
        self,
        ttl_seconds: float,
        link: RedisLink,
        namespace: str,
        encode: Callable[[V], bytes],
        decode: Callable[[bytes], V],
        name: str,
        max_entries: int = 10_000,
    ) -> None:
        super().__init__(ttl_seconds, max_entries, name=name)
        self.link = link
        self.namespace = namespace
        self.encode = encode
        self.decode = decode
        self.shared_ms = max(1, int(min(ttl_seconds, MAX_SHARED_SECONDS) * 1000))
        self._skip_until = 0.0  # monotonic

    def get_or_load(self, key: Hashable, load: Callable[[], V]) -> V:
        if self.ttl <= 0:  # caching is off (`--backend-cache-seconds 0`): Redis's too
            return load()
        return super().get_or_load(key, lambda: self._shared(key, load))

    def _redis_key(self, key: Hashable) -> str:
        digest = hashlib.sha256(repr(key).encode()).hexdigest()
        return self.link.key("cache", self.namespace, digest)

    def _failed(self, error: BaseException) -> None:
        self.link.report(False, error)
        self._skip_until = time.monotonic() + RETRY_SECONDS

    def _shared(self, key: Hashable, load: Callable[[], V]) -> V:
        if time.monotonic() < self._skip_until:
            return load()
        name = self._redis_key(key)
        try:
            raw = self.link.sync.get(name)
        except (redis.RedisError, OSError) as error:
            self._failed(error)
            return load()
        self.link.report(True)
        if isinstance(raw, bytes):
            try:
                return self.decode(raw)
            except (ValueError, TypeError):
                pass  # not what this version writes: load and overwrite it
        value = load()  # an upstream error propagates and stores nothing
        try:
            self.link.sync.set(name, self.encode(value), px=self.shared_ms)
        except (redis.RedisError, OSError) as error:
            self._failed(error)
        return value


def _encode_names(names: list[str]) -> bytes:
    return json.dumps(names).encode()


def _decode_names(raw: bytes) -> list[str]:
    names = json.loads(raw)
    if not isinstance(names, list):
        raise ValueError("not a list")
    return [str(n) for n in names]


def _encode_config(config: tuple[dict[str, Any], str]) -> bytes:
    return config[1].encode()  # IBM's text, byte-exact; the dict is parsed back from it


def _decode_config(raw: bytes) -> tuple[dict[str, Any], str]:
    text = raw.decode()
    parsed = json.loads(text)
    if not isinstance(parsed, dict):
        raise ValueError("not an object")
    return parsed, text


def share_backend_caches(directory: BackendDirectory, link: RedisLink) -> None:
    """Puts Redis behind `directory`'s backend-list and configuration caches (same TTLs).
    Status (seconds-fresh) and properties stay per process."""
    lists, configs = directory._lists, directory._configs
    directory._lists = RedisTieredCache(
        lists.ttl, link, "backend-lists", _encode_names, _decode_names, name="backends"
    )
    directory._configs = RedisTieredCache(
        configs.ttl, link, "backend-configs", _encode_config, _decode_config, name="backends"
    )
