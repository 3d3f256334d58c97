"""A real gateway process in front of a real local runtime process playing IBM.

The gateway reaches the "IBM" local runtime as it reaches IBM: cloud channels through the
hosts the SDK derives from `url` (here via HTTP_PROXY, which the local runtime routes by
host name), ibm_quantum through its auth URL. Its embedded local runtime serves calls
without credentials (NO_PROXY keeps loopback direct).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import requests

from runtime_gateway.v1 import (
    accounts_pb2_grpc,
    backends_pb2_grpc,
    jobs_pb2,
    jobs_pb2_grpc,
)
from tests.procs import Proc, start

# Recognisable secrets: the secrets tests look for them in every log line and response.
UPSTREAM_TOKEN = "upstream-SECRET-token-7f3a9c1e5b"
API_KEYS = {"team-a": "gw-key-SECRET-aaaa-1111", "team-b": "gw-key-SECRET-bbbb-2222"}
DOMAIN = "cloud.example.test"
QASM_BELL = (
    'OPENQASM 3.0; include "stdgates.inc"; qubit[2] q; bit[2] c; '
    "h q[0]; cx q[0], q[1]; c = measure q;"
)


def bell_inputs(shots: int = 100) -> str:
    return json.dumps({"pubs": [[QASM_BELL, None, shots]], "version": 2, "options": {}})


@dataclass
class Upstream:
    """The local runtime process that plays IBM, with its admin API."""

    proc: Proc
    url: str = field(init=False)
    crn: str = field(init=False)
    crn_eu: str = field(init=False)

    def __post_init__(self) -> None:
        self.url = self.proc.ready["url"]
        self.crn, self.crn_eu = self.proc.ready["instances"]["crns"][:2]

    def admin(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        reply = requests.request(
            method,
            f"{self.url}/_local{path}",
            headers={"X-Local-Admin-Token": UPSTREAM_TOKEN},
            timeout=10,
            **kwargs,
        )
        reply.raise_for_status()
        return reply

    def faults(self, **config: Any) -> None:
        self.admin("PUT", "/faults", json=config)

    def requests_log(self) -> list[dict[str, Any]]:
        return list(self.admin("GET", "/requests").json()["requests"])

    def clear_log(self) -> None:
        self.admin("DELETE", "/requests")


@dataclass
class GatewayClient:
    proc: Proc
    upstream: Upstream
    channel: grpc.Channel = field(init=False)

    def __post_init__(self) -> None:
        self.address = self.proc.ready["address"]
        self.channel = grpc.insecure_channel(self.address)
        self.backends = backends_pb2_grpc.BackendServiceStub(self.channel)
        self.jobs = jobs_pb2_grpc.JobServiceStub(self.channel)
        self.accounts = accounts_pb2_grpc.AccountServiceStub(self.channel)

    def cloud(
        self, channel: str = "ibm_quantum_platform", instance: str | None = None
    ) -> list[tuple[str, str]]:
        return [
            ("authorization", f"Bearer {UPSTREAM_TOKEN}"),
            ("x-runtime-channel", channel),
            ("x-runtime-url", f"http://{DOMAIN}"),
            ("x-runtime-instance", instance or self.upstream.crn),
        ]

    def legacy(self, instance: str | None = None) -> list[tuple[str, str]]:
        md = [
            ("authorization", f"Bearer {UPSTREAM_TOKEN}"),
            ("x-runtime-channel", "ibm_quantum"),
            ("x-runtime-url", f"{self.upstream.url}/api"),
        ]
        if instance:
            md.append(("x-runtime-instance", instance))
        return md

    def wait(self, job_id: str, md: list[tuple[str, str]], timeout: float = 60) -> jobs_pb2.Job:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.jobs.GetJob(
                jobs_pb2.GetJobRequest(job_id=job_id), metadata=md, timeout=10
            ).job
            if job.state in (
                jobs_pb2.JOB_STATE_COMPLETED,
                jobs_pb2.JOB_STATE_FAILED,
                jobs_pb2.JOB_STATE_CANCELLED,
            ):
                return job
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} did not finish")


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture(scope="session")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    tmp: Path = tmp_path_factory.mktemp("upstream")
    proc = start(
        ["local-runtime", "--listen", "127.0.0.1:0", "--token", UPSTREAM_TOKEN, "--workers", "2"],
        tmp,
    )
    yield Upstream(proc)
    proc.stop()


@pytest.fixture(scope="session")
def accounts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("accounts")


def upstream_env(upstream: Upstream) -> dict[str, str]:
    """The environment that makes a gateway reach the upstream process as it reaches IBM."""
    port = upstream.url.rsplit(":", 1)[1]
    return {
        "HTTP_PROXY": f"http://127.0.0.1:{port}",
        "http_proxy": f"http://127.0.0.1:{port}",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "IAM_URL": f"http://iam.{DOMAIN}",
        # The upstream allow-list: the fake IBM domain, and the upstream's own origin (the
        # ibm_quantum channel's auth URL and the runtime URL its /users/me names).
        "RUNTIME_GATEWAY_ALLOW_UPSTREAM": f"*.{DOMAIN},127.0.0.1:{port}",
    }


@pytest.fixture(scope="session")
def gateway(
    upstream: Upstream, accounts_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayClient]:
    tmp: Path = tmp_path_factory.mktemp("gateway")
    keys = ",".join(f"{k}={key_digest(v)}" for k, v in API_KEYS.items())
    proc = start(
        [
            "serve", "--listen", "127.0.0.1:0", "--log-level", "DEBUG",
            "--accounts-dir", str(accounts_dir), "--api-key", keys,
            "--backend-cache-seconds", "30",
        ],
        tmp,
        env=upstream_env(upstream),
    )  # fmt: skip
    client = GatewayClient(proc, upstream)
    yield client
    client.channel.close()
    proc.stop()


def error_info(error: grpc.RpcError) -> tuple[str, str]:
    """(reason, field) from the rich status details."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    reason, fld = "", ""
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fld = bad.field_violations[0].field
    return reason, fld
