"""What the benchmarks share: starting the project's commands and summarising timings."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
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
