"""The fleet's shared state in a real redis-server: RunJob request ids (the same contract
tests as the in-process and SQLite stores, run on `RedisRequestIdStore`), behaviour while
Redis is down and after it comes back, the shared page-token key and the fleet-wide
per-account rate cap."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from runtime_gateway_server.errors import GatewayError
from runtime_gateway_server.idempotency import Claim, RequestIds
from runtime_gateway_server.paging import Cursor, PageTokens
from runtime_gateway_server.rate_caps import FleetRateLimiter, Limiter, limiter_factory
from runtime_gateway_server.redis_cache import RedisTieredCache
from runtime_gateway_server.redis_link import RedisLink
from runtime_gateway_server.redis_request_ids import RedisRequestIdStore
from runtime_gateway_server.state import redis_page_token_key
from runtime_gateway_server.upstream import Deadline
from tests.redis_server import RedisServer
from tests.unit import test_request_ids as contract
from tests.unit.test_request_ids import StoreFactory

_prefixes = itertools.count()


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def link(redis_server: RedisServer) -> Iterator[RedisLink]:
    """A link with a prefix of its own: tests share the server, never keys."""
    if redis_server.popen is None:  # a test that stopped it failed before restarting it
        redis_server.start()
    link = RedisLink(redis_server.url, prefix=f"t{next(_prefixes)}:")
    yield link
    link.close()


@pytest.fixture
def make_store(link: RedisLink) -> StoreFactory:
    """The contract tests below (from tests/unit/test_request_ids.py) run on this store."""
    return lambda **kw: RedisRequestIdStore(link, **kw)


# --- the store contract, shared with the in-process and SQLite stores -------------------------
test_replay_and_expire = contract.test_replay_and_expire
test_a_claim_in_flight_is_busy_and_claiming_never_waits = (
    contract.test_a_claim_in_flight_is_busy_and_claiming_never_waits
)
test_uncertain_claims_are_handed_to_one_resolver = (
    contract.test_uncertain_claims_are_handed_to_one_resolver
)
test_a_refused_submission_releases_its_id = contract.test_a_refused_submission_releases_its_id
test_a_claim_whose_owner_died_turns_uncertain = (
    contract.test_a_claim_whose_owner_died_turns_uncertain
)
test_renewed_leases_hold_and_a_stale_owner_cannot_settle = (
    contract.test_renewed_leases_hold_and_a_stale_owner_cannot_settle
)


# --- what only the Redis store does --------------------------------------------------------------
def test_replicas_claim_one_id_once_and_share_its_job(
    link: RedisLink, redis_server: RedisServer
) -> None:
    """Two replicas (two links, two stores) race for one id: one owns it, the other waits on
    its event loop and gets the owner's job."""
    other = RedisLink(redis_server.url, prefix=link.prefix)
    first, second = RequestIds(RedisRequestIdStore(link)), RequestIds(RedisRequestIdStore(other))

    async def scenario() -> tuple[bool, str | None]:
        owner = first.claim_now("acct:id-1", "fp")
        assert owner.claim.owner and owner.take()
        waiter = asyncio.ensure_future(second.admit("acct:id-1", lambda: "fp", Deadline.after(10)))
        await asyncio.sleep(0.3)
        assert not waiter.done()  # busy: the other replica submits
        await asyncio.get_running_loop().run_in_executor(
            None, first.settle, owner, "job-shared", False
        )
        admitted = await waiter
        return admitted.claim.owner, admitted.claim.job_id

    assert asyncio.run(scenario()) == (False, "job-shared")
    assert RedisRequestIdStore(other).known("job-shared")
    other.close()


def test_keys_are_hashed_and_expire(link: RedisLink) -> None:
    """The store key derives from credentials: Redis holds only its digest, and every key the
    store writes carries a TTL (the index aside, which claims prune)."""
    store = RedisRequestIdStore(link, ttl_seconds=60)
    key = "account-key-SECRET-123:request-9"
    assert store.complete(key, _token(store.claim(key, "fp")), "job-9")
    names = [k.decode() for k in link.sync.keys(link.prefix + "*")]
    assert names and all(name.startswith(link.prefix) for name in names)
    assert not any("SECRET" in name or "request-9" in name for name in names)
    for name in names:
        dumped = link.sync.dump(name) or b""
        assert b"SECRET" not in dumped and b"request-9" not in dumped
        if not name.endswith(("rid-index", "fleet:marker")):  # the marker must outlive all
            assert 0 < link.sync.pttl(name) <= 60_000


