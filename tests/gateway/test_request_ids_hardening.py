"""RunJob request ids under pressure, against real gateway processes and the upstream process:
retries that wait hold no upstream thread, a crash mid-submission is reconciled promptly on
restart, and answers that leave open whether IBM created the job never lead to a second one.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from runtime_gateway.v1 import jobs_pb2
from tests.gateway.conftest import (
    GatewayClient,
    Upstream,
    bell_inputs,
    error_info,
    upstream_env,
)
from tests.procs import Proc, start

RETRIES = 40  # concurrent retries of one request id: ten times the gateway's upstream threads


def _request(tag: str, request_id: str) -> jobs_pb2.RunJobRequest:
    return jobs_pb2.RunJobRequest(
        program_id="sampler",
        backend="ibmq_qasm_simulator",
        inputs_json=bell_inputs(),
        tags=[tag],
        request_id=request_id,
    )


def _submissions(upstream: Upstream, tag: str) -> list[dict]:
    """POST /jobs the upstream handled for this tag (dropped answers have status 0)."""
    return [
        r
        for r in upstream.requests_log()
        if r["method"] == "POST" and r["path"].endswith("/jobs") and tag in r["body"]
    ]


def _jobs_tagged(gateway: GatewayClient, tag: str) -> list[str]:
    listed = gateway.jobs.ListJobs(
        jobs_pb2.ListJobsRequest(tags=[tag]), metadata=gateway.cloud(), timeout=30
    )
    return [j.id for j in listed.jobs]


@pytest.fixture
def faults_off(upstream: Upstream) -> Iterator[Upstream]:
    upstream.faults()
    yield upstream
    upstream.faults()


def _serve(upstream: Upstream, tmp_path: Path, *extra: str) -> GatewayClient:
    proc = start(
        ["serve", "--listen", "127.0.0.1:0", "--no-local-runtime", "--log-level", "INFO", *extra],
        tmp_path,
        env=upstream_env(upstream),
    )
    return GatewayClient(proc, upstream)


def _stop(gateway: GatewayClient) -> None:
    gateway.channel.close()
    gateway.proc.stop()


# --- 1. waiting holds no upstream thread -----------------------------------------------------
@pytest.mark.parametrize("store", ["memory", "state-dir"])
def test_waiting_retries_hold_no_upstream_thread(
    faults_off: Upstream, tmp_path: Path, store: str
) -> None:
    """One RunJob holds its POST /jobs (slow upstream); 40 retries of its request id wait
    for it on a gateway with 4 upstream threads. Another caller's ListJobs still gets a
    thread; the retries all get the one job once the POST answers."""
    upstream = faults_off
    extra = ["--upstream-threads", "4"]
    if store == "state-dir":
        extra += ["--state-dir", str(tmp_path / "state")]
    gateway = _serve(upstream, tmp_path, *extra)
    try:
        md = gateway.cloud()
        request_id = str(uuid.uuid4())
        tag = f"wait-{request_id[:8]}"
        # Longer than the ListJobs deadline below: a thread held by a waiting retry stays
        # held until this POST answers.
        upstream.faults(latency_ms=15_000, path_pattern="/jobs$", methods=["POST"])
        first = gateway.jobs.RunJob.future(_request(tag, request_id), metadata=md, timeout=120)
        time.sleep(1.0)  # let the first call claim the id and send its POST
        retries = [
            gateway.jobs.RunJob.future(_request(tag, request_id), metadata=md, timeout=120)
            for _ in range(RETRIES)
        ]
        time.sleep(1.0)  # let the retries reach the gateway and start waiting
        other = gateway.cloud(instance=upstream.crn_eu)  # another caller (another account)
        listed = gateway.jobs.ListJobs(
            jobs_pb2.ListJobsRequest(page_size=1), metadata=other, timeout=10
        )
        assert listed is not None
        answers = [first.result(), *(r.result() for r in retries)]
        assert {a.job.id for a in answers} == {answers[0].job.id}
        assert sum(not a.replayed for a in answers) == 1  # one call submitted, the rest replayed
        assert len(_submissions(upstream, tag)) == 1
    finally:
        upstream.faults()
        _stop(gateway)


def test_a_retry_whose_deadline_comes_first_is_told_to_retry(gateway: GatewayClient) -> None:
    """A retry that cannot wait for the first call's POST within its deadline is answered
    ABORTED, naming request_id and saying to retry, before its deadline passes."""
    up = gateway.upstream
    request_id = str(uuid.uuid4())
    tag = f"abort-{request_id[:8]}"
    up.faults(latency_ms=5_000, path_pattern="/jobs$", methods=["POST"])
    try:
        first = gateway.jobs.RunJob.future(
            _request(tag, request_id), metadata=gateway.cloud(), timeout=60
        )
        time.sleep(1.0)  # the first call claims the id and sends its POST (held 5 s)
        with pytest.raises(grpc.RpcError) as failure:
            gateway.jobs.RunJob(_request(tag, request_id), metadata=gateway.cloud(), timeout=2)
        assert failure.value.code() == grpc.StatusCode.ABORTED, failure.value
        assert error_info(failure.value)[1] == "request_id"
        assert "retry" in (failure.value.details() or "")
        job = first.result().job
    finally:
        up.faults()
    again = gateway.jobs.RunJob(_request(tag, request_id), metadata=gateway.cloud(), timeout=30)
    assert again.replayed and again.job.id == job.id


# --- 2. a crash mid-submission is reconciled promptly ----------------------------------------
def _pending_claims(state: Path) -> int:
    path = state / "request-ids.sqlite3"
    if not path.exists():
        return 0
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
        try:
            row = db.execute("SELECT count(*) FROM request_ids WHERE state = 'pending'").fetchone()
        except sqlite3.OperationalError:  # the table is not made yet
            return 0
    return int(row[0])


def _bounded_wait(check: object, what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting: {what}")


@pytest.mark.parametrize("created", [True, False], ids=["job-created", "job-not-created"])
def test_a_retry_after_a_crash_mid_submission_is_answered_promptly(
    faults_off: Upstream, tmp_path: Path, created: bool
) -> None:
    """A gateway with a state directory is SIGKILLed while its POST /jobs is in flight; a new
    gateway on the same state directory answers the retry within the caller's deadline (far
    below the old 300 s lease), and the upstream holds exactly one job for the request id:
    the one the dead gateway's POST created (adopted), or else one submitted now."""
    upstream = faults_off
    state = tmp_path / "state"
    request_id = str(uuid.uuid4())
    tag = f"crash-{request_id[:8]}"
    request = _request(tag, request_id)
    if created:  # the upstream creates the job, then the answer is held
        upstream.faults(
            latency_ms=10_000, after_handler=True, path_pattern="/jobs$", methods=["POST"]
        )
    else:  # the POST is held, then dropped unhandled: no job
        upstream.faults(
            latency_ms=10_000,
            drop_rate=1.0,
            max_faults=1,
            path_pattern="/jobs$",
            methods=["POST"],
        )
    first = _serve(upstream, tmp_path, "--state-dir", str(state))
    dead: Proc = first.proc
    try:
        call = first.jobs.RunJob.future(request, metadata=first.cloud(), timeout=60)
        if created:
            _bounded_wait(lambda: _jobs_tagged(first, tag), "the upstream created the job")
        else:
            _bounded_wait(lambda: _pending_claims(state) == 1, "the gateway claimed the id")
            time.sleep(0.5)  # its POST is on the way and held
        dead.popen.kill()  # SIGKILL: no cleanup of any kind
        dead.popen.wait(10)
        upstream.faults()
        with pytest.raises(grpc.RpcError):
            call.result()
    finally:
        first.channel.close()
        dead.stop()
    second = _serve(upstream, tmp_path, "--state-dir", str(state))
    try:
        retried = second.jobs.RunJob(request, metadata=second.cloud(), timeout=30)
        assert retried.replayed == created
        assert _jobs_tagged(second, tag) == [retried.job.id]  # one job, not two
        again = second.jobs.RunJob(request, metadata=second.cloud(), timeout=30)
        assert again.replayed and again.job.id == retried.job.id
    finally:
        _stop(second)


