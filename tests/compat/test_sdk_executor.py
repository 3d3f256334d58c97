"""The newest SDK's executor-based primitives, unchanged, against the local runtime.

qiskit-ibm-runtime 0.50+ runs `Executor` (a `QuantumProgram`), and the client-side Sampler and
Estimator built on it (PEC, ZNE), through program id "executor"; the noise learners through
"noise-learner". Results are compared with the SDK's own local execution
(`QiskitRuntimeLocalService`) where both can be seeded alike.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.quantum_info import SparsePauliOp
from qiskit.transpiler import generate_preset_pass_manager

from tests.compat.conftest import DOMAIN, TOKEN
from tests.procs import Proc

pytestmark = pytest.mark.compat

SEED = 1234


@pytest.fixture(scope="module")
def service(sdk_env: dict[str, str], local_runtime_process: Proc) -> Any:
    from qiskit_ibm_runtime import QiskitRuntimeService

    crn = str(local_runtime_process.ready["instances"]["crns"][0])
    return QiskitRuntimeService(
        channel="ibm_quantum_platform", url=f"http://{DOMAIN}", token=TOKEN, instance=crn
    )


def _bell_isa(backend: Any) -> QuantumCircuit:
    circuit = QuantumCircuit(2)
    circuit.h(0)
    circuit.cx(0, 1)
    circuit.measure_all()
    return generate_preset_pass_manager(backend=backend, optimization_level=1).run(circuit)


def _bell_program(backend: Any, shots: int) -> Any:
    from qiskit_ibm_runtime import QuantumProgram

    program = QuantumProgram(shots=shots)
    program.append_circuit_item(_bell_isa(backend))
    return program


def test_executor_runs_a_quantum_program_like_the_sdks_local_mode(service: Any) -> None:
    from qiskit_ibm_runtime import Executor
    from qiskit_ibm_runtime.fake_provider import FakeManilaV2

    backend = service.backend("ibmq_manila")
    executor = Executor(mode=backend)
    # The executor's wire options carry no simulator seed; the local runtime reads one here.
    executor.options.experimental = {"simulator": {"seed_simulator": SEED}}
    job = executor.run(_bell_program(backend, 500))
    result = job.result()
    assert job.status() == "DONE"
    assert len(result) == 1
    meas = result[0]["meas"]
    assert meas.shape == (500, 2) and meas.dtype == bool
    agree = np.sum(meas[:, 0] == meas[:, 1])
    assert agree > 450  # a noisy Bell pair: the two bits mostly agree
    assert result.metadata.chunk_timing  # timing metadata as IBM reports it

    # The SDK's own local execution (QiskitRuntimeLocalService, chosen for a fake backend) of
    # the same program and seed: the same shots.
    local_backend = FakeManilaV2()
    local = Executor(mode=local_backend)
    local.options.simulator.seed_simulator = SEED
    expected = local.run(_bell_program(local_backend, 500)).result()[0]["meas"]
    np.testing.assert_array_equal(meas, expected)


def test_executor_sampler_with_twirling(service: Any) -> None:
    from qiskit_ibm_runtime.executor_sampler import Sampler

    backend = service.backend("ibmq_manila")
    sampler = Sampler(mode=backend)
    sampler.options.twirling.enable_gates = True
    sampler.options.twirling.enable_measure = True
    sampler.options.twirling.num_randomizations = 4
    sampler.options.twirling.shots_per_randomization = 100
    job = sampler.run([_bell_isa(backend)], shots=400)
    counts = job.result()[0].data.meas.get_counts()
    assert sum(counts.values()) == 400
    assert counts.get("00", 0) + counts.get("11", 0) > 320


def _ghz_observable_pub(backend: Any) -> tuple[QuantumCircuit, SparsePauliOp]:
    circuit = QuantumCircuit(2)
    circuit.h(0)
    circuit.cx(0, 1)
    isa = generate_preset_pass_manager(backend=backend, optimization_level=1).run(circuit)
    observable = SparsePauliOp("ZZ").apply_layout(isa.layout)
    return isa, observable


def test_executor_estimator_with_zne(service: Any) -> None:
    from qiskit_ibm_runtime.executor_estimator import Estimator

    backend = service.backend("ibmq_manila")
    estimator = Estimator(mode=backend)
    estimator.options.resilience.zne_mitigation = True
    estimator.options.resilience.zne.noise_factors = [1, 3]
    estimator.options.resilience.zne.extrapolator = "linear"
    estimator.options.default_shots = 400
    result = estimator.run([_ghz_observable_pub(backend)]).result()
    assert result[0].data.evs.shape == ()
    assert 0.6 < float(result[0].data.evs) < 1.3  # exact value 1; noisy, mitigated


def test_executor_estimator_with_pec(service: Any) -> None:
    from qiskit.quantum_info import PauliLindbladMap
    from qiskit_ibm_runtime.executor_estimator import Estimator

    backend = service.backend("ibmq_manila")
    pub = _ghz_observable_pub(backend)
    estimator = Estimator(mode=backend)
    estimator.options.resilience.pec_mitigation = True
    estimator.options.resilience.pec.max_overhead = 100
    estimator.options.default_shots = 400
    layers = estimator.find_unique_layers([pub])
    assert layers
    # A learned model would come from the noise learner (not emulated): a small one by hand.
    maps = [
        PauliLindbladMap.from_sparse_list(
            [("X", [0], 0.005), ("Z", [0], 0.005)], num_qubits=len(layer.qubits)
        )
        for layer in layers
    ]
    estimator.options.resilience.layer_noise_model = list(zip(layers, maps, strict=True))
    result = estimator.run([pub]).result()
    assert 0.5 < float(result[0].data.evs) < 1.5  # exact value 1


def test_noise_learners_answer_as_ibm_for_a_program_the_instance_cannot_run(
    service: Any,
) -> None:
    from qiskit_ibm_runtime import NoiseLearner
    from qiskit_ibm_runtime.noise_learner_v3 import NoiseLearnerV3

    backend = service.backend("ibmq_manila")
    circuit = _bell_isa(backend).remove_final_measurements(inplace=False)
    with pytest.raises(Exception) as failure:
        NoiseLearner(mode=backend).run([circuit])
    assert "403" in str(failure.value)
    assert "not authorized to run program noise-learner" in str(failure.value)

    from qiskit_ibm_runtime.executor_estimator import Estimator

    estimator = Estimator(mode=backend)
    estimator.options.resilience.pec_mitigation = True
    layers = estimator.find_unique_layers([_ghz_observable_pub(backend)])
    with pytest.raises(Exception) as failure_v3:
        NoiseLearnerV3(mode=backend).run(layers)
    assert "not authorized to run program noise-learner" in str(failure_v3.value)


def test_executor_inputs_are_validated_at_submission(service: Any) -> None:
    with pytest.raises(Exception) as failure:
        service._run(
            program_id="executor",
            inputs={"schema_version": "v9.9", "quantum_program": {}},
            options={"backend": "ibmq_manila"},
        )
    text = str(failure.value)
    assert "400" in text and "schema_version" in text

    with pytest.raises(Exception) as failure:
        service._run(
            program_id="executor",
            inputs={"schema_version": "v2.0", "quantum_program": {"shots": 0}},
            options={"backend": "ibmq_manila"},
        )
    assert "400" in str(failure.value) and "quantum_program" in str(failure.value)


def _ghz_127(backend: Any, measure: bool) -> QuantumCircuit:
    ghz = QuantumCircuit(127)
    ghz.h(0)
    for qubit in range(126):
        ghz.cx(qubit, qubit + 1)
    if measure:
        ghz.measure_all()
    isa = generate_preset_pass_manager(backend=backend, optimization_level=1).run(ghz)
    assert len({isa.find_bit(q).index for i in isa.data for q in i.qubits}) == 127
    return isa


def test_127_qubit_clifford_circuit_on_brisbane(service: Any) -> None:
    from qiskit_ibm_runtime import SamplerV2

    backend = service.backend("ibm_brisbane")
    sampler = SamplerV2(mode=backend)
    sampler.options.simulator.seed_simulator = SEED
    job = sampler.run([_ghz_127(backend, measure=True)], shots=200)
    bits = job.result()[0].data.meas
    assert bits.num_shots == 200 and bits.num_bits == 127
    # GHZ: neighbours along the chain agree but for the device's noise (random bits: 50 %).
    shots = bits.to_bool_array(order="little")
    assert np.mean(shots[:, :-1] == shots[:, 1:]) > 0.85


def test_estimator_with_a_127_qubit_observable_on_brisbane(service: Any) -> None:
    from qiskit_ibm_runtime import EstimatorV2

    backend = service.backend("ibm_brisbane")
    isa = _ghz_127(backend, measure=False)
    # The mean of Z_i Z_i+1 along the chain: every qubit of the device is involved.
    observable = SparsePauliOp.from_sparse_list(
        [("ZZ", [i, i + 1], 1 / 126) for i in range(126)], num_qubits=127
    ).apply_layout(isa.layout)
    assert observable.num_qubits == 127
    estimator = EstimatorV2(mode=backend)
    estimator.options.default_precision = 0.05
    result = estimator.run([(isa, observable)]).result()
    assert 0.5 < float(result[0].data.evs) < 1.2  # exact value 1, the device's noise