def test_the_store_is_bounded(link: RedisLink) -> None:
    store = RedisRequestIdStore(link, max_entries=20)
    for i in range(60):
        assert store.complete(f"k{i}", _token(store.claim(f"k{i}", "fp")), f"job-{i}")
    entries = [k for k in link.sync.keys(link.prefix + "rid:*")]
    assert len(entries) == 20 and link.sync.zcard(link.key("rid-index")) == 20
    assert not store.known("job-0") and store.known("job-59")
    assert store.claim("k0", "fp").owner  # evicted: a new submission
    assert store.claim("k59", "fp").job_id == "job-59"


def _token(claim: Claim) -> str:
    assert claim.token is not None, claim
    return claim.token


def test_redis_down_refuses_claims_and_keeps_ids_safe(
    link: RedisLink, redis_server: RedisServer
) -> None:
    """While Redis is down: claim and renew raise UNAVAILABLE, known raises; complete,
    uncertain and abandon record nothing and return (the id is released by its lease). Once
    Redis is back (same port, empty), claims work again on the same link, and the outage
    was logged as one change each way."""
    store = RedisRequestIdStore(link, lease_seconds=0.5)
    held = _token(store.claim("k", "fp"))
    redis_server.stop()
    try:
        with pytest.raises(GatewayError) as failure:
            store.claim("k2", "fp")
        assert failure.value.code == grpc.StatusCode.UNAVAILABLE
        assert failure.value.reason == "UPSTREAM_UNAVAILABLE"
        assert "Redis is unreachable" in failure.value.message
        with pytest.raises(GatewayError):
            store.renew("k", held)
        with pytest.raises(GatewayError):
            store.known("job-x")
        assert store.complete("k", held, "job-x") is False
        store.uncertain("k", held, (1.0, 2.0))
        store.abandon("k", held)
        assert link.up is False
    finally:
        redis_server.start()
    assert store.claim("k", "fp").owner  # an empty Redis: a new submission
    assert link.up is True


def test_an_unrecorded_completion_leaves_the_id_uncertain(
    link: RedisLink, redis_server: RedisServer
) -> None:
    """A job created while Redis went away: `complete` fails, the entry's lease runs out, and
    the next claimer is told to look for the job (it is not offered a fresh submission)."""
    store = RedisRequestIdStore(link, lease_seconds=0.3)
    before = time.time()
    token = _token(store.claim("k", "fp"))
    link.sync.connection_pool.disconnect()
    blocked = RedisLink(redis_server.url, prefix=link.prefix)
    blocked.sync.connection_pool.connection_kwargs["port"] = 1  # nothing listens there
    assert RedisRequestIdStore(blocked).complete("k", token, "job-lost") is False
    blocked.close()
    time.sleep(0.4)
    claim = store.claim("k", "fp")
    assert claim.owner and claim.uncertain is not None and claim.uncertain[0] >= before - 1
    assert not store.known("job-lost")  # free to be adopted by the search


# --- the page-token key ------------------------------------------------------------------------
def test_replicas_agree_on_one_page_token_key(link: RedisLink, redis_server: RedisServer) -> None:
    other = RedisLink(redis_server.url, prefix=link.prefix)
    keys = {redis_page_token_key(link), redis_page_token_key(other), redis_page_token_key(link)}
    (key,) = keys
    assert len(key) == 32
    # Tokens signed by one replica verify on the other.
    cursor = Cursor(filters="f", created="2026-01-01T00:00:00Z", seen=["a"], total=3)
    token = PageTokens(redis_page_token_key(link)).encode(cursor)
    assert PageTokens(redis_page_token_key(other)).decode(token, "f") == cursor
    other.close()


def test_a_starting_gateway_waits_for_redis_then_gives_up(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, password="pw-SECRET-5e")  # not started: nothing listens
    down = RedisLink(server.url)
    with pytest.raises(OSError) as failure:
        redis_page_token_key(down, wait_seconds=1.0)
    message = str(failure.value)
    assert "did not answer in 1 s" in message and "redis://:***@127.0.0.1:" in message
    assert "SECRET" not in message and down.up is False


