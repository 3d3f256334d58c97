"""RunJob request ids: the in-process store and the SQLite one workers share, under one
contract; the event-loop side that RunJob uses (`RequestIds`); and the state directory that
holds the shared store."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runtime_gateway_server.errors import GatewayError
from runtime_gateway_server.idempotency import (
    PRUNE_EVERY,
    InMemoryRequestIdStore,
    RequestIds,
    RequestIdStore,
    SqliteRequestIdStore,
)
from runtime_gateway_server.state import StateDir
from runtime_gateway_server.upstream import Deadline

StoreFactory = Callable[..., RequestIdStore]


@pytest.fixture(params=["memory", "sqlite"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    if request.param == "memory":
        return lambda **kw: InMemoryRequestIdStore(**kw)
    path = str(tmp_path / "ids.sqlite3")
    return lambda **kw: SqliteRequestIdStore(path, **kw)


def _owner(store: RequestIdStore, key: str = "k", fp: str = "fp") -> str:
    claim = store.claim(key, fp)
    assert claim.owner and claim.token is not None, claim
    return claim.token


# --- the store contract -----------------------------------------------------------------------
def test_replay_and_expire(make_store: StoreFactory) -> None:
    store = make_store(ttl_seconds=1.0)
    token = _owner(store)
    assert store.complete("k", token, "job-1")
    assert store.claim("k", "fp").job_id == "job-1"
    with pytest.raises(GatewayError) as failure:
        store.claim("k", "other-fingerprint")
    assert "different RunJob" in failure.value.message and failure.value.field == "request_id"
    time.sleep(1.1)
    assert store.claim("k", "fp").owner  # expired: a new submission


def test_a_claim_in_flight_is_busy_and_claiming_never_waits(make_store: StoreFactory) -> None:
    store = make_store(lease_seconds=30.0)
    _owner(store)
    claim = store.claim("k", "fp")
    assert claim.busy and not claim.owner and 0 < claim.retry_in <= 30.0


def test_uncertain_claims_are_handed_to_one_resolver(make_store: StoreFactory) -> None:
    store = make_store()
    store.uncertain("k", _owner(store), (100.0, 101.0))
    first = store.claim("k", "fp")
    assert first.owner and first.uncertain == (100.0, 101.0)
    assert store.claim("k", "fp").busy  # one resolver at a time
    assert first.token is not None
    store.uncertain("k", first.token, (99.0, 100.5))  # windows merge
    second = store.claim("k", "fp")
    assert second.owner and second.uncertain == (99.0, 101.0) and second.token is not None
    assert store.complete("k", second.token, "job-3")
    assert store.known("job-3") and not store.known("job-4")
    assert store.claim("k", "fp").job_id == "job-3"


def test_a_refused_submission_releases_its_id(make_store: StoreFactory) -> None:
    store = make_store()
    store.abandon("k", _owner(store))
    assert store.claim("k", "fp").owner


def test_a_claim_whose_owner_died_turns_uncertain(make_store: StoreFactory) -> None:
    """After the lease, the next claimer owns the id and must look for the job first."""
    store = make_store(lease_seconds=0.2)
    before = time.time()
    _owner(store)  # ...and its process dies without a word
    time.sleep(0.3)
    claim = store.claim("k", "fp")
    assert claim.owner and claim.uncertain is not None
    assert before - 1 <= claim.uncertain[0] and claim.uncertain[1] <= time.time()


def test_renewed_leases_hold_and_a_stale_owner_cannot_settle(make_store: StoreFactory) -> None:
    store = make_store(lease_seconds=1.0)
    stale = _owner(store)
    for _ in range(15):  # renewed well past the lease: still busy
        time.sleep(0.1)
        assert store.renew("k", stale)
        assert store.claim("k", "fp").busy
    time.sleep(1.2)  # no renewal: the lease runs out and another call takes the id over
    fresh = store.claim("k", "fp")
    assert fresh.owner and fresh.uncertain is not None and fresh.token is not None
    assert not store.renew("k", stale)
    assert not store.complete("k", stale, "job-stale")
    store.abandon("k", stale)  # no effect either
    assert store.complete("k", fresh.token, "job-fresh")
    assert store.claim("k", "fp").job_id == "job-fresh" and not store.known("job-stale")


# --- bounds -----------------------------------------------------------------------------------
def test_the_in_memory_store_is_bounded_and_forgets_evicted_jobs() -> None:
    store = InMemoryRequestIdStore(max_entries=10)
    for i in range(50):
        assert store.complete(f"k{i}", _owner(store, f"k{i}"), f"job-{i}")
    assert len(store) == 10
    assert not store.known("job-0") and store.known("job-49")
    assert store.claim("k0", "fp").owner  # evicted: a new submission


def test_the_sqlite_table_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "ids.sqlite3"
    store = SqliteRequestIdStore(str(path), max_entries=100)
    claims = 3 * PRUNE_EVERY
    for i in range(claims):
        store.complete(f"k{i}", _owner(store, f"k{i}"), f"job-{i}")
    with sqlite3.connect(path) as db:
        (rows,) = db.execute("SELECT count(*) FROM request_ids").fetchone()
    assert rows <= 100 + PRUNE_EVERY  # pruned every PRUNE_EVERY claims
    assert not store.known("job-0") and store.known(f"job-{claims - 1}")


# --- waiting on the event loop ----------------------------------------------------------------
def test_retries_wait_on_the_event_loop_without_threads() -> None:
    """Many retries of an id in flight wait as coroutines (no thread each) and all get the
    job the moment the owner, in a thread of its own, records it."""
    store = InMemoryRequestIdStore()
    ids = RequestIds(store)

    async def scenario() -> list[str | None]:
        owner = await ids.admit("k", lambda: "fp", Deadline.after(10))
        assert owner.claim.owner and owner.take()
        before = threading.active_count()  # with the store's threads and the lease renewer
        waiters = [
            asyncio.ensure_future(ids.admit("k", lambda: "fp", Deadline.after(10)))
            for _ in range(200)
        ]
        await asyncio.sleep(0.3)
        threads = threading.active_count() - before
        assert not any(w.done() for w in waiters)
        settler = threading.Thread(target=ids.settle, args=(owner, "job-1", False))
        settler.start()
        answers = await asyncio.gather(*waiters)
        settler.join()
        assert threads <= 1  # 200 waiters, no thread each (a second store thread at most)
        return [a.claim.job_id for a in answers]

    assert asyncio.run(scenario()) == ["job-1"] * 200


def test_a_retry_gives_up_at_its_deadline() -> None:
    ids = RequestIds(InMemoryRequestIdStore())

    async def scenario() -> None:
        await ids.admit("k", lambda: "fp", Deadline.after(10))
        await ids.admit("k", lambda: "fp", Deadline.after(0.2))

    with pytest.raises(GatewayError) as failure:
        asyncio.run(scenario())
    assert failure.value.code.name == "ABORTED" and failure.value.field == "request_id"
    assert "retry" in failure.value.message


def test_an_owner_is_renewed_while_it_submits_and_released_if_unused() -> None:
    store = InMemoryRequestIdStore(lease_seconds=1.0)
    ids = RequestIds(store)

    async def scenario() -> None:
        owner = await ids.admit("k", lambda: "fp", Deadline.after(10))
        await asyncio.sleep(2.5)  # beyond the lease: the renewer keeps it
        assert store.claim("k", "fp").busy
        assert owner.drop()  # the call ended before its submission started
        await ids.release_unused(owner)
        assert store.claim("k", "fp").owner

    asyncio.run(scenario())


# --- shared between processes -----------------------------------------------------------------
def _admit_in_child(path: str, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    ids = RequestIds(SqliteRequestIdStore(path))
    admission = asyncio.run(ids.admit("k", lambda: "fp", Deadline.after(20)))
    results.put((admission.claim.owner, admission.claim.job_id))


def test_workers_share_ids_through_sqlite(tmp_path: Path) -> None:
    """A second process waits for the first one's submission and gets its job."""
    path = str(tmp_path / "ids.sqlite3")
    first = RequestIds(SqliteRequestIdStore(path))
    owner = first.claim_now("k", "fp")
    assert owner.claim.owner
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue = context.Queue()  # type: ignore[type-arg]
    child = context.Process(target=_admit_in_child, args=(path, results))
    child.start()
    time.sleep(1.0)  # the child is polling the pending claim
    first.settle(owner, "job-7", nothing_exists=False)
    assert results.get(timeout=20) == (False, "job-7")
    child.join(10)
    assert SqliteRequestIdStore(path).known("job-7")


