"""Builds the gateway's parts from settings and registers the API services."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from runtime_gateway.v1 import (
    accounts_pb2_grpc,
    backends_pb2_grpc,
    jobs_pb2_grpc,
    sessions_pb2_grpc,
)
from runtime_gateway_server.accounts import Account, AccountRegistry, ApiKey
from runtime_gateway_server.allowlist import UpstreamAllowList
from runtime_gateway_server.backends import BackendDirectory
from runtime_gateway_server.cache import TTLCache
from runtime_gateway_server.credentials import AccountResolver, CallCredentials
from runtime_gateway_server.ibm import ClientPool, check_account
from runtime_gateway_server.idempotency import InMemoryRequestIdStore, SqliteRequestIdStore
from runtime_gateway_server.jobs import JobOperations
from runtime_gateway_server.paging import PageTokens
from runtime_gateway_server.rate_caps import limiter_factory
from runtime_gateway_server.redis_cache import share_backend_caches
from runtime_gateway_server.redis_link import RedisLink
from runtime_gateway_server.redis_request_ids import RedisRequestIdStore
from runtime_gateway_server.servicers import (
    AccountServicer,
    BackendServicer,
    Gateway,
    JobServicer,
)
from runtime_gateway_server.session_servicer import SessionServicer
from runtime_gateway_server.state import StateDir, redis_page_token_key
from runtime_gateway_server.upstream import HttpUpstream, RetryPolicy
from runtime_gateway_server.watch import WatchHub, WatchSettings
from runtime_gateway_server.watch_fleet import FleetSettings, FleetWatch


@dataclass
class GatewaySettings:
    accounts_dir: Path | None = None
    api_keys: list[ApiKey] = field(default_factory=list)
    backend_list_ttl: float = 60.0
    backend_config_ttl: float = 300.0
    backend_status_ttl: float = 2.0
    upstream_threads: int = 32
    upstream_timeout: float = 60.0
    request_id_ttl: float = 3600.0
    # Shared with the other workers (and restarts): request ids and the page-token key.
    state_dir: Path | None = None
    watch: WatchSettings = field(default_factory=WatchSettings)
    # Operator entries for the upstream allow-list (`--allow-upstream HOST[:PORT]`, `*.HOST`);
    # IBM's hosts, the local runtime and IAM_URL & co. are always allowed (allowlist.py).
    allow_upstream: list[str] = field(default_factory=list)
    # Replicas on several hosts share request ids, the page-token key, rate caps and job
    # watchers through this Redis (`--redis-url`); it replaces the state directory's store.
    redis_url: str | None = None
    redis_password: str | None = None
    redis_prefix: str = "rg:"
    redis_wait_seconds: float = 30.0  # at start, for the page-token key; then OSError
    # Upstream requests per second per account for the whole fleet (`--watch-account-rps`,
    # not divided between workers: with Redis they share one budget).
    fleet_account_rps: float = 20.0


class CheckedResolver(AccountResolver):
    """Resolves accounts and refuses, at once, one that leads outside the allow-list (so even
    calls that contact no upstream, like GetActiveAccount, answer UPSTREAM_NOT_ALLOWED)."""

    def __init__(
        self,
        registry: AccountRegistry,
        local: Account | None,
        allow: UpstreamAllowList,
        local_base: str | None,
    ) -> None:
        super().__init__(registry, local)
        self.allow = allow
        self.local_base = local_base

    def resolve(self, creds: CallCredentials) -> Account:
        account = super().resolve(creds)
        check_account(account, self.allow, self.local_base)
        return account


@dataclass(frozen=True)
class LocalUpstream:
    """The embedded local runtime as the gateway reaches it: over HTTP, like IBM."""

    url: str
    token: str
    instance: str

    @classmethod
    def of(cls, runtime: Any) -> LocalUpstream:
        return cls(runtime.base_url, runtime.token, runtime.instances.cloud[0].crn)


def parse_api_keys(values: list[str]) -> list[ApiKey]:
    """`ID=SHA256HEX` entries (the operator stores hashes, never keys)."""
    keys = []
    for value in values:
        for item in filter(None, (v.strip() for v in value.split(","))):
            key_id, sep, digest = item.partition("=")
            digest = digest.strip().lower()
            if not sep or not key_id.strip().replace("-", "").replace("_", "").isalnum():
                raise OSError(f"--api-key must be ID=SHA256HEX with a simple id, got {item!r}")
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise OSError(f"--api-key {key_id}: the hash must be 64 hex digits (SHA-256)")
            keys.append(ApiKey(key_id.strip(), digest))
    return keys


def build_gateway(settings: GatewaySettings, local: LocalUpstream | None) -> Gateway:
    """`local` is the embedded local runtime (or None): the default upstream without credentials."""
    local_base = local.url if local is not None else None
    allow = UpstreamAllowList.for_gateway(settings.allow_upstream, local_url=local_base)
    http = HttpUpstream(RetryPolicy(read_timeout=settings.upstream_timeout), allow=allow)
    local_account = None
    if local is not None:
        local_account = Account(
            channel="local", token=local.token, url=local.url, instance=local.instance, name="local"
        )
    registry = AccountRegistry(settings.accounts_dir, settings.api_keys)
    link = None
    if settings.redis_url is not None:
        link = RedisLink(settings.redis_url, settings.redis_prefix, settings.redis_password)
        jobs = JobOperations(
            RedisRequestIdStore(link, settings.request_id_ttl),
            # Waits for Redis (`redis_wait_seconds`), else OSError.
            PageTokens(redis_page_token_key(link, settings.redis_wait_seconds)),
        )
    elif settings.state_dir is not None:
        state = StateDir.open(settings.state_dir)
        jobs = JobOperations(
            SqliteRequestIdStore(state.request_ids_path, settings.request_id_ttl),
            PageTokens(state.page_token_key()),
        )
    else:
        jobs = JobOperations(InMemoryRequestIdStore(settings.request_id_ttl))
    executor = ThreadPoolExecutor(settings.upstream_threads, thread_name_prefix="upstream")
    backends = BackendDirectory(
        settings.backend_list_ttl, settings.backend_config_ttl, settings.backend_status_ttl
    )
    if link is not None:  # replicas share backend lists and configurations (a second tier)
        share_backend_caches(backends, link)
    return Gateway(
        resolver=CheckedResolver(registry, local_account, allow, local_base),
        registry=registry,
        clients=ClientPool(http, local_base),
        backends=backends,
        jobs=jobs,
        executor=executor,
        watch=WatchHub(
            jobs,
            executor,
            settings.watch,
            fleet=FleetWatch(link, FleetSettings(history=settings.watch.history))
            if link is not None
            else None,
            limiter_factory=limiter_factory(link, settings.fleet_account_rps)
            if link is not None
            else None,
        ),
        answers=TTLCache(min(settings.backend_status_ttl, settings.backend_list_ttl)),
        redis=link,
    )


def register(gateway: Gateway, server: grpc.aio.Server) -> None:
    accounts_pb2_grpc.add_AccountServiceServicer_to_server(AccountServicer(gateway), server)
    backends_pb2_grpc.add_BackendServiceServicer_to_server(BackendServicer(gateway), server)
    jobs_pb2_grpc.add_JobServiceServicer_to_server(JobServicer(gateway), server)
    sessions_pb2_grpc.add_SessionServiceServicer_to_server(SessionServicer(gateway), server)