# --- per-account rate caps for the fleet ---------------------------------------------------------
RATE = 10.0
WINDOW = 2.0  # seconds each test lets its limiters run


async def _acquire_for(limiters: list[Limiter], seconds: float) -> list[int]:
    """Acquisitions per limiter, each acquiring in a loop until the window closes."""
    counts = [0] * len(limiters)
    stop = time.monotonic() + seconds

    async def run(index: int) -> None:
        while time.monotonic() < stop:
            await asyncio.wait_for(limiters[index].acquire(), stop + 1 - time.monotonic())
            if time.monotonic() < stop:
                counts[index] += 1

    await asyncio.gather(*(run(i) for i in range(len(limiters))), return_exceptions=True)
    return counts


def test_two_replicas_together_stay_within_one_accounts_rate(
    link: RedisLink, redis_server: RedisServer
) -> None:
    """Two replicas' limiters for one account get about `rate` together (a local bucket each
    would get twice that); another account's budget is its own."""
    other = RedisLink(redis_server.url, prefix=link.prefix)
    replica_a, replica_b = limiter_factory(link, RATE), limiter_factory(other, RATE)
    assert replica_a("acct-1") is replica_a("acct-1")

    async def scenario() -> list[int]:
        limiters = [replica_a("acct-1"), replica_b("acct-1"), replica_b("acct-2")]
        return await _acquire_for(limiters, WINDOW)

    a, b, lone = asyncio.run(scenario())
    budget = RATE + RATE * WINDOW  # the burst, then the rate
    assert a > 0 and b > 0  # both replicas get a share
    assert a + b <= budget + 3, (a, b)  # one budget for the fleet (2x would be about 60)
    assert a + b >= budget / 2, (a, b)  # generous: a loaded machine acquires fewer
    assert lone >= budget / 2  # acct-2 is not slowed by acct-1
    names = [k.decode() for k in link.sync.keys(link.prefix + "rate:*")]
    assert len(names) == 2 and not any("acct" in name for name in names)  # hashed
    other.close()


def test_a_limiter_falls_back_to_a_local_bucket_while_redis_is_down(
    link: RedisLink, redis_server: RedisServer
) -> None:
    limiter = FleetRateLimiter(link, "acct-1", RATE)

    async def acquire(times: int) -> None:
        for _ in range(times):
            await asyncio.wait_for(limiter.acquire(), 10)

    asyncio.run(acquire(2))
    assert link.up is True
    redis_server.stop()
    try:
        asyncio.run(acquire(3))  # served by the local bucket
        assert link.up is False
    finally:
        redis_server.start()
    limiter._retry_at = 0.0  # skip the pause before Redis is asked again
    asyncio.run(acquire(1))
    assert link.up is True and link.sync.keys(link.prefix + "rate:*")


# --- the backend cache's second tier -------------------------------------------------------------
def _tier(link: RedisLink) -> RedisTieredCache[list[str]]:
    return RedisTieredCache(
        60.0,
        link,
        "backend-lists",
        lambda names: json.dumps(names).encode(),
        lambda raw: list(json.loads(raw)),
        name="backends",
    )


def test_replicas_share_cached_backend_answers_and_outlive_a_redis_outage(
    link: RedisLink, redis_server: RedisServer
) -> None:
    loads: list[int] = []

    def load() -> list[str]:
        loads.append(1)
        return ["ibm_a", "ibm_b"]

    other = RedisLink(redis_server.url, prefix=link.prefix)
    key = ("account-key-SECRET", "crn:instance")
    assert _tier(link).get_or_load(key, load) == ["ibm_a", "ibm_b"]
    assert _tier(other).get_or_load(key, load) == ["ibm_a", "ibm_b"]  # from Redis
    assert len(loads) == 1
    (name,) = [k.decode() for k in link.sync.keys(link.prefix + "cache:*")]
    assert "SECRET" not in name and 0 < link.sync.pttl(name) <= 60_000
    redis_server.stop()
    try:
        assert _tier(other).get_or_load(key, load) == ["ibm_a", "ibm_b"]  # from the upstream
        assert len(loads) == 2 and other.up is False
    finally:
        redis_server.start()
    other.close()
