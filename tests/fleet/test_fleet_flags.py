"""Gateway replicas sharing one Redis and one local runtime, as real processes: `serve
--redis-url` (request ids and page tokens work across replicas, Redis outages and their end),
`--redis-required` (health follows Redis), `--local-runtime-url` (replicas share an already
running local runtime), and the flags' errors. The Redis password is never in a log, an
error or a worker's command line."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import requests
from grpc_health.v1 import health_pb2, health_pb2_grpc

from runtime_gateway.v1 import backends_pb2, backends_pb2_grpc, jobs_pb2, jobs_pb2_grpc
from tests.procs import CLI, Proc, start
from tests.redis_server import RedisServer

PASSWORD = "redis-SECRET-pw-4c1d8e"  # recognisable: looked for in every log
RUNTIME_TOKEN = "local-SECRET-token-93b7a2"
QASM_BELL = (
    'OPENQASM 3.0; include "stdgates.inc"; qubit[2] q; bit[2] c; '
    "h q[0]; cx q[0], q[1]; c = measure q;"
)
INPUTS = json.dumps({"pubs": [[QASM_BELL, None, 50]], "version": 2, "options": {}})
SECRETS = (PASSWORD, RUNTIME_TOKEN)


@dataclass
class Replica:
    proc: Proc
    channel: grpc.Channel = field(init=False)

    def __post_init__(self) -> None:
        self.channel = grpc.insecure_channel(self.proc.ready["address"])
        self.jobs = jobs_pb2_grpc.JobServiceStub(self.channel)
        self.backends = backends_pb2_grpc.BackendServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    def run(self, request_id: str = "", tags: tuple[str, ...] = ()) -> jobs_pb2.Job:
        request = jobs_pb2.RunJobRequest(
            program_id="sampler",
            backend="ibmq_qasm_simulator",
            inputs_json=INPUTS,
            request_id=request_id,
            tags=list(tags),
        )
        return self.jobs.RunJob(request, timeout=30).job

    def status(self) -> int:
        reply = self.health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        return int(reply.status)

    def close(self) -> None:
        self.channel.close()
        self.proc.stop()


@dataclass
class LocalRuntime:
    proc: Proc

    @property
    def url(self) -> str:
        return str(self.proc.ready["url"])

    def job_ids(self, tag: str) -> list[str]:
        """The runtime's own list of jobs with `tag` (not through any gateway)."""
        reply = requests.get(
            f"{self.url}/api/v1/jobs",
            params={"tags": tag, "limit": 100},
            headers={
                "Authorization": f"apikey {RUNTIME_TOKEN}",
                "Service-CRN": self.proc.ready["instances"]["crns"][0],
                "IBM-API-Version": "2026-04-15",
            },
            timeout=10,
        )
        reply.raise_for_status()
        return [str(job["id"]) for job in reply.json()["jobs"]]

    def _admin(self, method: str, path: str) -> requests.Response:
        reply = requests.request(
            method,
            f"{self.url}/_local{path}",
            headers={"X-Local-Admin-Token": RUNTIME_TOKEN},
            timeout=10,
        )
        reply.raise_for_status()
        return reply

    def clear_requests(self) -> None:
        self._admin("DELETE", "/requests")

    def request_paths(self) -> list[str]:
        """The paths of the runtime API requests it received since `clear_requests`."""
        entries = self._admin("GET", "/requests").json()["requests"]
        return [str(e["path"]) for e in entries if e["service"] == "runtime"]


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fleet")


@pytest.fixture(scope="module")
def redis_server(tmp: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp / "redis", password=PASSWORD).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def runtime(tmp: Path) -> Iterator[LocalRuntime]:
    proc = start(
        ["local-runtime", "--listen", "127.0.0.1:0", "--token", RUNTIME_TOKEN, "--workers", "1"],
        tmp,
    )
    yield LocalRuntime(proc)
    proc.stop()


