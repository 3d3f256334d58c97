"""`serve --workers 2`: real worker processes sharing one port, in front of the upstream.

The kernel spreads connections between workers, so each call here goes over a fresh
channel (a fresh connection) and is traced to the worker that served it through its
x-request-id in the log; loops are bounded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from runtime_gateway.v1 import backends_pb2, backends_pb2_grpc, jobs_pb2, jobs_pb2_grpc
from tests.gateway.conftest import DOMAIN, UPSTREAM_TOKEN, Upstream, bell_inputs, upstream_env
from tests.procs import CLI, Proc, start

T = TypeVar("T")
ATTEMPTS = 60  # fresh connections tried before concluding that one worker gets them all


@pytest.fixture(scope="module")
def workers(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    tmp: Path = tmp_path_factory.mktemp("workers")
    proc = start(
        ["serve", "--listen", "127.0.0.1:0", "--workers", "2", "--log-level", "INFO"],
        tmp,
        env=upstream_env(upstream),
    )
    yield proc
    proc.stop()


def served_by(proc: Proc, request_id: str) -> int:
    """The worker whose log has the call with this request id."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for line in proc.stderr().splitlines():
            if request_id in line and line.startswith("{"):
                event = json.loads(line)
                if event.get("event") == "rpc" and event.get("request_id") == request_id:
                    return int(event["worker"])
        time.sleep(0.05)
    raise AssertionError(f"no worker logged the call {request_id}")


def on_fresh_connection(
    proc: Proc, call: Callable[[grpc.Channel, list[tuple[str, str]]], T], md: list[Any]
) -> tuple[T, int]:
    request_id = str(uuid.uuid4())
    with grpc.insecure_channel(proc.ready["address"]) as channel:
        result = call(channel, [*md, ("x-request-id", request_id)])
    return result, served_by(proc, request_id)


def cloud_md(upstream: Upstream) -> list[tuple[str, str]]:
    return [
        ("authorization", f"Bearer {UPSTREAM_TOKEN}"),
        ("x-runtime-channel", "ibm_quantum_platform"),
        ("x-runtime-url", f"http://{DOMAIN}"),
        ("x-runtime-instance", upstream.crn),
    ]


def list_backends(channel: grpc.Channel, md: list[tuple[str, str]]) -> Any:
    stub = backends_pb2_grpc.BackendServiceStub(channel)
    return stub.ListBackends(backends_pb2.ListBackendsRequest(), metadata=md, timeout=30)


def test_workers_share_the_port(workers: Proc) -> None:
    """Both workers serve; calls without credentials reach the supervisor's local runtime."""
    assert workers.ready["workers"] == 2 and len(workers.ready["pids"]) == 2
    seen: set[int] = set()
    for _ in range(ATTEMPTS):
        reply, worker = on_fresh_connection(workers, list_backends, [])
        assert "ibm_brisbane" in [b.name for b in reply.backends]
        seen.add(worker)
        if seen == {0, 1}:
            break
    assert seen == {0, 1}
    with grpc.insecure_channel(workers.ready["address"]) as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert status.status == health_pb2.HealthCheckResponse.SERVING


def test_a_retried_run_on_another_worker_returns_the_first_job(
    workers: Proc, upstream: Upstream
) -> None:
    """Request ids live in the shared state directory: a retry that reconnects to the other
    worker gets the first job, and IBM sees one submission."""
    md = cloud_md(upstream)
    request_id = str(uuid.uuid4())
    tag = f"workers-{request_id[:8]}"

    def run(channel: grpc.Channel, call_md: list[tuple[str, str]]) -> jobs_pb2.RunJobResponse:
        request = jobs_pb2.RunJobRequest(
            program_id="sampler",
            backend="ibmq_qasm_simulator",
            inputs_json=bell_inputs(),
            tags=[tag],
            request_id=request_id,
        )
        return jobs_pb2_grpc.JobServiceStub(channel).RunJob(request, metadata=call_md, timeout=60)

    first, first_worker = on_fresh_connection(workers, run, md)
    assert not first.replayed
    for _ in range(ATTEMPTS):
        again, worker = on_fresh_connection(workers, run, md)
        assert again.replayed and again.job.id == first.job.id
        if worker != first_worker:
            break
    assert worker != first_worker, "every retry reached the first worker"
    submissions = [
        r
        for r in upstream.requests_log()
        if r["method"] == "POST" and r["path"].endswith("/jobs") and tag in json.dumps(r)
    ]
    assert len(submissions) == 1


