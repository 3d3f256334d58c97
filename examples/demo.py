"""`make demo`: starts the gateway, runs a short client session against it, stops it.

Everything runs on loopback with the gateway's embedded local runtime: no IBM account is
needed. The client uses only grpcio and the generated stubs.
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

            jobs = jobs_pb2_grpc.JobServiceStub(channel)
            inputs = json.dumps({"pubs": [[BELL, None, 1000]], "version": 2})
            job = jobs.RunJob(
                jobs_pb2.RunJobRequest(
                    program_id="sampler",
                    backend="ibmq_qasm_simulator",
                    inputs_json=inputs,
                    tags=["demo"],
                ),
                timeout=60,
            ).job
            print(f"submitted Bell-state sampler job {job.id}")
            for _ in range(600):  # bounded wait
                job = jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job.id), timeout=30).job
                if job.state in FINAL:
                    break
                time.sleep(0.05)
            print("job state:", jobs_pb2.JobState.Name(job.state))
            result = jobs.GetJobResult(jobs_pb2.GetJobResultRequest(job_id=job.id), timeout=30)
            print("counts:", counts(result.result_json))
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    print(f"gateway stopped (exit {code})")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
