"""Job-update streams: order, fan-out, resume, cancellation, faults, slow clients, shutdown."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
import uuid

import grpc
import pytest

from runtime_gateway.v1 import jobs_pb2, jobs_pb2_grpc
from tests.gateway.conftest import GatewayClient, bell_inputs, error_info
from tests.procs import start
from tests.streams.conftest import POLL, proxy_env, serve_args

S = jobs_pb2


def _submit(g: GatewayClient, tags: list[str] | None = None, **fields) -> str:
    request = S.RunJobRequest(program_id="sampler", backend="ibmq_qasm_simulator",
                              inputs_json=bell_inputs(), tags=tags or [], **fields)  # fmt: skip
    return g.jobs.RunJob(request, metadata=g.cloud(), timeout=60).job.id


def _states(updates) -> list[str]:
    return [
        S.JobState.Name(u.update.state.job.state)
        for u in updates
        if u.update.WhichOneof("kind") == "state"
    ]


@pytest.fixture
def paused(streamer: GatewayClient):
    streamer.upstream.admin("POST", "/queue/pause")
    yield
    streamer.upstream.admin("POST", "/queue/resume")


def test_one_subscriber_sees_every_state_in_order(streamer: GatewayClient, paused) -> None:
    job_id = _submit(streamer)
    stream = streamer.jobs.WatchJob(S.WatchJobRequest(job_id=job_id, include_result=True),
                                    metadata=streamer.cloud(), timeout=60)  # fmt: skip
    first = next(stream)
    assert first.update.state.job.state == S.JOB_STATE_QUEUED and first.update.revision >= 1
    streamer.upstream.admin("POST", "/queue/resume")
    rest = list(stream)  # the stream ends by itself after the terminal update
    updates = [first, *rest]
    states = [s for s in _states(updates)]
    assert states == ["JOB_STATE_QUEUED", "JOB_STATE_RUNNING", "JOB_STATE_COMPLETED"]
    revisions = [u.update.revision for u in updates if u.update.WhichOneof("kind") == "state"]
    assert revisions == sorted(set(revisions))  # increasing, no duplicates
    last = updates[-1].update.state
    assert last.terminal and '"PrimitiveResult"' in last.result_json


def test_unknown_job_ends_with_not_found(streamer: GatewayClient) -> None:
    stream = streamer.jobs.WatchJob(
        S.WatchJobRequest(job_id="d0000000000000000000"), metadata=streamer.cloud(), timeout=30
    )
    with pytest.raises(grpc.RpcError) as failure:
        list(stream)
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(failure.value)[0] == "JOB_NOT_FOUND"


def test_bad_watch_requests(streamer: GatewayClient) -> None:
    for request, field in [
        (S.WatchJobRequest(), "job_id"),
        (S.WatchJobRequest(job_id="x", resume_after_revision=-1), "resume_after_revision"),
    ]:
        with pytest.raises(grpc.RpcError) as failure:
            list(streamer.jobs.WatchJob(request, metadata=streamer.cloud(), timeout=30))
        assert error_info(failure.value) == ("INVALID_ARGUMENT", field)
    with pytest.raises(grpc.RpcError) as failure:
        list(streamer.jobs.WatchJobs(S.WatchJobsRequest(), metadata=streamer.cloud(), timeout=30))
    assert error_info(failure.value) == ("INVALID_ARGUMENT", "job_ids")


def test_private_results_are_never_read_for_a_subscriber(streamer: GatewayClient) -> None:
    job_id = _submit(streamer, private=True)
    with pytest.raises(grpc.RpcError) as failure:
        list(
            streamer.jobs.WatchJob(
                S.WatchJobRequest(job_id=job_id, include_result=True),
                metadata=streamer.cloud(),
                timeout=30,
            )
        )
    assert error_info(failure.value) == ("INVALID_ARGUMENT", "include_result")


def test_reconnecting_with_a_revision_gets_no_duplicates(streamer: GatewayClient, paused) -> None:
    job_id = _submit(streamer)
    first = next(
        iter(
            streamer.jobs.WatchJob(
                S.WatchJobRequest(job_id=job_id), metadata=streamer.cloud(), timeout=30
            )
        )
    )
    seen = first.update.revision  # the client got QUEUED, then its connection broke
    streamer.upstream.admin("POST", "/queue/resume")
    streamer.wait(job_id, streamer.cloud())
    again = list(streamer.jobs.WatchJob(S.WatchJobRequest(job_id=job_id, resume_after_revision=seen),
                                        metadata=streamer.cloud(), timeout=30))  # fmt: skip
    states = [u for u in again if u.update.WhichOneof("kind") == "state"]
    assert all(u.update.revision > seen for u in states)  # nothing it already had
    assert states[-1].update.state.terminal  # and never a gap in the terminal state
    final = states[-1].update.revision
    # Reconnecting after it saw the end: nothing new, and the stream ends at once.
    tail = list(streamer.jobs.WatchJob(S.WatchJobRequest(job_id=job_id, resume_after_revision=final),
                                       metadata=streamer.cloud(), timeout=30))  # fmt: skip
    assert not [u for u in tail if u.update.WhichOneof("kind") == "state"]


def test_heartbeats_on_an_idle_stream(streamer: GatewayClient, paused) -> None:
    job_id = _submit(streamer)
    stream = streamer.jobs.WatchJob(
        S.WatchJobRequest(job_id=job_id), metadata=streamer.cloud(), timeout=30
    )
    first, second = next(stream).update, next(stream).update
    stream.cancel()
    assert [first.WhichOneof("kind"), second.WhichOneof("kind")] == ["state", "heartbeat"]
    # A heartbeat says "nothing changed up to this revision" for this job.
    assert (second.job_id, second.revision) == (job_id, first.revision)


def test_many_subscribers_share_one_watcher_per_job(streamer: GatewayClient, paused) -> None:
    up = streamer.upstream
    jobs = [_submit(streamer) for _ in range(5)]
    up.clear_log()

    async def run() -> list[list[str]]:
        async with grpc.aio.insecure_channel(streamer.address) as channel:
            stub = jobs_pb2_grpc.JobServiceStub(channel)

            async def subscribe(job_id: str) -> list[str]:
                call = stub.WatchJob(
                    S.WatchJobRequest(job_id=job_id), metadata=streamer.cloud(), timeout=120
                )
                return [
                    S.JobState.Name(u.update.state.job.state)
                    async for u in call
                    if u.update.WhichOneof("kind") == "state"
                ]

            tasks = [asyncio.create_task(subscribe(jobs[i % 5])) for i in range(500)]
            await asyncio.sleep(1.0)  # every subscriber is attached to a QUEUED job
            up.admin("POST", "/queue/resume")
            return await asyncio.gather(*tasks)

    started = time.monotonic()
    results = asyncio.run(run())
    elapsed = time.monotonic() - started
    assert all(r[-1] == "JOB_STATE_COMPLETED" for r in results), {tuple(r) for r in results}
    gets = [e for e in up.requests_log() if e["method"] == "GET" and "/jobs/" in e["path"]]
    # Polls depend on the watched jobs and the poll interval, not on 500 subscribers.
    bound = 5 * (elapsed / POLL + 10)
    assert len(gets) <= bound, (len(gets), bound)
    assert len(gets) < 500


def test_a_cancelled_job_ends_every_stream_with_cancelled(streamer: GatewayClient, paused) -> None:
    job_id = _submit(streamer)
    streams = [
        streamer.jobs.WatchJob(
            S.WatchJobRequest(job_id=job_id), metadata=streamer.cloud(), timeout=60
        )
        for _ in range(10)
    ]
    for stream in streams:
        assert next(stream).update.state.job.state == S.JOB_STATE_QUEUED
    streamer.jobs.CancelJob(
        S.CancelJobRequest(job_id=job_id), metadata=streamer.cloud(), timeout=30
    )
    for stream in streams:
        assert _states(list(stream))[-1] == "JOB_STATE_CANCELLED"


def test_upstream_faults_lose_no_terminal_state(streamer: GatewayClient, paused) -> None:
    up = streamer.upstream
    jobs = [_submit(streamer) for _ in range(3)]
    streams = [
        streamer.jobs.WatchJob(
            S.WatchJobRequest(job_id=j, include_result=True), metadata=streamer.cloud(), timeout=90
        )
        for j in jobs
    ]
    for stream in streams:
        next(stream)
    try:
        up.faults(
            error_rate=0.3,
            rate_limit_rate=0.2,
            retry_after_seconds=0.2,
            drop_rate=0.2,
            path_pattern=r"/jobs/[a-z0-9]+(/results)?$",
        )
        up.admin("POST", "/queue/resume")
        for stream in streams:
            last = list(stream)[-1].update.state
            assert last.terminal and last.job.state == S.JOB_STATE_COMPLETED and last.result_json
        assert up.admin("GET", "/faults").json()["injected"] > 0
    finally:
        up.faults()


def test_a_stalled_subscriber_does_not_delay_others(streamer: GatewayClient, paused) -> None:
    job_id = _submit(streamer)
    stalled = streamer.jobs.WatchJob(
        S.WatchJobRequest(job_id=job_id, include_result=True), metadata=streamer.cloud(), timeout=60
    )
    next(stalled)  # attached, then never read again
    prompt = streamer.jobs.WatchJob(
        S.WatchJobRequest(job_id=job_id), metadata=streamer.cloud(), timeout=60
    )
    next(prompt)
    streamer.upstream.admin("POST", "/queue/resume")
    assert _states(list(prompt))[-1] == "JOB_STATE_COMPLETED"
    stalled.cancel()


def test_watch_many_picks_up_jobs_created_later(streamer: GatewayClient) -> None:
    tag = f"many-{uuid.uuid4().hex[:6]}"
    stream = streamer.jobs.WatchJobs(
        S.WatchJobsRequest(tags=[tag]), metadata=streamer.cloud(), timeout=60
    )
    seen: dict[str, list[str]] = {}
    created: list[str] = []

    def submit_later() -> None:
        time.sleep(0.5)
        created.extend(_submit(streamer, tags=[tag]) for _ in range(2))

    threading.Thread(target=submit_later).start()
    for message in stream:
        update = message.update
        if update.WhichOneof("kind") == "state":
            seen.setdefault(update.job_id, []).append(S.JobState.Name(update.state.job.state))
        if len(created) == 2 and all(
            seen.get(j, [""])[-1] == "JOB_STATE_COMPLETED" for j in created
        ):
            break
    stream.cancel()
    assert set(seen) == set(created)


def test_shutdown_ends_streams_with_unavailable(upstream, tmp_path) -> None:
    proc = start(serve_args(), tmp_path, env=proxy_env(upstream))
    g = GatewayClient(proc, upstream)
    upstream.admin("POST", "/queue/pause")
    try:
        job_id = _submit(g)
        stream = g.jobs.WatchJob(S.WatchJobRequest(job_id=job_id), metadata=g.cloud(), timeout=60)
        next(stream)
        proc.popen.send_signal(signal.SIGTERM)
        with pytest.raises(grpc.RpcError) as failure:
            list(stream)
        assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
        assert proc.popen.wait(30) == 0
    finally:
        upstream.admin("POST", "/queue/resume")
        g.channel.close()
        proc.stop()
