"""The cost of metrics and tracing per cached call, against the same gateway without them,
in one run.

Processes on loopback: a local runtime playing IBM; three gateways reaching it as they reach
IBM (see gateway_vs_direct.py): plain, with `--metrics-listen`, and with metrics and
OpenTelemetry tracing (OTLP over HTTP to a sink in this process, which answers 200 and keeps
nothing); and this client. The call is a cached `GetBackend` (answered on the event loop, no
upstream request): the case where the instrumentation's share is largest.

- Sequential: the gateways' calls interleave (one to each per round), so a busy moment of the
  machine hits all alike; latency p50 per gateway.
- Load: `--concurrency` grpc.aio callers per gateway, the gateways taking turns for
  `--rounds` rounds.
- Server CPU per call: user + system time of each gateway process (/proc) over all its
  calls, divided by the calls; the overhead is relative to the plain gateway.

    .venv/bin/python bench/observability.py [--requests 2000] [--concurrency 32] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from common import cpu_seconds, start, via_proxy

from runtime_gateway.v1 import backends_pb2, backends_pb2_grpc

TOKEN = "bench-token-0123456789"
DOMAIN = "cloud.example.test"


class _Sink(BaseHTTPRequestHandler):
    """An OTLP/HTTP collector that accepts and drops everything."""

    protocol_version = "HTTP/1.1"
    wbufsize = -1  # one write per answer: no delayed-ACK stall

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()
        self.wfile.flush()

    def log_message(self, *args: Any) -> None:
        pass


async def _load(address: str, md: list[tuple[str, str]], total: int, concurrency: int) -> float:
    """Calls per second of `concurrency` callers making `total` cached GetBackend calls."""
    request = backends_pb2.GetBackendRequest(name="ibmq_qasm_simulator")
    channels = [grpc.aio.insecure_channel(address) for _ in range(8)]
    left = total

    async def caller(channel: grpc.aio.Channel) -> None:
        nonlocal left
        stub = backends_pb2_grpc.BackendServiceStub(channel)
        while left > 0:
            left -= 1
            await stub.GetBackend(request, metadata=md, timeout=30)

    started = time.perf_counter()
    await asyncio.gather(*(caller(channels[i % 8]) for i in range(concurrency)))
    elapsed = time.perf_counter() - started
    for channel in channels:
        await channel.close()
    return total / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000, help="sequential calls per gateway")
    parser.add_argument("--concurrency", type=int, default=32, help="callers in the load case")
    parser.add_argument("--load-requests", type=int, default=4000, help="calls per load round")
    parser.add_argument("--rounds", type=int, default=3, help="load rounds per gateway")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()

    sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    runtime, info = start(["local-runtime", "--listen", "127.0.0.1:0", "--token", TOKEN])
    _, env = via_proxy(info["url"], DOMAIN)
    env["NO_PROXY"] = env["no_proxy"] = "localhost,127.0.0.1"  # the sink is reached directly
    serve = ["serve", "--listen", "127.0.0.1:0", "--no-local-runtime"]
    otel = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink.server_port}",
    }
    procs = {
        "plain": start(serve, env),
        "metrics": start([*serve, "--metrics-listen", "127.0.0.1:0"], env),
        "metrics+tracing": start([*serve, "--metrics-listen", "127.0.0.1:0"], {**env, **otel}),
    }
    results: dict[str, dict[str, float]] = {}
    try:
        md = [
            ("authorization", f"Bearer {TOKEN}"),
            ("x-runtime-channel", "ibm_quantum_platform"),
            ("x-runtime-url", f"http://{DOMAIN}"),
            ("x-runtime-instance", info["instances"]["crns"][0]),
        ]
        request = backends_pb2.GetBackendRequest(name="ibmq_qasm_simulator")
        stubs = {
            name: backends_pb2_grpc.BackendServiceStub(grpc.insecure_channel(ready["address"]))
            for name, (_, ready) in procs.items()
        }
        for stub in stubs.values():  # warm: token, instance, cache
            for _ in range(200):
                stub.GetBackend(request, metadata=md, timeout=30)
        pids = {name: proc.pid for name, (proc, _) in procs.items()}
        samples: dict[str, list[float]] = {name: [] for name in procs}
        cpu_before = {name: cpu_seconds([pid]) for name, pid in pids.items()}
        for _ in range(args.requests):
            for name, stub in stubs.items():
                t0 = time.perf_counter()
                stub.GetBackend(request, metadata=md, timeout=30)
                samples[name].append((time.perf_counter() - t0) * 1000)
        cpu_sequential = {n: cpu_seconds([pids[n]]) - cpu_before[n] for n in procs}

        rates: dict[str, list[float]] = {name: [] for name in procs}
        cpu_load = dict.fromkeys(procs, 0.0)
        for _ in range(args.rounds):
            for name, (_, ready) in procs.items():
                before = cpu_seconds([pids[name]])
                rate = asyncio.run(
                    _load(ready["address"], md, args.load_requests, args.concurrency)
                )
                cpu_load[name] += cpu_seconds([pids[name]]) - before
                rates[name].append(rate)
        for name in procs:
            results[name] = {
                "p50_ms": round(statistics.median(samples[name]), 3),
                "cpu_us_per_call_sequential": round(cpu_sequential[name] / args.requests * 1e6, 1),
                "req_per_s_load": round(statistics.median(rates[name]), 1),
                "cpu_us_per_call_load": round(
                    cpu_load[name] / (args.load_requests * args.rounds) * 1e6, 1
                ),
            }
        plain = results["plain"]
        for name in procs:
            for key in ("cpu_us_per_call_sequential", "cpu_us_per_call_load"):
                share = results[name][key] / plain[key] - 1 if plain[key] else 0.0
                results[name][key.replace("cpu_us_per_call", "cpu_overhead")] = round(
                    share * 100, 1
                )
    finally:
        for proc, _ in procs.values():
            proc.terminate()
        runtime.terminate()
        for proc, _ in [*procs.values(), (runtime, None)]:
            proc.wait(30)
        sink.shutdown()

    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(
        f"cached GetBackend: {args.requests} sequential calls per gateway (interleaved), "
        f"{args.rounds} x {args.load_requests} calls with {args.concurrency} callers"
    )
    header = (
        f"{'gateway':<17}{'p50 ms':>8}{'CPU us/call':>13}{'vs plain':>10}"
        f"{'load req/s':>12}{'CPU us/call':>13}{'vs plain':>10}"
    )
    print(header)
    for name, row in results.items():
        print(
            f"{name:<17}{row['p50_ms']:>8}{row['cpu_us_per_call_sequential']:>13}"
            f"{row['cpu_overhead_sequential']:>9}%{row['req_per_s_load']:>12}"
            f"{row['cpu_us_per_call_load']:>13}{row['cpu_overhead_load']:>9}%"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
