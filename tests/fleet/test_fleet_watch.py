"""Job-update streams across the fleet (watch.py with watch_fleet.py): one upstream poller per
job for all replicas, updates resumable on any replica by `(epoch, revision)`, a dead poller
taken over, Redis outages ridden out, and a lost history reported as a reset.

Subscribers are grpc.aio streams in this process, some through HAProxy and some straight to
each replica. Jobs are held in the local runtime's queue (`/_local/queue/pause`) until every
subscriber is attached, so each stream sees the job's whole life.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc
import pytest

from runtime_gateway.v1 import jobs_pb2, jobs_pb2_grpc
from tests.fleet.conftest import POLL, Fleet, run_request

STREAM_SECONDS = 120.0  # a bound on every stream: a hung stream fails the test, not CI


@dataclass
class Subscriber:
    """What one client saw: per job, its non-heartbeat updates in order."""

    targets: list[str]  # addresses: the first is used first, later ones after an error
    updates: dict[str, list[jobs_pb2.JobUpdate]] = field(default_factory=lambda: defaultdict(list))
    reconnects: int = 0

    def terminal(self, job_id: str) -> list[jobs_pb2.JobUpdate]:
        return [u for u in self.updates[job_id]
                if u.WhichOneof("kind") == "state" and u.state.terminal]  # fmt: skip

    def check_sequence(self, job_id: str) -> None:
        """Within an epoch revisions go up by one: no duplicate, no gap. A reset (a new
        epoch) is the only exception, and is said so."""
        seen = self.updates[job_id]
        assert seen, f"no update for {job_id}"
        for before, after in itertools.pairwise(seen):
            if after.reset:
                continue
            assert (after.epoch, after.revision) == (before.epoch, before.revision + 1), (
                f"{job_id}: {before.epoch}/{before.revision} then {after.epoch}/{after.revision} "
                f"(subscriber of {self.targets[0]}, {self.reconnects} reconnects)"
            )
        terminal = self.terminal(job_id)
        assert terminal, f"{job_id}: no terminal state"
        assert len([u for u in terminal if not u.reset]) <= 1, f"{job_id}: terminal state twice"


def _watch_jobs_request(sub: Subscriber, job_ids: list[str]) -> jobs_pb2.WatchJobsRequest:
    request = jobs_pb2.WatchJobsRequest(job_ids=job_ids)
    for job_id in job_ids:
        if sub.updates[job_id]:
            last = sub.updates[job_id][-1]
            request.resume_after_revisions[job_id] = last.revision
            request.resume_epochs[job_id] = last.epoch
    return request


async def follow(sub: Subscriber, job_ids: list[str], attached: asyncio.Event | None = None,
                 single: bool = False) -> None:  # fmt: skip
    """Follows the jobs to their terminal states, reconnecting (to the next target, with
    its `(epoch, revision)` per job) when a stream ends with UNAVAILABLE: a replica died
    or drained. `single`: one WatchJob stream (one job) instead of WatchJobs."""
    deadline = time.monotonic() + STREAM_SECONDS
    attempt = 0
    while time.monotonic() < deadline:
        pending = [j for j in job_ids if not sub.terminal(j)]
        if not pending:
            return
        target = sub.targets[min(attempt, len(sub.targets) - 1)]
        async with grpc.aio.insecure_channel(target) as channel:
            stub = jobs_pb2_grpc.JobServiceStub(channel)
            if single:
                last = sub.updates[pending[0]][-1] if sub.updates[pending[0]] else None
                call = stub.WatchJob(jobs_pb2.WatchJobRequest(
                    job_id=pending[0], resume_after_revision=last.revision if last else 0,
                    resume_epoch=last.epoch if last else ""), timeout=STREAM_SECONDS)  # fmt: skip
            else:
                call = stub.WatchJobs(_watch_jobs_request(sub, pending), timeout=STREAM_SECONDS)
            try:
                async for response in call:
                    update = response.update
                    if update.WhichOneof("kind") == "heartbeat" or not update.job_id:
                        continue
                    sub.updates[update.job_id].append(update)
                    if attached is not None and all(sub.updates[j] for j in job_ids):
                        attached.set()
                    if all(sub.terminal(j) for j in job_ids):
                        call.cancel()
                        return
            except grpc.aio.AioRpcError as error:
                # A replica that drains ends its streams with UNAVAILABLE. One that dies
                # behind HAProxy: HAProxy ends the client's stream without gRPC trailers,
                # which grpc reports as UNKNOWN "Stream removed".
                lost = error.code() == grpc.StatusCode.UNKNOWN and "Stream removed" in (
                    error.details() or ""
                )
                if error.code() != grpc.StatusCode.UNAVAILABLE and not lost:
                    raise
        attempt += 1
        sub.reconnects += 1
        await asyncio.sleep(0.2)
    raise AssertionError(f"streams did not end within {STREAM_SECONDS} s")


@pytest.fixture
def held_queue(fleet: Fleet) -> Iterator[None]:
    """Jobs wait in the local runtime's queue until the test resumes it, then run 1 s."""
    fleet.runtime.admin("POST", "/queue/pause")
    fleet.runtime.admin("PUT", "/execution", json={"min_seconds": 1})
    yield
    fleet.runtime.admin("POST", "/queue/resume")
    fleet.runtime.admin("PUT", "/execution", json={"min_seconds": 0})


