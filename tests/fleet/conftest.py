"""A fleet of real processes: one `redis-server`, one `runtime-gateway local-runtime` that every
replica uses as its default upstream, three `runtime-gateway serve` replicas sharing state
through that Redis, and HAProxy in front of them with `deploy/haproxy/haproxy.cfg` (the file
operators use, filled in through its environment variables).

The fleet is started once for the whole `tests/fleet/` session (about 10 s); tests that kill or
drain a replica, or stop Redis, take `fleet` (function scope), which first brings everything
back: every replica running, Redis up, HAProxy seeing all three replicas UP.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
import requests

from runtime_gateway.v1 import jobs_pb2, jobs_pb2_grpc
from tests.procs import ROOT, Proc, start
from tests.redis_server import RedisServer, free_port

HAPROXY_CFG = ROOT / "deploy" / "haproxy" / "haproxy.cfg"
REPLICAS = 3
POLL = 0.5  # --watch-poll-seconds (and the max: no back-off, so GETs per job are countable)
HEARTBEAT = 1.0  # --watch-heartbeat-seconds
STREAM_TIMEOUT = "4s"  # HAProxy's idle timeouts in the tests: streams outlive them on heartbeats
CHECK_INTER = "300ms"  # HAProxy's health-check interval in the tests
REDIS_PASSWORD = "redis-SECRET-pw-5d2c8e"  # recognisable: must appear in no log
QASM_BELL = (
    'OPENQASM 3.0; include "stdgates.inc"; qubit[2] q; bit[2] c; '
    "h q[0]; cx q[0], q[1]; c = measure q;"
)
TERMINAL = (jobs_pb2.JOB_STATE_COMPLETED, jobs_pb2.JOB_STATE_FAILED, jobs_pb2.JOB_STATE_CANCELLED)
T = TypeVar("T")


def bell_inputs(shots: int = 50) -> str:
    return json.dumps({"pubs": [[QASM_BELL, None, shots]], "version": 2, "options": {}})


def run_request(request_id: str = "", tags: tuple[str, ...] = ()) -> jobs_pb2.RunJobRequest:
    """A small Sampler job on the local runtime's simulator. With a request id it is tagged
    with it: after Redis lost its data, RunJob looks upstream for an identical submission
    before it submits a request id (idempotency.py, redis_request_ids.py) and would rightly
    adopt another test's identical job."""
    tags = tags or ((request_id,) if request_id else ())
    return jobs_pb2.RunJobRequest(
        program_id="sampler", backend="ibmq_qasm_simulator", inputs_json=bell_inputs(),
        request_id=request_id, tags=list(tags),
    )  # fmt: skip


def eventually(check: Callable[[], T | None], timeout: float = 30.0, what: str = "") -> T:
    """Polls `check` until it returns something truthy (bounded: fails after `timeout`)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (grpc.RpcError, requests.RequestException, OSError) as error:
            last = error
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {what} (last: {last!r})")


@dataclass
class LocalRuntime:
    """The local runtime every replica shares (`--local-runtime-url/--local-runtime-token`)."""

    proc: Proc

    @property
    def url(self) -> str:
        return str(self.proc.ready["url"])

    @property
    def token(self) -> str:
        return str(self.proc.ready["token"])

    def admin(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        reply = requests.request(method, f"{self.url}/_local{path}",
                                 headers={"X-Local-Admin-Token": self.token}, timeout=10,
                                 **kwargs)  # fmt: skip
        reply.raise_for_status()
        return reply

    def counts(self) -> dict[str, int]:
        """`METHOD path` → requests received since the last `clear_counts`."""
        return dict(self.admin("GET", "/request-counts").json()["counts"])

    def clear_counts(self) -> None:
        self.admin("DELETE", "/request-counts")

    def job_requests(self, job_id: str, method: str = "GET") -> int:
        """Requests for the job itself (`/jobs/{id}`, what a watcher polls), not its results."""
        pattern = re.compile(rf"^{method} (/api/v1)?/jobs/{re.escape(job_id)}$")
        return sum(n for key, n in self.counts().items() if pattern.match(key))

    def job_posts(self) -> int:
        """Job submissions (`POST /jobs`) since the last `clear_counts`."""
        pattern = re.compile(r"^POST (/api/v1)?/jobs$")
        return sum(n for key, n in self.counts().items() if pattern.match(key))


@dataclass
class Replica:
    """One `runtime-gateway serve`, on fixed ports so that it restarts where it was."""

    name: str
    args: list[str]
    tmp: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    proc: Proc | None = None
    _channel: grpc.Channel | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.popen.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.popen.poll() is None

    def start(self) -> Replica:
        self.proc = start(
            ["serve", "--listen", self.address, "--metrics-listen",
             f"127.0.0.1:{self.metrics_port}", *self.args],
            self.tmp, env=self.env,
        )  # fmt: skip
        # A replica's first RunJob reads the backend from the upstream (about 2 s on a busy
        # machine): once here, so no test call meets HAProxy's short test timeouts cold.
        self.jobs.RunJob(run_request(), timeout=60)
        return self

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.popen.send_signal(signal.SIGKILL)
        self.proc.popen.wait(10)

    def terminate(self) -> None:
        """SIGTERM: the replica drains (returns at once; `wait()` for the exit)."""
        assert self.proc is not None
        self.proc.popen.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.popen.wait(timeout)

    def healthz(self) -> int:
        """The HTTP status of GET /healthz on the metrics port (0: no answer)."""
        try:
            return requests.get(
                f"http://127.0.0.1:{self.metrics_port}/healthz", timeout=2
            ).status_code
        except requests.RequestException:
            return 0

    def metric(self, name: str, **labels: str) -> float:
        """The sum of a metric's samples matching `labels`, from /metrics."""
        text = requests.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stderr(self) -> str:
        return self.proc.stderr() if self.proc else ""

    def all_stderr(self) -> str:
        """Every log this replica wrote, over all its restarts."""
        return "".join(p.read_text(errors="replace") for p in sorted(self.tmp.glob("stderr-*")))

    @property
    def jobs(self) -> jobs_pb2_grpc.JobServiceStub:
        """A stub straight to this replica (not through HAProxy)."""
        if self._channel is None:
            self._channel = grpc.insecure_channel(self.address)
        return jobs_pb2_grpc.JobServiceStub(self._channel)

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None


