"""The `executor` program: runs a `QuantumProgram` as IBM Runtime does, on Aer.

qiskit-ibm-runtime 0.50+ sends it from `Executor`, and from the client-side Sampler and
Estimator built on it (`qiskit_ibm_runtime.executor_sampler`, `.executor_estimator`, PEC and
ZNE included: all mitigation is prepared and post-processed on the client). Everything here
is the SDK's and samplomatic's own code:

- inputs: `QUANTUM_PROGRAM_PARAMS_CONVERTERS[params.schema_version]` (the pydantic model of
  `ibm_quantum_schemas` and its decoder to a `QuantumProgram` and `ExecutorOptions`);
- execution: as `run_quantum_program` of the SDK's local mode (`QiskitRuntimeLocalService`),
  which samples each samplex item with samplomatic and runs the circuits on Aer's SamplerV2
  (`run_items` follows it step by step, with the SDK's own sampling and rounding helpers); here
  the Aer simulator is the device's (its noise model), with a method that fits the circuits
  (`simulation.py`), and an item too wide for a state vector that is made of independent parts
  runs part by part (`plan`; see `simulation.independent_parts` for why that is exact);
- result: the schema's `QuantumProgramResultModel` of the same version, which the SDK's
  `ExecutorResultDecoder` validates and decodes (only v2.0 results are encoded; older input
  versions are answered in v2.0's result form, which every 0.50+ SDK decodes).

The seed: the executor's options carry no simulator seed, so `options.experimental.simulator
.seed_simulator` (an int) seeds both samplomatic's randomization and Aer, as
`ExecutorOptions.simulator.seed_simulator` does in the SDK's local mode.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from runtime_gateway_local.backends import BackendEntry

PROGRAM_ID = "executor"
RESULT_SCHEMA = "v2.0"


class InvalidProgram(Exception):
    """The QuantumProgram cannot run on this backend (answered 400 at submission)."""


@dataclass
class PreparedProgram:
    program: Any  # qiskit_ibm_runtime.QuantumProgram
    seed: int | None
    num_circuits: int
    num_qubits: list[int]


def prepare(params: dict[str, Any], backend: BackendEntry) -> PreparedProgram:
    """Decodes and validates executor params (any schema version the SDK knows)."""
    from qiskit_ibm_runtime.quantum_program.params_converters import (
        QUANTUM_PROGRAM_PARAMS_CONVERTERS,
    )

    version = params.get("schema_version")
    converter = QUANTUM_PROGRAM_PARAMS_CONVERTERS.get(version) if isinstance(version, str) else None
    if converter is None:
        known = ", ".join(QUANTUM_PROGRAM_PARAMS_CONVERTERS)
        raise InvalidProgram(
            f"params.schema_version {version!r} is not supported; supported versions: {known}."
        )
    try:
        model = converter.model.model_validate(params)
    except Exception as error:  # pydantic's ValidationError names each bad field
        raise InvalidProgram(f"The executor params are not valid: {error}") from None
    try:
        program, options = converter.decoder(model)
    except Exception as error:  # qpy, samplex or tensor decoding
        raise InvalidProgram(f"The quantum program could not be decoded: {error}") from None
    if not program.items:
        raise InvalidProgram("params.quantum_program.items must not be empty.")
    for index, item in enumerate(program.items):
        samplex = getattr(item, "samplex", None)
        if samplex is None:
            continue
        # A deserialized samplex is a graph still to be ordered: the service finalizes it
        # before sampling (the SDK's local mode never serializes, so never needs to).
        try:
            samplex.finalize()
        except Exception as error:  # samplomatic's SamplexError: node dependency conflicts
            raise InvalidProgram(
                f"params.quantum_program.items[{index}].samplex is not valid: {error}"
            ) from None
    max_shots = int(backend.configuration.get("max_shots", 100000))
    if program.shots > max_shots:
        raise InvalidProgram(
            f"params.quantum_program.shots is {program.shots}; {backend.name} allows at most "
            f"{max_shots}."
        )
    if program.meas_level != "classified":
        raise InvalidProgram(
            f"params.quantum_program.meas_level {program.meas_level!r} is not supported by "
            "the simulator: only 'classified' results can be simulated."
        )
    widths = []
    for index, item in enumerate(program.items):
        width = item.circuit.num_qubits
        if width > backend.num_qubits:
            raise InvalidProgram(
                f"params.quantum_program.items[{index}]: the circuit has {width} qubits but "
                f"{backend.name} has only {backend.num_qubits}."
            )
        widths.append(width)
    experimental = options.experimental if isinstance(options.experimental, dict) else {}
    simulator_options = experimental.get("simulator")
    seed = simulator_options.get("seed_simulator") if isinstance(simulator_options, dict) else None
    return PreparedProgram(
        program=program,
        seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
        num_circuits=len(program.items),
        num_qubits=widths,
    )


def _method_for_items(items: list[Any], memory_mb: int | None) -> str:
    from runtime_gateway_local import simulation

    width = max(simulation.active_qubits(item.circuit) for item in items)
    if simulation.statevector_fits(width, memory_mb):
        return simulation.choose_method(width, True, memory_mb)
    clifford = all(_is_clifford_item(item) for item in items)
    state_bytes = 0.0
    if not clifford:
        state_bytes = max(simulation.mps_bytes(item.circuit) for item in items)
    return simulation.choose_method(width, clifford, memory_mb, state_bytes)


def _is_clifford_item(item: Any) -> bool:
    import numpy as np
    from qiskit_ibm_runtime.fake_provider.executor.broadcast_sample import broadcast_sample
    from samplomatic.quantum_program import CircuitItem

    from runtime_gateway_local import simulation

    if isinstance(item, CircuitItem):
        return simulation.is_clifford(item.circuit, item.circuit_arguments)
    # A samplex item's values exist only once sampled: one sample (own generator, so the
    # job's seeded stream is untouched) tells whether its randomizations are Clifford, as
    # twirling Clifford layers with Paulis keeps them Clifford.
    sample = broadcast_sample(
        item.samplex, item.samplex_arguments, item.shape, np.random.default_rng(0)
    )
    return simulation.is_clifford(item.circuit, sample.get("parameter_values"))


def execute(
    prepared: PreparedProgram, backend: BackendEntry, memory_mb: int | None
) -> tuple[str, int, str]:
    """Runs the program; (result JSON in IBM's form, total shots, Aer method)."""
    plans = plan(prepared, memory_mb)
    started = datetime.now(timezone.utc)
    result = run_items(prepared, backend, plans, memory_mb)
    stopped = datetime.now(timezone.utc)
    shots = prepared.program.shots * sum(item.size() for item in prepared.program.items)
    return encode_result(result, prepared.program, started, stopped), shots, describe(plans)


@dataclass
class ItemPlan:
    """How one item runs: on `method` over its whole circuit, or, when `groups` is set, group
    by group (each a union of independent parts, `simulation.independent_parts`) on the
    state-vector method."""

    method: str
    groups: list[list[int]] | None = None


def plan(prepared: PreparedProgram, memory_mb: int | None) -> list[ItemPlan]:
    """Each item's plan. Items whose active qubits fit a state vector run whole, as the SDK's
    local mode runs them; wider ones made of parts that each fit run part by part; the rest
    run whole on the method `_method_for_items` picks for them (TooLarge when none fits)."""
    from runtime_gateway_local import simulation

    plans: list[ItemPlan | None] = []
    for item in prepared.program.items:
        circuit = item.circuit
        if simulation.statevector_fits(simulation.active_qubits(circuit), memory_mb):
            plans.append(ItemPlan(simulation.STATEVECTOR))
            continue
        parts = simulation.independent_parts(circuit)
        if parts and all(simulation.statevector_fits(len(p), memory_mb) for p in parts):
            groups = simulation.pack_parts(parts)
            plans.append(ItemPlan(simulation.STATEVECTOR, groups))
        else:
            plans.append(None)
    whole = [item for item, p in zip(prepared.program.items, plans, strict=True) if p is None]
    if whole:
        method = _method_for_items(whole, memory_mb)
        plans = [ItemPlan(method) if p is None else p for p in plans]
    return [p for p in plans if p is not None]


def describe(plans: list[ItemPlan]) -> str:
    methods = []
    for item_plan in plans:
        name = item_plan.method
        if item_plan.groups is not None:
            name += f" in {len(item_plan.groups)} independent groups of qubits"
        if name not in methods:
            methods.append(name)
    return ", ".join(methods)


def run_items(
    prepared: PreparedProgram, backend: BackendEntry, plans: list[ItemPlan], memory_mb: int | None
) -> Any:
    """The program's `QuantumProgramResult`, item by item as the SDK's local mode computes it
    (`qiskit_ibm_runtime.fake_provider.executor.run_quantum_program`: samplomatic samples each
    samplex item with one generator seeded by the job's seed, angles are rounded to Clifford
    ones within `angle_decimals`, every randomization and parameter value of an item is one
    Aer sampler pub), except that an item planned in groups runs group by group
    (`_sample_in_groups`)."""
    import numpy as np
    from qiskit.primitives.containers.bindings_array import BindingsArray
    from qiskit_ibm_runtime.fake_provider.executor.broadcast_sample import broadcast_sample
    from qiskit_ibm_runtime.fake_provider.executor.run_quantum_program import _round_to_clifford
    from qiskit_ibm_runtime.options_models.simulator import SimulatorOptions
    from qiskit_ibm_runtime.results import QuantumProgramItemResult, QuantumProgramResult
    from samplomatic.quantum_program import CircuitItem, SamplexItem

    program = prepared.program
    decimals = SimulatorOptions().angle_decimals
    rng = np.random.default_rng(prepared.seed)
    results = []
    for index, (item, item_plan) in enumerate(zip(program.items, plans, strict=True)):
        samplex_data: dict[str, Any] = {}
        if isinstance(item, CircuitItem):
            values = item.circuit_arguments
        elif isinstance(item, SamplexItem):
            samplex_data = broadcast_sample(item.samplex, item.samplex_arguments, item.shape, rng)
            values = samplex_data.pop("parameter_values")
        else:
            raise TypeError(f"Unsupported QuantumProgramItem type: {type(item)}")
        bindings = None
        if values is not None:
            values = _round_to_clifford(np.asarray(values, dtype=float), decimals)
            bindings = BindingsArray({tuple(item.circuit.parameters): values})
        if item_plan.groups is None:
            data, metadata = _sample_whole(
                backend, item_plan.method, memory_mb, item.circuit, bindings, program.shots,
                prepared.seed,
            )  # fmt: skip
        else:
            data, metadata = _sample_in_groups(
                backend, item_plan.groups, memory_mb, item.circuit, bindings, program.shots,
                _item_seed(prepared.seed, index),
            )  # fmt: skip
        results.append(QuantumProgramItemResult(result={**samplex_data, **data}, metadata=metadata))
    result = QuantumProgramResult(
        data=results, metadata=None, passthrough_data=program.passthrough_data
    )
    result._semantic_role = program._semantic_role
    return result


def _item_seed(seed: int | None, index: int) -> int | None:
    import numpy as np

    if seed is None:
        return None
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def _sample_whole(
    backend: BackendEntry, method: str, memory_mb: int | None, circuit: Any, bindings: Any,
    shots: int, seed: int | None,
) -> tuple[dict[str, Any], Any]:  # fmt: skip
    from copy import deepcopy

    from qiskit.primitives.containers.sampler_pub import SamplerPub
    from qiskit_aer.primitives import SamplerV2

    from runtime_gateway_local import simulation

    # As the SDK's local mode: a copy, so that its options stay the job's.
    sim = deepcopy(simulation.simulator(backend, method, memory_mb))
    sim.set_max_qubits(10000)
    sim.set_options(seed_simulator=seed)
    pub = SamplerPub(circuit=circuit, parameter_values=bindings, shots=shots)
    result = SamplerV2.from_backend(sim, seed=seed).run([pub]).result()[0]
    data = {key: bits.to_bool_array(order="little") for key, bits in dict(result.data).items()}
    return data, result.metadata


def _sample_in_groups(
    backend: BackendEntry, groups: list[list[int]], memory_mb: int | None, circuit: Any,
    bindings: Any, shots: int, seed: int | None,
) -> tuple[dict[str, Any], Any]:  # fmt: skip
    """Samples `circuit` group by group of its independent parts; each classical bit comes
    from the group whose measurement writes it (bits no group writes stay 0, as Aer leaves
    them). Each group runs on a simulator with only its qubits' noise; a group without
    parameters runs its shots for every parameter value in one go (its distribution does not
    depend on them), reshaped to the item's shape; a group that measures nothing is not run."""
    import numpy as np
    from qiskit.primitives.containers.bindings_array import BindingsArray
    from qiskit.primitives.containers.sampler_pub import SamplerPub
    from qiskit_aer import AerSimulator
    from qiskit_aer.primitives import SamplerV2

    from runtime_gateway_local import simulation

    shape = bindings.shape if bindings is not None else ()
    size = int(np.prod(shape, dtype=int))
    parameters = list(circuit.parameters)
    base = simulation.simulator(backend, simulation.STATEVECTOR, memory_mb)
    noise_model = base.options.noise_model
    owner = _clbit_owners(circuit, groups)
    merged: dict[str, Any] = {
        register.name: np.zeros((*shape, shots, register.size), dtype=bool)
        for register in circuit.cregs
    }
    metadata = None
    for number, group in enumerate(groups):
        if number not in owner.values():
            continue  # it measures nothing: no output depends on it
        part = simulation.restrict_circuit(circuit, group)
        options: dict[str, Any] = {"method": simulation.STATEVECTOR}
        if noise_model is not None:
            options["noise_model"] = simulation.restrict_noise_model(noise_model, group)
        if memory_mb:
            options["max_memory_mb"] = int(memory_mb)
        sim = AerSimulator(**options)
        sim.set_max_qubits(circuit.num_qubits)
        group_seed = None if seed is None else seed + number
        own = list(part.parameters)
        if own:
            columns = [parameters.index(p) for p in own]
            values = BindingsArray({tuple(own): bindings.as_array(parameters)[..., columns]})
            pub = SamplerPub(circuit=part, parameter_values=values, shots=shots)
        else:
            pub = SamplerPub(circuit=part, shots=shots * size)
        result = SamplerV2.from_backend(sim, seed=group_seed).run([pub]).result()[0]
        metadata = metadata if metadata is not None else result.metadata
        for register in circuit.cregs:
            columns = [j for j, bit in enumerate(register) if owner.get(bit) == number]
            if not columns:
                continue
            bits = getattr(result.data, register.name).to_bool_array(order="little")
            merged[register.name][..., columns] = bits.reshape(*shape, shots, register.size)[
                ..., columns
            ]
    return merged, metadata


def _clbit_owners(circuit: Any, groups: list[list[int]]) -> dict[Any, int]:
    """Which group writes each classical bit (by measurement), by its index in `groups`."""
    group_of = {qubit: number for number, group in enumerate(groups) for qubit in group}
    owners: dict[Any, int] = {}
    for instruction in circuit.data:
        if instruction.clbits and instruction.qubits:
            qubit = circuit.find_bit(instruction.qubits[0]).index
            for clbit in instruction.clbits:
                owners[clbit] = group_of[qubit]
    return owners


def encode_result(result: Any, program: Any, started: datetime, stopped: datetime) -> str:
    """A `QuantumProgramResult` as IBM returns it: the schema's v2.0 result model as JSON."""
    from ibm_quantum_schemas.common import CompressedTensorModel
    from ibm_quantum_schemas.executor.version_2_0 import models
    from qiskit_ibm_runtime.quantum_program.converters.converters_2_0 import (
        passthrough_data_to_2_0,
    )

    items = [
        models.QuantumProgramResultItemModel(
            results={
                name: CompressedTensorModel.from_numpy(_array(value))
                for name, value in item.items()
            },
            metadata=models.ItemMetadataModel(),
        )
        for item in result
    ]
    # One chunk per item, back to back, as a device reports items it ran whole.
    span = (stopped - started) / max(1, len(items))
    chunk_timing = [
        models.ChunkSpan(
            start=started + span * index,
            stop=started + span * (index + 1),
            parts=[_whole_item(index, program.items[index])],
        )
        for index in range(len(items))
    ]
    model = models.QuantumProgramResultModel(
        data=items,
        metadata=models.MetadataModel(chunk_timing=chunk_timing),
        passthrough_data=passthrough_data_to_2_0(program.passthrough_data),
        semantic_role=program._semantic_role,
    )
    text: str = model.model_dump_json()
    json.loads(text)  # fail here, not in the client, if the model ever stops being JSON
    return text


def _whole_item(index: int, item: Any) -> Any:
    from ibm_quantum_schemas.executor.version_2_0 import models

    size = int(item.size())
    return models.ChunkPart(
        idx_item=index,
        size=size,
        permutation=list(range(len(tuple(item.shape)))),
        element_range=(0, size, 1),
    )


def _array(value: Any) -> Any:
    import numpy as np

    return np.asarray(value)