def _fleet_env(redis_server: RedisServer, runtime: LocalRuntime) -> dict[str, str]:
    """Secrets by environment, as an operator should pass them."""
    return {
        "RUNTIME_GATEWAY_REDIS_URL": redis_server.url,
        "RUNTIME_GATEWAY_LOCAL_RUNTIME_URL": runtime.url,
        "RUNTIME_GATEWAY_LOCAL_RUNTIME_TOKEN": RUNTIME_TOKEN,
    }


@pytest.fixture(scope="module")
def replicas(
    tmp: Path, redis_server: RedisServer, runtime: LocalRuntime
) -> Iterator[list[Replica]]:
    """Two gateways on one Redis and one local runtime; the first gets its secrets as flags
    (the password inside the URL), the second from the environment."""
    first = start(
        [
            "serve", "--listen", "127.0.0.1:0", "--redis-url", redis_server.url,
            "--local-runtime-url", runtime.url, "--local-runtime-token", RUNTIME_TOKEN,
        ],
        tmp,
    )  # fmt: skip
    second = start(["serve", "--listen", "127.0.0.1:0"], tmp, env=_fleet_env(redis_server, runtime))
    fleet = [Replica(first), Replica(second)]
    yield fleet
    for replica in fleet:
        replica.close()


def _until(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        time.sleep(0.1)


def _events(proc: Proc, name: str) -> list[dict[str, Any]]:
    found = []
    for line in proc.stderr().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == name:
            found.append(entry)
    return found


def _assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


# --- replicas share one local runtime and one Redis --------------------------------------------
def test_replicas_share_the_local_runtime_and_request_ids(
    replicas: list[Replica], runtime: LocalRuntime
) -> None:
    first, second = replicas
    assert first.proc.ready["local_runtime_url"] == runtime.url
    tag = f"rid-{time.monotonic_ns()}"
    job = first.run("retry-me", tags=(tag,))
    again = second.run("retry-me", tags=(tag,))  # the client's retry reached the other replica
    assert again.id == job.id
    assert runtime.job_ids(tag) == [job.id]  # the runtime got exactly one job
    # A job submitted through one replica is read through the other.
    read = second.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job.id), timeout=30).job
    assert read.id == job.id and read.program_id == "sampler"
    # The same id with another request is refused, naming the field, on either replica.
    with pytest.raises(grpc.RpcError) as failure:
        second.jobs.RunJob(
            jobs_pb2.RunJobRequest(
                program_id="sampler",
                backend="ibmq_qasm_simulator",
                inputs_json=INPUTS.replace("50]", "51]"),
                request_id="retry-me",
            ),
            timeout=30,
        )
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "request_id" in (failure.value.details() or "")


def test_a_page_token_from_one_replica_works_on_the_other(replicas: list[Replica]) -> None:
    first, second = replicas
    tag = f"page-{time.monotonic_ns()}"
    made = {first.run(tags=(tag,)).id for _ in range(3)}
    request = jobs_pb2.ListJobsRequest(page_size=2, tags=[tag])
    page = first.jobs.ListJobs(request, timeout=30)
    assert len(page.jobs) == 2 and page.next_page_token
    request.page_token = page.next_page_token
    rest = second.jobs.ListJobs(request, timeout=30)
    assert {j.id for j in [*page.jobs, *rest.jobs]} == made and not rest.next_page_token


def test_replicas_share_backend_configurations(
    replicas: list[Replica], runtime: LocalRuntime
) -> None:
    """A configuration one replica fetched is read by the other from Redis: the upstream
    answers it once for the fleet, and both replicas answer the same."""
    runtime.clear_requests()
    name = "ibmq_lima"  # not asked for by the tests before
    got = [
        r.backends.GetBackend(backends_pb2.GetBackendRequest(name=name), timeout=30).backend
        for r in replicas
    ]
    assert got[0] == got[1] and got[0].name == name
    paths = runtime.request_paths()
    assert paths.count(f"/api/v1/backends/{name}/configuration") == 1, paths
    assert paths.count("/api/v1/backends") <= 1, paths


