from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from runtime_gateway_local.runtime import LocalRuntime, LocalRuntimeSettings

TOKEN = "test-token-local-runtime-0001"
API_VERSION = {"IBM-API-Version": "2026-04-15"}


class Client:
    """Speaks to a local runtime over real HTTP, as the 0.51 SDK does (IAM JWT + CRN)."""

    def __init__(self, runtime: LocalRuntime) -> None:
        self.runtime = runtime
        self.base = runtime.base_url
        self.http = requests.Session()
        self.crn = runtime.instances.cloud[0].crn
        self._jwt: str | None = None

    def jwt(self) -> str:
        if self._jwt is None:
            reply = self.http.post(
                f"{self.base}/identity/token",
                data={"grant_type": "urn:ibm:params:oauth:grant-type:apikey", "apikey": TOKEN},
                timeout=10,
            )
            reply.raise_for_status()
            self._jwt = reply.json()["access_token"]
        return self._jwt

    def headers(self, **extra: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.jwt()}",
            "Service-CRN": self.crn,
            **API_VERSION,
            **extra,
        }

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {**self.headers(), **kwargs.pop("headers", {})}
        return self.http.request(
            method, f"{self.base}/api/v1{path}", headers=headers, timeout=60, **kwargs
        )

    def admin(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.http.request(
            method,
            f"{self.base}/_local{path}",
            headers={"X-Local-Admin-Token": TOKEN},
            timeout=10,
            **kwargs,
        )

    def submit(
        self, program: str = "sampler", backend: str = "ibmq_qasm_simulator", **body: Any
    ) -> str:
        payload = {"program_id": program, "backend": backend, "params": sampler_params(), **body}
        reply = self.call("POST", "/jobs", data=json.dumps(payload))
        assert reply.status_code == 200, reply.text
        return str(reply.json()["id"])

    def wait(self, job_id: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.call("GET", f"/jobs/{job_id}", params={"exclude_params": "true"}).json()
            if job["state"]["status"] in ("Completed", "Failed", "Cancelled"):
                return dict(job)
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} did not finish in {timeout} s")


def sampler_params(shots: int = 200, circuit: Any = None) -> dict[str, Any]:
    import numpy as np
    from qiskit import QuantumCircuit
    from qiskit_ibm_runtime.json import RuntimeEncoder

    if circuit is None:
        circuit = QuantumCircuit(2)
        circuit.h(0)
        circuit.cx(0, 1)
        circuit.measure_all()
    pubs = [[circuit, np.zeros((0,)), shots]]
    encoded: dict[str, Any] = json.loads(
        json.dumps(
            {"pubs": pubs, "options": {}, "version": 2, "support_qiskit": True}, cls=RuntimeEncoder
        )
    )
    return encoded


@pytest.fixture
def make_runtime() -> Iterator[Callable[..., LocalRuntime]]:
    started: list[LocalRuntime] = []

    def make(**settings: Any) -> LocalRuntime:
        runtime = LocalRuntime(LocalRuntimeSettings(token=TOKEN, workers=1, **settings)).start()
        started.append(runtime)
        return runtime

    yield make
    for runtime in started:
        runtime.stop()


@pytest.fixture(scope="module")
def shared_runtime() -> Iterator[LocalRuntime]:
    runtime = LocalRuntime(LocalRuntimeSettings(token=TOKEN, workers=2)).start()
    yield runtime
    runtime.stop()


@pytest.fixture
def client(shared_runtime: LocalRuntime) -> Client:
    return Client(shared_runtime)
