"""Job-update streams never hang and never leak: upstream errors end them with the right
status, cancelled streams stop every task they started, bad filters never reach IBM.

The tests run a real gateway process before the local runtime process playing IBM (one,
the per-stream job cap, runs the real hub in-process, see there); the faults are the local
runtime's own fault injection.
"""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from runtime_gateway.v1 import jobs_pb2
from tests.gateway.conftest import DOMAIN, GatewayClient, Upstream, bell_inputs, error_info
from tests.procs import start
from tests.streams.conftest import proxy_env, serve_args

S = jobs_pb2


def _submit(g: GatewayClient, tags: list[str] | None = None) -> str:
    request = S.RunJobRequest(program_id="sampler", backend="ibmq_qasm_simulator",
                              inputs_json=bell_inputs(), tags=tags or [])  # fmt: skip
    return g.jobs.RunJob(request, metadata=g.cloud(), timeout=60).job.id


def _kinds(updates: Any) -> list[str]:
    return [u.update.WhichOneof("kind") for u in updates]


def _final_states(updates: list[Any]) -> list[str]:
    return [
        S.JobState.Name(u.update.state.job.state)
        for u in updates
        if u.update.WhichOneof("kind") == "state" and u.update.state.terminal
    ]


def _other_account(g: GatewayClient) -> list[tuple[str, str]]:
    """The same credentials as `cloud()` under another account key (the url is spelled with
    a trailing slash): the same upstream, so both share one watcher per job."""
    return [(k, f"http://{DOMAIN}/" if k == "x-runtime-url" else v) for k, v in g.cloud()]


def _job_gets(g: GatewayClient, job_id: str) -> list[dict[str, Any]]:
    return [
        e
        for e in g.upstream.requests_log()
        if e["method"] == "GET" and e["path"].endswith(f"/jobs/{job_id}")
    ]


@pytest.fixture
def paused(streamer: GatewayClient) -> Iterator[None]:
    streamer.upstream.admin("POST", "/queue/pause")
    yield
    streamer.upstream.admin("POST", "/queue/resume")


@pytest.fixture
def faults(streamer: GatewayClient) -> Iterator[Any]:
    yield streamer.upstream.faults
    streamer.upstream.faults()


# --- 1. a watcher that gives up ends its subscribers' streams -------------------------------


@pytest.mark.parametrize(
    ("status", "code", "reason"),
    [
        (403, grpc.StatusCode.PERMISSION_DENIED, "UPSTREAM_PERMISSION_DENIED"),
        (401, grpc.StatusCode.UNAUTHENTICATED, "UPSTREAM_UNAUTHENTICATED"),
    ],
)
def test_a_watcher_losing_access_ends_the_stream(
    streamer: GatewayClient, paused, faults, status: int, code: grpc.StatusCode, reason: str
) -> None:
    job_id = _submit(streamer)
    stream = streamer.jobs.WatchJob(
        S.WatchJobRequest(job_id=job_id), metadata=streamer.cloud(), timeout=20
    )
    assert next(stream).update.state.job.state == S.JOB_STATE_QUEUED
    faults(error_rate=1.0, error_status=status, path_pattern=rf"/jobs/{job_id}$", methods=["GET"])
    with pytest.raises(grpc.RpcError) as failure:
        list(stream)  # before: heartbeats until the deadline
    assert failure.value.code() == code
    assert error_info(failure.value)[0] == reason


def test_only_the_account_that_lost_access_is_ended(
    streamer: GatewayClient, paused, faults
) -> None:
    job_id = _submit(streamer)
    first = streamer.jobs.WatchJob(
        S.WatchJobRequest(job_id=job_id), metadata=streamer.cloud(), timeout=30
    )
    next(first)  # its account started the watcher: the watcher polls with it
    second = streamer.jobs.WatchJob(
        S.WatchJobRequest(job_id=job_id), metadata=_other_account(streamer), timeout=30
    )
    next(second)
    # The next poll (made with the first account) is refused, once.
    faults(error_rate=1.0, error_status=403, path_pattern=rf"/jobs/{job_id}$", methods=["GET"],
           max_faults=1)  # fmt: skip
    with pytest.raises(grpc.RpcError) as failure:
        list(first)
    assert failure.value.code() == grpc.StatusCode.PERMISSION_DENIED
    streamer.upstream.admin("POST", "/queue/resume")
    assert _final_states(list(second)) == ["JOB_STATE_COMPLETED"]  # carried on with its account


