"""Three gateway replicas behind HAProxy (deploy/haproxy/haproxy.cfg): calls spread over them,
streams outlive the balancer's idle timeouts on the gateway's heartbeats, a killed or draining
replica is taken out by the health checks (`GET /healthz` on the metrics port), and a RunJob
retried on another replica returns the first job.
"""

from __future__ import annotations

import signal
import threading
import uuid
from pathlib import Path

import grpc
import pytest
import requests

from runtime_gateway.v1 import jobs_pb2
from tests.fleet.conftest import (
    HEARTBEAT,
    REDIS_PASSWORD,
    Fleet,
    eventually,
    run_request,
)
from tests.procs import start


def _handled(fleet: Fleet, method: str) -> list[float]:
    return [r.metric("grpc_server_handled_total", grpc_method=method) for r in fleet.replicas]


def _list_jobs(fleet: Fleet) -> None:
    fleet.jobs.ListJobs(jobs_pb2.ListJobsRequest(page_size=1), timeout=10)


def test_unary_calls_reach_every_replica(fleet: Fleet) -> None:
    before = _handled(fleet, "ListJobs")
    for _ in range(30):
        _list_jobs(fleet)
    after = _handled(fleet, "ListJobs")
    spread = [a - b for a, b in zip(after, before, strict=True)]
    assert sum(spread) == 30, spread
    assert all(n > 0 for n in spread), f"calls per replica: {spread}"


def test_stream_outlives_the_balancers_idle_timeouts(fleet: Fleet) -> None:
    """HAProxy closes a stream silent for RG_STREAM_TIMEOUT (4 s here); the gateway's
    heartbeats (every 1 s here) keep a stream on a job that waits in the queue open across
    several such timeouts, and its terminal state still arrives on the same stream."""
    fleet.runtime.admin("POST", "/queue/pause")
    try:
        job = fleet.jobs.RunJob(run_request(), timeout=30).job
        stream = fleet.jobs.WatchJob(jobs_pb2.WatchJobRequest(job_id=job.id), timeout=60)
        heartbeats = 0
        for response in stream:
            if response.update.WhichOneof("kind") == "heartbeat":
                heartbeats += 1
                if heartbeats * HEARTBEAT >= 10:  # two and a half of HAProxy's timeouts
                    break
        assert heartbeats * HEARTBEAT >= 10
    finally:
        fleet.runtime.admin("POST", "/queue/resume")
    last = None
    for response in stream:
        if response.update.WhichOneof("kind") == "state":
            last = response.update.state
    assert last is not None and last.terminal
    assert last.job.state == jobs_pb2.JOB_STATE_COMPLETED


def test_a_killed_replica_is_taken_out_and_back_in(fleet: Fleet) -> None:
    victim = fleet.replicas[1]
    victim.kill9()
    fleet.haproxy.wait_status(victim.name, "DOWN")
    for _ in range(20):  # with it DOWN, every call goes to the other two
        _list_jobs(fleet)
    victim.start()  # the same ports
    fleet.haproxy.wait_status(victim.name, "UP")
    before = victim.metric("grpc_server_handled_total", grpc_method="ListJobs")
    eventually(lambda: (_list_jobs(fleet), victim.metric(
        "grpc_server_handled_total", grpc_method="ListJobs") > before)[1],
        30, "calls reach the restarted replica")  # fmt: skip


def test_calls_right_after_a_kill_are_retried_on_another_replica(fleet: Fleet) -> None:
    """Before the health checks notice, HAProxy still picks the dead replica for some calls:
    its connection is refused, and `retry-on conn-failure` with `redispatch` sends the call
    to another replica. No call fails."""
    victim = fleet.replicas[2]
    victim.kill9()
    for _ in range(30):
        _list_jobs(fleet)
    fleet.haproxy.wait_status(victim.name, "DOWN")


