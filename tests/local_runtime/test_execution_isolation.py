"""Jobs of the local runtime run in worker processes, each bounded in memory.

A real `runtime-gateway local-runtime` process with `--job-memory-mb 200`: a job whose state
Aer knows is too large, and a job that grows beyond the bound while it runs (caught by the
watchdog on the worker's RSS), both end Failed with IBM's reason and reason code; the runtime
keeps serving and runs the next job.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.local_runtime.conftest import API_VERSION, TOKEN
from tests.procs import Proc, start

MEMORY_MB = 200


class Runtime:
    def __init__(self, proc: Proc) -> None:
        self.proc = proc
        self.base = proc.ready["url"]
        self.http = requests.Session()
        jwt = self.http.post(
            f"{self.base}/identity/token",
            data={"grant_type": "urn:ibm:params:oauth:grant-type:apikey", "apikey": TOKEN},
            timeout=10,
        ).json()["access_token"]
        self.headers = {
            "Authorization": f"Bearer {jwt}",
            "Service-CRN": proc.ready["instances"]["crns"][0],
            **API_VERSION,
        }

    def submit(self, params: dict[str, Any], backend: str = "ibmq_qasm_simulator") -> str:
        body = {"program_id": "sampler", "backend": backend, "params": params}
        reply = self.http.post(
            f"{self.base}/api/v1/jobs", data=json.dumps(body), headers=self.headers, timeout=60
        )
        assert reply.status_code == 200, reply.text
        return str(reply.json()["id"])

    def wait(self, job_id: str, timeout: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.http.get(
                f"{self.base}/api/v1/jobs/{job_id}", headers=self.headers, timeout=30
            ).json()
            if job["state"]["status"] in ("Completed", "Failed", "Cancelled"):
                return dict(job)
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} did not finish")


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    proc = start(
        [
            "local-runtime", "--listen", "127.0.0.1:0", "--token", TOKEN,
            "--workers", "1", "--job-memory-mb", str(MEMORY_MB),
        ],
        tmp_path,
    )  # fmt: skip
    try:
        yield Runtime(proc)
    finally:
        proc.stop()


def _entangled_qasm(qubits: int) -> str:
    """Not Clifford (the rotations) and entangled across every cut (the rainbow of CXs after
    them), so neither a state vector (16 bytes x 2^qubits) nor a matrix product state fits."""
    gates = " ".join(f"cx q[{i}], q[{i + 1}];" for i in range(qubits - 1))
    rotations = " ".join(f"rx(0.3) q[{i}];" for i in range(qubits))
    rainbow = " ".join(f"cx q[{i}], q[{qubits - 1 - i}];" for i in range(qubits // 2))
    return (
        f'OPENQASM 3.0; include "stdgates.inc"; qubit[{qubits}] q; bit[{qubits}] c; '
        f"h q[0]; {gates} {rotations} {rainbow} c = measure q;"
    )


def _sweep_params(values: int, shots: int) -> dict[str, Any]:
    """One parametrized qubit swept over `values` angles: tiny state, large results."""
    import numpy as np
    from qiskit import QuantumCircuit
    from qiskit.circuit import Parameter
    from qiskit_ibm_runtime.json import RuntimeEncoder

    theta = Parameter("theta")
    circuit = QuantumCircuit(1)
    circuit.rx(theta, 0)
    circuit.measure_all()
    pub = [circuit, np.linspace(0, 3, values).reshape(values, 1), shots]
    encoded: dict[str, Any] = json.loads(
        json.dumps({"pubs": [pub], "version": 2, "options": {}}, cls=RuntimeEncoder)
    )
    return encoded


def _assert_failed_for_memory(job: dict[str, Any]) -> None:
    state = job["state"]
    assert state["status"] == "Failed", job
    # IBM's shape: a reason text and a registry code (1002: the job cannot run on this backend).
    assert state["reason_code"] == 1002
    assert "memory" in state["reason"] and f"{MEMORY_MB} MB" in state["reason"]


def test_jobs_over_the_memory_bound_fail_as_ibm_fails_them(runtime: Runtime) -> None:
    # 26 qubits: a 1 GiB state vector. Aer's own bound refuses it before it runs.
    too_wide = runtime.submit({"pubs": [[_entangled_qasm(26), None, 100]], "version": 2})
    _assert_failed_for_memory(runtime.wait(too_wide))

    # A tiny state but 100 x 100,000 shots of results (over 1 GB in Aer and Python): Aer
    # cannot foresee it; the watchdog kills the worker once the job grows past the bound.
    too_many = runtime.submit(_sweep_params(100, 100_000))
    _assert_failed_for_memory(runtime.wait(too_many))
    logs = runtime.http.get(
        f"{runtime.base}/api/v1/jobs/{too_many}/logs", headers=runtime.headers, timeout=30
    ).text
    assert "was stopped" in logs  # the watchdog's doing, not Aer's

    # The runtime keeps serving, on a fresh worker.
    fine = runtime.submit({"pubs": [[_entangled_qasm(3), None, 100]], "version": 2})
    assert runtime.wait(fine)["state"]["status"] == "Completed"
    assert runtime.proc.popen.poll() is None