# --- state directory --------------------------------------------------------------------------
@pytest.fixture
def open_umask() -> Iterator[None]:
    """The usual umask (022): files are made readable by others unless made private."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_the_state_directory_files_are_private(tmp_path: Path, open_umask: None) -> None:
    state = StateDir.open(tmp_path / "state")
    state.page_token_key()
    store = SqliteRequestIdStore(state.request_ids_path)
    store.complete("k", _owner(store), "job-1")
    names = sorted(p.name for p in state.path.iterdir())
    assert "request-ids.sqlite3-wal" in names and "request-ids.sqlite3-shm" in names
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in state.path.iterdir()}
    assert modes == dict.fromkeys(names, 0o600)


def test_a_state_database_made_readable_is_made_private_again(
    tmp_path: Path, open_umask: None
) -> None:
    state = StateDir.open(tmp_path / "state")
    sqlite3.connect(state.request_ids_path).close()
    Path(state.request_ids_path).chmod(0o644)
    SqliteRequestIdStore(state.request_ids_path).claim("k", "fp")
    for p in state.path.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p.name


def test_state_dir_is_private_and_its_key_is_made_once(tmp_path: Path) -> None:
    state = StateDir.open(tmp_path / "state")
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    key = state.page_token_key()
    assert len(key) == 32 and StateDir.open(tmp_path / "state").page_token_key() == key
    key_file = tmp_path / "state" / "page-token.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert [p.name for p in (tmp_path / "state").iterdir()] == ["page-token.key"]


def test_state_dir_refuses_one_others_can_read(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    with pytest.raises(OSError, match="open to other users"):
        StateDir.open(shared)


def test_concurrent_workers_agree_on_one_key(tmp_path: Path) -> None:
    keys: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: keys.append(StateDir.open(tmp_path / "s").page_token_key()))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(keys) == 8 and len(set(keys)) == 1