@dataclass
class HAProxy:
    """HAProxy started from deploy/haproxy/haproxy.cfg, with its runtime API on a socket."""

    tmp: Path
    replicas: list[Replica]
    port: int = field(default_factory=free_port)
    popen: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def socket_path(self) -> Path:
        return self.tmp / "haproxy.sock"

    def env(self) -> dict[str, str]:
        env = {
            "RG_LISTEN": self.address,
            "RG_ADMIN_SOCKET": str(self.socket_path),
            "RG_PIDFILE": str(self.tmp / "haproxy.pid"),
            "RG_CHECK_INTER": CHECK_INTER,
            "RG_STREAM_TIMEOUT": STREAM_TIMEOUT,
        }
        for index, replica in enumerate(self.replicas, 1):
            env[f"RG_REPLICA_{index}"] = replica.address
            env[f"RG_HEALTH_PORT_{index}"] = str(replica.metrics_port)
        return env

    def start(self) -> HAProxy:
        binary = shutil.which("haproxy")
        if binary is None:
            raise RuntimeError("haproxy is not installed: run `make test` (make system-deps)")
        log = (self.tmp / "haproxy.log").open("ab")
        # -db: stay in the foreground (stopped with the test session); -W: master-worker.
        self.popen = subprocess.Popen(
            [binary, "-db", "-f", str(HAPROXY_CFG)],
            env={**os.environ, **self.env()}, stdout=log, stderr=log,
        )  # fmt: skip
        log.close()
        eventually(lambda: self.popen is not None and self.popen.poll() is None
                   and self.socket_path.exists() and self.command("show info"),
                   20, "HAProxy's runtime API answers")  # fmt: skip
        return self

    def command(self, line: str) -> str:
        """One command on HAProxy's runtime API (e.g. `show stat`)."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(self.socket_path))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def server_status(self) -> dict[str, str]:
        """gw1..gw3 → `UP`, `DOWN`, `MAINT`, ... as HAProxy's health checks see them."""
        lines = self.command("show stat").splitlines()
        header = lines[0].lstrip("# ").split(",")
        status = {}
        for line in lines[1:]:
            row = dict(zip(header, line.split(","), strict=False))
            if row.get("pxname") == "runtime_gateways" and row.get("svname", "").startswith("gw"):
                status[row["svname"]] = row["status"].split(" ")[0]
        return status

    def wait_status(self, server: str, wanted: str, timeout: float = 30.0) -> None:
        eventually(lambda: self.server_status().get(server) == wanted, timeout,
                   f"HAProxy sees {server} {wanted}")  # fmt: skip

    def log(self) -> str:
        return (self.tmp / "haproxy.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()  # hard stop: the test's connections end with it
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)


