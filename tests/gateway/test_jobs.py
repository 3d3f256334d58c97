"""JobService over a real gateway and a real local runtime playing IBM."""

from __future__ import annotations

import json
import uuid

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from runtime_gateway.v1 import jobs_pb2
from tests.gateway.conftest import QASM_BELL, GatewayClient, bell_inputs, error_info


def _run(gateway: GatewayClient, md, **fields) -> jobs_pb2.RunJobResponse:
    request = jobs_pb2.RunJobRequest(
        program_id="sampler", backend="ibmq_qasm_simulator", inputs_json=bell_inputs(), **fields
    )
    return gateway.jobs.RunJob(request, metadata=md, timeout=60)


def _posts(gateway: GatewayClient) -> list[dict]:
    return [
        e
        for e in gateway.upstream.requests_log()
        if e["method"] == "POST" and e["path"].endswith("/jobs")
    ]


@pytest.mark.parametrize("channel", ["local", "cloud", "legacy"])
def test_run_wait_result_logs_metrics(gateway: GatewayClient, channel: str) -> None:
    md = {"local": [], "cloud": gateway.cloud(), "legacy": gateway.legacy()}[channel]
    tag = f"t-{uuid.uuid4().hex[:8]}"
    job = _run(gateway, md, tags=[tag]).job
    assert job.id and job.program_id == "sampler" and job.backend == "ibmq_qasm_simulator"
    assert job.state in (
        jobs_pb2.JOB_STATE_QUEUED,
        jobs_pb2.JOB_STATE_RUNNING,
        jobs_pb2.JOB_STATE_COMPLETED,
    )
    assert list(job.tags) == [tag] and job.create_time.seconds > 0 and job.instance
    done = gateway.wait(job.id, md)
    assert done.state == jobs_pb2.JOB_STATE_COMPLETED
    result = gateway.jobs.GetJobResult(
        jobs_pb2.GetJobResultRequest(job_id=job.id), metadata=md, timeout=30
    )
    assert json.loads(result.result_json)["__type__"] == "PrimitiveResult"
    logs = gateway.jobs.GetJobLogs(
        jobs_pb2.GetJobLogsRequest(job_id=job.id), metadata=md, timeout=30
    )
    assert "Job started" in logs.logs
    metrics = gateway.jobs.GetJobMetrics(
        jobs_pb2.GetJobMetricsRequest(job_id=job.id), metadata=md, timeout=30
    )
    assert (
        metrics.create_time.seconds > 0
        and metrics.finish_time.seconds >= metrics.run_time.seconds > 0
    )
    assert json.loads(metrics.metrics_json)["usage"]["status"] == "final"
    listed = gateway.jobs.ListJobs(jobs_pb2.ListJobsRequest(tags=[tag]), metadata=md, timeout=30)
    assert [j.id for j in listed.jobs] == [job.id] and listed.total_size == 1


def test_inputs_reach_ibm_byte_exact(gateway: GatewayClient) -> None:
    # Integers stay integers and the text is not re-serialized (a Struct would send 1024.0).
    document = {"pubs": [[QASM_BELL, None, 1024]], "version": 2, "options": {"default_shots": 1024}}
    inputs = json.dumps(document, indent=1)  # unusual whitespace on purpose
    gateway.upstream.clear_log()
    job = gateway.jobs.RunJob(
        jobs_pb2.RunJobRequest(
            program_id="sampler", backend="ibmq_qasm_simulator", inputs_json=inputs
        ),
        metadata=gateway.cloud(),
        timeout=60,
    ).job
    (post,) = _posts(gateway)
    assert inputs in post["body"]
    assert json.loads(post["body"])["params"]["options"]["default_shots"] == 1024
    assert "1024.0" not in post["body"]
    full = gateway.jobs.GetJob(
        jobs_pb2.GetJobRequest(job_id=job.id, view=jobs_pb2.JOB_VIEW_FULL),
        metadata=gateway.cloud(),
        timeout=30,
    ).job
    assert json.loads(full.inputs_json) == json.loads(inputs)
    basic = gateway.jobs.GetJob(
        jobs_pb2.GetJobRequest(job_id=job.id), metadata=gateway.cloud(), timeout=30
    ).job
    assert basic.inputs_json == ""