def test_a_permanent_upstream_error_ends_the_stream(
    streamer: GatewayClient, paused, faults
) -> None:
    job_id = _submit(streamer)
    stream = streamer.jobs.WatchJob(
        S.WatchJobRequest(job_id=job_id), metadata=streamer.cloud(), timeout=20
    )
    next(stream)
    faults(error_rate=1.0, error_status=400, path_pattern=rf"/jobs/{job_id}$", methods=["GET"])
    with pytest.raises(grpc.RpcError) as failure:
        list(stream)  # before: retried forever, heartbeats until the deadline
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_transient_errors_do_not_end_the_stream(streamer: GatewayClient, paused, faults) -> None:
    job_id = _submit(streamer)
    stream = streamer.jobs.WatchJob(
        S.WatchJobRequest(job_id=job_id), metadata=streamer.cloud(), timeout=60
    )
    next(stream)
    faults(error_rate=1.0, error_status=503, path_pattern=rf"/jobs/{job_id}$", methods=["GET"],
           max_faults=8)  # fmt: skip
    time.sleep(1.0)
    streamer.upstream.admin("POST", "/queue/resume")
    assert _final_states(list(stream)) == ["JOB_STATE_COMPLETED"]


def test_a_job_gone_upstream_ends_the_stream_with_not_found(
    streamer: GatewayClient, paused, faults
) -> None:
    job_id = _submit(streamer)
    stream = streamer.jobs.WatchJob(
        S.WatchJobRequest(job_id=job_id), metadata=streamer.cloud(), timeout=20
    )
    next(stream)
    # As after a deletion by another client (the local runtime deletes only finished jobs).
    faults(error_rate=1.0, error_status=404, path_pattern=rf"/jobs/{job_id}$", methods=["GET"])
    with pytest.raises(grpc.RpcError) as failure:
        list(stream)
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(failure.value)[0] == "JOB_NOT_FOUND"


# --- 2. a cancelled stream stops every task it started --------------------------------------


def test_cancelled_filter_streams_stop_discovery(streamer: GatewayClient) -> None:
    tags = [f"gone-{uuid.uuid4().hex[:8]}" for _ in range(5)]
    streams = [
        streamer.jobs.WatchJobs(S.WatchJobsRequest(tags=[t]), metadata=streamer.cloud(), timeout=60)
        for t in tags
    ]
    for stream in streams:
        assert _kinds([next(stream)]) == ["heartbeat"]  # open, and discovery has run
    for stream in streams:
        stream.cancel()
    time.sleep(0.5)  # the cancellations reach the gateway
    streamer.upstream.clear_log()
    time.sleep(5.0)  # more than two discovery intervals (2 s)
    lists = [
        e
        for e in streamer.upstream.requests_log()
        if e["path"].endswith("/jobs") and set(e["query"].get("tags", [])) & set(tags)
    ]
    assert lists == []  # before: each cancelled stream listed jobs every 2 s, forever


def test_a_cancelled_watch_stops_polling(streamer: GatewayClient, paused) -> None:
    job_id = _submit(streamer)
    stream = streamer.jobs.WatchJob(
        S.WatchJobRequest(job_id=job_id), metadata=streamer.cloud(), timeout=30
    )
    next(stream)
    stream.cancel()
    time.sleep(0.5)
    streamer.upstream.clear_log()
    time.sleep(1.5)  # at least three polls at the maximum interval (0.5 s)
    assert _job_gets(streamer, job_id) == []


