"""Runs Sampler V2 and Estimator V2 programs on Qiskit Aer, as IBM Runtime runs them.

Inputs are decoded with the SDK's own `RuntimeDecoder` and results encoded with its
`RuntimeEncoder`, so they are byte-for-byte the SDK's wire format. Validation happens at
submission (`prepare`), so bad pubs are a 400, as on the live service; `execute` then runs.
"""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from runtime_gateway_local import executor_program, twirling
from runtime_gateway_local.backends import BackendEntry

SUPPORTED_PROGRAMS = ("sampler", "estimator", executor_program.PROGRAM_ID)
# Programs IBM offers that no well-kept library can emulate offline: the noise learners
# (NoiseLearner and NoiseLearnerV3 both send program id "noise-learner") learn Pauli-Lindblad
# models by running layer-fidelity experiments on hardware; nothing installable reproduces
# that protocol on a noise model. Answered as IBM answers a program the instance may not run.
UNAVAILABLE_PROGRAMS = ("noise-learner",)
CODE_NOT_AUTHORIZED = 1214  # IBM: "You are not authorized to run program ..."
DEFAULT_SHOTS = 4096  # IBM's default for Sampler V2
DEFAULT_PRECISION = 0.015625  # IBM's default for Estimator V2 (1/64)
_CONTROL_FLOW = {"if_else", "while_loop", "for_loop", "switch_case", "box"}
_ALWAYS_ALLOWED = {"barrier", "measure", "delay", "reset"}
# IBM error codes (https://quantum.cloud.ibm.com/docs/errors)
CODE_VALIDATION = 1002
CODE_EXECUTION = 1000


class InvalidParams(Exception):
    """The job's inputs cannot run on this backend (answered 400 at submission)."""


@dataclass
class PreparedJob:
    program_id: str
    pubs: list[Any]
    options: dict[str, Any]
    num_circuits: int
    num_qubits: list[int]
    seed: int | None = None
    warnings: list[str] = field(default_factory=list)
    executor: executor_program.PreparedProgram | None = None  # the `executor` program's


@dataclass
class ExecutionResult:
    result_json: str  # 0.51 form
    quantum_seconds: float
    log_lines: list[str]


def _decode(params_text: str) -> dict[str, Any]:
    from qiskit_ibm_runtime.json import RuntimeDecoder

    try:
        params = json.loads(params_text, cls=RuntimeDecoder)
    except Exception as error:  # qpy or base64 errors surface as many types
        raise InvalidParams(f"The program inputs could not be decoded: {error}") from None
    if not isinstance(params, dict):
        raise InvalidParams("The program inputs (params) must be a JSON object.")
    return params


def _circuit(value: Any) -> Any:
    from qiskit import QuantumCircuit, qasm3

    if isinstance(value, QuantumCircuit):
        return value
    if isinstance(value, str):
        try:
            return qasm3.loads(value)
        except Exception as error:
            raise InvalidParams(f"The OpenQASM 3 circuit could not be parsed: {error}") from None
    raise InvalidParams(
        "A pub's circuit must be a QuantumCircuit or an OpenQASM 3 string, "
        f"not {type(value).__name__}."
    )


def _check_isa(circuit: Any, backend: BackendEntry) -> None:
    if circuit.num_qubits > backend.num_qubits:
        raise InvalidParams(
            f"The circuit has {circuit.num_qubits} qubits but {backend.name} has only "
            f"{backend.num_qubits}."
        )
    if backend.simulator:
        return
    with backend.model_lock:
        target = backend.fake_backend.target
    dynamic = "dynamic_circuits" in backend.configuration.get("supported_features", [])
    for instruction in circuit.data:
        name = instruction.operation.name
        if name in _CONTROL_FLOW:
            if not dynamic:
                raise InvalidParams(
                    f"The circuit uses {name}, but {backend.name} does not support "
                    "dynamic circuits."
                )
            continue
        if name in _ALWAYS_ALLOWED:
            continue
        qargs = tuple(circuit.find_bit(q).index for q in instruction.qubits)
        if not target.instruction_supported(name, qargs):
            raise InvalidParams(
                f"The instruction {name} on qubits {qargs} is not supported by the target "
                f"{backend.name}. Circuits must match the backend's instruction set "
                "architecture (ISA): transpile them for the backend first."
            )


# qiskit 2.6's `qpy.load` crashes the process (SIGSEGV) when it runs in a new thread after
# an earlier thread that loaded QPY has exited, which is what a thread-per-connection HTTP
# server does on every request (reproduced here; no upstream report found). All decoding
# therefore runs on one long-lived thread; execution runs in worker processes (worker.py).
_DECODER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qiskit-decoder")


def prepare(program_id: str, params_text: str, backend: BackendEntry) -> PreparedJob:
    """Decodes and validates a job's inputs; InvalidParams if they cannot run."""
    return _DECODER.submit(_prepare, program_id, params_text, backend).result()


