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

from runtime_gateway_local.backends import BackendEntry

SUPPORTED_PROGRAMS = ("sampler", "estimator")
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


def execute(job: PreparedJob, backend: BackendEntry) -> ExecutionResult:
    """Runs a prepared job on Aer (with the device's noise model) and encodes the result.

    Called in a simulation worker process (`worker.py`), one job at a time.
    """
    with backend.model_lock:
        return _execute_locked(job, backend)


def _execute_locked(job: PreparedJob, backend: BackendEntry) -> ExecutionResult:
    from qiskit.primitives import PrimitiveResult
    from qiskit_aer.primitives import EstimatorV2, SamplerV2
    from qiskit_ibm_runtime.json import RuntimeEncoder

    logs = [f"Running {job.program_id} with {job.num_circuits} pub(s) on {backend.name}"]
    run_options = {"seed_simulator": job.seed} if job.seed is not None else {}
    pub_results = []
    if job.program_id == "sampler":
        sampler = SamplerV2.from_backend(backend.aer_simulator, seed=job.seed)
        raw = sampler.run(job.pubs).result()
        for pub, result in zip(job.pubs, raw, strict=True):
            pub_results.append(
                type(result)(result.data, metadata={"circuit_metadata": pub.circuit.metadata})
            )
        shots = sum(p.shots * max(1, math.prod(p.shape)) for p in job.pubs)
    else:
        options = {"run_options": run_options} if run_options else {}
        estimator = EstimatorV2.from_backend(backend.aer_simulator, options=options)
        raw = estimator.run(job.pubs).result()
        shots = 0
        for pub, result in zip(job.pubs, raw, strict=True):
            pub_shots = math.ceil(1 / pub.precision**2) if pub.precision else 0
            shots += pub_shots
            metadata = {
                "target_precision": pub.precision,
                "shots": pub_shots,
                "circuit_metadata": pub.circuit.metadata,
            }
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
