"""The Redis side of shared job watchers (`watch_fleet.FleetWatch`) against a real
`redis-server`: leases, fenced writes, epochs and what a reader sees. The end-to-end
behaviour (three replicas, kill -9, HAProxy) is in test_fleet_watch.py."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime_gateway_server.redis_link import RedisLink
from runtime_gateway_server.watch_fleet import Entry, FleetSettings, FleetUnavailable, FleetWatch
from tests.redis_server import RedisServer


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


def _fleet(server: RedisServer, **settings: Any) -> FleetWatch:
    return FleetWatch(RedisLink(server.url), FleetSettings(**settings))


def _run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_one_holder_at_a_time_and_only_the_holder_writes(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        a, b = _fleet(redis_server), _fleet(redis_server)
        keys = a.keys("https://quantum.cloud.ibm.com/api/v1", "job1")
        assert (await a.claim(keys, "a"))[0]
        assert not (await b.claim(keys, "b"))[0]
        assert await a.holder(keys) == "a"
        first = await a.publish(keys, "a", 1, {"k": "state", "j": {"status": "Queued"}})
        assert first.ok and first.epoch
        refused = await b.publish(keys, "b", 2, {"k": "state", "j": {"status": "Running"}})
        assert refused.not_leader
        epoch, entries, state = await b.history(keys)
        assert epoch == first.epoch
        assert [e.revision for e in entries] == [1]
        assert state is not None and state.revision == 1
        await a.link.aclose()
        await b.link.aclose()

    _run(scenario())


def test_a_revision_is_written_once_even_by_a_stale_holder(redis_server: RedisServer) -> None:
    """Split brain: a holder that stalled past its lease and a successor both try the same
    revision; Redis keeps the first and refuses the second."""

    async def scenario() -> None:
        a, b = _fleet(redis_server, lease_seconds=0.2), _fleet(redis_server, lease_seconds=0.2)
        keys = a.keys("u", "job2")
        assert (await a.claim(keys, "a"))[0]
        assert (await a.publish(keys, "a", 1, {"k": "state"})).ok
        await asyncio.sleep(0.4)  # a's lease runs out (it stalled)
        assert (await b.claim(keys, "b"))[0]
        assert (await b.publish(keys, "b", 2, {"k": "state", "x": "b"})).ok
        late = await a.publish(keys, "a", 2, {"k": "state", "x": "a"})
        assert late.not_leader
        assert (await a.claim(keys, "a"))[0] is False
        # Even a writer that holds the lease cannot rewrite a revision that exists.
        assert (await b.publish(keys, "b", 2, {"k": "state", "x": "again"})).conflict
        _, entries, _ = await b.history(keys)
        assert [(e.revision, e.data.get("x")) for e in entries] == [(1, None), (2, "b")]
        await a.link.aclose()
        await b.link.aclose()

    _run(scenario())


def test_a_lost_history_gets_a_new_epoch(redis_server: RedisServer) -> None:
    async def scenario() -> tuple[str, str]:
        a = _fleet(redis_server)
        keys = a.keys("u", "job3")
        await a.claim(keys, "a")
        before = (await a.publish(keys, "a", 7, {"k": "state"})).epoch
        await a.link.aclose()
        return before, ""

    before, _ = _run(scenario())
    redis_server.restart()  # no persistence: the history and the lease are gone

    async def after_restart() -> str:
        a = _fleet(redis_server)
        keys = a.keys("u", "job3")
        assert (await a.claim(keys, "a")) == (True, "")
        written = await a.publish(keys, "a", 8, {"k": "state"})
        epoch, entries, _ = await a.history(keys)
        await a.link.aclose()
        assert written.ok and epoch == written.epoch
        assert [e.revision for e in entries] == [8]
        return epoch

    assert _run(after_restart()) != before


def test_the_reader_brings_new_entries_of_followed_histories(redis_server: RedisServer) -> None:
    async def scenario() -> list[Entry]:
        a, b = _fleet(redis_server), _fleet(redis_server)
        keys = a.keys("u", "job4")
        await a.claim(keys, "a")
        await a.publish(keys, "a", 1, {"k": "state"})
        seen: list[Entry] = []
        arrived = asyncio.Event()

        def on_entry(entry: Entry) -> None:
            seen.append(entry)
            if len(seen) == 2:
                arrived.set()

        b.reader.follow(keys.history, 1, on_entry)  # after revision 1
        await a.publish(keys, "a", 2, {"k": "log", "x": "hello"})
        await a.publish(keys, "a", 3, {"k": "state", "t": True})
        await asyncio.wait_for(arrived.wait(), 10)
        await b.close()
        await a.link.aclose()
        await b.link.aclose()
        return seen

    seen = _run(scenario())
    assert [(e.revision, e.data["k"]) for e in seen] == [(2, "log"), (3, "state")]


def test_a_down_redis_is_reported_not_raised_as_something_else(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis").start()
    fleet = _fleet(server)
    server.stop()

    async def scenario() -> None:
        keys = fleet.keys("u", "job5")
        with pytest.raises(FleetUnavailable):
            await fleet.claim(keys, "a")
        with pytest.raises(FleetUnavailable):
            await fleet.history(keys)
        assert fleet.link.up is False
        await fleet.link.aclose()

    _run(scenario())
