"""Picks the Aer simulation method that can run a job's circuits within its memory bound.

IBM's devices have up to 156 qubits; a statevector of n qubits needs 16 * 2**n bytes, so a
circuit that acts on more than about 28 qubits cannot run the way small ones do. Aer drops
qubits no instruction touches ("truncation"), so what counts is the number of *active*
qubits. The choice, per job:

- the circuits fit a statevector within the bound: Aer's "automatic" method with the
  device's full noise model (it picks stabilizer, density matrix or statevector itself), as
  before;
- they do not, and every circuit is Clifford (with its parameter values bound): the
  "stabilizer" method, which runs any number of qubits in polynomial memory. Its noise model
  is the device's without thermal relaxation (amplitude damping is not a Clifford channel,
  so the stabilizer method cannot apply it): depolarizing gate errors fitted to the device's
  gate error rates, and readout errors, `NoiseModel.from_backend(thermal_relaxation=False)`;
- otherwise "matrix_product_state", with the full noise model, when its state fits: its
  memory grows with entanglement, not width. The bound used is structural: across a cut of
  the qubit line, each two-qubit gate spanning it at most doubles the Schmidt rank (CX, CZ,
  ECR...; other gates count more), so the bond dimension there is at most 2**(crossings),
  and at most 2**(qubits on the smaller side). GHZ-like and shallow wide circuits fit;
- otherwise the job cannot be simulated within the bound: `TooLarge`, which fails the job
  with IBM's shape for a job too large for the backend (`execution.memory_failure`) at once,
  rather than after minutes of simulation. (The memory watchdog in `execution.py` remains
  the safety net for what no estimate foresees.)
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable
from typing import Any

from runtime_gateway_local.backends import BackendEntry

STATEVECTOR = "automatic"
STABILIZER = "stabilizer"
MPS = "matrix_product_state"
BYTES_PER_AMPLITUDE = 16  # complex128
# Headroom for Aer's own buffers (sampling, noise superoperators) beside the state itself.
STATEVECTOR_SHARE = 0.5

CLIFFORD_GATES = frozenset(
    {
        "id", "x", "y", "z", "h", "s", "sdg", "sx", "sxdg", "cx", "cy", "cz", "swap",
        "ecr", "iswap", "dcx", "measure", "barrier", "reset", "delay",
    }
)  # fmt: skip
# Rotations that are Clifford when every angle is a multiple of pi/2.
ROTATIONS = frozenset({"rz", "rx", "ry", "p", "u1"})
NON_OPERATIONS = frozenset({"barrier", "delay"})
# Two-qubit gates whose operator Schmidt rank is 2: one crossing at most doubles the bond.
RANK_TWO = frozenset(
    {
        "cx", "cy", "cz", "ch", "ecr", "cs", "csdg", "csx", "crx", "cry", "crz", "cp", "cu",
        "cu1", "rzz", "rxx", "ryy", "rzx",
    }
)  # fmt: skip
MPS_HEADROOM = 4  # Aer's SVD workspace and copies beside the tensors themselves
# Angles within this many decimals (in quarter turns) of a multiple of pi/2 count as Clifford,
# as the SDK's local execution rounds them (`SimulatorOptions.angle_decimals`); they are then
# snapped to it (`snap_pub`), as Aer's stabilizer method accepts exact multiples only.
ANGLE_DECIMALS = 5


def active_qubits(circuit: Any) -> int:
    """How many qubits some operation acts on (what Aer's truncation keeps)."""
    used: set[int] = set()
    for instruction in circuit.data:
        if instruction.operation.name in NON_OPERATIONS:
            continue
        used.update(circuit.find_bit(q).index for q in instruction.qubits)
        for block in getattr(instruction.operation, "blocks", ()):
            if active_qubits(block):
                used.update(circuit.find_bit(q).index for q in instruction.qubits)
    return len(used)


def _quarter_turns(values: Iterable[float]) -> bool:
    for value in values:
        turns = round(float(value) / (math.pi / 2), ANGLE_DECIMALS)
        if turns != round(turns):
            return False
    return True


def is_clifford(circuit: Any, parameter_values: Any = None) -> bool:
    """Whether every operation is Clifford. A rotation by a parameter counts as Clifford when
    all of `parameter_values` (an array of every bound value, or None when unknown) are
    multiples of pi/2; control flow counts as not Clifford."""
    import numpy as np

    bound_ok: bool | None = None
    for instruction in circuit.data:
        operation = instruction.operation
        name = operation.name
        if name in CLIFFORD_GATES:
            continue
        if name in ROTATIONS:
            angles = [float(p) for p in operation.params if not _is_parameterized(p)]
            if not _quarter_turns(angles):
                return False
            if len(angles) < len(operation.params):
                if bound_ok is None:
                    bound_ok = parameter_values is not None and _quarter_turns(
                        np.asarray(parameter_values, dtype=float).ravel()
                    )
                if not bound_ok:
                    return False
            continue
        return False
    return True


def _is_parameterized(value: Any) -> bool:
    return hasattr(value, "parameters") and bool(value.parameters)


def _snap(values: Any) -> Any:
    import numpy as np

    quarter = np.pi / 2
    return np.round(np.asarray(values, dtype=float) / quarter) * quarter


def snap_pub(pub: Any) -> Any:
    """A Sampler or Estimator pub whose rotation angles (in the circuit and its parameter
    values) are exact multiples of pi/2, for a pub `is_clifford` accepted."""
    from qiskit.primitives.containers.bindings_array import BindingsArray
    from qiskit.primitives.containers.estimator_pub import EstimatorPub

    circuit = pub.circuit.copy()
    for index, instruction in enumerate(circuit.data):
        operation = instruction.operation
        if operation.name in ROTATIONS and not any(map(_is_parameterized, operation.params)):
            # circuit.data hands out copies: the instruction is replaced, not edited.
            snapped = operation.copy()
            snapped.params = [float(_snap(p)) for p in operation.params]
            circuit.data[index] = instruction.replace(operation=snapped)
    values = pub.parameter_values
    if values.num_parameters:
        values = BindingsArray(
            data={key: _snap(array) for key, array in values.data.items()}, shape=values.shape
        )
    if isinstance(pub, EstimatorPub):
        return EstimatorPub(circuit, pub.observables, values, pub.precision)
    return type(pub)(circuit, values, pub.shots)


class TooLarge(Exception):
    """No Aer method can simulate the circuits within the job's memory bound."""


def mps_bytes(circuit: Any) -> float:
    """An upper bound on the memory of the circuit's matrix product state, in bytes."""
    positions: dict[int, int] = {}
    gates: list[tuple[list[int], int]] = []  # (qubit indices, log2 of the rank it may add)
    for instruction in circuit.data:
        if instruction.operation.name in NON_OPERATIONS:
            continue
        qubits = [circuit.find_bit(q).index for q in instruction.qubits]
        for qubit in qubits:
            positions.setdefault(qubit, 0)
        if len(qubits) > 1:
            name = instruction.operation.name
            weight = 1 if len(qubits) == 2 and name in RANK_TWO else len(qubits)
            gates.append((qubits, weight))
    order = {qubit: rank for rank, qubit in enumerate(sorted(positions))}
    width = len(order)
    if width == 0:
        return 0.0
    crossings = [0] * max(0, width - 1)  # cut k: between positions k and k+1
    for qubits, weight in gates:
        low, high = min(order[q] for q in qubits), max(order[q] for q in qubits)
        for cut in range(low, high):
            crossings[cut] += weight
    log_bonds = [0] + [
        min(crossings[k], k + 1, width - k - 1) for k in range(width - 1)
    ] + [0]  # fmt: skip
    return float(
        sum(
            2 * BYTES_PER_AMPLITUDE * 2.0 ** (log_bonds[i] + log_bonds[i + 1]) for i in range(width)
        )
    )


def statevector_fits(num_qubits: int, memory_mb: int | None) -> bool:
    if memory_mb is None:
        return num_qubits <= 30
    return BYTES_PER_AMPLITUDE * 2.0**num_qubits <= memory_mb * 2**20 * STATEVECTOR_SHARE


def mps_fits(state_bytes: float, memory_mb: int | None) -> bool:
    if memory_mb is None:
        return True
    return MPS_HEADROOM * state_bytes <= memory_mb * 2**20 * STATEVECTOR_SHARE


def choose_method(
    num_qubits: int, clifford: bool, memory_mb: int | None, state_bytes: float = 0.0
) -> str:
    """The Aer method for circuits acting on `num_qubits` qubits (the widest of a job), whose
    largest matrix product state may need `state_bytes` (`mps_bytes`). TooLarge if none."""
    if statevector_fits(num_qubits, memory_mb):
        return STATEVECTOR
    if clifford:
        return STABILIZER
    if mps_fits(state_bytes, memory_mb):
        return MPS
    raise TooLarge(
        f"{num_qubits} entangled qubits: neither a state vector "
        f"({BYTES_PER_AMPLITUDE * 2.0**num_qubits / 2**20:.0f} MB) nor a matrix product "
        f"state (up to {state_bytes / 2**20:.0f} MB) fits, and the circuit is not Clifford"
    )


_CACHE: dict[tuple[str, str], Any] = {}
_CACHE_LOCK = threading.Lock()


def simulator(entry: BackendEntry, method: str, memory_mb: int | None) -> Any:
    """An AerSimulator for `entry` running `method` (built once per backend and method)."""
    from qiskit_aer import AerSimulator
    from qiskit_aer.noise import NoiseModel

    with _CACHE_LOCK:
        sim = _CACHE.get((entry.name, method))
        if sim is None:
            if method == STATEVECTOR:
                sim = entry.aer_simulator
            elif entry.simulator:
                sim = AerSimulator(method=method)
            else:
                with entry.model_lock:
                    fake = entry.fake_backend
                    options: dict[str, Any] = {"method": method}
                    if method == STABILIZER:  # given, so from_backend builds no other
                        options["noise_model"] = NoiseModel.from_backend(
                            fake, thermal_relaxation=False
                        )
                    sim = AerSimulator.from_backend(fake, **options)
            _CACHE[(entry.name, method)] = sim
    if memory_mb:  # Aer refuses, before running, a circuit it estimates to need more
        sim.set_options(max_memory_mb=int(memory_mb))
    return sim


# Independent parts. A circuit whose qubits fall into groups that no multi-qubit operation
# (and no shared classical bit) links is a product of independent circuits: with the device
# noise model, whose errors act on the qubits of the gate they follow and whose readout
# errors act on one qubit, the joint distribution of its results is the product of the
# parts' distributions. So a circuit too wide for a state vector that is in fact many narrow
# parts (the executor Estimator's, for one: its measurement and basis-change layers touch
# every qubit of a 127-qubit device with one-qubit gates around a two-qubit core) runs part
# by part on the state-vector method, each part with only its own qubits' noise, instead of
# all at once on the matrix product state method (minutes of per-shot Kraus sampling on 127
# qubits). Same distribution, another random stream: a seeded job stays reproducible.
# Parts are packed into groups of up to this many qubits, one Aer run each. Each run pays a
# fixed cost (circuit and noise conversion, per parameter value), and Aer simulates a noisy
# state vector shot by shot unless it can use a density matrix (2**qubits below the shots).
# Measured once on the executor Estimator's 127-qubit item of the SDK's integration suite (128
# randomizations x 128 shots, a shared 2-core machine): groups of 1 qubit took 14 s, of 4 to 6
# qubits 7 to 9 s, of 7 qubits 57 s (and groups of 10, 211 s for the job's three items).
PART_QUBITS = 5


def independent_parts(circuit: Any) -> list[list[int]] | None:
    """The qubit indices of each independent part of `circuit` (sorted; qubits no operation
    touches belong to none), or None when the circuit cannot be split: control flow, or
    classical variables (classical data can link parts)."""
    if circuit.num_vars or getattr(circuit, "num_stretches", 0):
        return None
    parent: dict[int, int] = {}

    def root(qubit: int) -> int:
        while parent[qubit] != qubit:
            parent[qubit] = parent[parent[qubit]]
            qubit = parent[qubit]
        return qubit

    writer: dict[int, int] = {}  # clbit -> a qubit whose measurement writes it
    for instruction in circuit.data:
        operation = instruction.operation
        if operation.name == "barrier":
            continue
        if getattr(operation, "blocks", ()) or operation.name == "store":
            return None
        qubits = [circuit.find_bit(q).index for q in instruction.qubits]
        for clbit in instruction.clbits:
            index = circuit.find_bit(clbit).index
            if qubits:
                qubits.append(writer.setdefault(index, qubits[0]))
        for qubit in qubits:
            parent.setdefault(qubit, qubit)
        for qubit in qubits[1:]:
            parent[root(qubit)] = root(qubits[0])
    parts: dict[int, list[int]] = {}
    for qubit in sorted(parent):
        parts.setdefault(root(qubit), []).append(qubit)
    return sorted(parts.values())


def pack_parts(parts: list[list[int]], limit: int = PART_QUBITS) -> list[list[int]]:
    """Parts packed, in order, into groups of at most `limit` qubits (a wider part is a
    group of its own)."""
    groups: list[list[int]] = []
    for part in parts:
        if groups and len(groups[-1]) + len(part) <= limit:
            groups[-1] = sorted(groups[-1] + part)
        else:
            groups.append(list(part))
    return groups


def restrict_circuit(circuit: Any, qubits: Iterable[int]) -> Any:
    """`circuit` (same qubits, clbits and registers) with only the operations on `qubits`;
    barriers keep only those qubits. `qubits` must be a union of `independent_parts`."""
    from qiskit.circuit import Barrier

    keep = set(qubits)
    part = circuit.copy_empty_like()
    for instruction in circuit.data:
        indices = [circuit.find_bit(q).index for q in instruction.qubits]
        if instruction.operation.name == "barrier":
            inside = [q for q, i in zip(instruction.qubits, indices, strict=True) if i in keep]
            if inside:
                part.append(Barrier(len(inside)), inside)
        elif indices and keep.issuperset(indices):
            part.append(instruction)
    return part


def restrict_noise_model(model: Any, qubits: Iterable[int]) -> Any:
    """The errors of `model` (a device NoiseModel) on `qubits` only, same qubit indices.

    Aer converts the whole noise model for every run: a 127-qubit device's takes seconds,
    most of a small part's run. NoiseModel has no public way to list its local errors, so
    its documented internal tables are read (qiskit-aer 0.11 to 0.18); custom noise passes
    (relaxation on delays) are kept as they are: they see the circuit's full width."""
    from qiskit_aer.noise import NoiseModel

    keep = set(qubits)
    part = NoiseModel(basis_gates=model.basis_gates)
    for name, error in model._default_quantum_errors.items():
        part.add_all_qubit_quantum_error(error, name, warnings=False)
    for name, errors in model._local_quantum_errors.items():
        for gate_qubits, error in errors.items():
            if keep.issuperset(gate_qubits):
                part.add_quantum_error(error, name, gate_qubits, warnings=False)
    if model._default_readout_error is not None:
        part.add_all_qubit_readout_error(model._default_readout_error, warnings=False)
    for gate_qubits, error in model._local_readout_errors.items():
        if keep.issuperset(gate_qubits):
            part.add_readout_error(error, gate_qubits, warnings=False)
    part._custom_noise_passes = list(model._custom_noise_passes)
    return part
