"""Bad input on every unary RPC: INVALID_ARGUMENT naming the field, before any upstream call.

A real gateway process in front of a real local runtime playing IBM (tests/gateway/conftest.py).
Each kind below was found by an outside test that sent malformed calls to every RPC; each
case failed before the fix (UNKNOWN, INTERNAL, a wrong reason, or an upstream request).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from runtime_gateway.v1 import (
    accounts_pb2,
    accounts_pb2_grpc,
    backends_pb2,
    jobs_pb2,
    jobs_pb2_grpc,
)
from tests.gateway.conftest import (
    API_KEYS,
    GatewayClient,
    Upstream,
    bell_inputs,
    error_info,
    upstream_env,
)
from tests.procs import start

MAX_QUOTE = 300  # characters of details a refusal may have: a short prefix, never the input
Call = Callable[[GatewayClient], Any]


def _refused(call: Call, gateway: GatewayClient, field: str, marker: str = "") -> grpc.RpcError:
    """Asserts INVALID_ARGUMENT naming `field`, a short message, and no upstream request."""
    gateway.upstream.clear_log()
    with pytest.raises(grpc.RpcError) as failure:
        call(gateway)
    error = failure.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert error_info(error) == ("INVALID_ARGUMENT", field), error.details()
    assert len(error.details() or "") <= MAX_QUOTE, error.details()
    if marker:
        assert marker * 50 not in (error.details() or "")
    assert gateway.upstream.requests_log() == []  # refused before any upstream call
    return error


def _run(**fields: Any) -> jobs_pb2.RunJobRequest:
    base: dict[str, Any] = {
        "program_id": "sampler",
        "backend": "ibmq_qasm_simulator",
        "inputs_json": bell_inputs(),
    }
    return jobs_pb2.RunJobRequest(**{**base, **fields})


def _save(**fields: Any) -> accounts_pb2.SaveAccountRequest:
    account: dict[str, Any] = {
        "name": "bad-input",
        "channel": accounts_pb2.CHANNEL_IBM_CLOUD,
        "token": "t0ken-0123456789",
        "url": "https://cloud.ibm.com",
    }
    return accounts_pb2.SaveAccountRequest(account=accounts_pb2.Account(**{**account, **fields}))


def _key(name: str = "team-a") -> list[tuple[str, str]]:
    return [("x-gateway-api-key", API_KEYS[name])]


def _with(gateway: GatewayClient, key: str, value: str) -> list[tuple[str, str]]:
    """The cloud metadata with one value replaced."""
    return [(k, v) for k, v in gateway.cloud() if k != key] + [(key, value)]


# --- 1. every caller-supplied size is bounded ---------------------------------------------------
Z = "Z"
SIZES: list[tuple[str, Call, str]] = [
    ("job id", lambda g: g.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=Z * 5000), metadata=g.cloud(), timeout=30), "job_id"),
    ("request id of 10 MB", lambda g: g.jobs.RunJob(_run(request_id=Z * 10_000_000), metadata=g.cloud(), timeout=60), "request_id"),
    ("program id", lambda g: g.jobs.RunJob(_run(program_id=Z * 500), metadata=g.cloud(), timeout=30), "program_id"),
    ("session id", lambda g: g.jobs.RunJob(_run(session_id=Z * 500), metadata=g.cloud(), timeout=30), "session_id"),
    ("many tags", lambda g: g.jobs.RunJob(_run(tags=[f"t{i}" for i in range(500)]), metadata=g.cloud(), timeout=30), "tags"),
    ("long tag", lambda g: g.jobs.UpdateJobTags(jobs_pb2.UpdateJobTagsRequest(job_id="j1", tags=[Z * 5000]), metadata=g.cloud(), timeout=30), "tags[0]"),
    ("list filter", lambda g: g.jobs.ListJobs(jobs_pb2.ListJobsRequest(backend=Z * 500), metadata=g.cloud(), timeout=30), "backend"),
    ("backend filter name", lambda g: g.backends.ListBackends(backends_pb2.ListBackendsRequest(filter=backends_pb2.BackendFilter(name=Z * 5000)), metadata=g.cloud(), timeout=30), "filter.name"),
    ("attribute entries", lambda g: g.backends.ListBackends(backends_pb2.ListBackendsRequest(filter=backends_pb2.BackendFilter(attributes={f"a{i}": "1" for i in range(200)})), metadata=g.cloud(), timeout=30), "filter.attributes"),
    ("attribute value", lambda g: g.backends.ListBackends(backends_pb2.ListBackendsRequest(filter=backends_pb2.BackendFilter(attributes={"n_qubits": Z * 5000})), metadata=g.cloud(), timeout=30), "filter.attributes[n_qubits]"),
    ("instance", lambda g: g.backends.GetBackend(backends_pb2.GetBackendRequest(name="ibm_x", instance=Z * 5000), metadata=g.cloud(), timeout=30), "instance"),
    ("page token", lambda g: g.backends.ListBackends(backends_pb2.ListBackendsRequest(page_token=Z * 50_000), metadata=g.cloud(), timeout=30), "page_token"),
    ("account name", lambda g: g.accounts.SaveAccount(_save(name=Z * 500), metadata=_key(), timeout=30), "account.name"),
    ("account token", lambda g: g.accounts.SaveAccount(_save(token=Z * 50_000), metadata=_key(), timeout=30), "account.token"),
    ("account url", lambda g: g.accounts.SaveAccount(_save(url="https://" + Z * 5000), metadata=_key(), timeout=30), "account.url"),
    ("account instance", lambda g: g.accounts.SaveAccount(_save(instance=Z * 5000), metadata=_key(), timeout=30), "account.instance"),
    ("account proxies", lambda g: g.accounts.SaveAccount(_save(proxies=accounts_pb2.ProxyConfiguration(urls={f"p{i}": "http://p" for i in range(100)})), metadata=_key(), timeout=30), "account.proxies.urls"),
    ("account channel strategy", lambda g: g.accounts.SaveAccount(_save(channel_strategy=Z * 5000), metadata=_key(), timeout=30), "account.channel_strategy"),
    ("account lookup name", lambda g: g.accounts.ListAccounts(accounts_pb2.ListAccountsRequest(name=Z * 500), metadata=_key(), timeout=30), "name"),
    ("x-runtime-url", lambda g: g.backends.ListBackends(backends_pb2.ListBackendsRequest(), metadata=_with(g, "x-runtime-url", "http://" + Z * 3000), timeout=30), "x-runtime-url"),
    ("x-runtime-instance", lambda g: g.backends.ListBackends(backends_pb2.ListBackendsRequest(), metadata=_with(g, "x-runtime-instance", Z * 3000), timeout=30), "x-runtime-instance"),
    ("authorization", lambda g: g.backends.ListBackends(backends_pb2.ListBackendsRequest(), metadata=_with(g, "authorization", "Bearer " + Z * 6000), timeout=30), "authorization"),
    ("x-runtime-account", lambda g: g.backends.ListBackends(backends_pb2.ListBackendsRequest(), metadata=[("x-runtime-account", Z * 3000), *_key()], timeout=30), "x-runtime-account"),
    ("x-gateway-api-key", lambda g: g.accounts.ListAccounts(accounts_pb2.ListAccountsRequest(), metadata=[("x-gateway-api-key", Z * 6000)], timeout=30), "x-gateway-api-key"),
    ("x-request-id", lambda g: g.backends.ListBackends(backends_pb2.ListBackendsRequest(), metadata=[*g.cloud(), ("x-request-id", Z * 3000)], timeout=30), "x-request-id"),
]  # fmt: skip


@pytest.mark.parametrize(("call", "field"), [c[1:] for c in SIZES], ids=[c[0] for c in SIZES])
def test_sizes_are_bounded(gateway: GatewayClient, call: Call, field: str) -> None:
    _refused(call, gateway, field, marker=Z)


# --- 2. nothing a caller sends changes an upstream path ------------------------------------------
PATHS: list[tuple[str, Call, str]] = [
    ("job id with a query", lambda g: g.jobs.GetJob(jobs_pb2.GetJobRequest(job_id="x?limit=1"), metadata=g.cloud(), timeout=30), "job_id"),
    ("job id with an escaped slash", lambda g: g.jobs.GetJob(jobs_pb2.GetJobRequest(job_id="..%2Fbackends"), metadata=g.cloud(), timeout=30), "job_id"),
    ("job id dot-dot", lambda g: g.jobs.CancelJob(jobs_pb2.CancelJobRequest(job_id=".."), metadata=g.cloud(), timeout=30), "job_id"),
    ("job id with a fragment", lambda g: g.jobs.DeleteJob(jobs_pb2.DeleteJobRequest(job_id="j#x"), metadata=g.cloud(), timeout=30), "job_id"),
    ("job id with a slash", lambda g: g.jobs.GetJobResult(jobs_pb2.GetJobResultRequest(job_id="a/../b"), metadata=g.cloud(), timeout=30), "job_id"),
    ("job id on logs", lambda g: g.jobs.GetJobLogs(jobs_pb2.GetJobLogsRequest(job_id="x?y"), metadata=g.cloud(), timeout=30), "job_id"),
    ("job id on metrics", lambda g: g.jobs.GetJobMetrics(jobs_pb2.GetJobMetricsRequest(job_id="%2e%2e"), metadata=g.cloud(), timeout=30), "job_id"),
    ("job id on tags", lambda g: g.jobs.UpdateJobTags(jobs_pb2.UpdateJobTagsRequest(job_id="x y", tags=["a"]), metadata=g.cloud(), timeout=30), "job_id"),
    ("backend name", lambda g: g.backends.GetBackend(backends_pb2.GetBackendRequest(name="../jobs"), metadata=g.cloud(), timeout=30), "name"),
    ("backend status name", lambda g: g.backends.GetBackendStatus(backends_pb2.GetBackendStatusRequest(name="ibm_x?limit=1"), metadata=g.cloud(), timeout=30), "name"),
    ("backend properties name", lambda g: g.backends.GetBackendProperties(backends_pb2.GetBackendPropertiesRequest(name="x%2F..%2Fjobs"), metadata=g.cloud(), timeout=30), "name"),
    ("run backend", lambda g: g.jobs.RunJob(_run(backend="sim#x"), metadata=g.cloud(), timeout=30), "backend"),
    ("run session", lambda g: g.jobs.RunJob(_run(session_id="s/../x"), metadata=g.cloud(), timeout=30), "session_id"),
    ("run program", lambda g: g.jobs.RunJob(_run(program_id="sampler?x=1"), metadata=g.cloud(), timeout=30), "program_id"),
]  # fmt: skip


@pytest.mark.parametrize(("call", "field"), [c[1:] for c in PATHS], ids=[c[0] for c in PATHS])
def test_caller_values_never_change_an_upstream_path(
    gateway: GatewayClient, call: Call, field: str
) -> None:
    _refused(call, gateway, field)


# --- 3. unknown enum values never select a default action ----------------------------------------
ENUMS: list[tuple[str, Call, str]] = [
    ("ListAccounts channel", lambda g: g.accounts.ListAccounts(accounts_pb2.ListAccountsRequest(channel=42), metadata=_key(), timeout=30), "channel"),
    ("SaveAccount channel", lambda g: g.accounts.SaveAccount(_save(channel=77), metadata=_key(), timeout=30), "account.channel"),
    ("ListBackends view", lambda g: g.backends.ListBackends(backends_pb2.ListBackendsRequest(view=7), timeout=30), "view"),
    ("GetBackend view", lambda g: g.backends.GetBackend(backends_pb2.GetBackendRequest(name="ibmq_qasm_simulator", view=9), timeout=30), "view"),
    ("GetLeastBusyBackend view", lambda g: g.backends.GetLeastBusyBackend(backends_pb2.GetLeastBusyBackendRequest(view=-1), timeout=30), "view"),
    ("GetJob view", lambda g: g.jobs.GetJob(jobs_pb2.GetJobRequest(job_id="j1", view=3), metadata=g.cloud(), timeout=30), "view"),
]  # fmt: skip


@pytest.mark.parametrize(("call", "field"), [c[1:] for c in ENUMS], ids=[c[0] for c in ENUMS])
def test_unknown_enum_values_are_refused(gateway: GatewayClient, call: Call, field: str) -> None:
    _refused(call, gateway, field)


def test_delete_account_with_an_unknown_channel_deletes_nothing(gateway: GatewayClient) -> None:
    md = _key("team-b")
    default = _save(name="", channel=accounts_pb2.CHANNEL_IBM_QUANTUM_PLATFORM)
    gateway.accounts.SaveAccount(
        accounts_pb2.SaveAccountRequest(account=default.account, overwrite=True),
        metadata=md,
        timeout=30,
    )
    _refused(
        lambda g: g.accounts.DeleteAccount(
            accounts_pb2.DeleteAccountRequest(channel=99), metadata=md, timeout=30
        ),
        gateway,
        "channel",
    )
    names = [
        a.name
        for a in gateway.accounts.ListAccounts(
            accounts_pb2.ListAccountsRequest(), metadata=md, timeout=30
        ).accounts
    ]
    assert "default-ibm-quantum-platform" in names
    # CHANNEL_UNSPECIFIED keeps its documented meaning: the default platform account.
    deleted = gateway.accounts.DeleteAccount(
        accounts_pb2.DeleteAccountRequest(), metadata=md, timeout=30
    )
    assert deleted.deleted


# --- 4. malformed values end in INVALID_ARGUMENT -------------------------------------------------
def _stamp(seconds: int, nanos: int = 0) -> Timestamp:
    return Timestamp(seconds=seconds, nanos=nanos)


DEEP = '{"pubs": ' + "[" * 1000 + "]" * 1000 + "}"
MALFORMED: list[tuple[str, Call, str]] = [
    ("timestamp beyond 9999", lambda g: g.jobs.ListJobs(jobs_pb2.ListJobsRequest(created_after=_stamp(10**12)), metadata=g.cloud(), timeout=30), "created_after"),
    ("timestamp with negative nanos", lambda g: g.jobs.ListJobs(jobs_pb2.ListJobsRequest(created_before=_stamp(0, -1)), metadata=g.cloud(), timeout=30), "created_before"),
    ("properties before year 1", lambda g: g.backends.GetBackendProperties(backends_pb2.GetBackendPropertiesRequest(name="ibm_x", updated_before=_stamp(-(10**12))), metadata=g.cloud(), timeout=30), "updated_before"),
    ("inputs nested 1,000 deep", lambda g: g.jobs.RunJob(_run(inputs_json=DEEP), metadata=g.cloud(), timeout=30), "inputs_json"),
    ("attribute JSON nested 1,000 deep", lambda g: g.backends.ListBackends(backends_pb2.ListBackendsRequest(filter=backends_pb2.BackendFilter(attributes={"n_qubits": "[" * 120 + "]" * 120})), metadata=g.cloud(), timeout=30), "filter.attributes[n_qubits]"),
    ("non-numeric instances token", lambda g: g.accounts.ListInstances(accounts_pb2.ListInstancesRequest(page_token=base64.urlsafe_b64encode(b"abc").decode()), metadata=g.cloud(), timeout=30), "page_token"),
    ("CRN with empty fields", lambda g: g.backends.ListBackends(backends_pb2.ListBackendsRequest(), metadata=_with(g, "x-runtime-instance", "crn:v1:::::::::"), timeout=30), "x-runtime-instance"),
    ("saved CRN with empty fields", lambda g: g.accounts.SaveAccount(_save(instance="crn:v1:::::::::"), metadata=_key(), timeout=30), "account.instance"),
    ("negative page size", lambda g: g.jobs.ListJobs(jobs_pb2.ListJobsRequest(page_size=-5), metadata=g.cloud(), timeout=30), "page_size"),
    ("huge page size", lambda g: g.jobs.ListJobs(jobs_pb2.ListJobsRequest(page_size=2**31 - 1), metadata=g.cloud(), timeout=30), "page_size"),
    ("order_by garbage", lambda g: g.jobs.ListJobs(jobs_pb2.ListJobsRequest(order_by="\x00" * 500), metadata=g.cloud(), timeout=30), "order_by"),
    ("huge order_by", lambda g: g.jobs.ListJobs(jobs_pb2.ListJobsRequest(order_by=Z * 100_000), metadata=g.cloud(), timeout=30), "order_by"),
    ("URL with a broken host", lambda g: g.backends.ListBackends(backends_pb2.ListBackendsRequest(), metadata=_with(g, "x-runtime-url", "http://[::1"), timeout=30), "x-runtime-url"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("call", "field"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED]
)
def test_malformed_values_are_invalid_argument(
    gateway: GatewayClient, call: Call, field: str
) -> None:
    _refused(call, gateway, field, marker=Z)


# --- 5. undecodable request bytes ----------------------------------------------------------------
def _api_methods() -> Iterator[tuple[str, str, bool, bytes]]:
    for module in (accounts_pb2, backends_pb2, jobs_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                # A string field holding bytes that are not UTF-8 (when the message has one).
                strings = [f for f in method.input_type.fields if f.type == f.TYPE_STRING]
                not_utf8 = (
                    bytes([strings[0].number << 3 | 2, 3, 0xFF, 0xFE, 0xFD]) if strings else b""
                )
                yield (
                    f"/{service.full_name}/{method.name}",
                    method.input_type.name,
                    method.server_streaming,
                    not_utf8,
                )


METHODS = list(_api_methods())
GARBAGE = (
    b"\xff" * 12,  # a varint that never ends
    b"\x0a\x10abc",  # a length-delimited field cut short
    bytes(range(7, 256, 3)),  # arbitrary bytes (fixed, so the case cannot pass by chance)
)


@pytest.mark.parametrize(
    ("path", "message", "streaming", "not_utf8"), METHODS, ids=[m[0] for m in METHODS]
)
def test_undecodable_requests_are_invalid_argument(
    gateway: GatewayClient, path: str, message: str, streaming: bool, not_utf8: bytes
) -> None:
    assert len(METHODS) == 22
    for payload in (*GARBAGE, *([not_utf8] if not_utf8 else [])):
        gateway.upstream.clear_log()
        with pytest.raises(grpc.RpcError) as failure:
            if streaming:
                list(gateway.channel.unary_stream(path)(payload, timeout=30))
            else:
                gateway.channel.unary_unary(path)(payload, timeout=30)
        error = failure.value
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
        assert error.details() == f"the request is not a valid {message}"
        assert error_info(error)[0] == "INVALID_ARGUMENT"
        assert gateway.upstream.requests_log() == []


# --- 7. unknown sessions and backends are NOT_FOUND with their own reason ------------------------
NOT_FOUND: list[tuple[str, Call, str]] = [
    ("RunJob session", lambda g: g.jobs.RunJob(_run(session_id="nosuchsession000001"), metadata=g.cloud(), timeout=30), "SESSION_NOT_FOUND"),
    ("RunJob program", lambda g: g.jobs.RunJob(_run(program_id="no-such-program"), metadata=g.cloud(), timeout=30), "PROGRAM_NOT_FOUND"),
    ("RunJob backend", lambda g: g.jobs.RunJob(_run(backend="ibm_nowhere"), metadata=g.cloud(), timeout=30), "BACKEND_NOT_FOUND"),
    ("GetBackend", lambda g: g.backends.GetBackend(backends_pb2.GetBackendRequest(name="ibm_nowhere"), metadata=g.cloud(), timeout=30), "BACKEND_NOT_FOUND"),
    ("GetBackendStatus", lambda g: g.backends.GetBackendStatus(backends_pb2.GetBackendStatusRequest(name="ibm_nowhere"), metadata=g.cloud(), timeout=30), "BACKEND_NOT_FOUND"),
    ("GetBackendProperties", lambda g: g.backends.GetBackendProperties(backends_pb2.GetBackendPropertiesRequest(name="ibm_nowhere"), metadata=g.cloud(), timeout=30), "BACKEND_NOT_FOUND"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("call", "reason"), [c[1:] for c in NOT_FOUND], ids=[c[0] for c in NOT_FOUND]
)
def test_unknown_names_are_not_found(gateway: GatewayClient, call: Call, reason: str) -> None:
    with pytest.raises(grpc.RpcError) as failure:
        call(gateway)
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND, failure.value.details()
    assert error_info(failure.value)[0] == reason


# --- 8. every list call's page token is signed ----------------------------------------------------
def _forged(value: str) -> str:
    """A token in the unsigned format the small lists used: base64 of the last name/offset."""
    return base64.urlsafe_b64encode(value.encode()).decode()


def test_page_tokens_of_every_list_are_signed(gateway: GatewayClient) -> None:
    md = gateway.cloud()
    first = gateway.backends.ListBackends(
        backends_pb2.ListBackendsRequest(page_size=2), metadata=md, timeout=30
    )
    assert first.next_page_token
    second = gateway.backends.ListBackends(
        backends_pb2.ListBackendsRequest(page_size=2, page_token=first.next_page_token),
        metadata=md,
        timeout=30,
    )
    assert second.backends and second.backends[0].name > first.backends[-1].name
    tampered = first.next_page_token[:-3] + (
        "AAA" if first.next_page_token[-3:] != "AAA" else "BBB"
    )
    other = backends_pb2.BackendFilter(simulator=True)
    refusals: list[Call] = [
        lambda g: g.backends.ListBackends(backends_pb2.ListBackendsRequest(page_token=_forged("a")), metadata=md, timeout=30),
        lambda g: g.backends.ListBackends(backends_pb2.ListBackendsRequest(page_token=tampered), metadata=md, timeout=30),
        lambda g: g.backends.ListBackends(backends_pb2.ListBackendsRequest(filter=other, page_token=first.next_page_token), metadata=md, timeout=30),
        lambda g: g.accounts.ListAccounts(accounts_pb2.ListAccountsRequest(page_token=_forged("a")), metadata=_key(), timeout=30),
        lambda g: g.accounts.ListInstances(accounts_pb2.ListInstancesRequest(page_token=_forged("0")), metadata=md, timeout=30),
        lambda g: g.accounts.ListInstances(accounts_pb2.ListInstancesRequest(page_token=first.next_page_token), metadata=md, timeout=30),
    ]  # fmt: skip
    for call in refusals:
        _refused(call, gateway, "page_token")


# --- 6. admission control for large requests ------------------------------------------------------
@pytest.fixture
def small_budget_gateway(upstream: Upstream, tmp_path: Path) -> Iterator[GatewayClient]:
    """A gateway whose requests in flight may cost at most 96 MB (eight times their size, so
    12 MB of requests); POST /jobs upstream is slowed so concurrent submissions overlap."""
    proc = start(
        ["serve", "--listen", "127.0.0.1:0", "--max-inflight-bytes", str(96_000_000)],
        tmp_path,
        env=upstream_env(upstream),
    )
    upstream.faults(latency_ms=1500, path_pattern=r"/jobs$", methods=["POST"])
    client = GatewayClient(proc, upstream)
    try:
        yield client
    finally:
        upstream.faults()
        client.channel.close()
        proc.stop()


def test_large_requests_beyond_the_budget_are_overloaded(
    small_budget_gateway: GatewayClient,
) -> None:
    gateway = small_budget_gateway
    md = gateway.cloud()
    padded = json.loads(bell_inputs())
    padded["options"] = {"padding": "x" * 5_000_000}  # 5 MB: two fit the budget, three do not
    inputs = json.dumps(padded)
    outcomes: list[grpc.RpcError | jobs_pb2.RunJobResponse] = []
    lock = threading.Lock()

    def submit() -> None:
        try:
            reply: Any = gateway.jobs.RunJob(_run(inputs_json=inputs), metadata=md, timeout=60)
        except grpc.RpcError as error:
            reply = error
        with lock:
            outcomes.append(reply)

    threads = [threading.Thread(target=submit) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    refused = [o for o in outcomes if isinstance(o, grpc.RpcError)]
    done = [o for o in outcomes if not isinstance(o, grpc.RpcError)]
    assert len(outcomes) == 6 and refused and done, [getattr(o, "details", str)() for o in refused]
    for error in refused:
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
        assert error_info(error)[0] == "GATEWAY_OVERLOADED"
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
        assert status is not None
        assert any(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in status.details)
    # A cancelled call releases its share too.
    future = gateway.jobs.RunJob.future(_run(inputs_json=inputs), metadata=md, timeout=60)
    time.sleep(0.3)  # let it reach the (slowed) upstream; not a timing assertion
    future.cancel()
    # A call that fails after admission (upstream 404) releases its share as well.
    with pytest.raises(grpc.RpcError) as failure:
        gateway.jobs.RunJob(_run(inputs_json=inputs, program_id="nope"), metadata=md, timeout=60)
    assert error_info(failure.value)[0] == "PROGRAM_NOT_FOUND"
    # The budget is back: a large call and a normal one succeed.
    assert gateway.jobs.RunJob(_run(inputs_json=inputs), metadata=md, timeout=60).job.id
    assert gateway.jobs.RunJob(_run(), metadata=md, timeout=60).job.id


# --- streams share the admission of unary calls ---------------------------------------------------
def test_streams_check_their_request_too(gateway: GatewayClient) -> None:
    stub = jobs_pb2_grpc.JobServiceStub(gateway.channel)
    gateway.upstream.clear_log()
    with pytest.raises(grpc.RpcError) as failure:
        list(
            stub.WatchJob(
                jobs_pb2.WatchJobRequest(job_id=Z * 5000), metadata=gateway.cloud(), timeout=30
            )
        )
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(failure.value) == ("INVALID_ARGUMENT", "job_id")
    assert gateway.upstream.requests_log() == []
    assert accounts_pb2_grpc  # the generated modules stay importable from here
