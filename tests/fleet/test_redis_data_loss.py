"""A Redis that loses its data while replicas run (no persistence, restarted empty), as real
processes: two or three `runtime-gateway serve` on one real `redis-server` (restarted with
`RedisServer.restart()`, which loses everything) and one `runtime-gateway local-runtime`.

- A RunJob retried with the same request id after the loss returns the first job, and the
  local runtime holds exactly one job (the gateway searches for it instead of submitting).
- Page tokens keep working across replicas, including one started after the loss.
- The loss is logged once per replica (`redis_data_lost`), without the Redis password.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
import requests

from runtime_gateway.v1 import jobs_pb2, jobs_pb2_grpc
from tests.procs import Proc, start
from tests.redis_server import RedisServer

PASSWORD = "redis-SECRET-pw-loss-7e31a9"  # recognisable: looked for in every log
RUNTIME_TOKEN = "local-SECRET-token-loss-52c0d4"
QASM_BELL = (
    'OPENQASM 3.0; include "stdgates.inc"; qubit[2] q; bit[2] c; '
    "h q[0]; cx q[0], q[1]; c = measure q;"
)
INPUTS = json.dumps({"pubs": [[QASM_BELL, None, 50]], "version": 2, "options": {}})


class Gateway:
    def __init__(self, proc: Proc) -> None:
        self.proc = proc
        self.channel = grpc.insecure_channel(proc.ready["address"])
        self.jobs = jobs_pb2_grpc.JobServiceStub(self.channel)

    def run(self, request_id: str = "", tags: tuple[str, ...] = ()) -> jobs_pb2.Job:
        request = jobs_pb2.RunJobRequest(
            program_id="sampler",
            backend="ibmq_qasm_simulator",
            inputs_json=INPUTS,
            request_id=request_id,
            tags=list(tags),
        )
        return self.jobs.RunJob(request, timeout=60).job

    def events(self, name: str) -> list[dict[str, Any]]:
        found = []
        for line in self.proc.stderr().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("event") == name:
                found.append(entry)
        return found

    def close(self) -> None:
        self.channel.close()
        self.proc.stop()


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("redis-loss")


@pytest.fixture(scope="module")
def runtime(tmp: Path) -> Iterator[Proc]:
    proc = start(
        ["local-runtime", "--listen", "127.0.0.1:0", "--token", RUNTIME_TOKEN, "--workers", "1"],
        tmp,
    )
    yield proc
    proc.stop()


@pytest.fixture
def redis_server(tmp: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp / f"redis-{time.monotonic_ns()}", password=PASSWORD).start()
    yield server
    server.stop()


class Fleet:
    def __init__(self, tmp: Path, redis_server: RedisServer, runtime: Proc) -> None:
        self.tmp, self.redis, self.runtime = tmp, redis_server, runtime
        self.gateways: list[Gateway] = []

    def start(self) -> Gateway:
        env = {  # secrets by environment, as an operator should pass them
            "RUNTIME_GATEWAY_REDIS_URL": self.redis.url,
            "RUNTIME_GATEWAY_LOCAL_RUNTIME_URL": str(self.runtime.ready["url"]),
            "RUNTIME_GATEWAY_LOCAL_RUNTIME_TOKEN": RUNTIME_TOKEN,
        }
        gateway = Gateway(start(["serve", "--listen", "127.0.0.1:0"], self.tmp, env=env))
        self.gateways.append(gateway)
        return gateway

    def job_ids(self, tag: str) -> list[str]:
        """The runtime's own list of jobs with `tag` (not through any gateway)."""
        reply = requests.get(
            f"{self.runtime.ready['url']}/api/v1/jobs",
            params={"tags": tag, "limit": 100},
            headers={
                "Authorization": f"apikey {RUNTIME_TOKEN}",
                "Service-CRN": self.runtime.ready["instances"]["crns"][0],
                "IBM-API-Version": "2026-04-15",
            },
            timeout=10,
        )
        reply.raise_for_status()
        return [str(job["id"]) for job in reply.json()["jobs"]]

    def lose_redis_data(self) -> None:
        """Restarts Redis empty, then waits (bounded) until every running gateway noticed."""
        self.redis.restart()
        deadline = time.monotonic() + 30
        while not all(g.events("redis_data_lost") for g in self.gateways):
            assert time.monotonic() < deadline, "a gateway did not notice the loss in 30 s"
            time.sleep(0.1)


@pytest.fixture
def fleet(tmp: Path, redis_server: RedisServer, runtime: Proc) -> Iterator[Fleet]:
    made = Fleet(tmp, redis_server, runtime)
    yield made
    for gateway in made.gateways:
        gateway.close()
    for gateway in made.gateways:
        assert PASSWORD not in gateway.proc.stderr()
        assert RUNTIME_TOKEN not in gateway.proc.stderr()


