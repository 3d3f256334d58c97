"""What an adversarial tester found after the first hardening pass, each as a test that failed
before its fix: a real gateway process before the local runtime process playing IBM.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from runtime_gateway.v1 import accounts_pb2, jobs_pb2, jobs_pb2_grpc
from tests.gateway.conftest import (
    API_KEYS,
    GatewayClient,
    Upstream,
    bell_inputs,
    error_info,
    upstream_env,
)
from tests.procs import start


def _key(name: str = "team-a") -> list[tuple[str, str]]:
    return [("x-gateway-api-key", API_KEYS[name])]


def test_proxy_passwords_are_never_returned(gateway: GatewayClient) -> None:
    """Proxy URLs carry credentials; like tokens, they are write-only."""
    proxy = gateway.upstream.url.replace("http://", "http://user:CANARY-PROXY-PASSWORD@")
    account = accounts_pb2.Account(
        name="proxied",
        channel=accounts_pb2.CHANNEL_IBM_CLOUD,
        token="t0ken-0123456789",
        url="https://cloud.ibm.com",
        proxies=accounts_pb2.ProxyConfiguration(
            urls={"https": proxy}  # the upstream's origin: on the allow-list
        ),
    )
    saved = gateway.accounts.SaveAccount(
        accounts_pb2.SaveAccountRequest(account=account, overwrite=True),
        metadata=_key(),
        timeout=10,
    )
    listed = gateway.accounts.ListAccounts(
        accounts_pb2.ListAccountsRequest(name="proxied"), metadata=_key(), timeout=10
    )
    for answer in (saved.account, *listed.accounts):
        assert answer.proxies.urls["https"] == proxy.replace("CANARY-PROXY-PASSWORD", "***")
        assert "CANARY" not in str(answer)


def test_a_page_token_is_good_for_its_own_account_only(gateway: GatewayClient) -> None:
    """A ListJobs token from one instance sent with another account's metadata is refused
    (it silently returned a wrong page before)."""
    upstream = gateway.upstream
    for _ in range(3):
        gateway.jobs.RunJob(
            jobs_pb2.RunJobRequest(
                program_id="sampler", backend="ibmq_qasm_simulator", inputs_json=bell_inputs()
            ),
            metadata=gateway.cloud(),
            timeout=30,
        )
    first = gateway.jobs.ListJobs(
        jobs_pb2.ListJobsRequest(page_size=1), metadata=gateway.cloud(), timeout=30
    )
    assert first.next_page_token
    other = gateway.cloud(instance=upstream.crn_eu)
    for metadata in (other, []):  # another instance; the gateway's own local runtime
        with pytest.raises(grpc.RpcError) as failure:
            gateway.jobs.ListJobs(
                jobs_pb2.ListJobsRequest(page_size=1, page_token=first.next_page_token),
                metadata=metadata,
                timeout=30,
            )
        assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(failure.value) == ("INVALID_ARGUMENT", "page_token")


@pytest.mark.parametrize(
    "inputs",
    [
        '{"pubs": [], "version": 2, "options": {"a": NaN}}',
        '{"pubs": [], "version": 2, "options": {"b": -Infinity}}',
    ],
    ids=["NaN", "Infinity"],
)
def test_inputs_that_are_not_json_never_reach_ibm(gateway: GatewayClient, inputs: str) -> None:
    gateway.upstream.clear_log()
    with pytest.raises(grpc.RpcError) as failure:
        gateway.jobs.RunJob(
            jobs_pb2.RunJobRequest(
                program_id="sampler", backend="ibmq_qasm_simulator", inputs_json=inputs
            ),
            metadata=gateway.cloud(),
            timeout=30,
        )
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(failure.value) == ("INVALID_ARGUMENT", "inputs_json")
    assert not [r for r in gateway.upstream.requests_log() if r["method"] == "POST"]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9999\\@x.cloud.example.test",
        "http://cloud.example.test:0",
        "http://cloud.example.test/?x=1",
        "http://cloud.example.test/#x",
        "http://cloud.example.test/a/../b",
        "http://user@cloud.example.test",
    ],
)
@pytest.mark.parametrize("channel", ["ibm_quantum_platform", "ibm_cloud", "ibm_quantum"])
def test_every_channel_refuses_urls_a_parser_could_read_two_ways(
    gateway: GatewayClient, url: str, channel: str
) -> None:
    metadata = [
        ("authorization", "Bearer made-up-token-123456"),
        ("x-runtime-channel", channel),
        ("x-runtime-url", url),
    ]
    gateway.upstream.clear_log()
    with pytest.raises(grpc.RpcError) as failure:
        gateway.jobs.ListJobs(jobs_pb2.ListJobsRequest(), metadata=metadata, timeout=10)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT, failure.value.details()
    assert error_info(failure.value)[1] == "x-runtime-url"
    assert gateway.upstream.requests_log() == []


@pytest.mark.parametrize("request_id", ["a\x00b", "line\nbreak", "with space", "é"])
def test_request_ids_are_printable_ascii(gateway: GatewayClient, request_id: str) -> None:
    with pytest.raises(grpc.RpcError) as failure:
        gateway.jobs.RunJob(
            jobs_pb2.RunJobRequest(
                program_id="sampler",
                backend="ibmq_qasm_simulator",
                inputs_json=bell_inputs(),
                request_id=request_id,
            ),
            metadata=gateway.cloud(),
            timeout=30,
        )
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(failure.value) == ("INVALID_ARGUMENT", "request_id")


def test_skip_is_bounded(gateway: GatewayClient) -> None:
    gateway.upstream.clear_log()
    with pytest.raises(grpc.RpcError) as failure:
        gateway.jobs.ListJobs(
            jobs_pb2.ListJobsRequest(skip=2_000_000_000), metadata=gateway.cloud(), timeout=10
        )
    assert error_info(failure.value) == ("INVALID_ARGUMENT", "skip")
    assert gateway.upstream.requests_log() == []


def test_children_never_import_from_the_working_directory(tmp_path: Path) -> None:
    """`python -m` puts the current directory first on the module path: a `secrets.py` where
    the operator started the gateway ran inside the embedded local runtime and its
    simulation workers. The gateway is started here as operators start it (its console
    script); its children must not pick the planted module up."""
    marker = tmp_path / "HIJACKED"
    (tmp_path / "secrets.py").write_text(f"open({str(marker)!r}, 'a').write('x')\n")
    script = Path(sys.executable).parent / "runtime-gateway"
    popen = subprocess.Popen(
        [str(script), "serve", "--listen", "127.0.0.1:0", "--workers", "2"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert popen.stdout is not None
        ready = json.loads(popen.stdout.readline())
        with grpc.insecure_channel(ready["address"]) as channel:
            jobs = jobs_pb2_grpc.JobServiceStub(channel)
            job = jobs.RunJob(
                jobs_pb2.RunJobRequest(
                    program_id="sampler", backend="ibmq_qasm_simulator", inputs_json=bell_inputs()
                ),
                timeout=60,
            ).job
            updates = jobs.WatchJob(jobs_pb2.WatchJobRequest(job_id=job.id), timeout=120)
            states = [u.update.state.job.state for u in updates if u.update.HasField("state")]
        assert states[-1] == jobs_pb2.JOB_STATE_COMPLETED  # a simulation worker ran
        assert not marker.exists()
    finally:
        popen.terminate()
        popen.wait(30)


def test_inputs_ibm_refuses_are_named_as_the_callers_field(gateway: GatewayClient) -> None:
    """IBM checks the program inputs and names them `params`; the caller sent `inputs_json`:
    the refusal names that field, with a BadRequest, and keeps IBM's explanation."""
    with pytest.raises(grpc.RpcError) as failure:
        gateway.jobs.RunJob(
            jobs_pb2.RunJobRequest(
                program_id="sampler", backend="ibmq_qasm_simulator", inputs_json='{"version": 2}'
            ),
            metadata=gateway.cloud(),
            timeout=30,
        )
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(failure.value) == ("INVALID_ARGUMENT", "inputs_json")
    assert "pubs" in (failure.value.details() or "")


