"""Runs jobs in simulation worker processes (`worker.py`), never in the local runtime's own.

Why processes: an Aer simulation of a noisy 20-qubit circuit with 100,000 shots runs for
many minutes; on a thread it holds the process's GIL in long stretches (decoding, result
encoding) and cannot be stopped. In a child process it costs the HTTP server nothing, and
killing the child stops it at once: on cancel, on delete, when the job exceeds its memory
bound, and when the runtime stops.

Why a small pool of long-lived processes, one per runner thread, rather than one process per
job: a fresh worker pays about 2 s of imports and up to several seconds to build a device's
noise model, which a warm worker keeps. A worker is replaced only when it was killed
(cancel, memory bound), when it died, or when its idle memory grew beyond one job's bound.
Workers start lazily, at their first job. They are started with fork+exec (subprocess), not
fork alone: the runtime has threads (HTTP, runners), and forking a threaded process that may
hold locks in gRPC, OpenMP or BLAS is unsafe.

The memory bound of a job (`job_memory_mb`) is enforced twice:
- Aer's own `max_memory_mb` option: Aer refuses, before running, a circuit whose state it
  estimates to need more; the job fails cleanly.
- a watchdog here, the safety net: it samples the worker's resident memory (RSS, from
  /proc) every POLL_SECONDS, and kills the worker when the job has grown it by more than
  the bound (whatever allocated it: decoding, sampling memory, results).
RLIMIT_AS is not used: Python, OpenMP and BLAS reserve far more virtual memory than they use.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import structlog

from runtime_gateway_local.worker import read_frame, write_frame
from runtime_gateway_server.subprocesses import python_module

log = structlog.get_logger("runtime_gateway_local.execution")

DEFAULT_JOB_MEMORY_MB = 4096  # a large noisy simulation fits; a runaway one cannot take the host
POLL_SECONDS = 0.1  # how often a running job is checked (cancel, memory)
START_TIMEOUT = 180.0  # a worker's imports, on a loaded 2-core machine


class JobAborted(Exception):
    """The job was cancelled or deleted while it ran, or the runtime is stopping: its
    simulation was killed and there is nothing to record."""


class JobFailure(Exception):
    """The job cannot run: the record fails with this IBM reason and reason code."""

    def __init__(self, message: str, reason: str, code: int) -> None:
        super().__init__(message)
        self.reason = reason
        self.code = code


# IBM's error registry (https://quantum.cloud.ibm.com/docs/errors) has no code for "out of
# memory". IBM fails a job its job-validation service finds it cannot run within its limits
# (see "Job limits" in IBM's guides) with 1002, "Error in the validation process of the job.
# Check the Job, it is not valid to run on this backend": the closest meaning. (1001, "qObject
# is larger than the maximum size", is no longer in the registry.)
CODE_TOO_LARGE = 1002
CODE_EXECUTION = 1000  # "API Internal error" / our "Error running the program"


def memory_failure(limit_mb: int, detail: str) -> JobFailure:
    return JobFailure(
        f"The job needs more memory than the {limit_mb} MB a job may use: {detail}",
        "Error in the validation process of the job: it needs more memory than this "
        f"backend allows per job ({limit_mb} MB). Use fewer qubits, shots or parameter "
        "values, or split it into smaller jobs.",
        CODE_TOO_LARGE,
    )


def rss_kb(pid: int) -> int | None:
    """Resident memory of a process in KiB, from /proc; None when it is gone."""
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    except (OSError, ValueError, IndexError):
        return None


class WorkerProcess:
    """One simulation worker process, started at its first job and replaced after a kill.

    Used by one runner thread only (so the process's parent-death signal is tied to a
    thread that lives as long as the runtime); `kill` may be called from any thread.
    """

    def __init__(self, devices: dict[str, str] | None, name: str) -> None:
        self._devices = devices
        self.name = name
        self._proc: subprocess.Popen[bytes] | None = None
        self._tasks: Any = None
        self._results: Any = None
        self._fresh_kb = 0  # RSS once warm, before any job
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def _spawn(self, abort: Callable[[], bool]) -> None:
        tasks_read, tasks_write = os.pipe()
        results_read, results_write = os.pipe()
        argv = [
            *python_module("runtime_gateway_local.worker"),
            str(tasks_read), str(results_write), str(os.getpid()), json.dumps(self._devices),
        ]  # fmt: skip
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=2,  # stray prints go to our stderr, out of the frames
                pass_fds=(tasks_read, results_write),
                # A worker needs no credential: the runtime's token stays out of its environment.
                env={k: v for k, v in os.environ.items() if k != "RUNTIME_GATEWAY_LOCAL_TOKEN"},
            )
        finally:
            os.close(tasks_read)
            os.close(results_write)
        with self._lock:
            self._proc = proc
            self._tasks = os.fdopen(tasks_write, "wb")
            self._results = os.fdopen(results_read, "rb")
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if abort():
                self.kill()
                raise JobAborted
            if select.select([self._results], [], [], POLL_SECONDS)[0]:
                if read_frame(self._results) is None:
                    break
                self._fresh_kb = rss_kb(proc.pid) or 0
                log.info("simulation_worker_started", worker=self.name, pid=proc.pid)
                return
        self.kill()
        raise JobFailure(
            "the simulation worker did not start",
            "Error running the program: the simulation worker did not start",
            CODE_EXECUTION,
        )

    def run(
        self, task: dict[str, Any], abort: Callable[[], bool], memory_mb: int
    ) -> dict[str, Any]:
        """Runs one task; its reply frame (see `worker.py`). JobAborted when `abort()` turns
        true (the worker is killed), JobFailure when the job exceeds `memory_mb` or the
        worker dies."""
        if self.pid is None:
            self._spawn(abort)
        proc, results = self._proc, self._results
        assert proc is not None and results is not None
        baseline = rss_kb(proc.pid) or self._fresh_kb
        try:
            write_frame(self._tasks, task)
        except OSError:
            pass  # the worker died: reported below like any death
        limit_kb = memory_mb * 1024
        while True:
            if abort():
                self.kill()
                raise JobAborted
            if select.select([results], [], [], POLL_SECONDS)[0]:
                reply = read_frame(results)
                if reply is None:
                    break
                self._recycle_if_grown(memory_mb)
                return reply
            used = rss_kb(proc.pid)
            if used is None:
                break
            if used - baseline > limit_kb:
                self.kill()
                raise memory_failure(
                    memory_mb,
                    f"the simulation grew by {(used - baseline) // 1024} MB (to "
                    f"{used // 1024} MB) and was stopped",
                )
        status = proc.wait()
        self.kill()
        detail = _describe_exit(status)
        raise JobFailure(
            f"the simulation process ended unexpectedly ({detail})",
            f"Error running the program: the simulation process ended unexpectedly ({detail})",
            CODE_EXECUTION,
        )

    def _recycle_if_grown(self, memory_mb: int) -> None:
        # Warm workers cache noise models and allocator arenas; a worker whose idle memory
        # grew by more than one job's bound is replaced, so growth cannot accumulate.
        used = rss_kb(self._proc.pid) if self._proc is not None else None
        if used is not None and used - self._fresh_kb > memory_mb * 1024:
            log.info("simulation_worker_recycled", worker=self.name, rss_mb=used // 1024)
            self.kill()

    def kill(self) -> None:
        """Stops the worker at once (SIGKILL: a simulation in C++ ignores politer signals
        until it returns) and reaps it."""
        with self._lock:
            proc, self._proc = self._proc, None
            streams = (self._tasks, self._results)
            self._tasks = self._results = None
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        for stream in streams:
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass


def _describe_exit(status: int) -> str:
    if status >= 0:
        return f"exit status {status}"
    try:
        return f"signal {signal.Signals(-status).name}"
    except ValueError:
        return f"signal {-status}"


class WorkerPool:
    """One `WorkerProcess` per runner thread."""

    def __init__(self, size: int, devices: dict[str, str] | None) -> None:
        self.workers = [WorkerProcess(devices, f"sim-{i}") for i in range(max(1, size))]

    def run(
        self, index: int, task: dict[str, Any], abort: Callable[[], bool], memory_mb: int
    ) -> dict[str, Any]:
        return self.workers[index].run(task, abort, memory_mb)

    def pids(self) -> list[int]:
        return [pid for pid in (w.pid for w in self.workers) if pid is not None]

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()
