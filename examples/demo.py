"""`make demo`: starts the gateway, runs a short client session against it, stops it.

Everything runs on loopback with the gateway's embedded local runtime: no IBM account is
needed. A raw gRPC client (grpcio and the generated stubs only) runs a job on the simulator
and follows it on the job stream; then the Python client runs IBM's documented flow on the
least busy device (transpile for its target, `SamplerV2(mode=backend)`). Each job says which
backend it runs on.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from runtime_gateway.v1 import backends_pb2, backends_pb2_grpc, jobs_pb2, jobs_pb2_grpc

BELL = (
    'OPENQASM 3.0; include "stdgates.inc"; qubit[2] q; bit[2] c; '
    "h q[0]; cx q[0], q[1]; c = measure q;"
)
FINAL = (jobs_pb2.JOB_STATE_COMPLETED, jobs_pb2.JOB_STATE_FAILED, jobs_pb2.JOB_STATE_CANCELLED)


def start_gateway() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime_gateway_server", "serve", "--listen", "127.0.0.1:0",
         "--log-format", "console", "--log-level", "WARNING"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    ready = json.loads(proc.stdout.readline() or "{}")
    if "address" not in ready:
        proc.kill()
        raise SystemExit("the gateway did not start")
    return proc, ready["address"]


def counts(result_json: str) -> dict[str, int]:
    """Bell-state counts from the Sampler result, decoded without Qiskit."""
    import base64
    import io
    import zlib

    import numpy as np

    result = json.loads(result_json)["__value__"]["pub_results"][0]["__value__"]
    bits = result["data"]["__value__"]["fields"]["c"]["__value__"]
    raw = zlib.decompress(base64.b64decode(bits["array"]["__value__"]))
    array = np.load(io.BytesIO(raw), allow_pickle=False)
    tally: dict[str, int] = {}
    for row in array.reshape(-1, array.shape[-1]):
        key = format(int.from_bytes(bytes(row), "big"), f"0{bits['num_bits']}b")
        tally[key] = tally.get(key, 0) + 1
    return dict(sorted(tally.items()))


def device_flow(address: str, device: str) -> None:
    """IBM's documented flow through this project's client, on a device: transpile for the
    backend's target, then `SamplerV2(mode=backend)`. The client waits on the job stream."""
    import os

    try:
        from qiskit import QuantumCircuit
        from qiskit.transpiler import generate_preset_pass_manager
    except ImportError:
        print("(qiskit is not installed: the device flow is skipped)")
        return
    os.environ["RUNTIME_GATEWAY_ADDRESS"] = address
    from runtime_gateway import QiskitRuntimeService, SamplerV2

    with QiskitRuntimeService(channel="local") as service:
        backend = service.backend(device)
        circuit = QuantumCircuit(2)
        circuit.h(0)
        circuit.cx(0, 1)
        circuit.measure_all()
        isa = generate_preset_pass_manager(backend=backend, optimization_level=1).run(circuit)
        job = SamplerV2(mode=backend).run([isa], shots=1000)
        print(f"job {job.job_id()} runs on {job.backend().name} "
              f"({backend.num_qubits}-qubit device, through the Python client)")  # fmt: skip
        counts = job.result()[0].data.meas.get_counts()
        top = dict(sorted(counts.items(), key=lambda kv: -kv[1])[:4])
        print(f"   status: {job.status()}; most frequent outcomes (device noise included): {top}")


def main() -> int:
    started = time.monotonic()
    proc, address = start_gateway()
    print(f"gateway listening on {address} (started in {time.monotonic() - started:.2f} s)")
    try:
        with grpc.insecure_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            status = health.Check(health_pb2.HealthCheckRequest(), timeout=10).status
            print("health:", health_pb2.HealthCheckResponse.ServingStatus.Name(status))

            backends = backends_pb2_grpc.BackendServiceStub(channel)
            listed = backends.ListBackends(backends_pb2.ListBackendsRequest(), timeout=30)
            print("backends (no credentials: the embedded local runtime):")
            for b in listed.backends:
                kind = "simulator" if b.simulator else f"{b.num_qubits}-qubit device"
                print(f"   {b.name:22} {kind:18} pending jobs: {b.status.pending_jobs}")
            least = backends.GetLeastBusyBackend(
                backends_pb2.GetLeastBusyBackendRequest(
                    filter=backends_pb2.BackendFilter(simulator=False, min_num_qubits=100)
                ),
                timeout=30,
            ).backend
            print(f"least busy device with 100+ qubits: {least.name}")

            least = backends.GetLeastBusyBackend(
                backends_pb2.GetLeastBusyBackendRequest(
                    filter=backends_pb2.BackendFilter(simulator=False)
                ),
                timeout=30,
            ).backend
            jobs = jobs_pb2_grpc.JobServiceStub(channel)
            # A raw client first: a Bell circuit on the simulator, waited on through the job
            # stream (WatchJob), with no Qiskit at all.
            job = jobs.RunJob(
                jobs_pb2.RunJobRequest(
                    program_id="sampler",
                    backend="ibmq_qasm_simulator",
                    inputs_json=json.dumps({"pubs": [[BELL, None, 1000]], "version": 2}),
                    tags=["demo"],
                ),
                timeout=60,
            ).job
            print(f"job {job.id} runs on {job.backend} (raw gRPC)")
            request = jobs_pb2.WatchJobRequest(job_id=job.id, include_result=True)
            for message in jobs.WatchJob(request, timeout=120):
                state = message.update.state if message.update.HasField("state") else None
                if state is not None:
                    print("   stream:", jobs_pb2.JobState.Name(state.job.state))
                    if state.terminal:
                        print("   counts:", counts(state.result_json))
                        break
        device_flow(address, least.name)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    print(f"gateway stopped (exit {code})")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
