"""Executor items made of independent parts run part by part (`simulation.independent_parts`,
`executor_program.plan`): a 127-qubit item that no whole-circuit method can simulate within
the job's memory bound completes, and splitting changes no distribution."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter

from runtime_gateway_local import executor_program, simulation
from runtime_gateway_local.backends import BackendCatalog
from tests.local_runtime.conftest import Client

# One angle per pair, away from multiples of pi/2: the circuit is not Clifford, so the
# stabilizer method cannot run it whole.
ANGLES = [0.35 + 0.04 * k for k in range(63)]


def _rotation(circuit: QuantumCircuit, qubit: int, angle: Any) -> None:
    # RX(angle) up to a phase, in ibm_brisbane's basis (rz, sx, ecr): no transpiling needed.
    circuit.rz(-math.pi / 2, qubit)
    circuit.sx(qubit)
    circuit.rz(angle, qubit)
    circuit.sx(qubit)
    circuit.rz(math.pi / 2, qubit)


def _long_range_pairs(parametric: bool = False) -> QuantumCircuit:
    """63 entangled pairs (q, q + 64) on 127 qubits: every cut of the qubit line is crossed by
    up to 63 ECRs, so no matrix product state bound fits; qubit 126 stays idle."""
    circuit = QuantumCircuit(127, 126)
    thetas = [Parameter(f"t{k:02d}") for k in range(63)]
    for k in range(63):
        _rotation(circuit, k, thetas[k] if parametric else ANGLES[k])
    for k in range(63):
        circuit.ecr(k, k + 64)
    circuit.barrier()
    circuit.measure(range(63), range(63))
    circuit.measure(range(64, 127), range(63, 126))
    return circuit


def _pair_probabilities(angle: float) -> dict[str, float]:
    """Ideal outcome probabilities of one pair (bits: first qubit, then its partner)."""
    from qiskit.quantum_info import Statevector

    pair = QuantumCircuit(2)
    _rotation(pair, 0, angle)
    pair.ecr(0, 1)
    probabilities = Statevector(pair).probabilities_dict()
    # Statevector keys are little-endian ("q1 q0"): turned into (q0, q1).
    return {key[::-1]: float(value) for key, value in probabilities.items()}


def _program(circuit: QuantumCircuit, shots: int, values: Any = None) -> Any:
    from qiskit_ibm_runtime import QuantumProgram

    program = QuantumProgram(shots=shots)
    if values is None:
        program.append_circuit_item(circuit)
    else:
        program.append_circuit_item(circuit, circuit_arguments=values)
    return program


def test_independent_parts_follow_gates_and_shared_bits() -> None:
    circuit = QuantumCircuit(6, 2)
    circuit.h(0)
    circuit.cx(0, 1)
    circuit.x(3)
    circuit.barrier()  # spans every qubit, links none
    circuit.measure(3, 0)
    circuit.measure(4, 0)  # qubits 3 and 4 write the same bit: one part
    circuit.measure(1, 1)
    assert simulation.independent_parts(circuit) == [[0, 1], [3, 4]]  # 2 and 5 idle
    assert simulation.pack_parts([[0, 1], [3, 4], [2], [6, 7], [8, 9, 10, 11, 12, 13]], 5) == [
        [0, 1, 2, 3, 4],
        [6, 7],
        [8, 9, 10, 11, 12, 13],
    ]
    with circuit.if_test((circuit.clbits[0], 1)):
        circuit.x(5)
    assert simulation.independent_parts(circuit) is None  # classical control links parts


def test_a_restricted_noise_model_keeps_exactly_its_qubits_errors() -> None:
    entry = BackendCatalog().get("ibm_brisbane")
    assert entry is not None
    full = entry.aer_simulator.options.noise_model
    qubits = {0, 1, 14, 18}
    part = simulation.restrict_noise_model(full, qubits)
    expected = {
        (name, gate_qubits)
        for name, errors in full._local_quantum_errors.items()
        for gate_qubits in errors
        if qubits.issuperset(gate_qubits)
    }
    kept = {
        (name, gate_qubits)
        for name, errors in part._local_quantum_errors.items()
        for gate_qubits in errors
    }
    assert kept == expected
    assert ("ecr", (14, 0)) in kept or ("ecr", (0, 14)) in kept  # a coupled pair inside
    assert {qubit for _, gate_qubits in kept for qubit in gate_qubits} == qubits
    assert set(part._local_readout_errors) == {(q,) for q in qubits}
    for name, gate_qubits in kept:
        assert (
            part._local_quantum_errors[name][gate_qubits]
            == full._local_quantum_errors[name][gate_qubits]
        )


def test_a_127_qubit_item_no_whole_method_fits_runs_part_by_part(client: Client) -> None:
    """Through the local runtime (HTTP, worker process): before parts, this job failed at
    once with reason code 1002 (neither a state vector nor a matrix product state fits)."""
    from qiskit_ibm_runtime.decoders.executor.decoder import ExecutorResultDecoder
    from qiskit_ibm_runtime.options_models import ExecutorOptions
    from qiskit_ibm_runtime.quantum_program.params_converters import (
        QUANTUM_PROGRAM_PARAMS_CONVERTERS,
    )

    shots = 2000
    circuit = _long_range_pairs()
    entry = BackendCatalog().get("ibm_brisbane")
    assert entry is not None
    assert not simulation.is_clifford(circuit)
    assert not simulation.mps_fits(simulation.mps_bytes(circuit), 4096)

    options = ExecutorOptions()
    options.experimental = {"simulator": {"seed_simulator": 11}}
    model = QUANTUM_PROGRAM_PARAMS_CONVERTERS["v2.0"].encoder(_program(circuit, shots), options)
    payload = {
        "program_id": "executor",
        "backend": "ibm_brisbane",
        "params": json.loads(model.model_dump_json()),
    }
    reply = client.call("POST", "/jobs", data=json.dumps(payload))
    assert reply.status_code == 200, reply.text
    job_id = reply.json()["id"]
    job = client.wait(job_id, timeout=600)
    assert job["state"]["status"] == "Completed", job["state"]
    raw = client.call("GET", f"/jobs/{job_id}/results").text
    result = ExecutorResultDecoder.decode(raw)
    bits = np.asarray(result[0]["c"])  # (shots, 126), little-endian bit order
    assert bits.shape == (shots, 126)
    for k in (0, 17, 40, 62):  # first, middle and last pairs
        first, partner = bits[:, k], bits[:, 63 + k]
        expected = _pair_probabilities(ANGLES[k])
        for key, probability in expected.items():
            seen = float(np.mean((first == int(key[0])) & (partner == int(key[1]))))
            # 6 sigma of 2,000 shots plus the device's readout and gate errors (a few %).
            assert abs(seen - probability) < 0.07, (k, key, seen, probability)
    # Pairs are independent of each other: the correlation between two pairs' bits is noise.
    correlation = np.corrcoef(bits[:, 0].astype(float), bits[:, 1].astype(float))[0, 1]
    assert abs(correlation) < 0.1


def test_split_and_whole_runs_agree() -> None:
    """One twirled item (a samplex item), run group by group and whole on the state vector:
    per-pair frequencies agree within statistics, and samplomatic's own outputs (measurement
    flips) are identical, drawn from the same seeded stream."""
    from qiskit_ibm_runtime.executor_sampler.prepare import prepare
    from qiskit_ibm_runtime.options_models.sampler import SamplerOptions

    entry = BackendCatalog().get("ibm_brisbane")
    assert entry is not None
    pairs = [(0, 14), (1, 2), (4, 15), (6, 5)]  # coupled pairs of brisbane: their ECR is noisy
    circuit = QuantumCircuit(127, 2 * len(pairs))
    thetas = [Parameter(f"t{k}") for k in range(len(pairs))]
    for k, (a, b) in enumerate(pairs):
        _rotation(circuit, a, thetas[k])
        circuit.ecr(a, b)
    for k, (a, b) in enumerate(pairs):
        circuit.measure([a, b], [2 * k, 2 * k + 1])
    options = SamplerOptions()
    options.twirling.enable_measure = True
    options.twirling.num_randomizations = 4
    options.twirling.shots_per_randomization = 500
    values = np.array([0.4, 1.1, 2.0, 2.7])
    program, _ = prepare([(circuit, values)], options, backend=entry.fake_backend)
    (item,) = program.items
    prepared = executor_program.PreparedProgram(
        program=program, seed=5, num_circuits=1, num_qubits=[127]
    )
    parts = simulation.independent_parts(item.circuit)
    assert parts is not None and sorted(map(sorted, parts)) == sorted(map(sorted, pairs))
    groups = simulation.pack_parts(parts, limit=4)
    assert len(groups) == 2
    split = executor_program.run_items(
        prepared, entry, [executor_program.ItemPlan(simulation.STATEVECTOR, groups)], None
    )[0]
    whole = executor_program.run_items(
        prepared, entry, [executor_program.ItemPlan(simulation.STATEVECTOR)], None
    )[0]
    assert set(split) == set(whole)
    (flips_key,) = [k for k in split if k.startswith("measurement_flips")]
    np.testing.assert_array_equal(split[flips_key], whole[flips_key])
    bits_key = flips_key.split(".", 1)[1]
    corrected = [
        np.logical_xor(run[bits_key], run[flips_key]).reshape(-1, 2 * len(pairs))
        for run in (split, whole)
    ]
    assert corrected[0].shape == (4 * 500, 8)
    for k in range(len(pairs)):
        for bit_a in (0, 1):
            for bit_b in (0, 1):
                frequencies = [
                    float(np.mean((run[:, 2 * k] == bit_a) & (run[:, 2 * k + 1] == bit_b)))
                    for run in corrected
                ]
                # Two independent samples of 2,000 shots: within 6 sigma of each other.
                assert abs(frequencies[0] - frequencies[1]) < 0.07, (k, frequencies)