def _prepare(program_id: str, params_text: str, backend: BackendEntry) -> PreparedJob:
    from qiskit.primitives.containers.estimator_pub import EstimatorPub
    from qiskit.primitives.containers.sampler_pub import SamplerPub

    if program_id == executor_program.PROGRAM_ID:
        return _prepare_executor(params_text, backend)
    params = _decode(params_text)
    if params.get("version", 1) != 2:
        raise InvalidParams(
            "V1 primitives are no longer supported: send Sampler V2 or Estimator V2 inputs "
            "(params.version = 2), as IBM Runtime requires."
        )
    raw_pubs = params.get("pubs")
    if not isinstance(raw_pubs, list) or not raw_pubs:
        raise InvalidParams("params.pubs must be a non-empty list of pubs.")
    options = params.get("options") or {}
    if not isinstance(options, dict):
        raise InvalidParams("params.options must be a JSON object.")
    pubs: list[Any] = []
    for index, raw in enumerate(raw_pubs):
        items = list(raw) if isinstance(raw, (list, tuple)) else [raw]
        if not items:
            raise InvalidParams(f"pubs[{index}] is empty.")
        items[0] = _circuit(items[0])
        try:
            if program_id == "sampler":
                shots = options.get("default_shots") or DEFAULT_SHOTS
                pub = SamplerPub.coerce(tuple(items) if len(items) > 1 else items[0], shots)
                # Twirling runs (and returns) randomizations x shots per randomization.
                spread = twirling.twirl(program_id, options, pub.shots)
                if spread is not None and spread.shots != pub.shots:
                    pub = SamplerPub(pub.circuit, pub.parameter_values, spread.shots)
                if pub.shots > int(backend.configuration.get("max_shots", 100000)):
                    raise InvalidParams(
                        f"pubs[{index}] asks for {pub.shots} shots; {backend.name} allows at most "
                        f"{backend.configuration.get('max_shots')}."
                    )
                if not pub.circuit.cregs:
                    raise InvalidParams(
                        f"pubs[{index}]: the circuit has no classical registers, so sampling "
                        "would return nothing. Add measurements."
                    )
            else:
                precision = options.get("default_precision") or DEFAULT_PRECISION
                pub = EstimatorPub.coerce(tuple(items), precision)
        except InvalidParams:
            raise
        except Exception as error:
            raise InvalidParams(f"pubs[{index}] is not a valid {program_id} pub: {error}") from None
        _check_isa(pub.circuit, backend)
        pubs.append(pub)
    simulator_options = options.get("simulator") or {}
    seed = simulator_options.get("seed_simulator") if isinstance(simulator_options, dict) else None
    return PreparedJob(
        program_id=program_id,
        pubs=pubs,
        options=options,
        num_circuits=len(pubs),
        num_qubits=[p.circuit.num_qubits for p in pubs],
        seed=seed if isinstance(seed, int) else None,
    )


def _prepare_executor(params_text: str, backend: BackendEntry) -> PreparedJob:
    # Executor params are plain JSON (the schema's pydantic model dump), not RuntimeEncoder's.
    try:
        params = json.loads(params_text)
    except json.JSONDecodeError as error:
        raise InvalidParams(f"The program inputs could not be decoded: {error}") from None
    if not isinstance(params, dict):
        raise InvalidParams("The program inputs (params) must be a JSON object.")
    try:
        prepared = executor_program.prepare(params, backend)
    except executor_program.InvalidProgram as error:
        raise InvalidParams(str(error)) from None
    return PreparedJob(
        program_id=executor_program.PROGRAM_ID,
        pubs=[],
        options={},
        num_circuits=prepared.num_circuits,
        num_qubits=prepared.num_qubits,
        seed=prepared.seed,
        executor=prepared,
    )


def execute(
    job: PreparedJob, backend: BackendEntry, memory_mb: int | None = None
) -> ExecutionResult:
    """Runs a prepared job on Aer (with the device's noise model) and encodes the result.

    `memory_mb` bounds the simulation (it picks the Aer method, see `simulation.py`).
    Called in a simulation worker process (`worker.py`), one job at a time.
    """
    with backend.model_lock:
        if job.executor is not None:
            return _execute_program(job.executor, backend, memory_mb)
        return _execute_locked(job, backend, memory_mb)


def _execute_program(
    job: executor_program.PreparedProgram, backend: BackendEntry, memory_mb: int | None
) -> ExecutionResult:
    logs = [f"Running executor with {job.num_circuits} item(s) on {backend.name}"]
    result_json, shots, method = executor_program.execute(job, backend, memory_mb)
    logs.append(f"Completed executor: {shots} shots (Aer method {method})")
    quantum_seconds = 0.0 if backend.simulator else round(shots * 0.001, 3)
    return ExecutionResult(result_json, quantum_seconds, logs)


def _pub_values(pub: Any) -> Any:
    values = pub.parameter_values
    return values.as_array() if values.num_parameters else None


