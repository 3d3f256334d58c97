"""The gateway path against calling the same local runtime directly over HTTP, in one run.

Processes on loopback: a local runtime playing IBM; three gateways reaching it as they
reach IBM (the host names the SDK derives, via HTTP_PROXY): caches on, caches off, and
caches on with one worker per core (`--workers`); a bare grpc.aio server (the gRPC floor);
and this client. "Direct" calls go the same way (proxy-form, keep-alive `requests`), as
the SDK's do.

- Sequential cases interleave the calls they compare (direct, gateway, and a health Check
  on the same gateway: the gRPC hop alone), so a busy moment of the machine hits all alike.
- Load cases run two load generators: this process (grpc.aio, callers spread over 8
  channels) and, when installed, h2load (nghttp2's C client, Debian package
  nghttp2-client), which leaves more of the two cores to the server. Each is also run
  against the bare gRPC server, so the floor is measured in the same run.

    .venv/bin/python bench/gateway_vs_direct.py [--requests 1000] [--concurrency 64]
        [--workers N] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import requests
from common import cpu_seconds, figures, h2load, iam_jwt, start, via_proxy
from grpc_health.v1 import health_pb2, health_pb2_grpc

from runtime_gateway.v1 import backends_pb2, backends_pb2_grpc, jobs_pb2, jobs_pb2_grpc

TOKEN = "bench-token-0123456789"
DOMAIN = "cloud.example.test"
QASM = (
    'OPENQASM 3.0; include "stdgates.inc"; qubit[2] q; bit[2] c; '
    "h q[0]; cx q[0], q[1]; c = measure q;"
)


def _interleaved(calls: dict[str, Callable[[], Any]], count: int) -> dict[str, dict[str, float]]:
    """Each round calls every case once, so they share the machine's moments."""
    for _ in range(min(50, count)):
        for call in calls.values():
            call()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    spent = dict.fromkeys(calls, 0.0)
    for _ in range(count):
        for name, call in calls.items():
            t0 = time.perf_counter()
            call()
            took = time.perf_counter() - t0
            samples[name].append(took * 1000)
            spent[name] += took
    return {name: figures(samples[name], spent[name]) for name in calls}


Rpc = Callable[[grpc.aio.Channel], Awaitable[Any]]
CHANNELS = 8  # connections the load is spread over (workers share connections, not calls)


async def _concurrent(address: str, rpc: Rpc, total: int, concurrency: int) -> dict[str, float]:
    """`concurrency` callers over CHANNELS aio channels share `total` calls (bounded)."""
    channels = [grpc.aio.insecure_channel(address) for _ in range(CHANNELS)]
    try:
        for channel in channels:
            for _ in range(5):
                await rpc(channel)
        samples: list[float] = []
        remaining = total

        async def caller(channel: grpc.aio.Channel) -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                t0 = time.perf_counter()
                await rpc(channel)
                samples.append((time.perf_counter() - t0) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(caller(channels[i % CHANNELS]) for i in range(concurrency)))
        return figures(samples, time.perf_counter() - started)
    finally:
        for channel in channels:
            await channel.close()


