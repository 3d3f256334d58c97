"""The gateway's embedded local runtime, as a child process of the gateway.

`serve` used to run the local runtime in its own process: a heavy simulation, or the
decoding of large inputs, then held the gateway's GIL for minutes (health checks unanswered,
SIGTERM ignored). Now the gateway starts `runtime-gateway local-runtime` as a child:
- on loopback, with a random token passed in the environment (not on the command line, which
  other users may read in /proc); the child prints its ready line (URL, token, instances) to
  a pipe only the gateway reads;
- it never outlives the gateway: the child asks Linux for SIGTERM when the gateway's main
  thread ends (PR_SET_PDEATHSIG) and also stops when its parent pid changes; the gateway
  terminates it on shutdown, and kills it if it does not stop in STOP_SECONDS. The child's
  own simulation workers die with it.
"""

from __future__ import annotations

import json
import os
import secrets
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from runtime_gateway_server.subprocesses import python_module

READY_TIMEOUT = 120.0  # start-up reads the device snapshots; slow on a loaded machine
STOP_SECONDS = 5.0


@dataclass
class EmbeddedLocalRuntime:
    """A running `runtime-gateway local-runtime` child and what the gateway needs of it."""

    popen: subprocess.Popen[str]
    base_url: str
    token: str
    crn: str

    @property
    def pid(self) -> int:
        return self.popen.pid

    @classmethod
    def start(
        cls,
        listen: str,
        *,
        data_dir: str | None,
        workers: int,
        job_memory_mb: int,
        log_format: str,
        log_level: str,
    ) -> EmbeddedLocalRuntime:
        """Starts the child and waits for its ready line; OSError if it cannot start.

        Call from the gateway's main thread: the child's parent-death signal is tied to it.
        """
        token = f"local-{secrets.token_urlsafe(24)}"
        argv = [
            *python_module("runtime_gateway_server"), "local-runtime",
            "--listen", listen, "--workers", str(workers),
            "--job-memory-mb", str(job_memory_mb), "--parent-pid", str(os.getpid()),
            "--log-format", log_format, "--log-level", log_level,
        ]  # fmt: skip
        if data_dir:
            argv += ["--data-dir", data_dir]
        env = {**os.environ, "RUNTIME_GATEWAY_LOCAL_TOKEN": token}
        popen = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True, env=env
        )
        info = _await_ready(popen)
        return cls(popen, str(info["url"]), token, str(info["instances"]["crns"][0]))

    def stop(self) -> None:
        """SIGTERM (it stops its simulations and HTTP server), then SIGKILL after STOP_SECONDS."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        if self.popen.stdout is not None:
            self.popen.stdout.close()


def _await_ready(popen: subprocess.Popen[str]) -> dict[str, Any]:
    assert popen.stdout is not None
    deadline = time.monotonic() + READY_TIMEOUT
    with selectors.DefaultSelector() as selector:
        selector.register(popen.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline and popen.poll() is None:
            if selector.select(timeout=0.2):
                line = popen.stdout.readline()
                if line:
                    info: dict[str, Any] = json.loads(line)
                    return info
    if popen.poll() is None:
        popen.kill()
    popen.wait()
    raise OSError(
        f"the embedded local runtime did not start (exit status {popen.returncode}); "
        "its error is above"
    )
