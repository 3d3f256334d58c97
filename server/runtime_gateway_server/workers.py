"""`serve --workers N`: N gateway processes sharing one port, so the gateway uses every core.

One Python process serves gRPC on one core at most (the event loop holds the GIL). The
supervisor reserves the port, starts N worker processes that bind it with SO_REUSEPORT (the
kernel spreads connections between them), prints one ready line once all serve, restarts a
worker that dies, and on SIGTERM/SIGINT drains them all.

What workers share and what they do not:
- shared (the state directory): RunJob request ids and the page-token key, so a retry or
  the next page may reach any worker; server-held account files (locked as always); the
  embedded local runtime, which the supervisor starts as its own child process.
- per worker: caches, job watchers and the per-account poll budget (the supervisor gives
  each worker its share of --watch-account-rps). A job watched through two workers is polled
  by both.
- with `--redis-url`, request ids and the page-token key live in Redis instead, shared with
  other hosts' replicas too. Flags that may carry secrets (the Redis URL and password, the
  local runtime's URL and token) reach the workers in their environment, never on their
  command line, which `ps` shows to every user (`cli.SECRET_FLAGS`).
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog

from runtime_gateway_server.subprocesses import python_module

# A worker dies with its supervisor (even a SIGKILLed one): it drains on SIGTERM.
SUPERVISOR_PID_ENV = "RUNTIME_GATEWAY_SUPERVISOR_PID"
log = structlog.get_logger("runtime_gateway_server.workers")

# A worker that dies this many times within RESTART_WINDOW seconds is not restarted again:
# the gateway stops, so that the orchestrator (systemd, Kubernetes) sees the failure.
MAX_RESTARTS = 5
RESTART_WINDOW = 60.0
READY_TIMEOUT = 120.0
LOCAL_UPSTREAM_ENV = "RUNTIME_GATEWAY_WORKER_LOCAL_UPSTREAM"


class WorkerError(OSError):
    """A worker could not start (its own error is on stderr)."""


def split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise WorkerError(f"--listen must be HOST:PORT, got {listen!r}")
    return host, int(port)


def reserve_port(listen: str) -> tuple[socket.socket, str]:
    """Binds LISTEN (port 0: a free port) and returns a bound, non-listening socket that
    holds the port for the workers, and the address they must bind.

    A first bind without SO_REUSEPORT fails if anything already uses the port: a gateway
    must not silently share a port with another program. The reservation socket then sets
    SO_REUSEPORT, which workers need too; it never listens, so it receives no connections.
    """
    host, port = split_listen(listen)
    bare = host.strip("[]")
    try:
        family, _, _, _, address = socket.getaddrinfo(bare, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as error:
        raise WorkerError(f"cannot resolve {host!r}: {error}") from error
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.bind(address)
        port = probe.getsockname()[1]
    except OSError as error:
        raise WorkerError(f"cannot listen on {listen!r}: {error.strerror or error}") from error
    finally:
        probe.close()
    holder = socket.socket(family, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind((address[0], port, *address[2:]))
    return holder, f"{host}:{port}"


@dataclass
class Supervisor:
    """Runs and watches the worker processes of one gateway."""

    command: Sequence[str]  # `serve` and the user's flags; worker flags are appended
    count: int
    address: str
    grace_seconds: float
    env: dict[str, str] = field(default_factory=dict)
    procs: list[subprocess.Popen[str] | None] = field(default_factory=list)
    _restarts: list[float] = field(default_factory=list)

    def _spawn(self, index: int) -> subprocess.Popen[str]:
        argv = [
            *python_module("runtime_gateway_server"),
            *self.command,
            "--listen",
            self.address,
            "--workers",
            "1",
            "--no-local-runtime",
            "--worker-index",
            str(index),
            "--worker-count",
            str(self.count),
        ]
        return subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, **self.env, SUPERVISOR_PID_ENV: str(os.getpid())},
        )

    def _await_ready(self, proc: subprocess.Popen[str], index: int) -> None:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], READY_TIMEOUT)
        line = proc.stdout.readline() if ready else ""
        if not line:
            proc.kill()
            proc.wait()
            raise WorkerError(
                f"worker {index} did not start (exit status {proc.returncode}); its error is above"
            )
        json.loads(line)  # the ready line; anything else means the worker is broken

    def start(self) -> None:
        try:
            for index in range(self.count):
                proc = self._spawn(index)
                self.procs.append(proc)
                self._await_ready(proc, index)
        except BaseException:
            self.stop()
            raise

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p is not None]

    def watch(self, stopped: Callable[[], bool], poll_seconds: float = 0.5) -> int:
        """Restarts workers that die until `stopped()`; 1 if they keep dying, else 0."""
        while not stopped():
            for index, proc in enumerate(self.procs):
                if proc is None or proc.poll() is None or stopped():
                    continue
                now = time.monotonic()
                self._restarts = [t for t in self._restarts if now - t < RESTART_WINDOW]
                log.error("worker_exited", worker=index, pid=proc.pid, status=proc.returncode)
                _forget_metrics(proc.pid, self.env.get("PROMETHEUS_MULTIPROC_DIR"))
                if len(self._restarts) >= MAX_RESTARTS:
                    log.error("workers_keep_failing", restarts=len(self._restarts))
                    return 1
                self._restarts.append(now)
                try:
                    replacement = self._spawn(index)
                    self.procs[index] = replacement
                    self._await_ready(replacement, index)
                except WorkerError as error:
                    self.procs[index] = None
                    log.error("worker_restart_failed", worker=index, reason=str(error))
                    return 1
                log.info("worker_restarted", worker=index, pid=replacement.pid)
            time.sleep(poll_seconds)
        return 0

    def stop(self) -> None:
        """Drains every worker (SIGTERM: each stops accepting and finishes its calls within
        the grace period), then kills any that outlive it."""
        running = [p for p in self.procs if p is not None and p.poll() is None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        limit = time.monotonic() + self.grace_seconds + 10.0
        for proc in running:
            try:
                proc.wait(max(0.1, limit - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker_killed", pid=proc.pid)
                proc.kill()
                proc.wait()


def _forget_metrics(pid: int, metrics_dir: str | None) -> None:
    """A dead worker's live gauges (open streams, watched jobs) leave the workers' sum:
    prometheus-client's multiprocess mode keeps its files until told it died."""
    if not metrics_dir:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, metrics_dir)