def test_a_redis_outage_refuses_request_ids_only_and_ends_by_itself(
    replicas: list[Replica], redis_server: RedisServer, runtime: LocalRuntime
) -> None:
    first, second = replicas
    redis_server.stop()
    try:
        with pytest.raises(grpc.RpcError) as failure:
            first.run("during-outage")
        assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "Redis is unreachable" in (failure.value.details() or "")
        _assert_no_secret(failure.value.details() or "")
        assert first.run().id  # without a request id RunJob still works
        name = "ibmq_qasm_simulator"
        reply = second.backends.GetBackend(backends_pb2.GetBackendRequest(name=name), timeout=30)
        assert reply.backend.name == name
        _until(lambda: len(_events(second.proc, "redis_down")) == 1)  # its ping saw it
    finally:
        redis_server.start()  # same port, empty (no persistence)
    # Both replicas reconnect by themselves: request ids work again, shared as before.
    _until(lambda: all(len(_events(r.proc, "redis_up")) == 1 for r in replicas))
    tag = f"after-{time.monotonic_ns()}"
    job = first.run("after-outage", tags=(tag,))
    assert second.run("after-outage", tags=(tag,)).id == job.id
    assert runtime.job_ids(tag) == [job.id]
    for replica in replicas:
        assert len(_events(replica.proc, "redis_down")) == 1
        assert len(_events(replica.proc, "redis_up")) == 1
        stderr = replica.proc.stderr()
        _assert_no_secret(stderr)
        assert "127.0.0.1:" in _events(replica.proc, "redis_down")[0]["redis"]


def test_the_configuration_line_masks_the_password(replicas: list[Replica]) -> None:
    for replica in replicas:
        (config,) = _events(replica.proc, "gateway_config")
        assert config["request_id_store"] == "redis"
        assert config["redis"].startswith("redis://:***@127.0.0.1:")
        _assert_no_secret(replica.proc.stderr())


# --- --redis-required ----------------------------------------------------------------------------
def test_redis_required_turns_health_with_redis(
    tmp: Path, runtime: LocalRuntime, tmp_path: Path
) -> None:
    server = RedisServer(tmp_path / "redis", password=PASSWORD).start()
    env = _fleet_env(server, runtime)
    replica = Replica(start(["serve", "--listen", "127.0.0.1:0", "--redis-required"], tmp, env))
    try:
        serving, not_serving = (
            health_pb2.HealthCheckResponse.SERVING,
            health_pb2.HealthCheckResponse.NOT_SERVING,
        )
        assert replica.status() == serving
        server.stop()
        _until(lambda: replica.status() == not_serving)
        server.start()
        _until(lambda: replica.status() == serving)
        _assert_no_secret(replica.proc.stderr())
    finally:
        replica.close()
        server.stop()


# --- workers: secrets by environment, never on a command line ----------------------------------
def test_workers_get_secrets_by_environment(
    tmp: Path, redis_server: RedisServer, runtime: LocalRuntime
) -> None:
    """`--workers 2` with the password in --redis-url and the token as a flag: the workers'
    command lines (what `ps` shows every user) carry neither, and both workers share ids."""
    if redis_server.popen is None:
        redis_server.start()
    proc = start(
        [
            "serve", "--listen", "127.0.0.1:0", "--workers", "2",
            f"--redis-url={redis_server.url}",
            "--local-runtime-url", runtime.url, "--local-runtime-token", RUNTIME_TOKEN,
        ],
        tmp,
    )  # fmt: skip
    try:
        assert proc.ready["local_runtime_url"] == runtime.url
        for pid in proc.ready["pids"]:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            command = b" ".join(argv).decode()
            assert "--worker-index" in command
            _assert_no_secret(command)
            assert "--redis-url" not in command and "--local-runtime-token" not in command
        replica = Replica(proc)
        tag = f"workers-{time.monotonic_ns()}"
        ids = {replica.run("workers-id", tags=(tag,)).id for _ in range(4)}
        assert len(ids) == 1 and runtime.job_ids(tag) == list(ids)
        replica.channel.close()
    finally:
        proc.stop()
    _assert_no_secret(proc.stderr())


