"""The gateway's HTTP calls to IBM match what the real SDK sends for the same operation.

Both are recorded by the local runtime playing IBM (its request log): the real 0.51 SDK
first, then the gateway for the equivalent RPC; method, path, query and key headers must
agree (docs/ibm-runtime-rest.md, section 3).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from runtime_gateway.v1 import backends_pb2, jobs_pb2
from tests.gateway.conftest import DOMAIN, UPSTREAM_TOKEN, GatewayClient, bell_inputs

KEY_HEADERS = ("authorization", "service-crn", "ibm-api-version")


@pytest.fixture(scope="module")
def sdk(gateway: GatewayClient) -> Iterator[Any]:
    port = gateway.upstream.url.rsplit(":", 1)[1]
    with pytest.MonkeyPatch.context() as patch:
        for name in ("HTTP_PROXY", "http_proxy"):
            patch.setenv(name, f"http://127.0.0.1:{port}")
        patch.setenv("NO_PROXY", "")
        patch.setenv("no_proxy", "")
        patch.setenv("IAM_URL", f"http://iam.{DOMAIN}")
        from qiskit_ibm_runtime import QiskitRuntimeService

        yield QiskitRuntimeService(
            channel="ibm_quantum_platform", url=f"http://{DOMAIN}", token=UPSTREAM_TOKEN,
            instance=gateway.upstream.crn,
        )  # fmt: skip


def _record(gateway: GatewayClient, action: Callable[[], Any]) -> list[dict[str, Any]]:
    gateway.upstream.clear_log()
    action()
    return [e for e in gateway.upstream.requests_log() if e["service"] == "runtime"]


def _shape(entry: dict[str, Any]) -> tuple[Any, ...]:
    query = {k: sorted(v) for k, v in entry["query"].items()}
    headers = {h: entry["headers"].get(h) for h in KEY_HEADERS}
    return (
        entry["method"],
        entry["path"],
        json.dumps(query, sort_keys=True),
        json.dumps(headers, sort_keys=True),
    )


def _find(entries: list[dict[str, Any]], method: str, suffix: str) -> dict[str, Any]:
    matches = [e for e in entries if e["method"] == method and e["path"].endswith(suffix)]
    assert matches, f"no {method} …{suffix} in {[(e['method'], e['path']) for e in entries]}"
    return matches[0]


@pytest.fixture(scope="module")
def job_id(gateway: GatewayClient) -> str:
    request = jobs_pb2.RunJobRequest(program_id="sampler", backend="ibmq_qasm_simulator",
                                     inputs_json=bell_inputs(), tags=["recorded"])  # fmt: skip
    job = gateway.jobs.RunJob(request, metadata=gateway.cloud(), timeout=60).job
    gateway.wait(job.id, gateway.cloud())
    return job.id


def test_list_backends(gateway: GatewayClient, sdk: Any) -> None:
    from qiskit_ibm_runtime import QiskitRuntimeService

    def construct() -> None:  # the SDK lists backends when it is constructed
        QiskitRuntimeService(
            channel="ibm_quantum_platform",
            url=f"http://{DOMAIN}",
            token=UPSTREAM_TOKEN,
            instance=gateway.upstream.crn_eu,
        )

    by_sdk = _find(_record(gateway, construct), "GET", "/backends")  # fmt: skip
    by_gateway = _find(_record(gateway, lambda: gateway.backends.ListBackends(
        backends_pb2.ListBackendsRequest(), metadata=gateway.cloud(instance=gateway.upstream.crn_eu), timeout=30)), "GET", "/backends")  # fmt: skip
    sdk_shape, gw_shape = _shape(by_sdk), _shape(by_gateway)
    assert gw_shape == sdk_shape  # method, path, query (include_mocks=True), key headers
    headers = json.loads(gw_shape[3])
    assert headers["authorization"] == "Bearer ***" and headers["ibm-api-version"] == "2026-04-15"
    assert headers["service-crn"] == gateway.upstream.crn_eu


def test_get_job_results_logs_metrics(gateway: GatewayClient, sdk: Any, job_id: str) -> None:
    job = sdk.job(job_id)
    for sdk_call, rpc, method, suffix in [
        (lambda: job.status(), lambda: gateway.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job_id), metadata=gateway.cloud(), timeout=30), "GET", f"/jobs/{job_id}"),
        (lambda: job.result(), lambda: gateway.jobs.GetJobResult(jobs_pb2.GetJobResultRequest(job_id=job_id), metadata=gateway.cloud(), timeout=30), "GET", f"/jobs/{job_id}/results"),
        (lambda: job.logs(), lambda: gateway.jobs.GetJobLogs(jobs_pb2.GetJobLogsRequest(job_id=job_id), metadata=gateway.cloud(), timeout=30), "GET", f"/jobs/{job_id}/logs"),
        (lambda: job.metrics(), lambda: gateway.jobs.GetJobMetrics(jobs_pb2.GetJobMetricsRequest(job_id=job_id), metadata=gateway.cloud(), timeout=30), "GET", f"/jobs/{job_id}/metrics"),
    ]:  # fmt: skip
        by_sdk = _find(_record(gateway, sdk_call), method, suffix)
        by_gateway = _find(_record(gateway, rpc), method, suffix)
        assert _shape(by_gateway) == _shape(by_sdk), suffix


def test_list_jobs_with_filters(gateway: GatewayClient, sdk: Any, job_id: str) -> None:
    by_sdk = _find(
        _record(
            gateway,
            lambda: sdk.jobs(
                limit=5,
                backend_name="ibmq_qasm_simulator",
                pending=False,
                program_id="sampler",
                job_tags=["recorded"],
            ),
        ),
        "GET",
        "/jobs",
    )
    by_gateway = _find(_record(gateway, lambda: gateway.jobs.ListJobs(jobs_pb2.ListJobsRequest(
        page_size=5, backend="ibmq_qasm_simulator", pending=False, program_id="sampler", tags=["recorded"]),
        metadata=gateway.cloud(), timeout=30)), "GET", "/jobs")  # fmt: skip
    sdk_query, gw_query = by_sdk["query"], by_gateway["query"]
    assert gw_query == sdk_query  # exclude_params, limit, backend, pending, program, tags


def test_tags_cancel_delete(gateway: GatewayClient, sdk: Any) -> None:
    def fresh_job() -> str:
        request = jobs_pb2.RunJobRequest(program_id="sampler", backend="ibmq_qasm_simulator",
                                         inputs_json=bell_inputs(), tags=[uuid.uuid4().hex[:6]])  # fmt: skip
        return gateway.jobs.RunJob(request, metadata=gateway.cloud(), timeout=60).job.id

    one, two = fresh_job(), fresh_job()
    for job in (one, two):
        gateway.wait(job, gateway.cloud())
    by_sdk = _find(
        _record(gateway, lambda: sdk.job(one).update_tags(["a"])), "PUT", f"/jobs/{one}/tags"
    )
    by_gateway = _find(_record(gateway, lambda: gateway.jobs.UpdateJobTags(
        jobs_pb2.UpdateJobTagsRequest(job_id=two, tags=["a"]), metadata=gateway.cloud(), timeout=30)), "PUT", f"/jobs/{two}/tags")  # fmt: skip
    assert json.loads(by_gateway["body"]) == json.loads(by_sdk["body"]) == {"tags": ["a"]}
    assert by_gateway["headers"]["content-type"] == "application/json"
    by_sdk = _find(_record(gateway, lambda: sdk.delete_job(one)), "DELETE", f"/jobs/{one}")
    by_gateway = _find(_record(gateway, lambda: gateway.jobs.DeleteJob(
        jobs_pb2.DeleteJobRequest(job_id=two), metadata=gateway.cloud(), timeout=30)), "DELETE", f"/jobs/{two}")  # fmt: skip
    assert _shape(by_gateway)[2:] == _shape(by_sdk)[2:]


def test_submission_body_has_the_sdk_fields(gateway: GatewayClient) -> None:
    entries = _record(gateway, lambda: gateway.jobs.RunJob(jobs_pb2.RunJobRequest(
        program_id="sampler", backend="ibmq_qasm_simulator", inputs_json=bell_inputs(), tags=["t"],
        log_level="warning", max_execution_time=300, session_id="", private=True),
        metadata=gateway.cloud(), timeout=60))  # fmt: skip
    post = _find(entries, "POST", "/jobs")
    body = json.loads(post["body"])
    assert body == {
        "program_id": "sampler", "backend": "ibmq_qasm_simulator", "tags": ["t"], "log_level": "WARNING",
        "cost": 300, "private": True, "params": json.loads(bell_inputs()),
    }  # fmt: skip
    assert post["headers"]["content-type"] == "application/json"


def test_iam_exchange_matches(gateway: GatewayClient) -> None:
    gateway.upstream.admin("POST", "/tokens/expire")
    time.sleep(1.1)  # tokens carry whole-second iat
    gateway.upstream.clear_log()
    gateway.jobs.ListJobs(
        jobs_pb2.ListJobsRequest(page_size=1), metadata=gateway.cloud(), timeout=30
    )
    iam = [e for e in gateway.upstream.requests_log() if e["service"] == "iam"]
    assert iam and iam[0]["method"] == "POST" and iam[0]["path"] == "/identity/token"
    assert iam[0]["headers"]["content-type"] == "application/x-www-form-urlencoded"
