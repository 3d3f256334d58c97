"""What the benchmarks share: starting the project's commands and summarising timings."""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from typing import Any


def start(args: list[str], env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], dict]:
    """Runs `runtime-gateway ARGS` (logging warnings only) and returns it with its ready line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime_gateway_server", *args, "--log-level", "WARNING"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert proc.stdout is not None
    return proc, json.loads(proc.stdout.readline())


def figures(samples_ms: list[float], elapsed_s: float) -> dict[str, float]:
    """p50, p99 and rate of a list of call durations."""
    ordered = sorted(samples_ms)
    return {
        "p50_ms": round(statistics.median(ordered), 3),
        "p99_ms": round(ordered[max(0, int(len(ordered) * 0.99) - 1)], 3),
        "req_per_s": round(len(ordered) / elapsed_s, 1),
    }


def iam_jwt(http: Any, iam_base: str, api_key: str) -> str:
    """An IAM access token for `api_key` (the API-key grant the SDK uses)."""
    reply = http.post(
        f"{iam_base}/identity/token",
        data={"grant_type": "urn:ibm:params:oauth:grant-type:apikey", "apikey": api_key},
        timeout=10,
    )
    reply.raise_for_status()
    return str(reply.json()["access_token"])


def via_proxy(
    runtime_url: str, domain: str, no_proxy: str = "localhost"
) -> tuple[str, dict[str, str]]:
    """The proxy URL and environment that make clients reach a local runtime as they reach
    IBM: the host names the SDK derives from `domain`, sent through the runtime as a proxy."""
    proxy = f"http://127.0.0.1:{runtime_url.rsplit(':', 1)[1]}"
    env = {
        "HTTP_PROXY": proxy,
        "http_proxy": proxy,
        "NO_PROXY": no_proxy,
        "no_proxy": no_proxy,
        "IAM_URL": f"http://iam.{domain}",
        # The gateway's upstream allow-list: the fake IBM domain and the runtime's origin.
        "RUNTIME_GATEWAY_ALLOW_UPSTREAM": f"*.{domain},{proxy.removeprefix('http://')}",
    }
    return proxy, env


def grpc_frame(message: Any) -> bytes:
    """A protobuf message as one gRPC length-prefixed frame (uncompressed)."""
    body = message.SerializeToString()
    return b"\0" + len(body).to_bytes(4, "big") + body


def h2load(
    url: str,
    request: Any,
    reply_bytes: int,
    metadata: list[tuple[str, str]],
    total: int,
    connections: int,
    streams: int,
) -> dict[str, float] | None:
    """Unary gRPC calls from h2load (nghttp2's C load generator; None if not installed):
    `connections` x `streams` calls in flight. Every call must return the expected reply:
    h2load counts HTTP statuses only, and a failed gRPC call is HTTP 200 with no message,
    so the data bytes received are checked against `reply_bytes` per call."""
    binary = shutil.which("h2load")
    if binary is None:
        return None
    with tempfile.NamedTemporaryFile(suffix=".bin") as body:
        body.write(grpc_frame(request))
        body.flush()
        headers = [("content-type", "application/grpc"), ("te", "trailers"), *metadata]
        argv = [binary, "-n", str(total), "-c", str(connections), "-m", str(streams)]
        argv += ["-d", body.name, *(f"-H{k}: {v}" for k, v in headers), url]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=True).stdout
    succeeded = int(re.search(r"(\d+) succeeded", out).group(1))  # type: ignore[union-attr]
    rate = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))  # type: ignore[union-attr]
    data = int(re.search(r"\(([\d]+)\) data", out).group(1))  # type: ignore[union-attr]
    expected = total * (5 + reply_bytes)
    if succeeded != total or data != expected:
        raise RuntimeError(
            f"h2load: {succeeded}/{total} calls answered, {data} data bytes "
            f"(expected {expected}): some calls failed\n{out}"
        )
    return {"req_per_s": rate}


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes have used so far (Linux /proc)."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / os.sysconf("SC_CLK_TCK")