def test_a_refused_account_names_every_host_it_leads_to(gateway: GatewayClient) -> None:
    """A cloud URL leads to four hosts (runtime, IAM, search, catalog): the refusal names them
    all, so an operator who means to allow them does it in one step, not one per attempt."""
    metadata = [
        ("authorization", "Bearer made-up-token-123456"),
        ("x-runtime-channel", "ibm_quantum_platform"),
        ("x-runtime-url", "https://elsewhere.example.org"),
    ]
    with pytest.raises(grpc.RpcError) as failure:
        gateway.jobs.ListJobs(jobs_pb2.ListJobsRequest(), metadata=metadata, timeout=10)
    assert failure.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(failure.value)[0] == "UPSTREAM_NOT_ALLOWED"
    details = failure.value.details() or ""
    for host in ("quantum.elsewhere.example.org:443", "api.global-search-tagging.elsewhere"):
        assert host in details
    assert "made-up-token" not in details


def test_saving_an_account_the_gateway_may_not_contact_is_refused(gateway: GatewayClient) -> None:
    account = accounts_pb2.Account(
        name="unreachable",
        channel=accounts_pb2.CHANNEL_IBM_QUANTUM,
        token="t0ken-0123456789",
        url="http://10.1.2.3:9999/api",
    )
    with pytest.raises(grpc.RpcError) as failure:
        gateway.accounts.SaveAccount(
            accounts_pb2.SaveAccountRequest(account=account, overwrite=True),
            metadata=_key(),
            timeout=10,
        )
    assert failure.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(failure.value)[0] == "UPSTREAM_NOT_ALLOWED"
    listed = gateway.accounts.ListAccounts(
        accounts_pb2.ListAccountsRequest(name="unreachable"), metadata=_key(), timeout=10
    )
    assert not listed.accounts


