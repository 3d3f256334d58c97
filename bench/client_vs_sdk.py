"""This project's QiskitRuntimeService (through the gateway) against the real SDK (straight
to the same local runtime), side by side in one run.

Processes on loopback: a local runtime playing IBM, the gateway, and this client, which
drives both libraries. Import times are measured in fresh interpreters.

    .venv/bin/python bench/client_vs_sdk.py [--repeat 30] [--imports 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from common import start, via_proxy

TOKEN = "bench-client-token-0123456789"
DOMAIN = "cloud.example.test"
QASM = (
    'OPENQASM 3.0; include "stdgates.inc"; qubit[2] q; bit[2] c; '
    "h q[0]; cx q[0], q[1]; c = measure q;"
)


def _import_seconds(statement: str, times: int) -> float:
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    samples = [
        float(
            subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True
            ).stdout
        )
        for _ in range(times)
    ]
    return statistics.median(samples)


def _median_ms(call: Callable[[], Any], repeat: int) -> float:
    call()  # warm
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        call()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


DEVICE = "ibm_brisbane"  # 127 qubits: a target of real size


def _first_target(service: Any, cache: dict[Any, Any] | None) -> Callable[[], Any]:
    """A fresh backend object's first `target` (its configuration, properties and the
    conversion; the client's per-service target cache emptied first)."""

    def call() -> Any:
        if cache is not None:
            cache.clear()
        return service.backend(DEVICE).target

    return call


def _hello_world(service: Any, sampler_class: Any) -> Callable[[], Any]:
    """IBM's hello world after transpilation: SamplerV2(mode=backend).run → counts."""
    from qiskit import QuantumCircuit
    from qiskit.transpiler import generate_preset_pass_manager

    backend = service.backend("ibmq_manila")
    circuit = QuantumCircuit(2)
    circuit.h(0)
    circuit.cx(0, 1)
    circuit.measure_all()
    isa = generate_preset_pass_manager(backend=backend, optimization_level=1).run(circuit)
    sampler = sampler_class(mode=backend)
    return lambda: sampler.run([isa], shots=100).result()[0].data.meas.get_counts()


def _provider_cases(ours: Any, sdk: Any, repeat: int) -> dict[str, dict[str, float]]:
    import warnings

    import qiskit_ibm_runtime

    from runtime_gateway import SamplerV2

    warnings.filterwarnings("ignore", category=DeprecationWarning)  # the SDK's SamplerV2 notice
    out: dict[str, dict[str, float]] = {}
    out[f"first backend.target, {DEVICE} (ms)"] = {
        "wrapper": _median_ms(_first_target(ours, ours._targets), max(3, repeat // 5)),
        "sdk": _median_ms(_first_target(sdk, None), max(3, repeat // 5)),
    }
    mine, theirs = ours.backend(DEVICE), sdk.backend(DEVICE)
    out["backend.target, warm (ms)"] = {
        "wrapper": _median_ms(lambda: mine.target, repeat),
        "sdk": _median_ms(lambda: theirs.target, repeat),
    }
    hello = max(3, repeat // 3)
    out["hello world: SamplerV2 run → counts (ms)"] = {
        "wrapper": _median_ms(_hello_world(ours, SamplerV2), hello),
        "sdk": _median_ms(_hello_world(sdk, qiskit_ibm_runtime.SamplerV2), hello),
    }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=30, help="timed calls per case")
    parser.add_argument("--imports", type=int, default=5, help="fresh interpreters per import case")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    results: dict[str, dict[str, float]] = {}
    ours_import = _import_seconds("from runtime_gateway import QiskitRuntimeService", args.imports)
    sdk_import = _import_seconds(
        "from qiskit_ibm_runtime import QiskitRuntimeService", args.imports
    )
    results["import QiskitRuntimeService (s)"] = {"wrapper": ours_import, "sdk": sdk_import}

    runtime, info = start(["local-runtime", "--listen", "127.0.0.1:0", "--token", TOKEN])
    _, env = via_proxy(info["url"], DOMAIN, no_proxy="127.0.0.1,localhost")
    try:
        gateway, ready = start(["serve", "--listen", "127.0.0.1:0", "--no-local-runtime"], env)
    except Exception:
        runtime.terminate()  # never leave the runtime behind
        runtime.wait(15)
        raise
    try:
        os.environ.update(env)
        os.environ["RUNTIME_GATEWAY_ADDRESS"] = ready["address"]
        import qiskit_ibm_runtime

        from runtime_gateway import QiskitRuntimeService

        account = {"channel": "ibm_quantum_platform", "token": TOKEN, "url": f"http://{DOMAIN}",
                   "instance": info["instances"]["crns"][0]}  # fmt: skip
        ours = QiskitRuntimeService(**account)
        sdk = qiskit_ibm_runtime.QiskitRuntimeService(**account)
        inputs = {"pubs": [[QASM, None, 10]], "version": 2}
        jobs = [
            ours.run("sampler", inputs, options={"backend": "ibmq_qasm_simulator"})
            for _ in range(100)
        ]
        jobs[-1].wait_for_final_state(120)
        job_id = jobs[0].job_id()
        cases = {
            "backends(), warm (ms)": (lambda: ours.backends(), lambda: sdk.backends()),
            "jobs(limit=100) (ms)": (lambda: ours.jobs(limit=100), lambda: sdk.jobs(limit=100)),
            "job(id).status() (ms)": (
                lambda: ours.job(job_id).status(),
                lambda: sdk.job(job_id).status(),
            ),
        }
        for name, (wrapper, direct) in cases.items():
            results[name] = {
                "wrapper": _median_ms(wrapper, args.repeat),
                "sdk": _median_ms(direct, args.repeat),
            }
        results.update(_provider_cases(ours, sdk, args.repeat))
        ours.close()
    finally:
        for proc in (gateway, runtime):
            proc.terminate()
            proc.wait(15)

    for figures in results.values():
        figures["speed-up"] = figures["sdk"] / figures["wrapper"]
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(
        f"medians; imports in {args.imports} fresh interpreters, calls over {args.repeat} repeats\n"
    )
    print(f"{'case':44} {'wrapper':>10} {'SDK':>10} {'SDK/wrapper':>12}")
    for name, f in results.items():
        print(f"{name:44} {f['wrapper']:10.3f} {f['sdk']:10.3f} {f['speed-up']:11.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
