"""The newest SDK's `Session`, `Batch` and `service.usage()`, unchanged, against the local runtime.

Device jobs are given a duration floor through the admin API while a test needs jobs seen
waiting; orderings are read from the jobs' own timestamps, never from elapsed time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from qiskit import QuantumCircuit
from qiskit.transpiler import generate_preset_pass_manager

from tests.compat.conftest import DOMAIN, TOKEN
from tests.procs import Proc

pytestmark = pytest.mark.compat

DEVICE = "ibmq_lima"


@pytest.fixture(scope="module")
def service(sdk_env: dict[str, str], local_runtime_process: Proc) -> Any:
    from qiskit_ibm_runtime import QiskitRuntimeService

    crn = str(local_runtime_process.ready["instances"]["crns"][0])
    return QiskitRuntimeService(
        channel="ibm_quantum_platform", url=f"http://{DOMAIN}", token=TOKEN, instance=crn
    )


def _execution(proc: Proc, **settings: float) -> None:
    reply = requests.put(
        f"{proc.ready['url']}/_local/execution",
        json=settings,
        headers={"X-Local-Admin-Token": TOKEN},
        timeout=10,
        proxies={"http": "", "https": ""},
    )
    reply.raise_for_status()


@pytest.fixture
def device_floor(local_runtime_process: Proc) -> Iterator[None]:
    _execution(local_runtime_process, job_seconds=1.0)
    yield
    _execution(local_runtime_process, job_seconds=0)


def _bell(backend: Any) -> QuantumCircuit:
    circuit = QuantumCircuit(2)
    circuit.h(0)
    circuit.cx(0, 1)
    circuit.measure_all()
    return generate_preset_pass_manager(backend=backend, optimization_level=1).run(circuit)


def _started(job: Any) -> Any:
    return job.metrics()["timestamps"]["running"]


def _finished(job: Any) -> Any:
    return job.metrics()["timestamps"]["finished"]


def test_session_runs_jobs_and_closes(service: Any, device_floor: None) -> None:
    from qiskit_ibm_runtime import SamplerV2, Session

    backend = service.backend(DEVICE)
    circuit = _bell(backend)
    with Session(backend=backend, max_time=600) as session:
        sampler = SamplerV2(mode=session)
        first = sampler.run([circuit], shots=100)
        second = sampler.run([circuit], shots=100)
        assert first.session_id == session.session_id == second.session_id
        counts = first.result()[0].data.meas.get_counts()
        assert sum(counts.values()) == 100
        assert second.result()[0].data.meas.num_shots == 100
        details = session.details()
        assert details["mode"] == "dedicated" and details["max_time"] == 600
        assert (
            details["state"] == "active" and session.status() == "In progress, accepting new jobs"
        )
        assert _finished(first) <= _started(second)  # back to back on the one device
        # 0.51's Session.from_id reads the session (its backend and mode).
        again = Session.from_id(session.session_id, service=service)
        assert again.session_id == session.session_id
    # Leaving the block closed it: no job is left, so it is closed at once.
    assert session.details()["state"] == "closed" and session.status() == "Closed"
    assert session.usage() > 0
    with pytest.raises(Exception, match=r"(?i)closed"):
        SamplerV2(mode=session).run([circuit], shots=10).result()


def test_batch_and_cancel(service: Any, device_floor: None) -> None:
    from qiskit_ibm_runtime import Batch, SamplerV2

    backend = service.backend(DEVICE)
    circuit = _bell(backend)
    batch = Batch(backend=backend)
    sampler = SamplerV2(mode=batch)
    running = sampler.run([circuit], shots=50)
    queued = sampler.run([circuit], shots=50)
    assert batch.details()["mode"] == "batch"
    batch.cancel()
    assert queued.status() in ("CANCELLED", "DONE")  # DONE only if it had already run
    assert running.result()[0].data.meas.num_shots == 50
    assert batch.details()["state"] == "closed" and not batch.details()["accepting_jobs"]


def test_usage_of_the_instance(service: Any) -> None:
    usage = service.usage()
    assert usage["usage_consumed_seconds"] >= 0
    assert "usage_limit_reached" in usage
    assert usage["usage_period"]["start_time"] < usage["usage_period"]["end_time"]
    # No limit on this instance: the SDK computes no remaining time and needs no null key.
    assert "usage_remaining_seconds" not in usage
