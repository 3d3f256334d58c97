"""QiskitRuntimeService end to end: a real gateway process before a local runtime playing IBM."""

from __future__ import annotations

import json
import threading
import uuid

import pytest

from runtime_gateway import (
    IBMInputValueError,
    IBMNotAuthorizedError,
    QiskitBackendNotFoundError,
    QiskitRuntimeService,
    RuntimeInvalidStateError,
    RuntimeJobNotFound,
    RuntimeProgramNotFound,
)
from tests.gateway.conftest import DOMAIN, UPSTREAM_TOKEN, GatewayClient, bell_inputs


@pytest.fixture
def service(
    gateway: GatewayClient, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> QiskitRuntimeService:
    monkeypatch.setenv("RUNTIME_GATEWAY_ADDRESS", gateway.address)
    monkeypatch.setenv("HOME", str(tmp_path))
    with QiskitRuntimeService(channel="ibm_quantum_platform", token=UPSTREAM_TOKEN, url=f"http://{DOMAIN}",
                              instance=gateway.upstream.crn) as svc:  # fmt: skip
        yield svc


def _bell():
    from qiskit import QuantumCircuit

    circuit = QuantumCircuit(2)
    circuit.h(0)
    circuit.cx(0, 1)
    circuit.measure_all()
    return circuit


def test_account_and_instances(service: QiskitRuntimeService, gateway: GatewayClient) -> None:
    assert service.channel == "ibm_quantum_platform" and service.runtime is service
    active = service.active_account()
    assert active["instance"] == gateway.upstream.crn and UPSTREAM_TOKEN not in str(active)
    assert gateway.upstream.crn in [i["crn"] for i in service.instances()]


def test_a_saved_account_is_used_by_name(
    gateway: GatewayClient, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.setenv("RUNTIME_GATEWAY_ADDRESS", gateway.address)
    monkeypatch.setenv("HOME", str(tmp_path))
    QiskitRuntimeService.save_account(channel="ibm_quantum_platform", token=UPSTREAM_TOKEN, url=f"http://{DOMAIN}",
                                      instance=gateway.upstream.crn, name="saved")  # fmt: skip
    with QiskitRuntimeService(name="saved") as svc:
        assert "ibm_torino" in [b.name for b in svc.backends()]


def test_wrong_token_fails_at_construction(
    gateway: GatewayClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNTIME_GATEWAY_ADDRESS", gateway.address)
    with pytest.raises(IBMNotAuthorizedError) as failure:
        QiskitRuntimeService(channel="ibm_quantum_platform", token="wrong-token-xyz", url=f"http://{DOMAIN}",
                             instance=gateway.upstream.crn)  # fmt: skip
    assert "wrong-token-xyz" not in str(failure.value)


def test_backends_filters_and_objects(service: QiskitRuntimeService) -> None:
    names = {b.name for b in service.backends()}
    assert {"ibmq_manila", "ibm_brisbane", "ibmq_qasm_simulator"} <= names
    assert {b.name for b in service.backends(min_num_qubits=100)} == {"ibm_brisbane", "ibm_torino"}
    assert {b.name for b in service.backends(simulator=True)} == {"ibmq_qasm_simulator"}
    assert {b.name for b in service.backends(n_qubits=27)} == {"ibm_algiers"}
    assert "ibmq_lima" in {b.name for b in service.backends(dynamic_circuits=False)}
    assert "ibmq_lima" not in {
        b.name for b in service.backends(filters=lambda b: b.max_shots > 50000)
    }
    with_ecr = {b.name for b in service.backends(filters=lambda x: "ecr" in x.basis_gates)}
    assert "ibm_brisbane" in with_ecr and "ibmq_manila" not in with_ecr
    manila = service.backend("ibmq_manila")
    assert manila.num_qubits == 5 and manila.operational and manila.pending_jobs >= 0
    assert (
        manila.configuration().n_qubits == 5
        and manila.configuration().backend_name == "ibmq_manila"
    )
    assert len(manila.properties().qubits) == 5
    assert service.backend("ibmq_qasm_simulator").properties() is None
    assert manila.status().status_msg == "active"
    assert service.get_backend("ibm_torino").name == "ibm_torino"
    assert service.least_busy(min_num_qubits=100).name in {"ibm_brisbane", "ibm_torino"}
    with pytest.raises(QiskitBackendNotFoundError, match="No backend matches the criteria"):
        service.backend("ibm_nowhere")
    with pytest.raises(QiskitBackendNotFoundError):
        service.least_busy(min_num_qubits=1000)
    with pytest.raises(IBMInputValueError, match="only supported for ``ibm_quantum``"):
        service.backends(instance="h/g/p")


def test_run_result_status_logs_and_jobs(service: QiskitRuntimeService) -> None:
    tag = f"svc-{uuid.uuid4().hex[:6]}"
    job = service.run("sampler", {"pubs": [(_bell(), None, 400)], "version": 2},
                      options={"backend": "ibmq_qasm_simulator", "job_tags": [tag]})  # fmt: skip
    assert job.program_id == "sampler" and job.tags == [tag] and job.creation_date is not None
    result = job.result()
    counts = result[0].data.meas.get_counts()
    assert set(counts) == {"00", "11"} and sum(counts.values()) == 400
    assert job.status() == "DONE" and "Job started" in job.logs()
    assert job.backend().name == "ibmq_qasm_simulator"
    assert job.inputs["version"] == 2
    assert job.metrics()["usage"]["status"] == "final"
    listed = service.jobs(job_tags=[tag])
    assert [j.job_id() for j in listed] == [job.job_id()]
    assert service.jobs(job_tags=[tag], pending=True) == []
    assert [
        j.job_id()
        for j in service.jobs(
            job_tags=[tag], backend_name="ibmq_qasm_simulator", program_id="sampler"
        )
    ] == [job.job_id()]
    assert len(service.jobs(limit=3)) <= 3
    assert service.job(job.job_id()).status() == "DONE"


def test_callback_gets_the_final_result_from_the_stream(service: QiskitRuntimeService) -> None:
    received: list[tuple[str, object]] = []
    done = threading.Event()

    def callback(job_id: str, result: object) -> None:
        received.append((job_id, result))
        done.set()

    job = service.run("sampler", {"pubs": [(_bell(), None, 100)], "version": 2},
                      options={"backend": "ibmq_qasm_simulator"}, callback=callback)  # fmt: skip
    assert done.wait(60)
    assert received[0][0] == job.job_id() and type(received[0][1]).__name__ == "PrimitiveResult"


def test_result_decoder_is_honoured(service: QiskitRuntimeService) -> None:
    class Raw:
        @classmethod
        def decode(cls, raw: str) -> str:
            return raw

    job = service.run("sampler", {"pubs": [(_bell(), None, 10)], "version": 2},
                      options={"backend": "ibmq_qasm_simulator"}, result_decoder=Raw)  # fmt: skip
    assert job.result().startswith('{"__type__": "PrimitiveResult"')


def test_cancel_delete_and_errors(service: QiskitRuntimeService, gateway: GatewayClient) -> None:
    gateway.upstream.admin("POST", "/queue/pause")
    try:
        job = service.run(
            "sampler",
            {"pubs": [(_bell(), None, 10)], "version": 2},
            options={"backend": "ibmq_qasm_simulator"},
        )
        assert job.status() == "QUEUED"
        job.cancel()
        assert job.status() == "CANCELLED"
    finally:
        gateway.upstream.admin("POST", "/queue/resume")
    with pytest.raises(RuntimeInvalidStateError, match="Job was cancelled"):
        job.result()
    with pytest.raises(RuntimeInvalidStateError, match="cannot be cancelled"):
        job.cancel()
    service.delete_job(job.job_id())
    with pytest.raises(RuntimeJobNotFound):
        service.job(job.job_id())
    with pytest.raises(RuntimeJobNotFound):
        service.delete_job("d0000000000000000000")
    with pytest.raises(RuntimeProgramNotFound):
        service.run(
            "no-such-program",
            {"pubs": [], "version": 2},
            options={"backend": "ibmq_qasm_simulator"},
        )
    with pytest.raises(IBMInputValueError, match="job_tags needs to be a list of strings"):
        service.run("sampler", {}, options={"job_tags": "x"})
    with pytest.raises(IBMInputValueError, match="image_name:tag"):
        service.run("sampler", {}, options={"image": "nope"})


def test_local_channel_needs_no_token(gateway_process, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNTIME_GATEWAY_ADDRESS", gateway_process.ready["address"])
    with QiskitRuntimeService(channel="local") as svc:
        assert svc.channel == "local"
        assert "ibmq_qasm_simulator" in {b.name for b in svc.backends()}


def test_waiting_survives_a_silent_stream(
    service: QiskitRuntimeService, gateway: GatewayClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runtime_gateway import RuntimeJobTimeoutError
    from runtime_gateway import service as service_module

    monkeypatch.setattr(service_module, "STREAM_WINDOW", 0.5)  # windows shorter than the heartbeat
    gateway.upstream.admin("POST", "/queue/pause")
    try:
        job = service.run(
            "sampler",
            {"pubs": [(_bell(), None, 10)], "version": 2},
            options={"backend": "ibmq_qasm_simulator"},
        )
        with pytest.raises(RuntimeJobTimeoutError):
            job.wait_for_final_state(timeout=2)  # several silent windows, then the caller's timeout
    finally:
        gateway.upstream.admin("POST", "/queue/resume")
    job.wait_for_final_state(timeout=60)  # reconnects window after window until the end
    assert job.status() == "DONE"


def test_a_local_account_reports_the_gateways_local_runtime(
    gateway_process, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`channel="local"` is the gateway's own local runtime: its URL, not IBM's."""
    monkeypatch.setenv("RUNTIME_GATEWAY_ADDRESS", gateway_process.ready["address"])
    service = QiskitRuntimeService(channel="local")
    url = service.active_account()["url"]
    assert url == gateway_process.ready["local_runtime_url"]
    assert "cloud.ibm.com" not in url


def test_usage_is_the_sdks(service: QiskitRuntimeService, gateway: GatewayClient) -> None:
    """`service.usage()` as qiskit-ibm-runtime 0.51 returns it (IBM's keys, seconds)."""
    usage = service.usage()
    assert usage["instance_id"] == gateway.upstream.crn
    assert isinstance(usage["usage_consumed_seconds"], float)
    assert usage["usage_limit_reached"] is False
    assert set(usage["usage_period"]) == {"start_time", "end_time"}


def test_a_wait_gives_up_on_a_gateway_that_stays_away(
    upstream, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    """A gateway restart is ridden out, but one that never comes back ends `result()` with an
    IBMRuntimeError naming it (it hung forever before)."""
    import runtime_gateway.service as service_module
    from runtime_gateway.exceptions import IBMRuntimeError
    from tests.gateway.conftest import upstream_env
    from tests.procs import start

    monkeypatch.setattr(service_module, "UNREACHABLE_GRACE", 3.0)
    proc = start(
        ["serve", "--listen", "127.0.0.1:0", "--no-local-runtime"],
        tmp_path,
        env=upstream_env(upstream),
    )
    monkeypatch.setenv("RUNTIME_GATEWAY_ADDRESS", proc.ready["address"])
    monkeypatch.setenv("HOME", str(tmp_path))
    upstream.admin("POST", "/queue/pause")  # the job waits in the queue
    try:
        svc = QiskitRuntimeService(channel="ibm_quantum_platform", token=UPSTREAM_TOKEN,
                                   url=f"http://{DOMAIN}", instance=upstream.crn)  # fmt: skip
        job = svc.run(
            "sampler", json.loads(bell_inputs()), options={"backend": "ibmq_qasm_simulator"}
        )
        proc.popen.kill()
        proc.popen.wait(10)
        with pytest.raises(IBMRuntimeError, match=proc.ready["address"]):
            job.result(timeout=120)
    finally:
        proc.stop()
        upstream.admin("POST", "/queue/resume")