# --- flag errors ---------------------------------------------------------------------------------
def _serve_fails(args: list[str], tmp: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [*CLI, "serve", "--listen", "127.0.0.1:0", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=tmp,
        timeout=90,
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    return result.stderr


@pytest.mark.parametrize(
    ("url", "says"),
    [
        (f"http://:{PASSWORD}@127.0.0.1:6379/0", "the scheme must be one of"),
        (f"redis://:{PASSWORD}@127.0.0.1:notaport/0", "--redis-url redis://:***@"),
        ("redis:///0", "no host"),
        # Base64 passwords hold '/': urlsplit then sees no password (a breaker found the
        # whole URL printed in clear); the URL is refused with the password masked.
        ("redis://:s3cr/Et+pw==@127.0.0.1:6379/0", "percent-encode it"),
        ("redis://user:s3cr#Et@127.0.0.1:6379/0", "--redis-url redis://user:***@"),
        # An unencoded '@' in the password, and a password in the query (redis-py reads both).
        ("redis://:s3cr@Et@127.0.0.1:notaport/0", "--redis-url redis://:***@127.0.0.1"),
        ("redis://127.0.0.1:notaport/0?password=s3crEt", "password=***"),
    ],
)
def test_a_bad_redis_url_is_one_line_without_the_password(
    url: str, says: str, tmp_path: Path
) -> None:
    stderr = _serve_fails(["--redis-url", url, "--no-local-runtime"], tmp_path)
    assert says in stderr and len(stderr.strip().splitlines()) == 1, stderr
    _assert_no_secret(stderr)
    assert "s3cr" not in stderr, stderr


def test_an_unreachable_redis_stops_the_start_with_one_line(
    tmp_path: Path, runtime: LocalRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gateway waits for Redis at start (--redis-wait-seconds, 30 by default), saying so
    once, then exits 2 naming it (password masked)."""
    server = RedisServer(tmp_path / "down", password=PASSWORD)  # never started: nothing listens
    stderr = _serve_fails(["--redis-wait-seconds", "2"], tmp_path, _fleet_env(server, runtime))
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("runtime-gateway serve: Redis redis://:***@127.0.0.1:"), stderr
    assert "did not answer in 2 s" in last
    assert any(json.loads(line)["event"] == "redis_waiting" for line in stderr.splitlines()[:-1])
    _assert_no_secret(stderr)


def test_a_wrong_redis_password_fails_at_once(
    tmp_path: Path, redis_server: RedisServer, runtime: LocalRuntime
) -> None:
    if redis_server.popen is None:
        redis_server.start()
    wrong = redis_server.url.replace(PASSWORD, "not-the-SECRET")
    env = {**_fleet_env(redis_server, runtime), "RUNTIME_GATEWAY_REDIS_URL": wrong}
    stderr = _serve_fails([], tmp_path, env)
    assert "refused the password" in stderr.strip().splitlines()[-1], stderr
    assert "not-the-SECRET" not in stderr
    _assert_no_secret(stderr)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--local-runtime-url", "http://127.0.0.1:1"], "needs --local-runtime-token"),
        (["--local-runtime-url", "ftp://x", "--local-runtime-token", "t"], "http(s)://HOST:PORT"),
        (["--redis-required"], "--redis-required needs --redis-url"),
        (["--redis-url", "redis://127.0.0.1:1", "--redis-wait-seconds", "-1"], "at least 0"),
    ],
)
def test_fleet_flag_errors_are_one_line(args: list[str], says: str, tmp_path: Path) -> None:
    stderr = _serve_fails(args, tmp_path)
    assert says in stderr and len(stderr.strip().splitlines()) == 1, stderr


def test_a_wrong_local_runtime_token_is_refused_at_start(
    tmp_path: Path, runtime: LocalRuntime
) -> None:
    stderr = _serve_fails(
        ["--local-runtime-url", runtime.url, "--local-runtime-token", "wrong-SECRET-token"],
        tmp_path,
    )
    assert "--local-runtime-token: the local runtime at" in stderr, stderr
    assert "wrong-SECRET-token" not in stderr