def test_request_id_makes_run_idempotent(gateway: GatewayClient) -> None:
    request_id = str(uuid.uuid4())
    gateway.upstream.clear_log()
    first = _run(gateway, gateway.cloud(), request_id=request_id)
    second = _run(gateway, gateway.cloud(), request_id=request_id)
    assert not first.replayed and second.replayed and first.job.id == second.job.id
    assert len(_posts(gateway)) == 1
    with pytest.raises(grpc.RpcError) as failure:
        _run(gateway, gateway.cloud(), request_id=request_id, tags=["different"])
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(failure.value) == ("INVALID_ARGUMENT", "request_id")


def test_submission_is_never_retried_blindly(gateway: GatewayClient) -> None:
    up = gateway.upstream
    request_id = str(uuid.uuid4())
    up.clear_log()
    up.faults(
        error_rate=1.0, error_status=503, path_pattern="/jobs$", methods=["POST"], max_faults=1
    )
    try:
        with pytest.raises(grpc.RpcError) as failure:
            _run(gateway, gateway.cloud(), request_id=request_id)
        assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
        assert len(_posts(gateway)) == 1  # no retry of the POST
        # The caller retries with the same id: the gateway first looks for a job the failed
        # attempt may have created (none here), then submits once.
        retried = _run(gateway, gateway.cloud(), request_id=request_id)
        assert not retried.replayed, retried.job
        assert len(_posts(gateway)) == 2
    finally:
        up.faults()


def test_an_ambiguous_failure_is_reconciled_not_duplicated(gateway: GatewayClient) -> None:
    up = gateway.upstream
    request_id = str(uuid.uuid4())
    tag = f"amb-{uuid.uuid4().hex[:8]}"
    # IBM creates the job but the answer is lost (the connection drops after the handler).
    up.faults(
        drop_rate=1.0, path_pattern="/jobs$", methods=["POST"], max_faults=1, after_handler=True
    )
    try:
        with pytest.raises(grpc.RpcError) as failure:
            _run(gateway, gateway.cloud(), request_id=request_id, tags=[tag])
        assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        up.faults()
    # The retry with the same request id finds the job the lost answer was about.
    retried = _run(gateway, gateway.cloud(), request_id=request_id, tags=[tag])
    assert retried.replayed
    listed = gateway.jobs.ListJobs(
        jobs_pb2.ListJobsRequest(tags=[tag]), metadata=gateway.cloud(), timeout=30
    )
    assert [j.id for j in listed.jobs] == [retried.job.id]  # one job, not two


def test_list_pages_with_an_opaque_cursor(gateway: GatewayClient) -> None:
    md = gateway.cloud()
    tag = f"page-{uuid.uuid4().hex[:8]}"
    ids = [_run(gateway, md, tags=[tag]).job.id for _ in range(7)]
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        reply = gateway.jobs.ListJobs(
            jobs_pb2.ListJobsRequest(tags=[tag], page_size=3, page_token=token),
            metadata=md,
            timeout=30,
        )
        assert reply.total_size == 7
        seen += [j.id for j in reply.jobs]
        token = reply.next_page_token
        pages += 1
        if not token:
            break
        assert pages < 10
    assert seen == list(reversed(ids)) and pages == 3  # newest first, no duplicates, no gaps
    ascending = gateway.jobs.ListJobs(
        jobs_pb2.ListJobsRequest(tags=[tag], order_by="create_time asc", page_size=100),
        metadata=md,
        timeout=30,
    )
    assert [j.id for j in ascending.jobs] == ids
    skipped = gateway.jobs.ListJobs(
        jobs_pb2.ListJobsRequest(tags=[tag], skip=5), metadata=md, timeout=30
    )
    assert [j.id for j in skipped.jobs] == list(reversed(ids))[5:]
    first = gateway.jobs.ListJobs(
        jobs_pb2.ListJobsRequest(tags=[tag], page_size=3), metadata=md, timeout=30
    )
    with pytest.raises(grpc.RpcError) as failure:  # a token is bound to its filters
        gateway.jobs.ListJobs(
            jobs_pb2.ListJobsRequest(tags=["other"], page_size=3, page_token=first.next_page_token),
            metadata=md,
            timeout=30,
        )
    assert error_info(failure.value) == ("INVALID_ARGUMENT", "page_token")
    forged = first.next_page_token[:-4] + "AAAA"
    with pytest.raises(grpc.RpcError) as failure:
        gateway.jobs.ListJobs(
            jobs_pb2.ListJobsRequest(tags=[tag], page_size=3, page_token=forged),
            metadata=md,
            timeout=30,
        )
    assert error_info(failure.value) == ("INVALID_ARGUMENT", "page_token")