# --- 3. answers that do not prove "no job" are reconciled -----------------------------------
@pytest.mark.parametrize(
    ("fault", "code"),
    [
        ({"rate_limit_rate": 1.0}, grpc.StatusCode.RESOURCE_EXHAUSTED),
        ({"error_rate": 1.0, "error_status": 408}, grpc.StatusCode.UNKNOWN),
    ],
    ids=["429", "408"],
)
def test_an_error_answer_after_the_job_was_created_does_not_duplicate_it(
    gateway: GatewayClient, fault: dict, code: grpc.StatusCode
) -> None:
    """IBM creates the job but answers 429 (or another status that proves nothing): the
    retry with the same request id adopts that job instead of submitting a second one."""
    up = gateway.upstream
    request_id = str(uuid.uuid4())
    tag = f"err-{request_id[:8]}"
    up.faults(**fault, after_handler=True, path_pattern="/jobs$", methods=["POST"], max_faults=1)
    try:
        with pytest.raises(grpc.RpcError) as failure:
            gateway.jobs.RunJob(_request(tag, request_id), metadata=gateway.cloud(), timeout=30)
        assert failure.value.code() == code
    finally:
        up.faults()
    retried = gateway.jobs.RunJob(_request(tag, request_id), metadata=gateway.cloud(), timeout=30)
    assert retried.replayed
    assert _jobs_tagged(gateway, tag) == [retried.job.id]
    assert len(_submissions(gateway.upstream, tag)) == 1