def test_a_draining_replica_is_taken_out_before_it_stops(fleet: Fleet) -> None:
    """SIGTERM: /healthz turns 503 at once, HAProxy marks the replica DOWN while its grace
    still runs (a slow call keeps it alive here), and the slow call still completes. Calls
    sent through HAProxy meanwhile all succeed: the draining gateway stops listening, so
    HAProxy's new connections to it are refused and retried on another replica."""
    victim = fleet.replicas[0]
    job = victim.jobs.RunJob(run_request(), timeout=30).job
    fleet.wait_terminal(job.id)
    # The victim's next GET of this job takes 4 s upstream (within its 5 s grace).
    fleet.runtime.admin("PUT", "/faults", json={
        "latency_ms": 4000, "path_pattern": f"/jobs/{job.id}$", "methods": ["GET"],
        "max_faults": 1})  # fmt: skip
    slow: dict[str, object] = {}

    def slow_call() -> None:
        try:
            slow["job"] = victim.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job.id), timeout=30)
        except grpc.RpcError as error:
            slow["error"] = error

    caller = threading.Thread(target=slow_call)
    caller.start()
    try:
        eventually(lambda: fleet.runtime.admin("GET", "/faults").json()["injected"] == 1,
                   10, "the slow call reached the upstream")  # fmt: skip
        victim.terminate()
        for _ in range(20):  # calls HAProxy still sends it are refused, then retried elsewhere
            _list_jobs(fleet)
        fleet.haproxy.wait_status(victim.name, "DOWN", timeout=10)
        assert victim.running(), "the replica stopped before HAProxy took it out"
        assert victim.healthz() == 503
    finally:
        caller.join(30)
        fleet.runtime.admin("PUT", "/faults", json={})
    assert "job" in slow, f"the in-flight call failed during the drain: {slow.get('error')}"
    assert victim.wait() == 0


def test_a_request_id_retried_on_another_replica_returns_the_first_job(fleet: Fleet) -> None:
    request = run_request(request_id=f"fleet-{uuid.uuid4()}")
    fleet.runtime.clear_counts()
    first = fleet.jobs.RunJob(request, timeout=30).job  # through HAProxy: any replica
    for replica in fleet.replicas:  # then straight to each one, so surely another replica
        again = replica.jobs.RunJob(request, timeout=30).job
        assert again.id == first.id
    assert fleet.runtime.job_posts() == 1


def test_the_local_runtime_counts_requests_per_path(fleet: Fleet) -> None:
    """The admin counter the fleet tests and bench/fleet.py read (GET/DELETE
    /_local/request-counts, behind the admin token)."""
    job = fleet.jobs.RunJob(run_request(), timeout=30).job
    fleet.wait_terminal(job.id)
    fleet.runtime.clear_counts()
    assert fleet.runtime.job_requests(job.id) == 0
    for _ in range(3):
        fleet.replicas[0].jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job.id), timeout=10)
    assert fleet.runtime.job_requests(job.id) == 3
    refused = requests.get(f"{fleet.runtime.url}/_local/request-counts", timeout=10)
    assert refused.status_code == 401


@pytest.mark.parametrize("secret", ["redis password", "local runtime token"])
def test_no_secret_in_any_log(fleet: Fleet, secret: str) -> None:
    value = REDIS_PASSWORD if secret == "redis password" else fleet.runtime.token
    _list_jobs(fleet)
    for replica in fleet.replicas:
        assert value not in replica.all_stderr(), f"{secret} in {replica.name}'s log"
    assert value not in fleet.haproxy.log()


def test_healthz_of_a_supervisor_follows_its_workers(tmp_path: Path) -> None:
    """`serve --workers 2`: the supervisor serves the metrics port, the workers serve gRPC;
    its /healthz reports theirs (200 once they serve), and stops saying 200 when they drain."""
    proc = start(["serve", "--listen", "127.0.0.1:0", "--workers", "2", "--no-local-runtime",
                  "--metrics-listen", "127.0.0.1:0"], tmp_path)  # fmt: skip
    url = f"http://{proc.ready['metrics_address']}/healthz"
    try:
        reply = requests.get(url, timeout=5)
        assert (reply.status_code, reply.text) == (200, "SERVING\n")
        proc.popen.send_signal(signal.SIGTERM)

        def not_serving() -> bool:
            try:
                return requests.get(url, timeout=2).status_code == 503
            except requests.ConnectionError:
                return proc.popen.poll() is not None  # gone: as good as 503 for a balancer

        eventually(not_serving, 30, "/healthz stops saying 200")
    finally:
        proc.stop()