def test_list_filters(gateway: GatewayClient) -> None:
    md = gateway.cloud()
    tag = f"flt-{uuid.uuid4().hex[:8]}"
    job = _run(gateway, md, tags=[tag, "second"]).job
    gateway.wait(job.id, md)

    def ids(**fields) -> list[str]:
        reply = gateway.jobs.ListJobs(
            jobs_pb2.ListJobsRequest(tags=[tag], **fields), metadata=md, timeout=30
        )
        return [j.id for j in reply.jobs]

    assert ids(pending=False) == [job.id] and ids(pending=True) == []
    assert ids(backend="ibmq_qasm_simulator") == [job.id] and ids(backend="ibmq_manila") == []
    assert ids(program_id="sampler") == [job.id] and ids(program_id="estimator") == []
    future = Timestamp(seconds=job.create_time.seconds + 3600)
    past = Timestamp(seconds=job.create_time.seconds - 3600)
    assert ids(created_after=past, created_before=future) == [job.id]
    assert ids(created_after=future) == []
    assert (
        gateway.jobs.ListJobs(
            jobs_pb2.ListJobsRequest(tags=[tag, "second"]), metadata=md, timeout=30
        )
        .jobs[0]
        .id
        == job.id
    )


def test_cancel_delete_tags(gateway: GatewayClient) -> None:
    md = gateway.cloud()
    gateway.upstream.admin("POST", "/queue/pause")
    try:
        job = _run(gateway, md).job
        with pytest.raises(grpc.RpcError) as failure:
            gateway.jobs.GetJobResult(
                jobs_pb2.GetJobResultRequest(job_id=job.id), metadata=md, timeout=30
            )
        assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_info(failure.value)[0] == "JOB_INVALID_STATE"
        with pytest.raises(grpc.RpcError) as failure:
            gateway.jobs.DeleteJob(
                jobs_pb2.DeleteJobRequest(job_id=job.id), metadata=md, timeout=30
            )
        assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        cancelled = gateway.jobs.CancelJob(
            jobs_pb2.CancelJobRequest(job_id=job.id), metadata=md, timeout=30
        ).job
        assert cancelled.state == jobs_pb2.JOB_STATE_CANCELLED
    finally:
        gateway.upstream.admin("POST", "/queue/resume")
    with pytest.raises(grpc.RpcError) as failure:
        gateway.jobs.CancelJob(jobs_pb2.CancelJobRequest(job_id=job.id), metadata=md, timeout=30)
    assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    tagged = gateway.jobs.UpdateJobTags(
        jobs_pb2.UpdateJobTagsRequest(job_id=job.id, tags=["x", "y"]), metadata=md, timeout=30
    ).job
    assert list(tagged.tags) == ["x", "y"]
    gateway.jobs.DeleteJob(jobs_pb2.DeleteJobRequest(job_id=job.id), metadata=md, timeout=30)
    with pytest.raises(grpc.RpcError) as failure:
        gateway.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job.id), metadata=md, timeout=30)
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(failure.value)[0] == "JOB_NOT_FOUND"