def test_a_stream_ending_on_an_error_stops_its_watcher(
    streamer: GatewayClient, paused, faults
) -> None:
    job_id = _submit(streamer)
    stream = streamer.jobs.WatchJob(
        S.WatchJobRequest(job_id=job_id), metadata=streamer.cloud(), timeout=20
    )
    next(stream)
    faults(error_rate=1.0, error_status=403, path_pattern=rf"/jobs/{job_id}$", methods=["GET"])
    with pytest.raises(grpc.RpcError):
        list(stream)
    time.sleep(0.5)
    streamer.upstream.clear_log()
    time.sleep(1.5)
    assert _job_gets(streamer, job_id) == []


# --- 3. filters IBM rejects, and filters refused before they reach IBM ----------------------


@pytest.mark.parametrize("status", [400, 414])
def test_a_filter_the_upstream_rejects_ends_with_invalid_argument(
    streamer: GatewayClient, faults, status: int
) -> None:
    # 400: IBM refuses the filter; 414: the filter made the URL too long. Before: a 400
    # ended the stream naming no field, a 414 was retried forever.
    faults(error_rate=1.0, error_status=status, path_pattern=r"/jobs$", methods=["GET"])
    stream = streamer.jobs.WatchJobs(
        S.WatchJobsRequest(tags=[f"rejected-{uuid.uuid4().hex[:6]}"]),
        metadata=streamer.cloud(),
        timeout=30,
    )
    with pytest.raises(grpc.RpcError) as failure:
        list(stream)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(failure.value) == ("INVALID_ARGUMENT", "tags")


def test_bad_filters_never_reach_the_upstream(streamer: GatewayClient) -> None:
    mark = f"bad{uuid.uuid4().hex[:8]}"
    many = [f"{mark}{i}" for i in range(1001)]
    cases: list[tuple[Any, str]] = [
        (S.WatchJobsRequest(job_ids=[f"{mark}/../x"]), "job_ids[0]"),
        (S.WatchJobsRequest(job_ids=["d1", f"{mark}?a=b"]), "job_ids[1]"),
        (S.WatchJobsRequest(job_ids=[mark * 40]), "job_ids[0]"),
        (S.WatchJobsRequest(job_ids=many), "job_ids"),
        (S.WatchJobsRequest(tags=[mark * 40]), "tags[0]"),
        (S.WatchJobsRequest(tags=[mark, ""]), "tags[1]"),
        (S.WatchJobsRequest(tags=[f"{mark}{i}" for i in range(65)]), "tags"),
        (S.WatchJobsRequest(session_id=f"{mark}/x"), "session_id"),
        (S.WatchJobsRequest(backend=f"{mark}&x=1"), "backend"),
        (S.WatchJobsRequest(job_ids=["d1"], resume_after_revisions={mark: 1}),
         "resume_after_revisions"),
        (S.WatchJobsRequest(job_ids=["d1"], resume_after_revisions={"d1": -1}),
         "resume_after_revisions"),
        (S.WatchJobsRequest(tags=[mark], resume_after_revisions={f"{mark}/x": 1}),
         "resume_after_revisions"),
    ]  # fmt: skip
    streamer.upstream.clear_log()
    for request, field in cases:
        with pytest.raises(grpc.RpcError) as failure:
            list(streamer.jobs.WatchJobs(request, metadata=streamer.cloud(), timeout=10))
        assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert error_info(failure.value) == ("INVALID_ARGUMENT", field)
    for request, field in [
        (S.WatchJobRequest(job_id=f"{mark}/../x"), "job_id"),
        (S.WatchJobRequest(job_id=mark * 40), "job_id"),
    ]:
        with pytest.raises(grpc.RpcError) as failure:
            list(streamer.jobs.WatchJob(request, metadata=streamer.cloud(), timeout=10))
        assert error_info(failure.value) == ("INVALID_ARGUMENT", field)
    leaked = [
        e for e in streamer.upstream.requests_log() if mark in str(e["path"] + str(e["query"]))
    ]
    assert leaked == []


# --- 4. bounded: a WatchJobs stream follows a bounded number of jobs ------------------------


