"""The client as a Qiskit provider, end to end: a real gateway before the local runtime, and
the real SDK straight to the same local runtime for comparison, in one run.

IBM's documented flows run with only the import changed: transpile for the backend's target,
`SamplerV2(mode=backend)`, `EstimatorV2`, sessions and batches, retrieval.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from runtime_gateway import QiskitRuntimeService
from tests.gateway.conftest import DOMAIN, UPSTREAM_TOKEN, GatewayClient


@pytest.fixture(scope="module")
def both(gateway: GatewayClient) -> Iterator[tuple[QiskitRuntimeService, Any]]:
    """(ours through the gateway, the SDK straight to the local runtime), same account."""
    port = gateway.upstream.url.rsplit(":", 1)[1]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RUNTIME_GATEWAY_ADDRESS", gateway.address)
        for name in ("HTTP_PROXY", "http_proxy"):
            patch.setenv(name, f"http://127.0.0.1:{port}")
        for name in ("NO_PROXY", "no_proxy"):  # our gRPC goes straight to the gateway
            patch.setenv(name, "127.0.0.1,localhost")
        patch.setenv("IAM_URL", f"http://iam.{DOMAIN}")
        import qiskit_ibm_runtime

        account = {"channel": "ibm_quantum_platform", "token": UPSTREAM_TOKEN, "url": f"http://{DOMAIN}",
                   "instance": gateway.upstream.crn}  # fmt: skip
        ours = QiskitRuntimeService(**account)
        theirs = qiskit_ibm_runtime.QiskitRuntimeService(**account)
        yield ours, theirs
        ours.close()


@pytest.fixture(scope="module")
def service(both) -> QiskitRuntimeService:
    return both[0]


def _bell() -> Any:
    from qiskit import QuantumCircuit

    circuit = QuantumCircuit(2)
    circuit.h(0)
    circuit.cx(0, 1)
    circuit.measure_all()
    return circuit


def _summary(target: Any) -> dict[str, Any]:
    """Everything a target holds, as plain values (Target has no structural equality)."""
    instructions = {}
    for name in sorted(target.operation_names):
        props = target[name]
        instructions[name] = {
            qargs: None if p is None else (p.error, p.duration)
            for qargs, p in sorted(props.items(), key=lambda kv: str(kv[0]))
        }
    qubits = [
        None if q is None else (q.t1, q.t2, q.frequency) for q in (target.qubit_properties or [])
    ]
    return {
        "num_qubits": target.num_qubits,
        "dt": target.dt,
        "granularity": target.granularity,
        "min_length": target.min_length,
        "pulse_alignment": target.pulse_alignment,
        "acquire_alignment": target.acquire_alignment,
        "concurrent_measurements": target.concurrent_measurements,
        "instructions": instructions,
        "operations": sorted(
            f"class:{op.__name__}" if isinstance(op, type) else f"{type(op).__name__}:{op.name}"
            for op in target.operations
        ),
        "qubits": qubits,
    }


# --- backends are Qiskit backends --------------------------------------------------------------
def test_backends_are_qiskit_backends_with_the_sdks_target(both) -> None:
    from qiskit.providers import BackendV2

    ours, theirs = both
    devices = [b for b in ours.backends() if not b.simulator]
    assert len(devices) >= 4
    for backend in devices:
        assert isinstance(backend, BackendV2)
        sdk_backend = theirs.backend(backend.name)
        assert _summary(backend.target) == _summary(sdk_backend.target), backend.name
        assert backend.num_qubits == sdk_backend.num_qubits
        assert backend.coupling_map.get_edges() == sdk_backend.coupling_map.get_edges()
        assert backend.operation_names == sdk_backend.operation_names
        assert backend.dt == sdk_backend.dt and backend.meas_map == sdk_backend.meas_map
        assert backend.max_circuits is None and backend.basis_gates == sdk_backend.basis_gates


def test_target_is_built_once_per_backend_and_configuration(service) -> None:
    first = service.backend("ibm_brisbane")
    target = first.target
    assert first.target is target
    assert service.backend("ibm_brisbane").target is target  # a new object, same version
    first.refresh()
    assert first.target is target  # nothing changed upstream: the same version


def test_properties_status_and_configuration_as_the_sdk(both) -> None:
    from qiskit_ibm_runtime.models import BackendProperties, BackendStatus

    ours, theirs = both
    for name in ("ibmq_manila", "ibm_brisbane"):
        mine, sdk = ours.backend(name), theirs.backend(name)
        props, sdk_props = mine.properties(), sdk.properties()
        assert isinstance(props, BackendProperties)
        for qubit in range(mine.num_qubits):
            assert props.t1(qubit) == sdk_props.t1(qubit)
            assert props.t2(qubit) == sdk_props.t2(qubit)
            assert props.readout_error(qubit) == sdk_props.readout_error(qubit)
        gate = sdk_props.gates[0]
        assert props.gate_error(gate.gate, gate.qubits) == sdk_props.gate_error(
            gate.gate, gate.qubits
        )
        assert mine.qubit_properties(0).t1 == sdk.qubit_properties(0).t1
        assert mine.instruction_durations.get("measure", [0]) == sdk.instruction_durations.get(
            "measure", [0]
        )
        assert mine.configuration().to_dict() == sdk.configuration().to_dict()
        status = mine.status()
        assert isinstance(status, BackendStatus) and status.operational
        assert mine.service is ours and mine.defaults() is None
    assert ours.backend("ibmq_qasm_simulator").properties() is None


# --- IBM's documented flows ----------------------------------------------------------------------
def test_hello_world(service) -> None:
    from qiskit.transpiler import generate_preset_pass_manager

    from runtime_gateway import SamplerV2

    backend = service.least_busy(simulator=False, operational=True)
    pm = generate_preset_pass_manager(backend=backend, optimization_level=1)
    isa = pm.run(_bell())
    sampler = SamplerV2(mode=backend)
    job = sampler.run([isa], shots=300)
    counts = job.result()[0].data.meas.get_counts()
    assert sum(counts.values()) == 300
    assert job.backend().name == backend.name and job.primitive_id == "sampler"
    assert job.done() and not job.running() and not job.cancelled() and job.in_final_state()


def test_estimator_with_apply_layout_and_parameters(service) -> None:
    from qiskit.circuit import Parameter, QuantumCircuit
    from qiskit.quantum_info import SparsePauliOp
    from qiskit.transpiler import generate_preset_pass_manager

    from runtime_gateway import Estimator, EstimatorV2

    assert Estimator is EstimatorV2
    backend = service.backend("ibmq_manila")
    theta = Parameter("θ")
    circuit = QuantumCircuit(2)
    circuit.ry(theta, 0)
    circuit.cx(0, 1)
    observable = SparsePauliOp("ZZ")
    isa = generate_preset_pass_manager(backend=backend, optimization_level=1).run(circuit)
    estimator = EstimatorV2(mode=backend)
    estimator.options.default_precision = 0.05
    job = estimator.run([(isa, observable.apply_layout(isa.layout), [[0.0], [3.14159]])])
    values = job.result()[0].data.evs
    assert len(values) == 2 and values[0] > 0.5 and values[1] > 0.5  # ZZ is +1 for both


def test_sampler_options_and_validation(service) -> None:
    from qiskit.transpiler import generate_preset_pass_manager

    from runtime_gateway import Sampler, SamplerV2

    assert Sampler is SamplerV2
    backend = service.backend("ibmq_qasm_simulator")
    tag = f"opt-{uuid.uuid4().hex[:6]}"
    sampler = SamplerV2(mode=backend, options={"environment": {"job_tags": [tag]}})
    sampler.options.default_shots = 123
    isa = generate_preset_pass_manager(backend=backend, optimization_level=1).run(_bell())
    job = sampler.run([isa])
    assert sum(job.result()[0].data.meas.get_counts().values()) == 123
    assert job.tags == [tag] and [j.job_id() for j in service.jobs(job_tags=[tag])] == [
        job.job_id()
    ]
    # The SDK's own option models: unknown options and bad values are rejected as it rejects them.
    with pytest.raises(ValueError, match="nope"):
        SamplerV2(mode=backend, options={"nope": 1})
    with pytest.raises(ValueError):
        sampler.options.dynamical_decoupling.sequence_type = "bogus"


def test_retrieval_by_id_and_listing(service) -> None:
    from runtime_gateway import SamplerV2

    backend = service.backend("ibmq_qasm_simulator")
    job = SamplerV2(mode=backend).run([_bell()], shots=50)
    job.wait_for_final_state(60)
    again = service.job(job.job_id())
    assert again.result()[0].data.meas.num_shots == 50
    assert job.job_id() in {j.job_id() for j in service.jobs(limit=20)}
    assert again.usage_estimation.keys() == {"quantum_seconds"}
    assert again.usage() >= 0 and again.creation_date is not None
    assert again.error_message() is None and again.inputs["pubs"]


# --- sessions and batches ------------------------------------------------------------------------
def test_a_session_with_two_jobs(service) -> None:
    from qiskit.transpiler import generate_preset_pass_manager

    from runtime_gateway import SamplerV2, Session

    backend = service.backend("ibmq_manila")
    isa = generate_preset_pass_manager(backend=backend, optimization_level=1).run(_bell())
    with Session(backend=backend, max_time="10m") as session:
        assert session.session_id and session.backend() == "ibmq_manila"
        sampler = SamplerV2(mode=session)
        first = sampler.run([isa], shots=100)
        second = SamplerV2().run([isa], shots=200)  # mode=None inside the block: the session
        assert sum(first.result()[0].data.meas.get_counts().values()) == 100
        assert sum(second.result()[0].data.meas.get_counts().values()) == 200
        assert first.session_id == second.session_id == session.session_id
        details = session.details()
        assert details["id"] == session.session_id and details["backend_name"] == "ibmq_manila"
        assert details["mode"] == "dedicated"
        assert session.status() in ("Pending", "In progress, accepting new jobs")
        assert session.usage() is None or session.usage() >= 0
    assert session.status() in ("Closed", "In progress, not accepting new jobs")
    assert {j.job_id() for j in service.jobs(session_id=session.session_id)} == {
        first.job_id(),
        second.job_id(),
    }
    again = Session.from_id(session.session_id, service)
    assert again.session_id == session.session_id and again.details()["mode"] == "dedicated"


def test_a_batch_with_three_jobs_and_cancel(service) -> None:
    from qiskit.transpiler import generate_preset_pass_manager

    from runtime_gateway import Batch, EstimatorV2, SamplerV2, Session

    backend = service.backend("ibm_brisbane")
    isa = generate_preset_pass_manager(backend=backend, optimization_level=1).run(_bell())
    with Batch(backend=backend) as batch:
        sampler = SamplerV2(mode=batch)
        jobs = [sampler.run([isa], shots=50 * (i + 1)) for i in range(3)]
    assert [sum(j.result()[0].data.meas.get_counts().values()) for j in jobs] == [50, 100, 150]
    assert {j.session_id for j in jobs} == {batch.session_id}
    assert batch.details()["mode"] == "batch"
    assert isinstance(Session.from_id(batch.session_id, service), Batch)
    with pytest.raises(ValueError, match="different from the session backend"):
        with Batch(backend=backend):
            EstimatorV2(mode=service.backend("ibmq_manila"))
    cancelled = Batch(backend=backend)
    cancelled.cancel()
    assert cancelled.status() == "Closed"


# --- exceptions, connection errors, bad input --------------------------------------------------
def test_exceptions_are_caught_as_qiskits(service, gateway: GatewayClient) -> None:
    import qiskit.providers
    import qiskit_ibm_runtime.exceptions
    from qiskit.exceptions import QiskitError

    with pytest.raises(qiskit.providers.QiskitBackendNotFoundError):
        service.backend("ibm_nowhere")
    with pytest.raises(qiskit_ibm_runtime.exceptions.RuntimeJobNotFound):
        service.job("d0000000000000000000")
    with pytest.raises(QiskitError):
        service.job("d0000000000000000000")
    gateway.upstream.admin("POST", "/queue/pause")  # the job stays queued
    try:
        job = service.run("sampler", {"pubs": [(_bell(), None, 10)], "version": 2},
                          options={"backend": "ibmq_qasm_simulator"})  # fmt: skip
        with pytest.raises(qiskit.providers.JobTimeoutError):
            job.result(timeout=0.5)
        with pytest.raises(qiskit_ibm_runtime.exceptions.RuntimeJobTimeoutError):
            job.wait_for_final_state(timeout=0.5)
        with pytest.raises(qiskit.providers.JobError):  # JobTimeoutError is a JobError
            job.result(timeout=0.5)
        job.cancel()
    finally:
        gateway.upstream.admin("POST", "/queue/resume")
    with pytest.raises(QiskitError):  # a cancelled job has no result
        job.result()


def test_update_tags_needs_a_list_of_strings(service) -> None:
    from runtime_gateway import IBMInputValueError

    job = service.run("sampler", {"pubs": [(_bell(), None, 10)], "version": 2},
                      options={"backend": "ibmq_qasm_simulator", "job_tags": ["a"]})  # fmt: skip
    with pytest.raises(IBMInputValueError, match="list of strings"):
        job.update_tags("abc")  # type: ignore[arg-type]
    with pytest.raises(IBMInputValueError):
        job.update_tags(["ok", 3])  # type: ignore[list-item]
    assert job.update_tags(["x", "y"]) == ["x", "y"]
    assert service.job(job.job_id()).tags == ["x", "y"]


def test_a_gateway_that_is_not_running(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from runtime_gateway import IBMRuntimeError, RuntimeJobNotFound

    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    monkeypatch.setenv("RUNTIME_GATEWAY_ADDRESS", address)
    with QiskitRuntimeService(channel="local") as svc:
        with pytest.raises(IBMRuntimeError, match=f"gateway at {address} cannot be reached"):
            svc.backends()
        with pytest.raises(IBMRuntimeError, match="cannot be reached") as failure:
            svc.job("d0000000000000000000")
        assert not isinstance(failure.value, RuntimeJobNotFound)
    with pytest.raises(IBMRuntimeError, match="cannot be reached"):
        QiskitRuntimeService(channel="ibm_quantum_platform", token=UPSTREAM_TOKEN,
                             url=f"http://{DOMAIN}", instance="crn:x")  # fmt: skip


def test_proxies_and_verify_are_not_silently_ignored(
    gateway: GatewayClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNTIME_GATEWAY_ADDRESS", gateway.address)
    with pytest.warns(UserWarning, match="HTTPS_PROXY"):
        QiskitRuntimeService(channel="local", proxies={"urls": {"https": "http://p:8080"}}).close()
    with pytest.warns(UserWarning, match="REQUESTS_CA_BUNDLE"):
        QiskitRuntimeService(channel="local", verify=False).close()


def test_a_10_mb_result(service) -> None:
    """A result above gRPC's default 4 MiB arrives whole (the gateway allows 64 MiB)."""
    from qiskit import QuantumCircuit

    wide = QuantumCircuit(20)  # 20 fair coins: incompressible bits, a state vector of 16 MB
    wide.h(range(20))
    wide.measure_all()
    # 26 pubs x 100k shots x 3 bytes, base64: about 10.4 MB of JSON
    job = service.run("sampler", {"pubs": [(wide, None, 100_000)] * 26, "version": 2},
                      options={"backend": "ibmq_qasm_simulator"})  # fmt: skip
    result = job.result(timeout=300)
    assert [pub.data.meas.num_shots for pub in result] == [100_000] * 26
    raw = service.job(job.job_id()).result(decoder=_Raw)
    assert len(raw) > 9 * 1024 * 1024  # over twice the 4 MiB gRPC allows by default


