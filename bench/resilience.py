"""Does the gateway stay responsive whatever its embedded local runtime runs?

Starts `runtime-gateway serve` on its embedded local runtime (loopback) and measures, side by
side in one run, health-check latency (p50/p99 of a bounded number of Checks sent at a fixed
rate) and the resident memory (RSS, from /proc) of the gateway process, of its local runtime
process and of the local runtime's simulation workers, in three phases:

- idle;
- during a heavy job: a noisy 20-qubit circuit transpiled for ibm_brisbane, 100,000 shots
  (cancelled at the end of the phase);
- during a large-input run: CONCURRENCY concurrent RunJobs of INPUT_MB each (a valid Sampler
  pub whose inputs JSON carries a large padding field: the point is the request size).

Prints a Markdown table. Everything is bounded and on loopback.

    .venv/bin/python bench/resilience.py [--checks 200] [--rate 20] [--input-mb 20]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from common import start

QASM_BELL = (
    'OPENQASM 3.0; include "stdgates.inc"; qubit[2] q; bit[2] c; '
    "h q[0]; cx q[0], q[1]; c = measure q;"
)


def heavy_inputs(shots: int) -> str:
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


def large_inputs(megabytes: int) -> str:
    padding = "x" * (megabytes * 1024 * 1024)
    return json.dumps({"pubs": [[QASM_BELL, None, 10]], "version": 2, "padding": padding})


# --- /proc -------------------------------------------------------------------------------
def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) and int(fields[1]) == parent:
            found.append(int(entry.name))
    return found


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return 0.0


class MemorySampler:
    """Peak RSS of the gateway, the local runtime and the sum of its workers, every 0.2 s."""

    def __init__(self, gateway: int, local: int) -> None:
        self.gateway, self.local = gateway, local
        self.peaks = {"gateway": 0.0, "local": 0.0, "workers": 0.0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            sample = {
                "gateway": rss_mb(self.gateway),
                "local": rss_mb(self.local),
                "workers": sum(rss_mb(p) for p in children(self.local)),
            }
            for key, value in sample.items():
                self.peaks[key] = max(self.peaks[key], value)
            self._stop.wait(0.2)


def probe(stub: Any, request: Any, checks: int, rate: float, until: Any = None) -> dict[str, Any]:
    """`checks` health Checks at `rate` per second (or fewer, once `until()` is true)."""
    latencies: list[float] = []
    failures = 0
    started = time.monotonic()
    for index in range(checks):
        if until is not None and index >= 10 and until():
            break
        delay = started + index / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        begun = time.perf_counter()
        try:
            stub.Check(request, timeout=30)
            latencies.append((time.perf_counter() - begun) * 1000)
        except Exception:  # a failed check is counted, whatever its kind
            failures += 1
    ordered = sorted(latencies) or [float("nan")]
    return {
        "answered": len(latencies),
        "failed": failures,
        "p50": statistics.median(ordered),
        "p99": ordered[max(0, int(len(ordered) * 0.99) - 1)],
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--checks", type=int, default=200, help="health checks per phase")
    parser.add_argument("--rate", type=float, default=20.0, help="health checks per second")
    parser.add_argument("--shots", type=int, default=100_000, help="shots of the heavy job")
    parser.add_argument("--input-mb", type=int, default=20, help="size of each large input")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent large RunJobs")
    args = parser.parse_args()

    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from runtime_gateway.v1 import jobs_pb2, jobs_pb2_grpc

    heavy = heavy_inputs(args.shots)
    large = large_inputs(args.input_mb)
    gateway, ready = start(["serve", "--listen", "127.0.0.1:0", "--local-workers", "1"])
    rows: list[tuple[str, dict[str, Any], dict[str, float], str]] = []
    try:
        [local] = [
            p
            for p in children(gateway.pid)
            if b"local-runtime" in Path(f"/proc/{p}/cmdline").read_bytes()
        ]
        options = [("grpc.max_send_message_length", 64 * 2**20)]
        channel = grpc.insecure_channel(ready["address"], options=options)
        health = health_pb2_grpc.HealthStub(channel)
        jobs = jobs_pb2_grpc.JobServiceStub(channel)
        check = health_pb2.HealthCheckRequest()
        probe(health, check, 20, args.rate)  # warm up the channel

        with MemorySampler(gateway.pid, local) as memory:
            figures = probe(health, check, args.checks, args.rate)
        rows.append(("idle", figures, memory.peaks, ""))

        job = jobs.RunJob(
            jobs_pb2.RunJobRequest(program_id="sampler", backend="ibm_brisbane", inputs_json=heavy),
            timeout=120,
        ).job
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            state = jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job.id), timeout=30).job.state
            if state != jobs_pb2.JOB_STATE_QUEUED:
                break
            time.sleep(0.2)
        time.sleep(3)  # the worker is warm and simulating
        with MemorySampler(gateway.pid, local) as memory:
            figures = probe(health, check, args.checks, args.rate)
        state = jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job.id), timeout=30).job.state
        note = f"job {jobs_pb2.JobState.Name(state)} throughout"
        jobs.CancelJob(jobs_pb2.CancelJobRequest(job_id=job.id), timeout=30)
        rows.append(
            (f"heavy job ({args.shots:,} shots, ibm_brisbane)", figures, memory.peaks, note)
        )

        outcomes: list[str] = []

        def submit() -> None:
            try:
                jobs.RunJob(
                    jobs_pb2.RunJobRequest(
                        program_id="sampler", backend="ibmq_qasm_simulator", inputs_json=large
                    ),
                    timeout=300,
                )
                outcomes.append("OK")
            except grpc.RpcError as error:
                outcomes.append(error.code().name)

        with (
            MemorySampler(gateway.pid, local) as memory,
            ThreadPoolExecutor(args.concurrency) as pool,
        ):
            futures = [pool.submit(submit) for _ in range(args.concurrency)]
            figures = probe(
                health,
                check,
                args.checks * 3,
                args.rate,
                until=lambda: all(f.done() for f in futures),
            )
        counts = {code: outcomes.count(code) for code in sorted(set(outcomes))}
        rows.append(
            (
                f"{args.concurrency} concurrent RunJobs of {args.input_mb} MB",
                figures,
                memory.peaks,
                ", ".join(f"{n} {code}" for code, n in counts.items()),
            )
        )
        channel.close()
    finally:
        gateway.send_signal(signal.SIGTERM)
        try:
            gateway.wait(60)
        except subprocess.TimeoutExpired:
            gateway.kill()
            gateway.wait()

    print(
        "| phase | health p50 ms | health p99 ms | checks answered / failed | gateway RSS MB | "
        "local runtime RSS MB | simulation workers RSS MB | notes |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for phase, f, peaks, note in rows:
        print(
            f"| {phase} | {f['p50']:.2f} | {f['p99']:.2f} | {f['answered']} / {f['failed']} | "
            f"{peaks['gateway']:.0f} | {peaks['local']:.0f} | {peaks['workers']:.0f} | {note} |"
        )
    print(f"\n(RSS: peaks sampled every 0.2 s; health checks at {args.rate:g}/s.)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
