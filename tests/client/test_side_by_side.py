"""The same calls through this wrapper (via the gateway) and through the real SDK (straight
to the same local runtime): the answers agree."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from runtime_gateway import QiskitRuntimeService
from tests.gateway.conftest import DOMAIN, UPSTREAM_TOKEN, GatewayClient


@pytest.fixture(scope="module")
def both(gateway: GatewayClient) -> Iterator[tuple[QiskitRuntimeService, Any]]:
    port = gateway.upstream.url.rsplit(":", 1)[1]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RUNTIME_GATEWAY_ADDRESS", gateway.address)
        for name in ("HTTP_PROXY", "http_proxy"):
            patch.setenv(name, f"http://127.0.0.1:{port}")
        patch.setenv(
            "NO_PROXY", "127.0.0.1,localhost"
        )  # the wrapper's gRPC goes straight to the gateway
        patch.setenv("no_proxy", "127.0.0.1,localhost")
        patch.setenv("IAM_URL", f"http://iam.{DOMAIN}")
        import qiskit_ibm_runtime

        account = {"channel": "ibm_quantum_platform", "token": UPSTREAM_TOKEN, "url": f"http://{DOMAIN}",
                   "instance": gateway.upstream.crn}  # fmt: skip
        ours = QiskitRuntimeService(**account)
        theirs = qiskit_ibm_runtime.QiskitRuntimeService(**account)
        yield ours, theirs
        ours.close()


def _bell() -> Any:
    from qiskit import QuantumCircuit

    circuit = QuantumCircuit(2)
    circuit.h(0)
    circuit.cx(0, 1)
    circuit.measure_all()
    return circuit


def test_same_backends(both) -> None:
    ours, theirs = both
    assert {b.name for b in ours.backends()} == {b.name for b in theirs.backends()}
    assert {b.name for b in ours.backends(min_num_qubits=100)} == {
        b.name for b in theirs.backends(min_num_qubits=100)
    }
    assert ours.backend("ibm_torino").num_qubits == theirs.backend("ibm_torino").num_qubits
    assert (
        ours.backend("ibmq_manila").configuration().basis_gates
        == theirs.backend("ibmq_manila").configuration().basis_gates
    )


def test_same_jobs_and_same_counts(both) -> None:
    from qiskit_ibm_runtime import SamplerV2

    ours, theirs = both
    tag = f"sbs-{uuid.uuid4().hex[:6]}"
    # The SDK submits through its SamplerV2; the wrapper through run() with the inputs SamplerV2 sends.
    sampler = SamplerV2(mode=theirs.backend("ibmq_qasm_simulator"))
    sampler.options.simulator.seed_simulator = 1234
    sampler.options.environment.job_tags = [tag]
    sdk_job = sampler.run([_bell()], shots=500)
    our_job = ours.run(
        "sampler",
        {
            "pubs": [(_bell(), None, 500)],
            "options": {"simulator": {"seed_simulator": 1234}},
            "version": 2,
            "support_qiskit": True,
        },
        options={"backend": "ibmq_qasm_simulator", "job_tags": [tag]},
    )
    sdk_counts = sdk_job.result()[0].data.meas.get_counts()
    our_counts = our_job.result()[0].data.meas.get_counts()
    assert our_counts == sdk_counts  # same seed, same circuit, same simulator
    listed_ours = {j.job_id() for j in ours.jobs(job_tags=[tag])}
    listed_theirs = {j.job_id() for j in theirs.jobs(job_tags=[tag])}
    assert listed_ours == listed_theirs == {sdk_job.job_id(), our_job.job_id()}
    assert ours.job(sdk_job.job_id()).status() == theirs.job(our_job.job_id()).status() == "DONE"
