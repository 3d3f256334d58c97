"""Secrets (IBM tokens, IAM JWTs, gateway API keys) never leave the gateway.

Runs after the other tests of this gateway process (file order), so the log it searches
holds every flow they drove with the recognisable token, plus its own.
"""

from __future__ import annotations

import re

import grpc
import pytest

from runtime_gateway.v1 import accounts_pb2, backends_pb2, jobs_pb2
from tests.gateway.conftest import API_KEYS, UPSTREAM_TOKEN, GatewayClient, bell_inputs

JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}")
SECRETS = [UPSTREAM_TOKEN, *API_KEYS.values()]


def _assert_clean(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a secret appears in {where}"
    assert not JWT.search(text), f"a JWT appears in {where}"


def test_no_secret_in_responses_or_errors(gateway: GatewayClient) -> None:
    md = gateway.cloud()
    responses = [
        gateway.backends.ListBackends(
            backends_pb2.ListBackendsRequest(view=backends_pb2.BACKEND_VIEW_FULL),
            metadata=md,
            timeout=30,
        ),
        gateway.accounts.GetActiveAccount(
            accounts_pb2.GetActiveAccountRequest(), metadata=md, timeout=30
        ),
        gateway.accounts.VerifyAccount(
            accounts_pb2.VerifyAccountRequest(), metadata=md, timeout=30
        ),
        gateway.accounts.ListInstances(
            accounts_pb2.ListInstancesRequest(), metadata=md, timeout=30
        ),
        gateway.accounts.ListAccounts(
            accounts_pb2.ListAccountsRequest(),
            metadata=[("x-gateway-api-key", API_KEYS["team-a"])],
            timeout=30,
        ),
    ]
    job = gateway.jobs.RunJob(
        jobs_pb2.RunJobRequest(
            program_id="sampler", backend="ibmq_qasm_simulator", inputs_json=bell_inputs()
        ),
        metadata=md,
        timeout=60,
    )
    responses += [job, gateway.jobs.ListJobs(jobs_pb2.ListJobsRequest(), metadata=md, timeout=30)]
    for response in responses:
        _assert_clean(str(response), type(response).__name__)
        _assert_clean(response.SerializeToString().decode("latin-1"), type(response).__name__)
    # Errors caused by bad credentials or bad input carry no secret either.
    failing = [
        lambda: gateway.backends.ListBackends(
            backends_pb2.ListBackendsRequest(),
            metadata=[
                ("authorization", f"Bearer {UPSTREAM_TOKEN}x"),
                ("x-runtime-channel", "ibm_cloud"),
                ("x-runtime-url", "http://cloud.example.test"),
            ],
            timeout=30,
        ),
        lambda: gateway.accounts.ListAccounts(
            accounts_pb2.ListAccountsRequest(),
            metadata=[("x-gateway-api-key", API_KEYS["team-a"] + "y")],
            timeout=30,
        ),
        lambda: gateway.jobs.RunJob(
            jobs_pb2.RunJobRequest(
                program_id="sampler", inputs_json=f'{{"secret": "{UPSTREAM_TOKEN}"'
            ),
            metadata=md,
            timeout=30,
        ),
    ]
    for call in failing:
        with pytest.raises(grpc.RpcError) as failure:
            call()
        _assert_clean(failure.value.details() or "", "an error message")
        _assert_clean(str(failure.value.trailing_metadata()), "error details")


def test_no_secret_in_any_log_line(gateway: GatewayClient) -> None:
    log = gateway.proc.stderr()
    assert log.count('"event": "rpc"') > 50  # the flows of the whole gateway suite are in it
    _assert_clean(log, "the gateway's log")
    _assert_clean(str(gateway.proc.ready), "the ready line")
