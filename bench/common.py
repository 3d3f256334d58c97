"""What the benchmarks share: starting the project's commands and summarising timings."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys


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
