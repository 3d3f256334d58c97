"""The gateway path against calling the same local runtime directly over HTTP, in one run.

Four processes on loopback: a local runtime playing IBM, two gateways (caches on, caches
off) reaching it as they reach IBM (the host names the SDK derives, via HTTP_PROXY), and
this client. "Direct" calls go the same way (proxy-form, keep-alive `requests`), as the
SDK's do.

    .venv/bin/python bench/gateway_vs_direct.py [--requests 1000] [--concurrency 64] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import requests
from common import figures, iam_jwt, start

from runtime_gateway.v1 import backends_pb2, backends_pb2_grpc, jobs_pb2, jobs_pb2_grpc

TOKEN = "bench-token-0123456789"
DOMAIN = "cloud.example.test"
QASM = (
    'OPENQASM 3.0; include "stdgates.inc"; qubit[2] q; bit[2] c; '
    "h q[0]; cx q[0], q[1]; c = measure q;"
)


def _sequential(call: Callable[[], Any], count: int) -> dict[str, float]:
    for _ in range(min(50, count)):  # warm up: connections, tokens, caches
        call()
    samples = []
    started = time.perf_counter()
    for _ in range(count):
        t0 = time.perf_counter()
        call()
        samples.append((time.perf_counter() - t0) * 1000)
    return figures(samples, time.perf_counter() - started)


Rpc = Callable[[backends_pb2_grpc.BackendServiceStub], Awaitable[Any]]


async def _concurrent(address: str, rpc: Rpc, total: int, concurrency: int) -> dict[str, float]:
    """`concurrency` callers on one aio channel share `total` calls (bounded)."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = backends_pb2_grpc.BackendServiceStub(channel)
        for _ in range(20):
            await rpc(stub)
        samples: list[float] = []
        remaining = total

        async def caller() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                t0 = time.perf_counter()
                await rpc(stub)
                samples.append((time.perf_counter() - t0) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        return figures(samples, time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=1000, help="calls per sequential case")
    parser.add_argument("--concurrency", type=int, default=64, help="callers in the load cases")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()

    runtime, info = start(["local-runtime", "--listen", "127.0.0.1:0", "--token", TOKEN])
    proxy = f"http://127.0.0.1:{info['url'].rsplit(':', 1)[1]}"
    env = {
        "HTTP_PROXY": proxy,
        "http_proxy": proxy,
        "NO_PROXY": "localhost",
        "IAM_URL": f"http://iam.{DOMAIN}",
    }
    serve = ["serve", "--listen", "127.0.0.1:0", "--no-local-runtime"]
    gateway, ready = start(serve, env)
    uncached, ready_uncached = start([*serve, "--backend-cache-seconds", "0"], env)
    results: dict[str, dict[str, float]] = {}
    try:
        crn = info["instances"]["crns"][0]
        md = [
            ("authorization", f"Bearer {TOKEN}"),
            ("x-runtime-channel", "ibm_quantum_platform"),
            ("x-runtime-url", f"http://{DOMAIN}"),
            ("x-runtime-instance", crn),
        ]
        channel = grpc.insecure_channel(ready["address"])
        jobs = jobs_pb2_grpc.JobServiceStub(channel)
        backends = backends_pb2_grpc.BackendServiceStub(channel)
        cold = backends_pb2_grpc.BackendServiceStub(
            grpc.insecure_channel(ready_uncached["address"])
        )
        inputs = json.dumps({"pubs": [[QASM, None, 100]], "version": 2})
        run = jobs_pb2.RunJobRequest(
            program_id="sampler", backend="ibmq_qasm_simulator", inputs_json=inputs
        )
        job = jobs.RunJob(run, metadata=md, timeout=60).job
        for _ in range(20):  # some history for ListJobs
            jobs.RunJob(run, metadata=md, timeout=60)

        http = requests.Session()
        http.proxies = {"http": proxy}
        jwt = iam_jwt(http, f"http://iam.{DOMAIN}", TOKEN)
        headers = {
            "Authorization": f"Bearer {jwt}",
            "Service-CRN": crn,
            "IBM-API-Version": "2026-04-15",
        }
        api = f"http://quantum.{DOMAIN}/api/v1"

        def get(path: str, **params: str) -> Any:
            reply = http.get(f"{api}{path}", headers=headers, params=params, timeout=30)
            reply.raise_for_status()
            return reply

        def direct_backends() -> None:  # what a client needs for ListBackends' answer
            devices = get("/backends", include_mocks="True").json()["devices"]
            for name in (d["name"] for d in devices):
                get(f"/backends/{name}/configuration")
                get(f"/backends/{name}/status")

        def direct_backend() -> None:  # GetBackend's answer
            get("/backends/ibm_brisbane/configuration")
            get("/backends/ibm_brisbane/status")

        list_backends = backends_pb2.ListBackendsRequest()
        get_backend = backends_pb2.GetBackendRequest(name="ibm_brisbane")
        cases: dict[str, tuple[Callable[[], Any], int]] = {
            "GetJob: direct HTTP": (lambda: get(f"/jobs/{job.id}", exclude_params="true"), 1),
            "GetJob: gateway": (
                lambda: jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job.id), metadata=md, timeout=30),
                1,
            ),
            "ListJobs(20): direct HTTP": (
                lambda: get("/jobs", limit="20", exclude_params="true"),
                1,
            ),
            "ListJobs(20): gateway": (
                lambda: jobs.ListJobs(
                    jobs_pb2.ListJobsRequest(page_size=20), metadata=md, timeout=30
                ),
                1,
            ),
            "ListBackends: direct HTTP (list + configs + statuses)": (direct_backends, 10),
            "ListBackends: gateway, cache off (cold)": (
                lambda: cold.ListBackends(list_backends, metadata=md, timeout=30),
                10,
            ),
            "ListBackends: gateway, cached (warm)": (
                lambda: backends.ListBackends(list_backends, metadata=md, timeout=30),
                1,
            ),
            "GetBackend: direct HTTP (config + status)": (direct_backend, 1),
            "GetBackend: gateway, cached (warm)": (
                lambda: backends.GetBackend(get_backend, metadata=md, timeout=30),
                1,
            ),
        }
        for name, (call, divisor) in cases.items():
            results[name] = _sequential(call, max(50, args.requests // divisor))
        total = max(args.concurrency * 20, args.requests * 3)
        load: dict[str, Rpc] = {
            "ListBackends": lambda s: s.ListBackends(list_backends, metadata=md, timeout=30),
            "GetBackend": lambda s: s.GetBackend(get_backend, metadata=md, timeout=30),
        }
        for name, rpc in load.items():
            results[f"{name}: gateway, cached, {args.concurrency} concurrent"] = asyncio.run(
                _concurrent(ready["address"], rpc, total, args.concurrency)
            )
    finally:
        for proc in (gateway, uncached, runtime):
            proc.terminate()
            proc.wait(15)

    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(
        f"loopback, one client process; sequential cases {args.requests} calls "
        f"(cold cases a tenth), load cases {args.concurrency} concurrent callers\n"
    )
    print(f"{'case':58} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>9}")
    for name, f in results.items():
        print(f"{name:58} {f['p50_ms']:8.3f} {f['p99_ms']:8.3f} {f['req_per_s']:9.1f}")
    added = results["GetJob: gateway"]["p50_ms"] - results["GetJob: direct HTTP"]["p50_ms"]
    list_ratio = (
        results["ListBackends: direct HTTP (list + configs + statuses)"]["p50_ms"]
        / results["ListBackends: gateway, cached (warm)"]["p50_ms"]
    )
    get_ratio = (
        results["GetBackend: direct HTTP (config + status)"]["p50_ms"]
        / results["GetBackend: gateway, cached (warm)"]["p50_ms"]
    )
    print(f"\nGetJob through the gateway adds {added:+.3f} ms p50 to the direct call")
    print(
        f"cached ListBackends is {list_ratio:.1f}x faster than the direct calls; "
        f"GetBackend {get_ratio:.1f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