def _submit(fleet: Fleet, count: int) -> list[str]:
    return [fleet.jobs.RunJob(run_request(), timeout=30).job.id for _ in range(count)]


def test_300_subscribers_on_three_replicas_one_poller_per_job(
    fleet: Fleet, held_queue: None
) -> None:
    """Every subscriber gets every job's terminal state, and each job is polled upstream
    as often as one watcher polls it (not once per replica)."""
    job_ids = _submit(fleet, 5)
    places = [fleet.haproxy.address, *(r.address for r in fleet.replicas)]
    subs = [Subscriber([places[i % len(places)], fleet.haproxy.address]) for i in range(300)]

    window = 3.0  # seconds of counting, while the jobs wait in the queue
    gets: dict[str, int] = {}

    async def scenario() -> None:
        events = [asyncio.Event() for _ in subs]
        tasks = [
            asyncio.create_task(follow(s, job_ids, e)) for s, e in zip(subs, events, strict=True)
        ]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), 60)
        fleet.runtime.clear_counts()  # from here on: only what the fleet polls
        await asyncio.sleep(window)
        gets.update({job_id: fleet.runtime.job_requests(job_id) for job_id in job_ids})
        fleet.runtime.admin("POST", "/queue/resume")
        await asyncio.wait_for(asyncio.gather(*tasks), STREAM_SECONDS)

    asyncio.run(scenario())
    for sub in subs:
        for job_id in job_ids:
            assert len(sub.terminal(job_id)) == 1
            sub.check_sequence(job_id)
    # One watcher polls a queued job once per POLL seconds (the tests turn the back-off
    # off): about window / POLL = 6 GETs, fewer on a busy machine. Three independent
    # replicas would make about 18.
    one_watcher = window / POLL + 1
    assert all(n <= 1.5 * one_watcher for n in gets.values()), (gets, one_watcher)


def test_a_killed_poller_is_taken_over_and_streams_resume_without_duplicates_or_gaps(
    fleet: Fleet, held_queue: None
) -> None:
    (job_id,) = _submit(fleet, 1)
    places = [fleet.haproxy.address, *(r.address for r in fleet.replicas)]
    subs = [Subscriber([places[i % len(places)], fleet.haproxy.address]) for i in range(24)]

    def running() -> bool:
        return all(any(u.state.job.state == jobs_pb2.JOB_STATE_RUNNING
                       for u in sub.updates[job_id]) for sub in subs)  # fmt: skip

    async def scenario() -> None:
        events = [asyncio.Event() for _ in subs]
        tasks = [asyncio.create_task(follow(s, [job_id], e, single=i % 2 == 0))
                 for i, (s, e) in enumerate(zip(subs, events, strict=True))]  # fmt: skip
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), 60)
        # Mid-job: it runs for 10 s, longer than a lease (5 s) takes to run out.
        fleet.runtime.admin("PUT", "/execution", json={"min_seconds": 10})
        fleet.runtime.admin("POST", "/queue/resume")
        for _ in range(300):
            if running():
                break
            await asyncio.sleep(0.1)
        assert running(), "the job was not seen RUNNING"
        holder = await asyncio.to_thread(fleet.watch_lease_holder, job_id)
        holder.kill9()
        survivor = await asyncio.to_thread(fleet.watch_lease_holder, job_id)
        assert survivor is not holder
        await asyncio.wait_for(asyncio.gather(*tasks), STREAM_SECONDS)

    asyncio.run(scenario())
    assert any(sub.reconnects for sub in subs), "no subscriber was on the killed replica"
    for sub in subs:
        sub.check_sequence(job_id)
        assert not any(u.reset for u in sub.updates[job_id])  # Redis kept the history
        assert sub.terminal(job_id)[0].state.job.state == jobs_pb2.JOB_STATE_COMPLETED


