"""SessionService end to end: a real gateway before a real local runtime playing IBM.

Device jobs get a duration floor (`PUT /_local/execution {"job_seconds"}`) so the tests can
see jobs wait for a device; orderings are read from the jobs' own start and end times, never
from how long a call took.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import requests
from google.protobuf import duration_pb2

from runtime_gateway.v1 import (
    accounts_pb2,
    jobs_pb2,
    sessions_pb2,
    sessions_pb2_grpc,
)
from tests.gateway.conftest import (
    API_KEYS,
    DOMAIN,
    UPSTREAM_TOKEN,
    GatewayClient,
    bell_inputs,
    error_info,
)
from tests.procs import Proc, start

DEVICE = "ibmq_lima"  # a small device: its jobs simulate fast, the floor makes them last
# A Bell circuit in ibmq_lima's instruction set (rz, sx, x, cx; qubits 0 and 1 are coupled).
ISA_BELL = (
    'OPENQASM 3.0; include "stdgates.inc"; bit[2] c; rz(pi/2) $0; sx $0; rz(pi/2) $0; '
    "cx $0, $1; c[0] = measure $0; c[1] = measure $1;"
)
DEDICATED = sessions_pb2.SESSION_MODE_DEDICATED
BATCH = sessions_pb2.SESSION_MODE_BATCH


@pytest.fixture
def device_floor(gateway: GatewayClient) -> Iterator[None]:
    """Device jobs last at least 1.5 s while the test runs (the suite's default is 0)."""
    gateway.upstream.admin("PUT", "/execution", json={"job_seconds": 1.5})
    yield
    gateway.upstream.admin("PUT", "/execution", json={"job_seconds": 0})
    gateway.upstream.admin("PUT", "/sessions", json={"interactive_ttl": 60})


@pytest.fixture
def stub(gateway: GatewayClient) -> sessions_pb2_grpc.SessionServiceStub:
    return sessions_pb2_grpc.SessionServiceStub(gateway.channel)


def _create(
    stub: sessions_pb2_grpc.SessionServiceStub,
    md: list[tuple[str, str]],
    mode: int = DEDICATED,
    backend: str = DEVICE,
    max_ttl: int = 0,
    **fields: str,
) -> sessions_pb2.Session:
    request = sessions_pb2.CreateSessionRequest(backend=backend, mode=mode, **fields)
    if max_ttl:
        request.max_ttl.CopyFrom(duration_pb2.Duration(seconds=max_ttl))
    return stub.CreateSession(request, metadata=md, timeout=30).session


def _get(
    stub: sessions_pb2_grpc.SessionServiceStub, md: list[tuple[str, str]], session_id: str
) -> sessions_pb2.Session:
    return stub.GetSession(
        sessions_pb2.GetSessionRequest(session_id=session_id), metadata=md, timeout=30
    ).session


def _run(
    gateway: GatewayClient, md: list[tuple[str, str]], session_id: str = "", **fields: object
) -> jobs_pb2.Job:
    backend = str(fields.pop("backend", DEVICE))
    request = jobs_pb2.RunJobRequest(
        program_id="sampler",
        backend=backend,
        inputs_json=bell_inputs() if backend == "ibmq_qasm_simulator" else device_inputs(),
        session_id=session_id,
        **fields,  # type: ignore[arg-type]
    )
    return gateway.jobs.RunJob(request, metadata=md, timeout=60).job


def device_inputs(shots: int = 100) -> str:
    return json.dumps({"pubs": [[ISA_BELL, None, shots]], "version": 2, "options": {}})


def _until(predicate, what: str, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    """Polls `predicate` (bounded) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _state(gateway: GatewayClient, md: list[tuple[str, str]], job_id: str) -> int:
    return gateway.jobs.GetJob(
        jobs_pb2.GetJobRequest(job_id=job_id), metadata=md, timeout=10
    ).job.state


def _times(gateway: GatewayClient, md: list[tuple[str, str]], job_id: str) -> tuple[float, float]:
    """(started, finished) of a finished job, in seconds since the epoch (IBM's metrics)."""
    metrics = gateway.jobs.GetJobMetrics(
        jobs_pb2.GetJobMetricsRequest(job_id=job_id), metadata=md, timeout=10
    )
    return metrics.run_time.ToDatetime().timestamp(), metrics.finish_time.ToDatetime().timestamp()


def _status_of(error: grpc.RpcError) -> tuple[grpc.StatusCode, str, str]:
    reason, field = error_info(error)
    return error.code(), reason, field


@pytest.mark.parametrize("channel", ["ibm_quantum_platform", "ibm_cloud", "ibm_quantum"])
def test_create_and_get_a_session_and_a_batch(
    gateway: GatewayClient, stub: sessions_pb2_grpc.SessionServiceStub, channel: str
) -> None:
    md = gateway.legacy() if channel == "ibm_quantum" else gateway.cloud(channel)
    session = _create(stub, md, DEDICATED, max_ttl=600)
    assert session.id and session.backend == DEVICE
    assert session.mode == DEDICATED and session.state == sessions_pb2.SESSION_STATE_OPEN
    assert session.accepting_jobs and session.max_ttl.seconds == 600
    assert session.interactive_ttl.seconds > 0 and session.start_time.seconds > 0
    assert not session.HasField("close_time") and session.raw_json
    if channel != "ibm_quantum":
        assert session.instance == gateway.upstream.crn
    batch = _create(stub, md, BATCH)
    assert batch.mode == BATCH and batch.max_ttl.seconds == 8 * 3600
    again = _get(stub, md, batch.id)
    assert again.id == batch.id and again.mode == BATCH and again.accepting_jobs
    # What IBM received, per channel (0.21 ibm_quantum: max_session_ttl and h/g/p).
    sent = [
        json.loads(e["body"])
        for e in gateway.upstream.requests_log()
        if e["method"] == "POST" and e["path"].endswith("/sessions")
    ][-2:]
    if channel == "ibm_quantum":
        assert sent[0]["max_session_ttl"] == 600 and sent[0]["instance"].count("/") == 2
        assert "mode" not in sent[0] and sent[1]["mode"] == "batch"
    else:
        assert sent[0]["max_ttl"] == 600 and sent[0]["mode"] == "dedicated"
        assert sent[0]["instance"] == gateway.upstream.crn and "max_ttl" not in sent[1]


def test_dedicated_session_runs_its_jobs_back_to_back(
    gateway: GatewayClient, stub: sessions_pb2_grpc.SessionServiceStub, device_floor: None
) -> None:
    md = gateway.cloud()
    session = _create(stub, md, DEDICATED)
    first = _run(gateway, md, session.id)
    assert first.session_id == session.id
    _until(lambda: _state(gateway, md, first.id) == jobs_pb2.JOB_STATE_RUNNING, "first RUNNING")
    assert _get(stub, md, session.id).state == sessions_pb2.SESSION_STATE_ACTIVE
    other = _run(gateway, md)  # not in the session, submitted before the session's second job
    second = _run(gateway, md, session.id)
    assert _state(gateway, md, other.id) == jobs_pb2.JOB_STATE_QUEUED  # the device is busy
    # Closing: no new jobs, but the queued one still runs.
    closed = stub.CloseSession(
        sessions_pb2.CloseSessionRequest(session_id=session.id), metadata=md, timeout=30
    ).session
    assert not closed.accepting_jobs
    with pytest.raises(grpc.RpcError) as refused:
        _run(gateway, md, session.id)
    code, reason, _ = _status_of(refused.value)
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "SESSION_CLOSED")
    assert "session" in refused.value.details().lower()
    for job in (first, second, other):
        assert gateway.wait(job.id, md).state == jobs_pb2.JOB_STATE_COMPLETED
    first_run, second_run, other_run = (_times(gateway, md, j.id) for j in (first, second, other))
    # The session held the device: its second job ran right after the first, before the
    # other job (submitted earlier), which ran only after the session's jobs.
    assert first_run[1] <= second_run[0] <= second_run[1] <= other_run[0]
    done = _until(
        lambda: (s := _get(stub, md, session.id)).state == sessions_pb2.SESSION_STATE_CLOSED and s,
        "the session CLOSED",
    )
    assert done.HasField("close_time") and done.usage_seconds > 0
    assert done.HasField("activate_time") and done.HasField("last_job_complete_time")


def test_batch_lets_other_jobs_interleave(
    gateway: GatewayClient, stub: sessions_pb2_grpc.SessionServiceStub, device_floor: None
) -> None:
    md = gateway.cloud()
    batch = _create(stub, md, BATCH)
    first = _run(gateway, md, batch.id)
    _until(lambda: _state(gateway, md, first.id) == jobs_pb2.JOB_STATE_RUNNING, "first RUNNING")
    other = _run(gateway, md)
    second = _run(gateway, md, batch.id)
    for job in (first, other, second):
        assert gateway.wait(job.id, md).state == jobs_pb2.JOB_STATE_COMPLETED
    first_run, other_run, second_run = (_times(gateway, md, j.id) for j in (first, other, second))
    # One job at a time on the device, in submission order: the batch does not hold it.
    assert first_run[1] <= other_run[0] <= other_run[1] <= second_run[0]
    stub.CloseSession(
        sessions_pb2.CloseSessionRequest(session_id=batch.id), metadata=md, timeout=30
    )
    closed = _get(stub, md, batch.id)
    assert closed.state == sessions_pb2.SESSION_STATE_CLOSED and not closed.accepting_jobs


def test_cancel_cancels_queued_jobs_and_closes(
    gateway: GatewayClient, stub: sessions_pb2_grpc.SessionServiceStub, device_floor: None
) -> None:
    md = gateway.legacy()  # the ibm_quantum channel too
    session = _create(stub, md, DEDICATED)
    running = _run(gateway, md, session.id)
    _until(lambda: _state(gateway, md, running.id) == jobs_pb2.JOB_STATE_RUNNING, "RUNNING")
    queued = _run(gateway, md, session.id)
    cancelled = stub.CancelSession(
        sessions_pb2.CancelSessionRequest(session_id=session.id), metadata=md, timeout=30
    ).session
    assert cancelled.state == sessions_pb2.SESSION_STATE_CLOSED and not cancelled.accepting_jobs
    assert gateway.wait(queued.id, md).state == jobs_pb2.JOB_STATE_CANCELLED
    assert gateway.wait(running.id, md).state == jobs_pb2.JOB_STATE_COMPLETED  # ran on
    with pytest.raises(grpc.RpcError) as refused:
        _run(gateway, md, session.id)
    assert _status_of(refused.value)[:2] == (grpc.StatusCode.FAILED_PRECONDITION, "SESSION_CLOSED")


def test_ttls_expire_sessions(
    gateway: GatewayClient, stub: sessions_pb2_grpc.SessionServiceStub, device_floor: None
) -> None:
    md = gateway.cloud()
    gateway.upstream.admin("PUT", "/execution", json={"job_seconds": 0})
    gateway.upstream.admin("PUT", "/sessions", json={"interactive_ttl": 1})
    # Interactive TTL: no job for 1 s and the session turns inactive (and frees the device).
    idle = _create(stub, md, DEDICATED)
    assert idle.interactive_ttl.seconds == 1
    job = _run(gateway, md, idle.id)
    assert gateway.wait(job.id, md).state == jobs_pb2.JOB_STATE_COMPLETED
    _until(
        lambda: _get(stub, md, idle.id).state == sessions_pb2.SESSION_STATE_INACTIVE,
        "the session INACTIVE",
    )
    other = _run(gateway, md)  # the device is free again
    assert gateway.wait(other.id, md).state == jobs_pb2.JOB_STATE_COMPLETED
    again = _run(gateway, md, idle.id)  # an inactive session still takes jobs
    assert gateway.wait(again.id, md).state == jobs_pb2.JOB_STATE_COMPLETED
    # Maximum TTL, counted from the first job's start: then closed, and jobs are refused.
    short = _create(stub, md, DEDICATED, max_ttl=2)
    first = _run(gateway, md, short.id)
    assert gateway.wait(first.id, md).state == jobs_pb2.JOB_STATE_COMPLETED
    expired = _until(
        lambda: (s := _get(stub, md, short.id)).state == sessions_pb2.SESSION_STATE_CLOSED and s,
        "the session CLOSED by its maximum TTL",
    )
    assert "ttl" in expired.state_reason.lower() and not expired.accepting_jobs
    with pytest.raises(grpc.RpcError) as refused:
        _run(gateway, md, short.id)
    assert _status_of(refused.value)[:2] == (grpc.StatusCode.FAILED_PRECONDITION, "SESSION_CLOSED")


def test_unknown_and_invalid_sessions(
    gateway: GatewayClient, stub: sessions_pb2_grpc.SessionServiceStub
) -> None:
    md = gateway.cloud()
    unknown = "s" + uuid.uuid4().hex[:19]
    for call, request in (
        (stub.GetSession, sessions_pb2.GetSessionRequest(session_id=unknown)),
        (stub.CloseSession, sessions_pb2.CloseSessionRequest(session_id=unknown)),
        (stub.CancelSession, sessions_pb2.CancelSessionRequest(session_id=unknown)),
    ):
        with pytest.raises(grpc.RpcError) as missing:
            call(request, metadata=md, timeout=30)
        assert _status_of(missing.value)[:2] == (grpc.StatusCode.NOT_FOUND, "SESSION_NOT_FOUND")
    with pytest.raises(grpc.RpcError) as missing:
        _run(gateway, md, unknown)
    assert _status_of(missing.value)[:2] == (grpc.StatusCode.NOT_FOUND, "SESSION_NOT_FOUND")
    for request, field in (
        (sessions_pb2.GetSessionRequest(session_id=""), "session_id"),
        (sessions_pb2.GetSessionRequest(session_id="../jobs"), "session_id"),
    ):
        with pytest.raises(grpc.RpcError) as bad:
            stub.GetSession(request, metadata=md, timeout=30)
        assert _status_of(bad.value) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_ARGUMENT",
            field,
        )
    for fields, field in (
        ({"backend": ""}, "backend"),
        ({"max_ttl": 9 * 3600}, "max_ttl"),
        ({"instance": "crn:v1:other"}, "instance"),
    ):
        with pytest.raises(grpc.RpcError) as bad:
            _create(stub, md, **fields)  # type: ignore[arg-type]
        assert _status_of(bad.value) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_ARGUMENT",
            field,
        )
    with pytest.raises(grpc.RpcError) as bad:
        stub.CreateSession(
            sessions_pb2.CreateSessionRequest(backend=DEVICE, mode=7), metadata=md, timeout=30
        )
    assert _status_of(bad.value) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "mode")
    with pytest.raises(grpc.RpcError) as nowhere:
        _create(stub, md, backend="ibm_nowhere")
    assert _status_of(nowhere.value)[:2] == (grpc.StatusCode.NOT_FOUND, "BACKEND_NOT_FOUND")