def _floor_server() -> tuple[subprocess.Popen[str], str]:
    here = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.Popen(
        [sys.executable, os.path.join(here, "grpc_floor_server.py")],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, f"127.0.0.1:{int(proc.stdout.readline())}"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=1000, help="calls per sequential case")
    parser.add_argument("--concurrency", type=int, default=64, help="callers in the load cases")
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 2,
        help="workers of the multi-process gateway (default: one per core)",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of the load cases (the median is shown)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()

    runtime, info = start(["local-runtime", "--listen", "127.0.0.1:0", "--token", TOKEN])
    proxy, env = via_proxy(info["url"], DOMAIN)
    serve = ["serve", "--listen", "127.0.0.1:0", "--no-local-runtime"]
    gateway, ready = start(serve, env)
    uncached, ready_uncached = start([*serve, "--backend-cache-seconds", "0"], env)
    multi, ready_multi = start([*serve, "--workers", str(args.workers)], env)
    floor, floor_address = _floor_server()
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
        health = health_pb2_grpc.HealthStub(channel)
        check = health_pb2.HealthCheckRequest()
        n = args.requests
        results.update(
            _interleaved(
                {
                    "GetJob: direct HTTP": lambda: get(f"/jobs/{job.id}", exclude_params="true"),
                    "GetJob: gateway": lambda: jobs.GetJob(
                        jobs_pb2.GetJobRequest(job_id=job.id), metadata=md, timeout=30
                    ),
                    "gRPC hop alone: health Check, same gateway": lambda: health.Check(
                        check, timeout=30
                    ),
                },
                n,
            )
        )
        results.update(
            _interleaved(
                {
                    "ListJobs(20): direct HTTP": lambda: get(
                        "/jobs", limit="20", exclude_params="true"
                    ),
                    "ListJobs(20): gateway": lambda: jobs.ListJobs(
                        jobs_pb2.ListJobsRequest(page_size=20), metadata=md, timeout=30
                    ),
                },
                n,
            )
        )
        results.update(
            _interleaved(
                {
                    "ListBackends: direct HTTP (list + configs + statuses)": direct_backends,
                    "ListBackends: gateway, cache off (cold)": lambda: cold.ListBackends(
                        list_backends, metadata=md, timeout=30
                    ),
                },
                max(50, n // 10),
            )
        )
        results.update(
            _interleaved(
                {
                    "ListBackends: gateway, cached (warm)": lambda: backends.ListBackends(
                        list_backends, metadata=md, timeout=30
                    ),
                    "GetBackend: direct HTTP (config + status)": direct_backend,
                    "GetBackend: gateway, cached (warm)": lambda: backends.GetBackend(
                        get_backend, metadata=md, timeout=30
                    ),
                },
                n,
            )
        )

        total = max(args.concurrency * 20, n * 3)
        c = args.concurrency
        workers = f"{args.workers} workers"
        list_size = backends.ListBackends(list_backends, metadata=md).ByteSize()
        get_size = backends.GetBackend(get_backend, metadata=md).ByteSize()
        check_size = health.Check(check).ByteSize()
        one, many = [gateway.pid], list(ready_multi["pids"])
        targets: list[tuple[str, str, list[int], str, Any, int, list[tuple[str, str]]]] = [
            ("health Check: bare grpc.aio server (floor)", floor_address, [floor.pid],
             "/grpc.health.v1.Health/Check", check, check_size, []),
            ("ListBackends: gateway, cached", ready["address"], one,
             "/runtime_gateway.v1.BackendService/ListBackends", list_backends, list_size, md),
            ("GetBackend: gateway, cached", ready["address"], one,
             "/runtime_gateway.v1.BackendService/GetBackend", get_backend, get_size, md),
            (f"ListBackends: gateway, cached, {workers}", ready_multi["address"], many,
             "/runtime_gateway.v1.BackendService/ListBackends", list_backends, list_size, md),
            (f"GetBackend: gateway, cached, {workers}", ready_multi["address"], many,
             "/runtime_gateway.v1.BackendService/GetBackend", get_backend, get_size, md),
        ]  # fmt: skip
        # Rounds over all targets, so that each target sees the machine's slow and fast
        # moments alike; the median round is reported.
        runs: dict[str, list[dict[str, float]]] = {}
        for _ in range(args.rounds):
            for name, address, pids, method, request, size, call_md in targets:
                reply_type = type(health.Check(check)) if not call_md else None
                rpc = _rpc(method, request, call_md, reply_type)
                asyncio.run(_concurrent(address, rpc, CHANNELS * 10, c))  # warm every worker
                spent = cpu_seconds(pids)
                measured = asyncio.run(_concurrent(address, rpc, total, c))
                measured["server_cpu_us"] = (cpu_seconds(pids) - spent) / total * 1e6
                runs.setdefault(f"{name}, {c} concurrent (Python client)", []).append(measured)
                streams = max(1, c // CHANNELS)
                url = f"http://{address}{method}"
                warmup = CHANNELS * streams * 4
                warm = h2load(url, request, size, call_md, warmup, CHANNELS, streams)
                if warm is None:
                    continue  # h2load is not installed: reported below
                spent = cpu_seconds(pids)
                loaded = h2load(url, request, size, call_md, total * 3, CHANNELS, streams)
                assert loaded is not None
                loaded["server_cpu_us"] = (cpu_seconds(pids) - spent) / (total * 3) * 1e6
                runs.setdefault(f"{name}, {c} concurrent (h2load)", []).append(
                    {"p50_ms": float("nan"), "p99_ms": float("nan"), **loaded}
                )
        for name, found in runs.items():
            results[name] = sorted(found, key=lambda f: f["req_per_s"])[len(found) // 2]
    finally:
        for proc in (gateway, uncached, multi, runtime, floor):
            proc.terminate()
            proc.wait(15)

    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(
        f"loopback, one client process; sequential cases {args.requests} calls, interleaved "
        f"(cold cases a tenth); load cases {args.concurrency} concurrent callers over "
        f"{CHANNELS} connections, median of {args.rounds} rounds\n"
    )
    print(f"{'case':78} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>9} {'server CPU us/call':>19}")
    for name, f in results.items():
        cells = [f"{v:8.3f}" if v == v else f"{'-':>8}" for v in (f["p50_ms"], f["p99_ms"])]
        cpu = f"{f['server_cpu_us']:19.0f}" if "server_cpu_us" in f else f"{'':19}"
        print(f"{name:78} {cells[0]} {cells[1]} {f['req_per_s']:9.1f} {cpu}")
    print()
    if not any("(h2load)" in name for name in results):
        print("h2load not found: install Debian's nghttp2-client for the C load generator cases")
    p50 = {name: f["p50_ms"] for name, f in results.items()}
    added = p50["GetJob: gateway"] - p50["GetJob: direct HTTP"]
    hop = p50["gRPC hop alone: health Check, same gateway"]
    print(
        f"GetJob through the gateway adds {added:+.3f} ms p50 to the direct call; "
        f"the gRPC hop alone costs {hop:.3f} ms, so the gateway's own work adds "
        f"{added - hop:+.3f} ms"
    )
    list_ratio = (
        p50["ListBackends: direct HTTP (list + configs + statuses)"]
        / p50["ListBackends: gateway, cached (warm)"]
    )
    get_ratio = (
        p50["GetBackend: direct HTTP (config + status)"] / p50["GetBackend: gateway, cached (warm)"]
    )
    print(
        f"cached ListBackends is {list_ratio:.1f}x faster than the direct calls; "
        f"GetBackend {get_ratio:.1f}x"
    )
    return 0


def _rpc(
    method: str, request: Any, md: list[tuple[str, str]], reply_type: Any | None = None
) -> Rpc:
    """An aio unary call by method path (replies are parsed, as a real client would)."""
    if reply_type is None:
        reply_type = {
            "ListBackends": backends_pb2.ListBackendsResponse,
            "GetBackend": backends_pb2.GetBackendResponse,
        }[method.rsplit("/", 1)[1]]

    async def call(channel: grpc.aio.Channel) -> Any:
        stub = channel.unary_unary(
            method,
            request_serializer=type(request).SerializeToString,
            response_deserializer=reply_type.FromString,
        )
        return await stub(request, metadata=md or None, timeout=30)

    return call


if __name__ == "__main__":
    raise SystemExit(main())