@dataclass
class Fleet:
    redis: RedisServer
    runtime: LocalRuntime
    replicas: list[Replica]
    haproxy: HAProxy
    _channel: grpc.Channel | None = None

    @property
    def jobs(self) -> jobs_pb2_grpc.JobServiceStub:
        """A stub through HAProxy."""
        if self._channel is None:
            self._channel = grpc.insecure_channel(self.haproxy.address)
        return jobs_pb2_grpc.JobServiceStub(self._channel)

    def replica_of_pid(self, pid: int) -> Replica | None:
        """The running replica with this process id (None: it died, or is not one)."""
        return next((r for r in self.replicas if r.running() and r.pid == pid), None)

    def heal(self) -> None:
        """Everything back up: Redis, every replica, HAProxy seeing all of them UP."""
        if self.redis.popen is None or self.redis.popen.poll() is not None:
            self.redis.start()
        for replica in self.replicas:
            if not replica.running():
                replica.close()
                replica.start()
        for index in range(1, len(self.replicas) + 1):
            self.haproxy.wait_status(f"gw{index}", "UP")

    def watch_lease_holder(self, job_id: str, timeout: float = 30.0) -> Replica:
        """The replica whose watcher holds the job's lease (watch_fleet.py: the key
        `rg:watch:lease:<url hash>:<job id>` names `host:pid:nonce`)."""
        import redis

        client = redis.Redis.from_url(self.redis.url)
        try:

            def holder() -> Replica | None:
                for key in client.scan_iter(match=f"rg:watch:lease:*:{job_id}"):
                    value = client.get(key)
                    if value:
                        pid = int(value.decode().split(":")[1])
                        return self.replica_of_pid(pid)
                return None

            return eventually(holder, timeout, f"a replica holds the watch lease of {job_id}")
        finally:
            client.close()

    def wait_terminal(self, job_id: str, timeout: float = 60.0) -> jobs_pb2.Job:
        def done() -> jobs_pb2.Job | None:
            job = self.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job_id), timeout=10).job
            return job if job.state in TERMINAL else None

        return eventually(done, timeout, f"job {job_id} ends")

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        for replica in self.replicas:
            replica.close()


def replica_args(redis_url: str | None, runtime: LocalRuntime) -> tuple[list[str], dict[str, str]]:
    """The flags every replica gets; the shared local runtime's token goes in the environment
    (as the README advises: not on a command line that `ps` shows)."""
    args = [
        "--watch-poll-seconds", str(POLL), "--watch-max-poll-seconds", str(POLL),
        "--watch-heartbeat-seconds", str(HEARTBEAT), "--grace-seconds", "5",
        "--log-level", "DEBUG", "--local-runtime-url", runtime.url,
    ]  # fmt: skip
    env = {"RUNTIME_GATEWAY_LOCAL_RUNTIME_TOKEN": runtime.token}
    if redis_url:
        env["RUNTIME_GATEWAY_REDIS_URL"] = redis_url  # with its password: not on `ps`
    return args, env


def start_local_runtime(tmp: Path, job_seconds: float = 2.0, workers: int = 2) -> LocalRuntime:
    tmp.mkdir(parents=True, exist_ok=True)
    proc = start(["local-runtime", "--listen", "127.0.0.1:0", "--workers", str(workers)], tmp,
                 env={"RUNTIME_GATEWAY_LOCAL_JOB_SECONDS": str(job_seconds)})  # fmt: skip
    return LocalRuntime(proc)


@pytest.fixture(scope="session")
def fleet_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("fleet")
    redis_server = RedisServer(tmp / "redis", password=REDIS_PASSWORD).start()
    runtime = start_local_runtime(tmp / "runtime")
    replicas: list[Replica] = []
    haproxy: HAProxy | None = None
    try:
        args, env = replica_args(redis_server.url, runtime)
        for index in range(1, REPLICAS + 1):
            directory = tmp / f"gw{index}"
            directory.mkdir()
            replicas.append(Replica(f"gw{index}", args, directory, env).start())
        haproxy = HAProxy(tmp / "haproxy", replicas)
        haproxy.tmp.mkdir()
        haproxy.start()
        fleet = Fleet(redis_server, runtime, replicas, haproxy)
        fleet.heal()
        yield fleet
        fleet.close()
    finally:
        if haproxy is not None:
            haproxy.stop()
        for replica in replicas:  # drain all at once, then wait
            if replica.running():
                replica.terminate()
        for replica in replicas:
            if replica.proc is not None:
                replica.proc.stop()
        runtime.proc.stop()
        redis_server.stop()


@pytest.fixture
def fleet(fleet_session: Fleet) -> Fleet:
    """The session's fleet, healed first (a test before may have killed a part of it)."""
    fleet_session.heal()
    return fleet_session