def test_usage_of_the_instance_and_of_jobs(
    gateway: GatewayClient, stub: sessions_pb2_grpc.SessionServiceStub
) -> None:
    md = gateway.cloud()
    job = _run(gateway, md)
    done = gateway.wait(job.id, md)
    assert done.state == jobs_pb2.JOB_STATE_COMPLETED
    assert done.usage_quantum_seconds > 0 and done.usage_seconds > 0
    usage = stub.GetUsage(sessions_pb2.GetUsageRequest(), metadata=md, timeout=30)
    assert usage.instance == gateway.upstream.crn
    assert usage.usage_consumed_seconds >= done.usage_quantum_seconds
    assert not usage.HasField("usage_limit_seconds") and not usage.HasField(
        "usage_remaining_seconds"
    )
    assert not usage.usage_limit_reached
    assert usage.period_start_time.seconds < usage.period_end_time.seconds
    with pytest.raises(grpc.RpcError) as legacy:
        stub.GetUsage(sessions_pb2.GetUsageRequest(), metadata=gateway.legacy(), timeout=30)
    assert _status_of(legacy.value)[:2] == (grpc.StatusCode.FAILED_PRECONDITION, "NOT_SUPPORTED")


def test_sessions_for_server_held_and_local_accounts(
    gateway: GatewayClient, stub: sessions_pb2_grpc.SessionServiceStub
) -> None:
    key = [("x-gateway-api-key", API_KEYS["team-a"])]
    name = f"sess-{uuid.uuid4().hex[:6]}"
    gateway.accounts.SaveAccount(
        accounts_pb2.SaveAccountRequest(
            account=accounts_pb2.Account(
                name=name,
                channel=accounts_pb2.CHANNEL_IBM_QUANTUM_PLATFORM,
                token=UPSTREAM_TOKEN,
                url=f"http://{DOMAIN}",
                instance=gateway.upstream.crn,
            )
        ),
        metadata=key,
        timeout=30,
    )
    held = [*key, ("x-runtime-account", name)]
    for md in (held, []):  # a server-held account; no metadata: the embedded local runtime
        batch = _create(stub, md, BATCH)
        job = _run(gateway, md, batch.id)
        assert gateway.wait(job.id, md).state == jobs_pb2.JOB_STATE_COMPLETED
        listed = gateway.jobs.ListJobs(
            jobs_pb2.ListJobsRequest(session_id=batch.id), metadata=md, timeout=30
        )
        assert [j.id for j in listed.jobs] == [job.id]
        closed = stub.CloseSession(
            sessions_pb2.CloseSessionRequest(session_id=batch.id), metadata=md, timeout=30
        ).session
        assert closed.state == sessions_pb2.SESSION_STATE_CLOSED
        assert stub.GetUsage(sessions_pb2.GetUsageRequest(), metadata=md, timeout=30).instance
    # A session is its owner's: another account's view of the upstream does not see it.
    with pytest.raises(grpc.RpcError) as other:  # the embedded runtime's session, asked of IBM
        _get(stub, gateway.cloud(), batch.id)
    assert other.value.code() == grpc.StatusCode.NOT_FOUND