def test_a_job_created_after_the_gateway_gave_up_is_adopted_by_the_retry(
    gateway: GatewayClient,
) -> None:
    """The POST outlives the caller's deadline: IBM creates the job seconds after the gateway
    gave up on the answer. A retry made after that must find the job (the search runs up to
    the retry, not to the end of the failed attempt) instead of submitting a second one."""
    up = gateway.upstream
    request_id = str(uuid.uuid4())
    tag = f"late-{request_id[:8]}"
    # Held before the handler: the job is created about 4 s after the POST arrived.
    up.faults(latency_ms=4000, path_pattern="/jobs$", methods=["POST"], max_faults=1)
    try:
        with pytest.raises(grpc.RpcError) as failure:
            gateway.jobs.RunJob(_request(tag, request_id), metadata=gateway.cloud(), timeout=1.5)
        assert failure.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        _bounded_wait(lambda: _jobs_tagged(gateway, tag), "the upstream created the late job")
    finally:
        up.faults()
    retried = gateway.jobs.RunJob(_request(tag, request_id), metadata=gateway.cloud(), timeout=30)
    assert retried.replayed
    assert _jobs_tagged(gateway, tag) == [retried.job.id]


def test_jobs_carry_a_hidden_request_tag_and_callers_cannot_forge_one(
    gateway: GatewayClient, upstream: Upstream
) -> None:
    """A job submitted with a request id carries the gateway's request tag at IBM (what
    reconciliation searches for), but callers see only their own tags, and may not send a
    tag in the gateway's reserved form."""
    tag = f"rt-{uuid.uuid4().hex[:8]}"
    job = gateway.jobs.RunJob(
        _request(tag, f"rid-{uuid.uuid4().hex}"), metadata=gateway.cloud(), timeout=60
    ).job
    assert list(job.tags) == [tag]
    fetched = gateway.jobs.GetJob(
        jobs_pb2.GetJobRequest(job_id=job.id), metadata=gateway.cloud(), timeout=30
    ).job
    assert list(fetched.tags) == [tag]
    [posted] = _submissions(upstream, tag)
    assert "rg-request-" in posted["body"]
    with pytest.raises(grpc.RpcError) as caught:
        gateway.jobs.RunJob(
            _request("rg-request-0123", "rid-forged"), metadata=gateway.cloud(), timeout=30
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value)[0] == "INVALID_ARGUMENT" and "tags" in caught.value.details()
