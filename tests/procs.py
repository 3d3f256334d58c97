"""Starts the project's commands as real subprocesses and waits for their ready line."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "runtime_gateway_server"]


@dataclass
class Proc:
    """A running command; `ready` is the JSON line it printed once it was ready."""

    popen: subprocess.Popen[str]
    ready: dict[str, Any]
    stderr_path: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        return self.popen.returncode


def start(
    args: list[str], tmp_path: Path, env: dict[str, str] | None = None, timeout: float = 60.0
) -> Proc:
    """Runs `runtime-gateway ARGS` and returns once it printed its ready line."""
    stderr_path = tmp_path / f"stderr-{args[0]}-{time.monotonic_ns()}.log"
    full_env = {**os.environ, **(env or {})}
    with stderr_path.open("w") as stderr:
        popen = subprocess.Popen(
            [*CLI, *args],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=full_env,
            cwd=tmp_path,
        )
    assert popen.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(popen.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if popen.poll() is not None:
                break
            if selector.select(timeout=0.5):
                line = popen.stdout.readline()
                if line:
                    return Proc(popen, json.loads(line), stderr_path)
        popen.kill()
        popen.wait(5)
        raise AssertionError(
            f"{args[0]} printed no ready line (exit {popen.returncode}):\n"
            + stderr_path.read_text(errors="replace")[-4000:]
        )
    finally:
        selector.close()
