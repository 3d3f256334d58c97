"""A heavy job on the embedded local runtime never makes the gateway unresponsive.

A real `runtime-gateway serve` with its embedded local runtime runs a noisy 20-qubit circuit
transpiled for ibm_brisbane with 100,000 shots (minutes of Aer here). While it runs, health
checks and other RPCs answer; CancelJob kills its simulation process; SIGTERM drains the
gateway within its grace period and leaves no process behind. Processes are found in /proc.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from runtime_gateway.v1 import backends_pb2, backends_pb2_grpc, jobs_pb2, jobs_pb2_grpc
from tests.procs import Proc, start

WORKER_MODULE = b"runtime_gateway_local.worker"
CHECK_DEADLINE = 10.0  # a liveness check, not a latency assertion


def heavy_inputs(shots: int = 100_000) -> str:
    """A Sampler V2 pub: 20 entangled qubits transpiled for ibm_brisbane (ISA), `shots` shots."""
    from qiskit import QuantumCircuit, transpile
    from qiskit_ibm_runtime.fake_provider import FakeBrisbane
    from qiskit_ibm_runtime.json import RuntimeEncoder

    circuit = QuantumCircuit(20)
    circuit.h(0)
    for qubit in range(19):
        circuit.cx(qubit, qubit + 1)
    for layer in range(3):
        for qubit in range(20):
            circuit.rx(0.3 * qubit + layer, qubit)
        for qubit in range(0, 19, 2):
            circuit.cx(qubit, qubit + 1)
    circuit.measure_all()
    isa = transpile(circuit, FakeBrisbane(), optimization_level=1, seed_transpiler=7)
    return json.dumps(
        {"pubs": [[isa, None, shots]], "version": 2, "options": {}, "support_qiskit": True},
        cls=RuntimeEncoder,
    )


@pytest.fixture(scope="module")
def heavy() -> str:
    return heavy_inputs()


# --- /proc ---------------------------------------------------------------------------------
def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (killed, awaiting its reaper)."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def descendants(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            parents[int(entry.name)] = int(fields[1])
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        found += children
        frontier += children
    return found


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def simulation_workers(root: int) -> list[int]:
    return [p for p in descendants(root) if WORKER_MODULE in cmdline(p) and alive(p)]


def cpu_ticks(pid: int) -> int:
    fields = _stat(pid)
    return int(fields[11]) + int(fields[12]) if fields else 0


def tree_ticks(root: int) -> int:
    """CPU time (clock ticks) of a process and its live descendants."""
    return sum(cpu_ticks(pid) for pid in [root, *descendants(root)])


def tree_busy(root: int) -> bool:
    """True when the process tree used at least half a core over the last second."""
    before = tree_ticks(root)
    time.sleep(1.0)
    return tree_ticks(root) - before >= os.sysconf("SC_CLK_TCK") // 2


def wait_until(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for: {what}")


# --- the gateway ---------------------------------------------------------------------------
class Gateway:
    def __init__(self, proc: Proc) -> None:
        self.proc = proc
        self.channel = grpc.insecure_channel(proc.ready["address"])
        self.jobs = jobs_pb2_grpc.JobServiceStub(self.channel)
        self.backends = backends_pb2_grpc.BackendServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    def run_heavy(self, inputs: str) -> str:
        job = self.jobs.RunJob(
            jobs_pb2.RunJobRequest(
                program_id="sampler", backend="ibm_brisbane", inputs_json=inputs
            ),
            timeout=120,
        ).job
        wait_until(lambda: self.state(job.id) == jobs_pb2.JOB_STATE_RUNNING, 120, "job RUNNING")
        return str(job.id)

    def state(self, job_id: str) -> int:
        request = jobs_pb2.GetJobRequest(job_id=job_id)
        return int(self.jobs.GetJob(request, timeout=CHECK_DEADLINE).job.state)


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    proc = start(
        ["serve", "--listen", "127.0.0.1:0", "--grace-seconds", "2", "--local-workers", "1"],
        tmp_path,
    )
    client = Gateway(proc)
    try:
        yield client
    finally:
        client.channel.close()
        pids = descendants(proc.popen.pid)
        proc.stop()
        for pid in pids:  # never leave a simulation behind, even when a test failed
            if alive(pid):
                subprocess.run(["kill", "-9", str(pid)], check=False)


def test_gateway_answers_during_a_heavy_job_and_cancel_kills_its_simulation(
    gateway: Gateway, heavy: str
) -> None:
    root = gateway.proc.popen.pid
    job_id = gateway.run_heavy(heavy)
    wait_until(lambda: tree_busy(root), 60, "the simulation to use CPU")

    reply = gateway.health.Check(health_pb2.HealthCheckRequest(), timeout=CHECK_DEADLINE)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    backends = gateway.backends.ListBackends(
        backends_pb2.ListBackendsRequest(), timeout=CHECK_DEADLINE
    ).backends
    assert "ibm_brisbane" in {b.name for b in backends}
    assert gateway.state(job_id) == jobs_pb2.JOB_STATE_RUNNING
    # The simulation runs in a process of its own, not in the gateway's.
    workers = simulation_workers(root)
    assert len(workers) == 1 and workers[0] != root

    gateway.jobs.CancelJob(jobs_pb2.CancelJobRequest(job_id=job_id), timeout=CHECK_DEADLINE)
    # Its simulation is killed at once: the process is gone and no CPU is consumed.
    wait_until(lambda: not alive(workers[0]), 10, "the simulation process to end")
    wait_until(lambda: not tree_busy(root), 20, "the gateway and its children to go idle")
    assert gateway.state(job_id) == jobs_pb2.JOB_STATE_CANCELLED
    reply = gateway.health.Check(health_pb2.HealthCheckRequest(), timeout=CHECK_DEADLINE)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_sigterm_during_a_heavy_job_drains_in_time_and_leaves_no_process(
    gateway: Gateway, heavy: str
) -> None:
    root = gateway.proc.popen.pid
    gateway.run_heavy(heavy)
    wait_until(lambda: tree_busy(root), 60, "the simulation to use CPU")
    children = descendants(root)

    gateway.proc.popen.send_signal(signal.SIGTERM)
    grace, margin = 2.0, 15.0
    try:
        status = gateway.proc.popen.wait(grace + margin)
    except subprocess.TimeoutExpired:
        raise AssertionError("the gateway ignored SIGTERM during a heavy job") from None
    assert status == 0, gateway.proc.stderr()[-3000:]
    wait_until(lambda: not any(alive(pid) for pid in children), 10, "no process left behind")