def test_page_tokens_work_on_every_worker(workers: Proc, upstream: Upstream) -> None:
    md = cloud_md(upstream)
    tag = f"pages-{uuid.uuid4().hex[:8]}"
    with grpc.insecure_channel(workers.ready["address"]) as channel:
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        for _ in range(3):
            stub.RunJob(
                jobs_pb2.RunJobRequest(
                    program_id="sampler",
                    backend="ibmq_qasm_simulator",
                    inputs_json=bell_inputs(),
                    tags=[tag],
                ),
                metadata=md,
                timeout=60,
            )

    def page(token: str) -> Callable[[grpc.Channel, list[tuple[str, str]]], Any]:
        def call(channel: grpc.Channel, call_md: list[tuple[str, str]]) -> Any:
            request = jobs_pb2.ListJobsRequest(page_size=1, page_token=token, tags=[tag])
            stub = jobs_pb2_grpc.JobServiceStub(channel)
            return stub.ListJobs(request, metadata=call_md, timeout=30)

        return call

    first, first_worker = on_fresh_connection(workers, page(""), md)
    assert len(first.jobs) == 1 and first.next_page_token
    for _ in range(ATTEMPTS):
        second, worker = on_fresh_connection(workers, page(first.next_page_token), md)
        assert len(second.jobs) == 1 and second.jobs[0].id != first.jobs[0].id
        if worker != first_worker:
            break
    assert worker != first_worker, "every page request reached the first worker"


def test_a_worker_that_dies_is_replaced(workers: Proc) -> None:
    victim = workers.ready["pids"][0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while "worker_restarted" not in workers.stderr() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "worker_restarted" in workers.stderr()
    assert workers.popen.poll() is None
    seen: set[int] = set()
    for _ in range(ATTEMPTS):  # both workers serve again
        _, worker = on_fresh_connection(workers, list_backends, [])
        seen.add(worker)
        if seen == {0, 1}:
            break
    assert seen == {0, 1}
    assert UPSTREAM_TOKEN not in workers.stderr()


def test_stop_drains_every_worker(upstream: Upstream, tmp_path: Path) -> None:
    proc = start(
        ["serve", "--listen", "127.0.0.1:0", "--workers", "2", "--no-local-runtime"],
        tmp_path,
        env=upstream_env(upstream),
    )
    pids = proc.ready["pids"]
    assert proc.stop(signal.SIGTERM) == 0
    for pid in pids:
        assert (
            not Path(f"/proc/{pid}").exists()
            or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
        )
    assert "shutdown_complete" in proc.stderr()


def test_a_busy_port_is_refused(workers: Proc, tmp_path: Path) -> None:
    """SO_REUSEPORT is for the workers only: a second gateway cannot join the port."""
    second = subprocess.run(
        [*CLI, "serve", "--listen", workers.ready["address"], "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert second.returncode == 2
    assert "cannot listen on" in second.stderr and second.stdout == ""


def test_workers_die_with_a_killed_supervisor(upstream: Upstream, tmp_path: Path) -> None:
    """SIGKILL leaves the supervisor no time to drain its workers; they must not stay behind
    serving the port on their own."""
    proc = start(
        ["serve", "--listen", "127.0.0.1:0", "--workers", "2", "--no-local-runtime"],
        tmp_path,
        env=upstream_env(upstream),
    )
    pids = list(proc.ready["pids"])
    proc.popen.kill()
    proc.popen.wait(10)
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in pids):
        assert time.monotonic() < deadline, "workers outlived their supervisor"
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status  # a zombie has exited