def test_a_filter_stream_follows_a_bounded_number_of_jobs(
    streamer: GatewayClient, paused, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In-process (the cap, MAX_JOB_IDS, is too large to reach through a gateway process in a
    test): the real hub, its discovery and its watchers, over real HTTP to the local runtime,
    with a cap of 2. Only the gRPC layer is left out."""
    import asyncio

    from runtime_gateway_server.assembly import GatewaySettings, build_gateway
    from runtime_gateway_server.credentials import from_metadata
    from runtime_gateway_server.jobs import ListRequest
    from runtime_gateway_server.watch import Subscriber, WatchSettings

    env = proxy_env(streamer.upstream)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    tag = f"cap-{uuid.uuid4().hex[:6]}"
    jobs = {_submit(streamer, tags=[tag]) for _ in range(3)}
    settings = WatchSettings(fast_interval=0.1, max_interval=0.5, heartbeat_seconds=1,
                             discovery_interval=0.2, max_stream_jobs=2)  # fmt: skip
    allow = env["RUNTIME_GATEWAY_ALLOW_UPSTREAM"].split(",")
    gateway = build_gateway(GatewaySettings(watch=settings, allow_upstream=allow), None)

    async def run() -> Subscriber:
        hub = gateway.watch
        client = gateway.client(from_metadata(streamer.cloud()))
        sub = Subscriber(want_result=False, want_interim=False, single_job=False)
        hub.register(sub)

        def candidates(c: Any, deadline: Any, first: bool) -> list[dict[str, Any]]:
            return gateway.jobs.list(c, ListRequest(page_size=200, tags=[tag]), deadline).jobs

        hub.spawn(hub.discover(client, sub, candidates, {}), owner=sub)
        try:
            async with asyncio.timeout(30):
                async for _ in sub.updates(settings.heartbeat_seconds):
                    pass
        finally:
            hub.unsubscribe(sub)
            await hub.shutdown()
        return sub

    try:
        sub = asyncio.run(run())
    finally:
        gateway.executor.shutdown(wait=False, cancel_futures=True)
    assert sub.closed is not None
    assert (sub.closed.code, sub.closed.reason) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "GATEWAY_OVERLOADED",
    )
    assert len(sub.sent) == 2 and set(sub.sent) < jobs  # followed two, never the third


# --- 5. shutdown ends every stream, whatever it is waiting for ------------------------------


def test_shutdown_ends_streams_waiting_on_the_upstream(upstream: Upstream, tmp_path) -> None:
    proc = start(serve_args(["--grace-seconds", "60"]), tmp_path, env=proxy_env(upstream))
    g = GatewayClient(proc, upstream)
    upstream.admin("POST", "/queue/pause")
    try:
        watched, checked = _submit(g), _submit(g)
        attached = g.jobs.WatchJob(
            S.WatchJobRequest(job_id=watched), metadata=g.cloud(), timeout=20
        )
        next(attached)
        # Every GET of a job, and every job list, now takes 5 s: the watcher is mid-request,
        # the new WatchJob is in its access check, the filter stream in its discovery.
        upstream.faults(latency_ms=5000, path_pattern=r"/jobs(/[a-z0-9]+)?$", methods=["GET"])
        checking = g.jobs.WatchJob(
            S.WatchJobRequest(job_id=checked), metadata=g.cloud(), timeout=20
        )
        discovering = g.jobs.WatchJobs(
            S.WatchJobsRequest(tags=[f"shut-{uuid.uuid4().hex[:6]}"]),
            metadata=g.cloud(),
            timeout=20,
        )
        time.sleep(1.0)
        proc.popen.send_signal(signal.SIGTERM)
        for stream in (attached, checking, discovering):
            with pytest.raises(grpc.RpcError) as failure:
                list(stream)  # before: the last two waited for their deadline
            assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
        assert proc.popen.wait(30) == 0
    finally:
        upstream.faults()
        upstream.admin("POST", "/queue/resume")
        g.channel.close()
        proc.stop()