def test_a_retry_after_redis_lost_its_data_returns_the_first_job(fleet: Fleet) -> None:
    first, second = fleet.start(), fleet.start()
    tag = f"loss-{time.monotonic_ns()}"
    job = first.run("survive-the-loss", tags=(tag,))
    assert second.run("survive-the-loss", tags=(tag,)).id == job.id  # before the loss

    fleet.lose_redis_data()
    for gateway in (first, second):
        [lost] = gateway.events("redis_data_lost")  # logged once per loss
        assert lost["lost_at"] > 0

    # Redis forgot the id: the retry searches the runtime and adopts the first job.
    assert second.run("survive-the-loss", tags=(tag,)).id == job.id
    assert first.run("survive-the-loss", tags=(tag,)).id == job.id
    assert fleet.job_ids(tag) == [job.id]  # the runtime has exactly one job
    # A new id for the same request submits a new job: the adopted one is recorded again, so
    # the new id's search (it is uncertain too, within the TTL) does not take it.
    other = first.run("a-new-id", tags=(tag,))
    assert other.id != job.id and sorted(fleet.job_ids(tag)) == sorted([job.id, other.id])


def test_after_a_loss_another_request_never_adopts_an_identical_job(fleet: Fleet) -> None:
    """Identical submissions are common (the same circuit run again). After a loss every
    request id Redis does not know is searched for, and the search must find only the job of
    that id (its request tag), not another request's identical job made before the loss."""
    first = fleet.start()
    tag = f"twin-{time.monotonic_ns()}"
    before = first.run("the-first-run", tags=(tag,))
    fleet.lose_redis_data()
    again = first.run("the-second-run", tags=(tag,))
    assert again.id != before.id
    assert sorted(fleet.job_ids(tag)) == sorted([before.id, again.id])
    # The gateway's own tag never shows: the caller sees the tags it gave.
    assert list(again.tags) == [tag] and list(before.tags) == [tag]


def _pages(gateway: Gateway, tag: str, token: str = "") -> jobs_pb2.ListJobsResponse:
    request = jobs_pb2.ListJobsRequest(page_size=2, tags=[tag], page_token=token)
    return gateway.jobs.ListJobs(request, timeout=30)


def test_page_tokens_keep_working_after_redis_lost_its_data(fleet: Fleet) -> None:
    first, second = fleet.start(), fleet.start()
    tag = f"pages-{time.monotonic_ns()}"
    made = {first.run(tags=(tag,)).id for _ in range(3)}
    page = _pages(first, tag)
    assert len(page.jobs) == 2 and page.next_page_token

    fleet.lose_redis_data()
    third = fleet.start()  # started after the loss: reads the key the others re-asserted

    rest = _pages(third, tag, page.next_page_token)  # a token signed before the loss
    assert {j.id for j in [*page.jobs, *rest.jobs]} == made and not rest.next_page_token
    page3 = _pages(third, tag)
    rest3 = _pages(first, tag, page3.next_page_token)  # and the other way round
    assert {j.id for j in [*page3.jobs, *rest3.jobs]} == made
    rest2 = _pages(second, tag, page3.next_page_token)
    assert {j.id for j in rest2.jobs} == {j.id for j in rest3.jobs}


def test_a_replica_started_before_the_others_noticed_the_loss_keeps_their_key(
    fleet: Fleet,
) -> None:
    """Redis restarted empty and a replica starts before the running ones looked: it must not
    put its own key in place of theirs. The running replica is paused (SIGSTOP) until the new
    one either waits for the fleet (`redis_fleet_settling`) or is ready, so the race is forced."""
    first = fleet.start()
    tag = f"race-{time.monotonic_ns()}"
    made = {first.run(tags=(tag,)).id for _ in range(3)}
    page = _pages(first, tag)
    first.proc.popen.send_signal(signal.SIGSTOP)
    try:
        fleet.redis.restart()
        before = set(fleet.tmp.glob("stderr-serve-*"))
        with ThreadPoolExecutor(1) as pool:
            starting = pool.submit(fleet.start)
            deadline = time.monotonic() + 60
            while not starting.done():
                assert time.monotonic() < deadline, "the second replica did not start in 60 s"
                logs = set(fleet.tmp.glob("stderr-serve-*")) - before
                if any("redis_fleet_settling" in p.read_text(errors="replace") for p in logs):
                    break
                time.sleep(0.05)
            first.proc.popen.send_signal(signal.SIGCONT)
            second = starting.result(timeout=60)
    finally:
        first.proc.popen.send_signal(signal.SIGCONT)
    rest = _pages(second, tag, page.next_page_token)  # a token signed before the loss
    assert {j.id for j in [*page.jobs, *rest.jobs]} == made
    page2 = _pages(second, tag)
    assert {j.id for j in _pages(first, tag, page2.next_page_token).jobs} == {
        j.id for j in rest.jobs
    }
