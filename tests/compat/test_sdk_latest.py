"""The judge: the newest qiskit-ibm-runtime, unchanged, against the local runtime."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
import requests
from qiskit import QuantumCircuit
from qiskit.quantum_info import SparsePauliOp
from qiskit.transpiler import generate_preset_pass_manager

from tests.compat.conftest import DOMAIN, TOKEN
from tests.procs import Proc

pytestmark = pytest.mark.compat


def _bell() -> QuantumCircuit:
    circuit = QuantumCircuit(2)
    circuit.h(0)
    circuit.cx(0, 1)
    circuit.measure_all()
    return circuit


@pytest.fixture(scope="module")
def crn(local_runtime_process: Proc) -> str:
    return str(local_runtime_process.ready["instances"]["crns"][0])


@pytest.fixture(scope="module", params=["ibm_quantum_platform", "ibm_cloud"])
def service(request: pytest.FixtureRequest, sdk_env: dict[str, str], crn: str) -> Any:
    from qiskit_ibm_runtime import QiskitRuntimeService

    return QiskitRuntimeService(
        channel=request.param, url=f"http://{DOMAIN}", token=TOKEN, instance=crn
    )


def test_construction_and_instances(service: Any, crn: str) -> None:
    instances = service.instances()
    assert crn in [i["crn"] for i in instances]
    by_crn = {i["crn"]: i for i in instances}
    assert by_crn[crn]["plan"] == "open" and by_crn[crn]["pricing_type"] == "free"
    assert service.active_account()["instance"] == crn


def test_wrong_token_is_rejected(sdk_env: dict[str, str], crn: str) -> None:
    from qiskit_ibm_runtime import QiskitRuntimeService

    with pytest.raises(Exception) as failure:
        QiskitRuntimeService(
            channel="ibm_quantum_platform", url=f"http://{DOMAIN}", token="wrong", instance=crn
        )
    assert "wrong" not in str(failure.value)


def test_backends_backend_least_busy(service: Any) -> None:
    names = {b.name for b in service.backends()}
    assert {
        "ibmq_manila",
        "ibmq_lima",
        "ibm_brisbane",
        "ibm_torino",
        "ibmq_qasm_simulator",
    } <= names
    big = {b.name for b in service.backends(min_num_qubits=100)}
    assert big == {"ibm_brisbane", "ibm_torino"}
    dynamic = {b.name for b in service.backends(dynamic_circuits=False)}
    assert "ibmq_lima" in dynamic and "ibmq_manila" not in dynamic
    manila = service.backend("ibmq_manila")
    assert manila.num_qubits == 5 and manila.status().operational
    assert manila.properties().qubits  # calibration data decoded
    assert service.least_busy(min_num_qubits=5).name in names
    from qiskit.providers.exceptions import QiskitBackendNotFoundError

    with pytest.raises(QiskitBackendNotFoundError):
        service.backend("ibm_nowhere")


def test_sampler_on_the_simulator_gives_bell_counts(service: Any) -> None:
    from qiskit_ibm_runtime import SamplerV2

    backend = service.backend("ibmq_qasm_simulator")
    job = SamplerV2(mode=backend).run([_bell()], shots=2000)
    counts = job.result()[0].data.meas.get_counts()
    assert set(counts) == {"00", "11"}
    assert abs(counts["00"] - 1000) < 150  # ~50/50
    assert job.status() == "DONE"


def test_sampler_on_a_device_is_noisy(service: Any) -> None:
    from qiskit_ibm_runtime import SamplerV2

    backend = service.backend("ibmq_manila")
    isa = generate_preset_pass_manager(backend=backend, optimization_level=1).run(_bell())
    counts = SamplerV2(mode=backend).run([isa], shots=4000).result()[0].data.meas.get_counts()
    assert counts["00"] + counts["11"] > 3200
    assert counts.get("01", 0) + counts.get("10", 0) > 0  # the device's noise model at work


def test_estimator_expectation_value(service: Any) -> None:
    from qiskit_ibm_runtime import EstimatorV2

    backend = service.backend("ibmq_qasm_simulator")
    circuit = QuantumCircuit(2)
    circuit.h(0)
    circuit.cx(0, 1)
    observables = [SparsePauliOp("ZZ"), SparsePauliOp.from_list([("XX", 0.5), ("IZ", 1.0)])]
    estimator = EstimatorV2(mode=backend)
    estimator.options.default_precision = 0.01
    result = estimator.run([(circuit, observables)]).result()
    assert np.allclose(result[0].data.evs, [1.0, 0.5], atol=0.06)  # exact values: 1, 0.5


def test_jobs_job_filters_logs(service: Any) -> None:
    from qiskit_ibm_runtime import SamplerV2

    backend = service.backend("ibmq_qasm_simulator")
    tag = f"compat-{time.monotonic_ns()}"
    sampler = SamplerV2(mode=backend)
    sampler.options.environment.job_tags = [tag]
    job = sampler.run([_bell()], shots=100)
    job.result()
    listed = service.jobs(job_tags=[tag])
    assert [j.job_id() for j in listed] == [job.job_id()]
    assert service.jobs(job_tags=[tag], pending=True) == []
    assert [
        j.job_id() for j in service.jobs(job_tags=[tag], backend_name="ibmq_qasm_simulator")
    ] == [job.job_id()]
    assert service.jobs(job_tags=[tag], program_id="estimator") == []
    fetched = service.job(job.job_id())
    assert fetched.status() == "DONE" and fetched.tags == [tag]
    assert "Job started" in job.logs()
    assert len(service.jobs(limit=3)) <= 3


def _admin(proc: Proc, path: str) -> None:
    # Test control only (the emulator's admin API), so the job is surely still queued.
    reply = requests.post(
        f"{proc.ready['url']}/_local{path}", headers={"X-Local-Admin-Token": TOKEN}, timeout=10
    )
    reply.raise_for_status()


def test_cancel_and_delete(service: Any, local_runtime_process: Proc) -> None:
    from qiskit_ibm_runtime import SamplerV2
    from qiskit_ibm_runtime.exceptions import RuntimeJobNotFound

    backend = service.backend("ibmq_qasm_simulator")
    _admin(local_runtime_process, "/queue/pause")
    try:
        job = SamplerV2(mode=backend).run([_bell()], shots=100)
        assert job.status() == "QUEUED"
        job.cancel()
    finally:
        _admin(local_runtime_process, "/queue/resume")
    assert service.job(job.job_id()).status() == "CANCELLED"
    service.delete_job(job.job_id())
    with pytest.raises(RuntimeJobNotFound):
        service.job(job.job_id())
    with pytest.raises(RuntimeJobNotFound):
        service.job("d0000000000000000000")
