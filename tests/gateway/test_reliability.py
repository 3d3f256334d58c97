"""Upstream failures: retries, Retry-After, dropped connections, token expiry."""

from __future__ import annotations

import grpc
import pytest

from runtime_gateway.v1 import backends_pb2, jobs_pb2
from tests.gateway.conftest import GatewayClient, error_info


def _count(gateway: GatewayClient, method: str, suffix: str) -> int:
    return sum(
        1
        for e in gateway.upstream.requests_log()
        if e["method"] == method and e["path"].endswith(suffix)
    )


@pytest.fixture
def job_id(gateway: GatewayClient) -> str:
    request = jobs_pb2.RunJobRequest(
        program_id="sampler",
        backend="ibmq_qasm_simulator",
        inputs_json='{"pubs": [["OPENQASM 3.0; include \\"stdgates.inc\\"; qubit[1] q; bit[1] c; c[0] = measure q[0];", null, 10]], "version": 2}',
    )
    return gateway.jobs.RunJob(request, metadata=gateway.cloud(), timeout=60).job.id


@pytest.fixture(autouse=True)
def no_faults(gateway: GatewayClient):
    gateway.upstream.faults()
    yield
    gateway.upstream.faults()


def test_5xx_bursts_are_retried(gateway: GatewayClient, job_id: str) -> None:
    up = gateway.upstream
    up.clear_log()
    up.faults(error_rate=1.0, error_status=503, path_pattern=f"/jobs/{job_id}$", max_faults=3)
    job = gateway.jobs.GetJob(
        jobs_pb2.GetJobRequest(job_id=job_id), metadata=gateway.cloud(), timeout=30
    ).job
    assert job.id == job_id
    assert _count(gateway, "GET", f"/jobs/{job_id}") == 4  # three 503s, then the answer


def test_429_waits_for_retry_after(gateway: GatewayClient, job_id: str) -> None:
    up = gateway.upstream
    up.clear_log()
    up.faults(
        rate_limit_rate=1.0, retry_after_seconds=0.3, path_pattern=f"/jobs/{job_id}$", max_faults=2
    )
    gateway.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job_id), metadata=gateway.cloud(), timeout=30)
    log = [e for e in up.requests_log() if e["path"].endswith(f"/jobs/{job_id}")]
    assert [e["status"] for e in log] == [429, 429, 200]
    assert log[2]["time"] - log[0]["time"] >= 0.6  # it honoured Retry-After twice


def test_dropped_connections_are_retried(gateway: GatewayClient, job_id: str) -> None:
    gateway.upstream.faults(drop_rate=1.0, path_pattern=f"/jobs/{job_id}$", max_faults=2)
    job = gateway.jobs.GetJob(
        jobs_pb2.GetJobRequest(job_id=job_id), metadata=gateway.cloud(), timeout=30
    ).job
    assert job.id == job_id


def test_a_persistent_outage_becomes_unavailable_within_the_deadline(
    gateway: GatewayClient, job_id: str
) -> None:
    gateway.upstream.faults(error_rate=1.0, error_status=502, path_pattern=f"/jobs/{job_id}$")
    with pytest.raises(grpc.RpcError) as failure:
        gateway.jobs.GetJob(
            jobs_pb2.GetJobRequest(job_id=job_id), metadata=gateway.cloud(), timeout=30
        )
    assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_info(failure.value)[0] == "UPSTREAM_UNAVAILABLE"


def test_rate_limit_beyond_the_deadline_is_resource_exhausted_with_retry_info(
    gateway: GatewayClient, job_id: str
) -> None:
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    gateway.upstream.faults(
        rate_limit_rate=1.0, retry_after_seconds=30, path_pattern=f"/jobs/{job_id}$"
    )
    with pytest.raises(grpc.RpcError) as failure:
        gateway.jobs.GetJob(
            jobs_pb2.GetJobRequest(job_id=job_id), metadata=gateway.cloud(), timeout=5
        )
    assert failure.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    status = rpc_status.from_call(failure.value)
    retry = [d for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
    info = error_details_pb2.RetryInfo()
    retry[0].Unpack(info)
    assert info.retry_delay.seconds == 30


def test_expired_tokens_are_renewed_transparently(gateway: GatewayClient, job_id: str) -> None:
    up = gateway.upstream
    gateway.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job_id), metadata=gateway.cloud(), timeout=30)
    up.clear_log()
    up.admin("POST", "/tokens/expire")
    job = gateway.jobs.GetJob(
        jobs_pb2.GetJobRequest(job_id=job_id), metadata=gateway.cloud(), timeout=30
    ).job
    assert job.id == job_id
    statuses = [(e["service"], e["status"]) for e in up.requests_log()]
    assert statuses == [("runtime", 401), ("iam", 200), ("runtime", 200)]  # one re-authentication


def test_legacy_tokens_are_renewed_too(gateway: GatewayClient) -> None:
    up = gateway.upstream
    request = backends_pb2.GetBackendStatusRequest(name="ibm_torino")
    gateway.backends.GetBackendStatus(request, metadata=gateway.legacy(), timeout=30)
    up.admin("POST", "/tokens/expire")
    import time

    time.sleep(2.1)  # past the gateway's status cache
    status = gateway.backends.GetBackendStatus(
        request, metadata=gateway.legacy(), timeout=30
    ).status
    assert status.backend_name == "ibm_torino"


def test_wrong_token_is_unauthenticated(gateway: GatewayClient) -> None:
    md = [
        (k, "Bearer wrong-token-123456" if k == "authorization" else v) for k, v in gateway.cloud()
    ]
    with pytest.raises(grpc.RpcError) as failure:
        gateway.backends.ListBackends(backends_pb2.ListBackendsRequest(), metadata=md, timeout=30)
    assert failure.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_info(failure.value)[0] == "UPSTREAM_UNAUTHENTICATED"
    assert "wrong-token-123456" not in failure.value.details()


def test_unknown_instance_is_permission_denied(gateway: GatewayClient) -> None:
    crn = "crn:v1:bluemix:public:quantum-computing:us-east:a/0000:nobody-has-this::"
    with pytest.raises(grpc.RpcError) as failure:
        gateway.backends.ListBackends(
            backends_pb2.ListBackendsRequest(), metadata=gateway.cloud(instance=crn), timeout=30
        )
    assert failure.value.code() == grpc.StatusCode.PERMISSION_DENIED
