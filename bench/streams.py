"""Job-update streams at scale: many concurrent WatchJob streams over a set of jobs.

Four processes on loopback: a local runtime playing IBM (its queue held, so jobs wait),
the gateway, a load generator (this script with --load) holding the streams, and this
driver. Reports:
- upstream GETs per second while the streams wait (the target: jobs / poll interval,
  whatever the number of subscribers);
- the delay from a job's completion upstream (its `ended` time) to each stream receiving
  the terminal update, p50/p99;
- the gateway's resident memory per open stream, and its CPU time.

    .venv/bin/python bench/streams.py [--streams 10000] [--jobs 100] [--poll 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime
from typing import Any

import requests
from common import start, via_proxy

TOKEN = "bench-streams-token-0123456789"
DOMAIN = "cloud.example.test"
QASM = (
    'OPENQASM 3.0; include "stdgates.inc"; qubit[2] q; bit[2] c; '
    "h q[0]; cx q[0], q[1]; c = measure q;"
)


def metadata(crn: str) -> list[tuple[str, str]]:
    return [
        ("authorization", f"Bearer {TOKEN}"),
        ("x-runtime-channel", "ibm_quantum_platform"),
        ("x-runtime-url", f"http://{DOMAIN}"),
        ("x-runtime-instance", crn),
    ]


# --- the load generator (a process of its own) --------------------------------------------
async def hold_streams(
    address: str, crn: str, job_ids: list[str], count: int, channels: int
) -> None:
    """Opens `count` streams, reports "open" on stdout, then the terminal times."""
    import grpc

    from runtime_gateway.v1 import jobs_pb2, jobs_pb2_grpc

    md = metadata(crn)
    chans = [grpc.aio.insecure_channel(address) for _ in range(channels)]
    stubs = [jobs_pb2_grpc.JobServiceStub(c) for c in chans]
    first = asyncio.Queue[None]()
    received: list[tuple[str, float]] = []

    async def stream(i: int) -> None:
        call = stubs[i % channels].WatchJob(
            jobs_pb2.WatchJobRequest(job_id=job_ids[i % len(job_ids)]), metadata=md, timeout=900
        )
        announced = False
        async for message in call:
            update = message.update
            if not announced:
                announced = True
                first.put_nowait(None)
            if update.WhichOneof("kind") == "state" and update.state.terminal:
                received.append((update.job_id, time.time()))

    # Open in batches, each waiting for its first updates: grpc.aio (1.85) loses some of
    # the streams when thousands arrive in one burst, on a bare health server too.
    tasks: list[asyncio.Task[None]] = []
    for first_of_batch in range(0, count, 500):
        batch = range(first_of_batch, min(count, first_of_batch + 500))
        tasks += [asyncio.create_task(stream(i)) for i in batch]
        for _ in batch:
            await asyncio.wait_for(first.get(), 60)
    print(json.dumps({"event": "open"}), flush=True)
    await asyncio.gather(*tasks)
    print(json.dumps({"event": "done", "received": received}), flush=True)
    for channel in chans:
        await channel.close()


# --- the driver -------------------------------------------------------------------------
def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--poll", type=float, default=1.0, help="the gateway's watch poll interval")
    parser.add_argument(
        "--channels", type=int, default=10, help="HTTP/2 connections of the load generator"
    )
    parser.add_argument("--steady-seconds", type=float, default=15.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--load", nargs=4, metavar=("ADDRESS", "CRN", "JOBS", "COUNT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.load:
        address, crn, jobs, count = args.load
        asyncio.run(hold_streams(address, crn, jobs.split(","), int(count), args.channels))
        return 0

    runtime, info = start(
        ["local-runtime", "--listen", "127.0.0.1:0", "--token", TOKEN, "--workers", "2"]
    )
    base = info["url"]
    crn = info["instances"]["crns"][0]
    admin = {"X-Local-Admin-Token": TOKEN}
    _, env = via_proxy(base, DOMAIN)
    gateway, ready = start(
        [
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--no-local-runtime",
            "--watch-poll-seconds",
            str(args.poll),
            "--watch-max-poll-seconds",
            str(args.poll),
            "--watch-account-rps",
            str(max(50.0, 2 * args.jobs / args.poll)),
        ],
        env,
    )
    load: subprocess.Popen[str] | None = None
    try:
        import grpc

        from runtime_gateway.v1 import jobs_pb2, jobs_pb2_grpc

        requests.post(f"{base}/_local/queue/pause", headers=admin, timeout=10).raise_for_status()
        channel = grpc.insecure_channel(ready["address"])
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        inputs = json.dumps({"pubs": [[QASM, None, 10]], "version": 2})
        job_ids = [
            stub.RunJob(
                jobs_pb2.RunJobRequest(
                    program_id="sampler", backend="ibmq_qasm_simulator", inputs_json=inputs
                ),
                metadata=metadata(crn),
                timeout=60,
            ).job.id
            for _ in range(args.jobs)
        ]
        rss_before = _rss_kb(gateway.pid)
        cpu_before = _cpu_seconds(gateway.pid)
        opened = time.monotonic()
        load = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--channels",
                str(args.channels),
                "--load",
                ready["address"],
                crn,
                ",".join(job_ids),
                str(args.streams),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert load.stdout is not None
        assert json.loads(load.stdout.readline())["event"] == "open"
        open_seconds = time.monotonic() - opened
        time.sleep(2)  # settle
        rss_open = _rss_kb(gateway.pid)
        requests.delete(f"{base}/_local/requests", headers=admin, timeout=10)
        cpu_steady_start = _cpu_seconds(gateway.pid)
        time.sleep(args.steady_seconds)
        cpu_steady = _cpu_seconds(gateway.pid) - cpu_steady_start
        log = requests.get(f"{base}/_local/requests", headers=admin, timeout=30).json()["requests"]
        gets = [e for e in log if e["method"] == "GET" and "/jobs/" in e["path"]]
        gets_per_second = len(gets) / args.steady_seconds

        cpu_burst_start = _cpu_seconds(gateway.pid)
        requests.post(f"{base}/_local/queue/resume", headers=admin, timeout=10).raise_for_status()
        done = json.loads(load.stdout.readline())
        cpu_burst = _cpu_seconds(gateway.pid) - cpu_burst_start
        ended: dict[str, float] = {}
        for job_id in job_ids:
            job = stub.GetJob(
                jobs_pb2.GetJobRequest(job_id=job_id), metadata=metadata(crn), timeout=30
            ).job
            raw = json.loads(job.raw_json)
            ended[job_id] = datetime.fromisoformat(raw["ended"].replace("Z", "+00:00")).timestamp()
        delays = sorted((at - ended[job_id]) * 1000 for job_id, at in done["received"])
        results: dict[str, Any] = {
            "streams": args.streams,
            "jobs": args.jobs,
            "poll_interval_s": args.poll,
            "seconds_to_open_all_streams": round(open_seconds, 1),
            "terminal_updates_received": len(delays),
            "upstream_job_gets_per_s_while_waiting": round(gets_per_second, 1),
            "target_gets_per_s (jobs / poll interval)": round(args.jobs / args.poll, 1),
            "delivery_delay_ms_p50": round(statistics.median(delays), 1) if delays else None,
            "delivery_delay_ms_p99": round(delays[int(len(delays) * 0.99) - 1], 1)
            if delays
            else None,
            "gateway_rss_mb_before": round(rss_before / 1024, 1),
            "gateway_rss_mb_with_streams": round(rss_open / 1024, 1),
            "gateway_rss_kb_per_stream": round((rss_open - rss_before) / args.streams, 1),
            "gateway_cpu_s_opening_streams": round(cpu_steady_start - cpu_before, 2),
            "gateway_cpu_percent_while_waiting": round(100 * cpu_steady / args.steady_seconds, 1),
            "gateway_cpu_s_delivering_terminals": round(cpu_burst, 2),
        }
        channel.close()
    finally:
        for proc in (load, gateway, runtime):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(30)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for key, value in results.items():
            print(f"{key:45} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
