"""How much the local runtime itself costs per request, so gateway figures can subtract it.

Runs, side by side in one run and on loopback, a bare stdlib HTTP server (the floor: same
server machinery, no logic) and `runtime-gateway local-runtime`, each in its own process,
and times keep-alive requests from this process with `requests` (what the gateway uses):

    .venv/bin/python bench/local_runtime_overhead.py [--requests 1000] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import requests
from common import iam_jwt, start

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token-0123456789"


def _start_floor() -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "floor_server.py")], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def _measure(call: Callable[[], requests.Response], count: int) -> dict[str, float]:
    for _ in range(min(50, count)):  # warm up: connection, caches, imports
        call().raise_for_status()
    samples = []
    started = time.perf_counter()
    for _ in range(count):
        t0 = time.perf_counter()
        call().raise_for_status()
        samples.append((time.perf_counter() - t0) * 1000)
    elapsed = time.perf_counter() - started
    samples.sort()
    return {
        "p50_ms": round(statistics.median(samples), 3),
        "p99_ms": round(samples[int(len(samples) * 0.99) - 1], 3),
        "req_per_s": round(count / elapsed, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=1000, help="timed requests per case")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()

    runtime, info = start(["local-runtime", "--listen", "127.0.0.1:0", "--token", TOKEN])
    floor, floor_port = _start_floor()
    try:
        base = info["url"]
        http = requests.Session()
        jwt = iam_jwt(http, base, TOKEN)
        headers = {
            "Authorization": f"Bearer {jwt}",
            "Service-CRN": info["instances"]["crns"][0],
            "IBM-API-Version": "2026-04-15",
        }
        api = f"{base}/api/v1"
        # One real job so job reads have something to read.
        qasm = ('OPENQASM 3.0; include "stdgates.inc"; qubit[2] q; bit[2] c; '
                "h q[0]; cx q[0], q[1]; c = measure q;")  # fmt: skip
        body = {"program_id": "sampler", "backend": "ibmq_qasm_simulator",
                "params": {"pubs": [[qasm, None, 100]], "version": 2}}  # fmt: skip
        job_id = http.post(f"{api}/jobs", json=body, headers=headers, timeout=60).json()["id"]
        for _ in range(600):
            state = http.get(f"{api}/jobs/{job_id}", headers=headers, timeout=10).json()["state"]
            if state["status"] == "Completed":
                break
            time.sleep(0.05)

        def get(url: str, **params: str) -> Callable[[], requests.Response]:
            return lambda: http.get(url, headers=headers, params=params, timeout=10)

        floor_url = f"http://127.0.0.1:{floor_port}/"
        brisbane = f"{api}/backends/ibm_brisbane"
        cases = {
            "floor: bare stdlib server": lambda: http.get(floor_url, timeout=10),
            "GET /jobs/{id}": get(f"{api}/jobs/{job_id}", exclude_params="true"),
            "GET /backends/{name}/status": get(f"{brisbane}/status"),
            "GET /backends": get(f"{api}/backends", include_mocks="True"),
            "GET /jobs?limit=20": get(f"{api}/jobs", limit="20", exclude_params="true"),
            "GET /backends/{name}/configuration (148 KB)": get(f"{brisbane}/configuration"),
        }
        results = {name: _measure(call, args.requests) for name, call in cases.items()}
    finally:
        for proc in (runtime, floor):
            proc.terminate()
            proc.wait(10)

    floor_p50 = results["floor: bare stdlib server"]["p50_ms"]
    for figures in results.values():
        figures["overhead_p50_ms"] = round(figures["p50_ms"] - floor_p50, 3)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{args.requests} keep-alive requests per case, sequential, one client process\n")
    print(f"{'case':46} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'over floor':>11}")
    for name, f in results.items():
        print(f"{name:46} {f['p50_ms']:8.3f} {f['p99_ms']:8.3f} {f['req_per_s']:8.1f} "
              f"{f['overhead_p50_ms']:+11.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
