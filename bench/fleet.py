"""A fleet behind a load balancer: three gateway replicas behind HAProxy
(deploy/haproxy/haproxy.cfg), many WatchJob streams over a set of jobs, run twice: replicas
sharing one Redis, then the same replicas without Redis (three independent gateways).

Processes on loopback: one local runtime (the replicas' shared default upstream, its queue
held so the jobs wait), one redis-server, three `serve` replicas, HAProxy, two load
generators (this script with --load) holding the streams through HAProxy, and this driver.
Reports, per run:
- upstream GETs of the jobs per second while the streams wait, counted at the local runtime
  (`/_local/request-counts`); the target is jobs / poll interval, what one gateway alone does,
  whatever the number of replicas and subscribers;
- delivery delay, p50/p99: from the moment the local runtime recorded a job as ended (its
  `ended` time) to a stream receiving the terminal update, over every stream. It includes
  waiting for the next poll (up to one interval), the fan-out to the other replicas through
  Redis, HAProxy and the load generator's own scheduling; the clocks are the same machine's;
- terminal updates received (one per stream expected), and streams that saw one twice.

    .venv/bin/python bench/fleet.py [--streams 10000] [--jobs 100] [--poll 1.0] [--quick]

Needs `redis-server` and `haproxy` (Debian; `make system-deps`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.redis_server import RedisServer, free_port  # noqa: E402

TOKEN = "bench-fleet-token-0123456789"
HAPROXY_CFG = ROOT / "deploy" / "haproxy" / "haproxy.cfg"
QASM = (
    'OPENQASM 3.0; include "stdgates.inc"; qubit[2] q; bit[2] c; '
    "h q[0]; cx q[0], q[1]; c = measure q;"
)
BATCH = 500  # streams opened at once, each batch waiting for its first updates


# --- the load generator (a process of its own) --------------------------------------------
async def hold_streams(address: str, job_ids: list[str], first: int, count: int) -> None:
    """Opens streams first..first+count-1 (stream i watches job i % len), reports "open" on
    stdout, then every terminal update's job and receive time, once all streams ended."""
    import grpc

    from runtime_gateway.v1 import jobs_pb2, jobs_pb2_grpc

    # HAProxy takes at most 1000 streams per client connection (tune.h2.max-concurrent-streams),
    # and grpc channels to one address share their connection unless told otherwise.
    own_connection = [("grpc.use_local_subchannel_pool", 1)]
    channels = [
        grpc.aio.insecure_channel(address, options=own_connection)
        for _ in range(max(1, count // BATCH + 1))
    ]
    stubs = [jobs_pb2_grpc.JobServiceStub(c) for c in channels]
    opened = asyncio.Queue[None]()
    received: list[tuple[str, float]] = []
    failed: list[str] = []
    terminals: list[int] = []  # per stream: how many terminal updates it got

    async def stream(i: int) -> None:
        call = stubs[(i - first) // BATCH].WatchJob(
            jobs_pb2.WatchJobRequest(job_id=job_ids[i % len(job_ids)]), timeout=900
        )
        announced = False
        seen = 0
        try:
            async for message in call:
                update = message.update
                if not announced:
                    announced = True
                    opened.put_nowait(None)
                if update.WhichOneof("kind") == "state" and update.state.terminal:
                    seen += 1
                    if seen == 1:
                        received.append((update.job_id, time.time()))
        except grpc.aio.AioRpcError as error:
            failed.append(error.code().name)
            if not announced:
                opened.put_nowait(None)
        terminals.append(seen)

    tasks: list[asyncio.Task[None]] = []
    for start_of_batch in range(first, first + count, BATCH):
        batch = range(start_of_batch, min(first + count, start_of_batch + BATCH))
        tasks += [asyncio.create_task(stream(i)) for i in batch]
        for _ in batch:
            await asyncio.wait_for(opened.get(), 120)
    print(json.dumps({"event": "open"}), flush=True)
    await asyncio.gather(*tasks)
    print(
        json.dumps(
            {
                "event": "done",
                "received": received,
                "failed": failed,
                "missing": terminals.count(0),
                "repeated": sum(1 for n in terminals if n > 1),
            }
        ),
        flush=True,
    )
    for channel in channels:
        await channel.close()


# --- the driver -------------------------------------------------------------------------
def _start(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "runtime_gateway_server", *args, "--log-level", "WARNING"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _ready(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"{proc.args} exited with {proc.wait()} before it was ready")
    ready: dict[str, Any] = json.loads(line)
    return ready


class Fleet:
    """Three replicas (started together) and HAProxy in front of them."""

    def __init__(
        self, runtime: dict[str, Any], redis_url: str | None, poll: float, tmp: Path
    ) -> None:
        self.ports = [(free_port(), free_port()) for _ in range(3)]
        env = {"RUNTIME_GATEWAY_LOCAL_RUNTIME_TOKEN": runtime["token"]}
        if redis_url:
            env["RUNTIME_GATEWAY_REDIS_URL"] = redis_url
        common = [
            "--local-runtime-url",
            runtime["url"],
            "--watch-poll-seconds",
            str(poll),
            "--watch-max-poll-seconds",
            str(poll),
            "--watch-account-rps",
            "10000",
        ]
        self.replicas = [
            _start(
                [
                    "serve",
                    "--listen",
                    f"127.0.0.1:{port}",
                    "--metrics-listen",
                    f"127.0.0.1:{metrics}",
                    *common,
                ],
                env,
            )
            for port, metrics in self.ports
        ]
        for replica in self.replicas:
            _ready(replica)
        self.port = free_port()
        self.tmp = tmp
        hap_env = {
            **os.environ,
            "RG_LISTEN": f"127.0.0.1:{self.port}",
            "RG_ADMIN_SOCKET": str(tmp / "haproxy.sock"),
            "RG_PIDFILE": str(tmp / "haproxy.pid"),
            "RG_CHECK_INTER": "500ms",
        }
        for index, (port, metrics) in enumerate(self.ports, 1):
            hap_env[f"RG_REPLICA_{index}"] = f"127.0.0.1:{port}"
            hap_env[f"RG_HEALTH_PORT_{index}"] = str(metrics)
        binary = shutil.which("haproxy")
        if binary is None:
            raise RuntimeError("haproxy is not installed (make system-deps)")
        self.haproxy = subprocess.Popen(
            [binary, "-db", "-f", str(HAPROXY_CFG)],
            env=hap_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_all_up()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _wait_all_up(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.socket(socket.AF_UNIX) as sock:
                    sock.connect(str(self.tmp / "haproxy.sock"))
                    sock.sendall(b"show stat\n")
                    text = b"".join(iter(lambda: sock.recv(65536), b"")).decode()
                up = [
                    line
                    for line in text.splitlines()
                    if line.startswith("runtime_gateways,gw") and ",UP," in line
                ]
                if len(up) == 3:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("HAProxy did not see the three replicas UP")

    def stop(self) -> None:
        self.haproxy.terminate()
        for proc in self.replicas:
            proc.send_signal(signal.SIGTERM)
        for proc in [self.haproxy, *self.replicas]:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def run(
    mode: str, args: argparse.Namespace, runtime: dict[str, Any], redis_url: str | None, tmp: Path
) -> dict[str, Any]:
    """One measurement: `mode` is a label; `redis_url` None runs three independent replicas."""
    import grpc

    from runtime_gateway.v1 import jobs_pb2, jobs_pb2_grpc

    base, admin = runtime["url"], {"X-Local-Admin-Token": TOKEN}
    requests.post(f"{base}/_local/queue/pause", headers=admin, timeout=10).raise_for_status()
    tmp = tmp / ("fleet-redis" if redis_url else "fleet-alone")
    tmp.mkdir()
    fleet = Fleet(runtime, redis_url, args.poll, tmp)
    loads: list[subprocess.Popen[str]] = []
    try:
        channel = grpc.insecure_channel(fleet.address)
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        inputs = json.dumps({"pubs": [[QASM, None, 10]], "version": 2})
        job_ids = [
            stub.RunJob(
                jobs_pb2.RunJobRequest(
                    program_id="sampler", backend="ibmq_qasm_simulator", inputs_json=inputs
                ),
                timeout=60,
            ).job.id
            for _ in range(args.jobs)
        ]
        opened = time.monotonic()
        share = -(-args.streams // args.load_processes)
        for first in range(0, args.streams, share):
            loads.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        __file__,
                        "--load",
                        fleet.address,
                        ",".join(job_ids),
                        str(first),
                        str(min(share, args.streams - first)),
                    ],
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        for load in loads:
            assert load.stdout is not None
            assert json.loads(load.stdout.readline())["event"] == "open"
        open_seconds = time.monotonic() - opened
        time.sleep(2)  # settle: every watcher polls at its interval
        requests.delete(f"{base}/_local/request-counts", headers=admin, timeout=10)
        time.sleep(args.steady_seconds)
        counts = requests.get(f"{base}/_local/request-counts", headers=admin, timeout=30)
        wanted = set(job_ids)
        pattern = re.compile(r"^GET (?:/api/v1)?/jobs/([^/]+)$")
        gets = 0
        for key, count in counts.json()["counts"].items():
            found = pattern.match(key)
            if found and found.group(1) in wanted:
                gets += count
        requests.post(f"{base}/_local/queue/resume", headers=admin, timeout=10).raise_for_status()
        received: list[tuple[str, float]] = []
        failed: list[str] = []
        missing = repeated = 0
        for load in loads:
            assert load.stdout is not None
            done = json.loads(load.stdout.readline())
            received += [(job_id, at) for job_id, at in done["received"]]
            failed += done["failed"]
            missing += done["missing"]
            repeated += done["repeated"]
        ended: dict[str, float] = {}
        for job_id in job_ids:
            raw = json.loads(
                stub.GetJob(jobs_pb2.GetJobRequest(job_id=job_id), timeout=30).job.raw_json
            )
            ended[job_id] = datetime.fromisoformat(raw["ended"].replace("Z", "+00:00")).timestamp()
        channel.close()
    finally:
        for load in loads:
            if load.poll() is None:
                load.terminate()
                load.wait(30)
        fleet.stop()
    delays = sorted((at - ended[job_id]) * 1000 for job_id, at in received)
    return {
        "mode": mode,
        "streams": args.streams,
        "jobs": args.jobs,
        "poll_s": args.poll,
        "open_s": round(open_seconds, 1),
        "gets_per_s": round(gets / args.steady_seconds, 1),
        "target_gets_per_s": round(args.jobs / args.poll, 1),
        "delay_p50_ms": round(statistics.median(delays), 1) if delays else None,
        "delay_p99_ms": round(delays[max(0, int(len(delays) * 0.99) - 1)], 1) if delays else None,
        "terminal_received": len(received),
        "no_terminal": missing,
        "terminal_twice": repeated,
        "streams_failed": len(failed),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--poll", type=float, default=1.0, help="the replicas' watch poll interval")
    parser.add_argument("--steady-seconds", type=float, default=15.0)
    parser.add_argument("--load-processes", type=int, default=2)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 300 streams over 10 jobs, 3 s of counting",
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--load", nargs=4, metavar=("ADDRESS", "JOBS", "FIRST", "COUNT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.load:
        address, jobs, first, count = args.load
        asyncio.run(hold_streams(address, jobs.split(","), int(first), int(count)))
        return 0
    if args.quick:
        args.streams, args.jobs, args.steady_seconds = 300, 10, 3.0

    tmp = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    redis_server = RedisServer(tmp / "redis").start()
    runtime_proc = _start(
        ["local-runtime", "--listen", "127.0.0.1:0", "--token", TOKEN, "--workers", "2"]
    )
    try:
        runtime = _ready(runtime_proc)
        rows = [
            run("redis (shared)", args, runtime, redis_server.url, tmp),
            run("no redis (3 independent)", args, runtime, None, tmp),
        ]
    finally:
        runtime_proc.terminate()
        runtime_proc.wait(30)
        redis_server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    columns = list(rows[0])
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in rows:
        print("  ".join(str(row[c]).ljust(w) for c, w in zip(columns, widths, strict=True)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