def test_resuming_on_another_replica_sends_exactly_the_missed_updates(
    fleet: Fleet, held_queue: None
) -> None:
    job_id = fleet.replicas[0].jobs.RunJob(run_request(), timeout=30).job.id
    stream = fleet.replicas[0].jobs.WatchJob(jobs_pb2.WatchJobRequest(job_id=job_id), timeout=30)
    first = next(iter(stream))  # QUEUED
    stream.cancel()
    assert first.update.state.job.state == jobs_pb2.JOB_STATE_QUEUED
    fleet.runtime.admin("POST", "/queue/resume")
    fleet.wait_terminal(job_id)
    sub = Subscriber([fleet.replicas[1].address])
    sub.updates[job_id].append(first.update)
    asyncio.run(follow(sub, [job_id], single=True))
    sub.check_sequence(job_id)
    assert sub.updates[job_id][1].revision == first.update.revision + 1


def test_redis_outage_during_streams_and_submissions(fleet: Fleet, held_queue: None) -> None:
    """Redis stops while streams are open and RunJobs with request ids are sent, then comes
    back empty: every stream still gets its terminal state (watchers poll on their own
    meanwhile), and each request id yields one job (RunJob refuses an id it cannot record
    with UNAVAILABLE; the client retries it)."""
    job_ids = _submit(fleet, 2)
    places = [fleet.haproxy.address, *(r.address for r in fleet.replicas)]
    subs = [Subscriber([places[i % len(places)], fleet.haproxy.address]) for i in range(12)]
    request_ids = [f"outage-{uuid.uuid4()}" for _ in range(6)]
    results: dict[str, set[str]] = defaultdict(set)
    fleet.runtime.clear_counts()

    def submit_with_retries(request_id: str) -> None:
        for _ in range(300):  # bounded: about 60 s
            try:
                job = fleet.jobs.RunJob(run_request(request_id), timeout=10).job
                results[request_id].add(job.id)
                return
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.UNAVAILABLE, error
                time.sleep(0.2)
        raise AssertionError(f"RunJob {request_id} never succeeded")

    async def scenario() -> None:
        events = [asyncio.Event() for _ in subs]
        tasks = [
            asyncio.create_task(follow(s, job_ids, e)) for s, e in zip(subs, events, strict=True)
        ]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), 60)
        await asyncio.to_thread(submit_with_retries, request_ids[0])
        fleet.redis.stop()
        fleet.runtime.admin("POST", "/queue/resume")
        await asyncio.gather(*(asyncio.to_thread(submit_with_retries, r) for r in request_ids[1:3]),
                             asyncio.to_thread(_restart_redis_soon, fleet))  # fmt: skip
        await asyncio.gather(*(asyncio.to_thread(submit_with_retries, r) for r in request_ids[3:]))
        await asyncio.wait_for(asyncio.gather(*tasks), STREAM_SECONDS)

    asyncio.run(scenario())
    for sub in subs:
        for job_id in job_ids:
            assert sub.terminal(job_id), f"a stream lost {job_id}'s terminal state"
            assert sub.terminal(job_id)[-1].state.job.state == jobs_pb2.JOB_STATE_COMPLETED
    assert all(len(jobs) == 1 for jobs in results.values()), results
    assert len(set.union(*results.values())) == len(request_ids), results  # one job per id
    assert fleet.runtime.job_posts() == len(request_ids)


def _restart_redis_soon(fleet: Fleet) -> None:
    time.sleep(3)
    fleet.redis.start()


def test_a_lost_history_is_reported_as_a_reset(fleet: Fleet) -> None:
    first, other = fleet.replicas[0], fleet.replicas[1]
    job_id = first.jobs.RunJob(run_request(), timeout=30).job.id
    fleet.wait_terminal(job_id)
    last = list(first.jobs.WatchJob(jobs_pb2.WatchJobRequest(job_id=job_id), timeout=30))[-1].update
    assert last.state.terminal and last.epoch
    resume = jobs_pb2.WatchJobRequest(
        job_id=job_id, resume_after_revision=last.revision, resume_epoch=last.epoch
    )
    # Another replica knows the history (Redis): nothing was missed, nothing is sent.
    missed = [r.update for r in other.jobs.WatchJob(resume, timeout=30)]
    assert [u for u in missed if u.WhichOneof("kind") != "heartbeat"] == []
    fleet.redis.restart()  # no persistence: the history and its epoch are gone
    again = [r.update for r in other.jobs.WatchJob(resume, timeout=30)]
    assert again, "nothing sent after a lost history"
    assert again[0].reset
    assert again[0].epoch != last.epoch
    assert again[0].state.job.state == jobs_pb2.JOB_STATE_COMPLETED
