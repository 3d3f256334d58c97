"""The Aer method the local runtime picks for a job's circuits (`simulation.py`)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter

from runtime_gateway_local import simulation
from runtime_gateway_local.backends import BackendCatalog

MEMORY_MB = 4096  # the local runtime's default per-job bound


def _ghz(width: int) -> QuantumCircuit:
    circuit = QuantumCircuit(width)
    circuit.h(0)
    for qubit in range(width - 1):
        circuit.cx(qubit, qubit + 1)
    circuit.measure_all()
    return circuit


def test_active_qubits_counts_what_aer_keeps() -> None:
    wide = QuantumCircuit(127, 2)
    wide.h(5)
    wide.cx(5, 6)
    wide.barrier()  # touches every qubit but is no operation
    wide.measure([5, 6], [0, 1])
    assert simulation.active_qubits(wide) == 2
    assert simulation.active_qubits(_ghz(127)) == 127


def test_clifford_detection_with_bound_values() -> None:
    assert simulation.is_clifford(_ghz(10))
    rotated = QuantumCircuit(1)
    rotated.rz(math.pi / 2, 0)
    rotated.sx(0)
    assert simulation.is_clifford(rotated)
    rotated.rz(0.3, 0)
    assert not simulation.is_clifford(rotated)
    t_gate = QuantumCircuit(1)
    t_gate.t(0)
    assert not simulation.is_clifford(t_gate)
    theta = Parameter("theta")
    parametric = QuantumCircuit(1)
    parametric.rz(theta, 0)
    assert simulation.is_clifford(parametric, np.array([[math.pi], [-math.pi / 2 + 1e-12]]))
    assert not simulation.is_clifford(parametric, np.array([[0.1]]))
    assert not simulation.is_clifford(parametric, None)  # values unknown


def test_method_choice() -> None:
    assert simulation.choose_method(20, False, MEMORY_MB) == simulation.STATEVECTOR
    assert simulation.choose_method(127, True, MEMORY_MB) == simulation.STABILIZER
    assert simulation.choose_method(127, False, MEMORY_MB) == simulation.MPS
    # The bound decides: 28 qubits need 4 GiB of amplitudes.
    assert simulation.statevector_fits(26, MEMORY_MB)
    assert not simulation.statevector_fits(28, MEMORY_MB)
    assert simulation.choose_method(28, True, 1 << 16) == simulation.STATEVECTOR


def test_matrix_product_state_where_it_fits_else_too_large() -> None:
    # A GHZ chain with non-Clifford rotations: one CX crosses each cut, bond dimension 2.
    chain = _ghz(127)
    chain.rx(0.3, range(127))
    state_bytes = simulation.mps_bytes(chain)
    assert state_bytes < 127 * 2 * 16 * 4 + 1
    assert simulation.choose_method(127, False, MEMORY_MB, state_bytes) == simulation.MPS
    # A rainbow of CXs after the rotations: every cut is crossed as often as its smaller side
    # has qubits, so the middle bond may reach 2**63.
    for qubit in range(63):
        chain.cx(qubit, 126 - qubit)
    state_bytes = simulation.mps_bytes(chain)
    assert state_bytes > 2.0**63
    with pytest.raises(simulation.TooLarge, match="127 entangled qubits"):
        simulation.choose_method(127, False, MEMORY_MB, state_bytes)
    # A Clifford circuit of any entanglement still runs, on the stabilizer method.
    assert simulation.choose_method(127, True, MEMORY_MB, state_bytes) == simulation.STABILIZER


def test_a_127_qubit_clifford_circuit_runs_on_the_stabilizer_simulator() -> None:
    from qiskit.transpiler import generate_preset_pass_manager
    from qiskit_aer.primitives import SamplerV2

    entry = BackendCatalog().get("ibm_brisbane")
    assert entry is not None
    sim = simulation.simulator(entry, simulation.STABILIZER, MEMORY_MB)
    assert sim.options.method == simulation.STABILIZER
    assert sim.options.max_memory_mb == MEMORY_MB
    isa = generate_preset_pass_manager(backend=entry.fake_backend, optimization_level=1).run(
        _ghz(127)
    )
    assert (
        simulation.choose_method(
            simulation.active_qubits(isa), simulation.is_clifford(isa), MEMORY_MB
        )
        == simulation.STABILIZER
    )
    bits = SamplerV2.from_backend(sim, seed=5).run([isa], shots=50).result()[0].data.meas
    assert bits.num_shots == 50 and bits.num_bits == 127
    # GHZ: neighbours along the chain agree but for the device's noise (random bits: 50 %).
    shots = bits.to_bool_array(order="little")
    assert np.mean(shots[:, :-1] == shots[:, 1:]) > 0.85


def test_nearly_clifford_angles_are_snapped_for_the_stabilizer_method() -> None:
    from qiskit.primitives.containers.sampler_pub import SamplerPub
    from qiskit_aer import AerSimulator
    from qiskit_aer.primitives import SamplerV2

    theta = Parameter("theta")
    circuit = QuantumCircuit(1)
    circuit.rz(math.pi / 2 + 1e-9, 0)  # floating-point drift, as transpilers leave it
    circuit.sx(0)
    circuit.rz(theta, 0)
    circuit.measure_all()
    pub = SamplerPub.coerce((circuit, [[math.pi + 1e-7], [-math.pi / 2]]), 20)
    assert simulation.is_clifford(pub.circuit, pub.parameter_values.as_array())
    snapped = simulation.snap_pub(pub)
    assert snapped.circuit.data[0].operation.params == [math.pi / 2]
    stabilizer = AerSimulator(method=simulation.STABILIZER)
    result = SamplerV2.from_backend(stabilizer, seed=3).run([snapped]).result()[0]
    assert result.data.meas.num_shots == 20 and result.data.meas.shape == (2,)