def _method(job: PreparedJob, memory_mb: int | None) -> str:
    from runtime_gateway_local import simulation

    if job.program_id == "sampler":
        width = max(simulation.active_qubits(p.circuit) for p in job.pubs)
    else:  # Aer's EstimatorV2 saves expectation values over every qubit of the circuit
        width = max(p.circuit.num_qubits for p in job.pubs)
    if simulation.statevector_fits(width, memory_mb):
        return simulation.choose_method(width, True, memory_mb)
    clifford = all(simulation.is_clifford(p.circuit, _pub_values(p)) for p in job.pubs)
    state_bytes = 0.0 if clifford else max(simulation.mps_bytes(p.circuit) for p in job.pubs)
    return simulation.choose_method(width, clifford, memory_mb, state_bytes)


def _execute_locked(
    job: PreparedJob, backend: BackendEntry, memory_mb: int | None
) -> ExecutionResult:
    from qiskit.primitives import PrimitiveResult
    from qiskit_aer.primitives import EstimatorV2, SamplerV2
    from qiskit_ibm_runtime.json import RuntimeEncoder

    from runtime_gateway_local import simulation

    method = _method(job, memory_mb)
    aer = simulation.simulator(backend, method, memory_mb)
    pubs = job.pubs
    if method == simulation.STABILIZER:
        pubs = [simulation.snap_pub(p) for p in job.pubs]
    logs = [
        f"Running {job.program_id} with {job.num_circuits} pub(s) on {backend.name} "
        f"(Aer method {method})"
    ]
    run_options = {"seed_simulator": job.seed} if job.seed is not None else {}
    pub_results = []
    if job.program_id == "sampler":
        sampler = SamplerV2.from_backend(aer, seed=job.seed)
        raw = sampler.run(pubs).result()
        for pub, result in zip(job.pubs, raw, strict=True):
            pub_results.append(
                type(result)(result.data, metadata={"circuit_metadata": pub.circuit.metadata})
            )
        shots = sum(p.shots * max(1, math.prod(p.shape)) for p in job.pubs)
    else:
        if method != simulation.STATEVECTOR:
            # Sampling methods average the noise over shots: as many as the precision asks
            # (IBM's 1/precision**2), within the device's maximum.
            finest = min((p.precision for p in job.pubs if p.precision), default=0.0)
            shots = math.ceil(1 / finest**2) if finest else DEFAULT_SHOTS
            run_options["shots"] = min(shots, int(backend.configuration.get("max_shots", 100000)))
        options = {"run_options": run_options} if run_options else {}
        estimator = EstimatorV2.from_backend(aer, options=options)
        raw = estimator.run(pubs).result()
        shots = 0
        # IBM: `default_shots` overrides the precision; twirling then spreads the shots
        # over randomizations, and the pub reports the shots it ran.
        default_shots = job.options.get("default_shots")
        for pub, result in zip(job.pubs, raw, strict=True):
            if isinstance(default_shots, int) and default_shots > 0:
                pub_shots = default_shots
            else:
                pub_shots = math.ceil(1 / pub.precision**2) if pub.precision else 0
            spread = twirling.twirl(job.program_id, job.options, pub_shots)
            if spread is not None:
                pub_shots = spread.shots
            shots += pub_shots
            metadata = {
                "target_precision": pub.precision,
                "shots": pub_shots,
                "circuit_metadata": pub.circuit.metadata,
            }
            if spread is not None:
                metadata["num_randomizations"] = spread.randomizations
            pub_results.append(type(result)(result.data, metadata=metadata))
    primitive = PrimitiveResult(pub_results, metadata={"version": 2})
    # Rough quantum time: IBM bills about 1 ms per shot on current devices.
    quantum_seconds = 0.0 if backend.simulator else round(shots * 0.001, 3)
    logs.append(f"Completed {job.program_id}: {shots} shots")
    return ExecutionResult(json.dumps(primitive, cls=RuntimeEncoder), quantum_seconds, logs)


def to_portable_result(result_json: str) -> str:
    """The result in the form both 0.21 and 0.51 clients decode (see docs/ibm-runtime-rest.md).

    0.21 knows only `PubResult` and needs `field_types` in every DataBin.
    """

    def visit(node: Any) -> Any:
        if isinstance(node, list):
            return [visit(item) for item in node]
        if not isinstance(node, dict):
            return node
        node = {key: visit(value) for key, value in node.items()}
        kind = node.get("__type__")
        if kind in ("SamplerPubResult", "EstimatorPubResult"):
            node["__type__"] = "PubResult"
        elif kind == "DataBin" and isinstance(node.get("__value__"), dict):
            value = node["__value__"]
            if "field_types" not in value:
                fields = value.get("fields", {})
                value["field_types"] = [
                    (fields[n].get("__type__") if isinstance(fields.get(n), dict) else None)
                    or type(fields.get(n)).__name__
                    for n in value.get("field_names", [])
                ]
        return node

    return json.dumps(visit(json.loads(result_json)))