def test_health_and_reflection_know_the_session_service(gateway: GatewayClient) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2

    name = sessions_pb2.DESCRIPTOR.services_by_name["SessionService"].full_name
    health = health_pb2_grpc.HealthStub(gateway.channel)
    reply = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    call = gateway.channel.stream_stream(
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    replies = list(
        call(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
    )
    assert name in {s.name for s in replies[0].list_services_response.service}


def test_sessions_survive_a_restart_with_a_data_dir(tmp_path: Path) -> None:
    """The local runtime keeps sessions in `--data-dir` like jobs (its HTTP API directly)."""
    data = tmp_path / "data"

    def serve() -> Proc:
        return start(
            ["local-runtime", "--listen", "127.0.0.1:0", "--token", UPSTREAM_TOKEN,
             "--data-dir", str(data)],
            tmp_path,
        )  # fmt: skip

    def headers(proc: Proc) -> dict[str, str]:
        token = requests.post(
            f"{proc.ready['url']}/identity/token",
            data={"grant_type": "urn:ibm:params:oauth:grant-type:apikey", "apikey": UPSTREAM_TOKEN},
            timeout=10,
        ).json()["access_token"]
        crn = proc.ready["instances"]["crns"][0]
        return {"Authorization": f"Bearer {token}", "Service-CRN": crn, "IBM-API-Version": "x"}

    first = serve()
    try:
        runtime = f"{first.ready['url']}/api/v1"
        created = requests.post(
            f"{runtime}/sessions",
            json={"mode": "batch", "backend": DEVICE, "max_ttl": 300},
            headers=headers(first),
            timeout=10,
        ).json()
        closing = requests.patch(
            f"{runtime}/sessions/{created['id']}",
            json={"accepting_jobs": False},
            headers=headers(first),
            timeout=10,
        )
        assert closing.ok
    finally:
        first.stop()
    second = serve()
    try:
        again = requests.get(
            f"{second.ready['url']}/api/v1/sessions/{created['id']}",
            headers=headers(second),
            timeout=10,
        ).json()
    finally:
        second.stop()
    assert again["mode"] == "batch" and again["max_ttl"] == 300
    assert again["state"] == "closed" and again["accepting_jobs"] is False


def test_a_session_belongs_to_its_instance_and_its_backend(
    gateway: GatewayClient, stub: sessions_pb2_grpc.SessionServiceStub
) -> None:
    """As jobs: another instance of the same user cannot see, close or join a session; a job
    for another backend cannot join it; a job-started session is bounded like max_ttl."""
    mine, other = gateway.cloud(), gateway.cloud(instance=gateway.upstream.crn_eu)
    session = _create(stub, mine)
    for call in (stub.GetSession, stub.CloseSession, stub.CancelSession):
        request_type = {
            stub.GetSession: sessions_pb2.GetSessionRequest,
            stub.CloseSession: sessions_pb2.CloseSessionRequest,
            stub.CancelSession: sessions_pb2.CancelSessionRequest,
        }[call]
        with pytest.raises(grpc.RpcError) as failure:
            call(request_type(session_id=session.id), metadata=other, timeout=30)
        assert _status_of(failure.value)[:2] == (grpc.StatusCode.NOT_FOUND, "SESSION_NOT_FOUND")
    with pytest.raises(grpc.RpcError) as failure:
        _run(gateway, other, session.id)
    assert _status_of(failure.value)[:2] == (grpc.StatusCode.NOT_FOUND, "SESSION_NOT_FOUND")
    with pytest.raises(grpc.RpcError) as failure:
        _run(gateway, mine, session.id, backend="ibmq_qasm_simulator")
    assert _status_of(failure.value) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        "session_id",
    )
    assert _get(stub, mine, session.id).accepting_jobs  # untouched by the other instance
    stub.CancelSession(sessions_pb2.CancelSessionRequest(session_id=session.id), metadata=mine)
    with pytest.raises(grpc.RpcError) as failure:
        _run(gateway, mine, start_session=True, session_time=2_147_483_647)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