class _Raw:
    @classmethod
    def decode(cls, raw: str) -> str:
        return raw


def test_modes_and_errors_import_no_qiskit() -> None:
    """Session/Batch and the Qiskit-flavoured errors leave Qiskit unimported until the program
    imports it itself (a program that never imported it cannot be catching its classes)."""
    import subprocess
    import sys

    code = (
        "import sys; from runtime_gateway import Session, Batch, RuntimeJobNotFound; "
        "error = RuntimeJobNotFound('x'); assert type(error) is RuntimeJobNotFound; "
        "print(sorted(m for m in ('qiskit', 'numpy', 'requests', 'structlog', "
        "'qiskit_ibm_runtime') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_failed_job_is_a_qiskit_job_error(service) -> None:
    """A job that passes submission but cannot run (entangled across every cut and not
    Clifford, on 32 qubits: no simulation method fits the memory bound) fails as IBM fails it;
    its result() raises the SDK's RuntimeJobFailureError, which is also Qiskit's JobError."""
    import qiskit.providers
    import qiskit_ibm_runtime.exceptions
    from qiskit import qasm3

    qubits = 32
    chain = " ".join(f"cx q[{i}], q[{i + 1}];" for i in range(qubits - 1))
    turns = " ".join(f"rx(0.3) q[{i}];" for i in range(qubits))
    rainbow = " ".join(f"cx q[{i}], q[{qubits - 1 - i}];" for i in range(qubits // 2))
    circuit = qasm3.loads(
        f'OPENQASM 3.0; include "stdgates.inc"; qubit[{qubits}] q; bit[{qubits}] c; '
        f"h q[0]; {chain} {turns} {rainbow} c = measure q;"
    )
    job = service.run("sampler", {"pubs": [(circuit, None, 10)], "version": 2},
                      options={"backend": "ibmq_qasm_simulator"})  # fmt: skip
    with pytest.raises(qiskit.providers.JobError) as failure:
        job.result(timeout=120)
    assert isinstance(failure.value, qiskit_ibm_runtime.exceptions.RuntimeJobFailureError)
    assert job.status() == "ERROR"