def test_sigterm_exits_within_grace_while_ibm_is_slow(upstream: Upstream, tmp_path: Path) -> None:
    """Calls held by a slow upstream are answered when the grace ends, and then the process
    leaves: it neither waits for the slow answers nor sends anything more upstream."""
    proc = start(
        ["serve", "--listen", "127.0.0.1:0", "--no-local-runtime", "--grace-seconds", "2"],
        tmp_path,
        env=upstream_env(upstream),
    )
    gateway = GatewayClient(proc, upstream)
    gateway.jobs.ListJobs(jobs_pb2.ListJobsRequest(), metadata=gateway.cloud(), timeout=30)
    upstream.faults(latency_ms=20_000, path_pattern="/jobs$", methods=["GET"])
    try:
        pending = gateway.jobs.ListJobs.future(
            jobs_pb2.ListJobsRequest(), metadata=gateway.cloud(), timeout=60
        )
        time.sleep(2)  # the GET is on its way (its token and instance are cached above)
        proc.popen.send_signal(signal.SIGTERM)
        # The 2 s grace and a margin for a busy VM, well before the held GET's 20 s answer:
        # waiting for that answer is the fault this test guards against.
        proc.popen.wait(10)
        with pytest.raises(grpc.RpcError) as failure:
            pending.result()
        assert failure.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
    finally:
        upstream.faults()
        gateway.channel.close()
        proc.stop()


def test_a_cloud_url_with_an_ip_address_gets_advice_that_can_work(gateway: GatewayClient) -> None:
    """Cloud channels derive quantum.<host>, iam.<host>...: from an IP address those are no
    hosts, so the refusal says so instead of suggesting --allow-upstream quantum.127.0.0.1."""
    metadata = [
        ("authorization", "Bearer made-up-token-123456"),
        ("x-runtime-channel", "ibm_quantum_platform"),
        ("x-runtime-url", "http://127.0.0.1:8765"),
    ]
    with pytest.raises(grpc.RpcError) as failure:
        gateway.jobs.ListJobs(jobs_pb2.ListJobsRequest(), metadata=metadata, timeout=10)
    details = failure.value.details() or ""
    assert "IP address" in details and "HTTP_PROXY" in details
    assert "--allow-upstream quantum.127.0.0.1" not in details