@pytest.mark.parametrize(
    ("fields", "code", "reason", "field", "reaches_ibm"),
    [
        ({"program_id": ""}, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "program_id", False),
        ({"inputs_json": "{not json"}, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "inputs_json", False),
        ({"inputs_json": "[1, 2]"}, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "inputs_json", False),
        ({"log_level": "LOUD"}, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "log_level", False),
        ({"max_execution_time": -1}, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "max_execution_time", False),
        ({"image": "no-tag"}, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "image", False),
        ({"tags": [""]}, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "tags", False),
        ({"channel_strategy": "q-ctrl"}, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "channel_strategy", False),
        ({"program_id": "no-such-program"}, grpc.StatusCode.NOT_FOUND, "PROGRAM_NOT_FOUND", "", True),
        ({"backend": "ibm_nowhere"}, grpc.StatusCode.NOT_FOUND, "BACKEND_NOT_FOUND", "", True),
        ({"inputs_json": '{"version": 2, "pubs": []}'}, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "inputs_json", True),
    ],
)  # fmt: skip
def test_run_errors(gateway: GatewayClient, fields, code, reason, field, reaches_ibm) -> None:
    request = {
        "program_id": "sampler",
        "backend": "ibmq_qasm_simulator",
        "inputs_json": bell_inputs(),
        **fields,
    }
    gateway.upstream.clear_log()
    with pytest.raises(grpc.RpcError) as failure:
        gateway.jobs.RunJob(jobs_pb2.RunJobRequest(**request), metadata=gateway.cloud(), timeout=30)
    assert failure.value.code() == code, failure.value.details()
    assert error_info(failure.value) == (reason, field)
    assert bool(_posts(gateway)) == reaches_ibm  # bad input is refused before any upstream call


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"page_size": -1}, "page_size"),
        ({"page_size": 5000}, "page_size"),
        ({"skip": -3}, "skip"),
        ({"order_by": "name"}, "order_by"),
        ({"instance": "a/b/c"}, "instance"),
    ],
)
def test_list_errors(gateway: GatewayClient, request_fields, field) -> None:
    with pytest.raises(grpc.RpcError) as failure:
        gateway.jobs.ListJobs(
            jobs_pb2.ListJobsRequest(**request_fields), metadata=gateway.cloud(), timeout=30
        )
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(failure.value) == ("INVALID_ARGUMENT", field)


@pytest.mark.parametrize(
    ("metadata", "code", "reason", "field"),
    [
        ([("x-runtime-channel", "ibm_moon")], grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "x-runtime-channel"),
        ([("authorization", "Bearer t0ken-value"), ("x-runtime-channel", "ibm_cloud"), ("x-runtime-instance", "not-a-crn")],
         grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "x-runtime-instance"),
        ([("authorization", "Bearer t0ken-value"), ("x-runtime-channel", "ibm_quantum"), ("x-runtime-instance", "hub-only")],
         grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "x-runtime-instance"),
        ([("authorization", "Basic abc")], grpc.StatusCode.UNAUTHENTICATED, "CREDENTIALS_MISSING", ""),
        ([("x-runtime-channel", "ibm_cloud")], grpc.StatusCode.UNAUTHENTICATED, "CREDENTIALS_MISSING", ""),
        ([("x-runtime-account", "someone")], grpc.StatusCode.UNAUTHENTICATED, "GATEWAY_API_KEY_INVALID", ""),
    ],
)  # fmt: skip
def test_bad_credentials_metadata(gateway: GatewayClient, metadata, code, reason, field) -> None:
    with pytest.raises(grpc.RpcError) as failure:
        gateway.jobs.ListJobs(jobs_pb2.ListJobsRequest(), metadata=metadata, timeout=30)
    assert failure.value.code() == code, failure.value.details()
    assert error_info(failure.value) == (reason, field)
