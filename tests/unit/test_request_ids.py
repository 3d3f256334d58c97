"""RunJob request-id stores: the in-process one and the SQLite one workers share, under one
contract; and the state directory that holds the shared one."""

from __future__ import annotations

import multiprocessing
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from runtime_gateway_server.errors import GatewayError
from runtime_gateway_server.idempotency import (
    InMemoryRequestIdStore,
    RequestIdStore,
    SqliteRequestIdStore,
)
from runtime_gateway_server.state import StateDir

StoreFactory = Callable[..., RequestIdStore]


@pytest.fixture(params=["memory", "sqlite"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    if request.param == "memory":
        return lambda ttl_seconds=3600.0: InMemoryRequestIdStore(ttl_seconds)
    path = str(tmp_path / "ids.sqlite3")
    return lambda ttl_seconds=3600.0: SqliteRequestIdStore(path, ttl_seconds, poll_seconds=0.01)


def test_replay_and_expire(make_store: StoreFactory) -> None:
    store = make_store(ttl_seconds=1.0)
    assert store.claim("k", "fp", 1).owner
    store.complete("k", "job-1")
    assert store.claim("k", "fp", 1).job_id == "job-1"
    with pytest.raises(GatewayError) as failure:
        store.claim("k", "other-fingerprint", 1)
    assert "different RunJob" in failure.value.message
    time.sleep(1.1)
    assert store.claim("k", "fp", 1).owner  # expired: a new submission


def test_concurrent_duplicates_wait_for_the_first(make_store: StoreFactory) -> None:
    store = make_store()
    assert store.claim("k", "fp", 1).owner
    seen: list[str | None] = []
    waiter = threading.Thread(target=lambda: seen.append(store.claim("k", "fp", 5).job_id))
    waiter.start()
    time.sleep(0.1)
    store.complete("k", "job-9")
    waiter.join(5)
    assert seen == ["job-9"]


def test_a_duplicate_gives_up_after_its_wait(make_store: StoreFactory) -> None:
    store = make_store()
    store.claim("k", "fp", 1)
    with pytest.raises(GatewayError) as failure:
        store.claim("k", "fp", 0.2)
    assert failure.value.code.name == "ABORTED" and failure.value.field == "request_id"


def test_uncertain_claims_are_handed_to_one_resolver(make_store: StoreFactory) -> None:
    store = make_store()
    store.claim("k", "fp", 1)
    store.uncertain("k", (100.0, 101.0))
    store.uncertain("k", (99.0, 100.5))  # windows merge
    claim = store.claim("k", "fp", 1)
    assert claim.owner and claim.uncertain == (99.0, 101.0)
    store.complete("k", "job-3")
    assert store.known("job-3") and not store.known("job-4")
    assert store.claim("k", "fp", 1).job_id == "job-3"


def test_a_failed_submission_releases_its_id(make_store: StoreFactory) -> None:
    store = make_store()
    store.claim("k", "fp", 1)
    store.abandon("k")
    assert store.claim("k", "fp", 1).owner


# --- shared between processes -----------------------------------------------------------
def _claim_in_child(path: str, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    store = SqliteRequestIdStore(path, poll_seconds=0.01)
    claim = store.claim("k", "fp", 10)
    results.put((claim.owner, claim.job_id))


def test_workers_share_ids_through_sqlite(tmp_path: Path) -> None:
    """A second process waits for the first one's submission and gets its job."""
    path = str(tmp_path / "ids.sqlite3")
    first = SqliteRequestIdStore(path)
    assert first.claim("k", "fp", 1).owner
    results: multiprocessing.Queue = multiprocessing.get_context("spawn").Queue()  # type: ignore[type-arg]
    child = multiprocessing.get_context("spawn").Process(
        target=_claim_in_child, args=(path, results)
    )
    child.start()
    time.sleep(0.5)  # the child is polling the pending claim
    first.complete("k", "job-7")
    assert results.get(timeout=20) == (False, "job-7")
    child.join(10)
    assert SqliteRequestIdStore(path).known("job-7")


def test_a_claim_whose_owner_died_turns_uncertain(tmp_path: Path) -> None:
    """After the lease, the next claimer owns the id and must look for the job first."""
    path = str(tmp_path / "ids.sqlite3")
    dead = SqliteRequestIdStore(path, lease_seconds=0.2)
    before = time.time()
    assert dead.claim("k", "fp", 1).owner  # ...and its process dies without a word
    time.sleep(0.3)
    claim = SqliteRequestIdStore(path).claim("k", "fp", 1)
    assert claim.owner and claim.uncertain is not None
    assert claim.uncertain[0] >= before - 1 and claim.uncertain[1] <= time.time()


# --- state directory --------------------------------------------------------------------
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
