"""The `executor` program: runs a `QuantumProgram` as IBM Runtime does, on Aer.

qiskit-ibm-runtime 0.50+ sends it from `Executor`, and from the client-side Sampler and
Estimator built on it (`qiskit_ibm_runtime.executor_sampler`, `.executor_estimator`, PEC and
ZNE included: all mitigation is prepared and post-processed on the client). Everything here
is the SDK's and samplomatic's own code:

- inputs: `QUANTUM_PROGRAM_PARAMS_CONVERTERS[params.schema_version]` (the pydantic model of
  `ibm_quantum_schemas` and its decoder to a `QuantumProgram` and `ExecutorOptions`);
- execution: `run_quantum_program` of the SDK's local mode (`QiskitRuntimeLocalService`), which
  samples each samplex item with samplomatic and runs the circuits on Aer's SamplerV2; here
  the Aer simulator is the device's (its noise model), with a method that fits the circuits
  (`simulation.py`);
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


def method_for(prepared: PreparedProgram, memory_mb: int | None) -> str:
    from runtime_gateway_local import simulation

    program = prepared.program
    width = max(simulation.active_qubits(item.circuit) for item in program.items)
    if simulation.statevector_fits(width, memory_mb):
        return simulation.choose_method(width, True, memory_mb)
    clifford = all(_is_clifford_item(item) for item in program.items)
    state_bytes = 0.0
    if not clifford:
        state_bytes = max(simulation.mps_bytes(item.circuit) for item in program.items)
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
    from qiskit_ibm_runtime.fake_provider.executor.run_quantum_program import run_quantum_program
    from qiskit_ibm_runtime.options_models.simulator import SimulatorOptions

    from runtime_gateway_local import simulation

    method = method_for(prepared, memory_mb)
    sim = simulation.simulator(backend, method, memory_mb)
    started = datetime.now(timezone.utc)
    result = run_quantum_program(
        sim, prepared.program, SimulatorOptions(seed_simulator=prepared.seed)
    )
    stopped = datetime.now(timezone.utc)
    shots = prepared.program.shots * sum(item.size() for item in prepared.program.items)
    return encode_result(result, prepared.program, started, stopped), shots, method


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
