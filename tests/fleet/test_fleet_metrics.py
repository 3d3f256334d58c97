"""What an operator sees of the fleet in /metrics: each watched job has one leader across the
replicas and followers elsewhere; `runtime_gateway_redis_up` follows Redis; while Redis is
away every replica polls its watched jobs alone."""

from __future__ import annotations

import grpc

from runtime_gateway.v1 import jobs_pb2
from tests.fleet.conftest import Fleet, eventually, run_request


def _roles(fleet: Fleet, role: str) -> float:
    return sum(r.metric("runtime_gateway_watch_roles", role=role) for r in fleet.replicas)


def test_roles_and_redis_up_in_metrics(fleet: Fleet) -> None:
    fleet.runtime.admin("POST", "/queue/pause")
    streams: list[grpc.Future] = []
    try:
        job_id = fleet.jobs.RunJob(run_request(), timeout=30).job.id
        for replica in fleet.replicas:  # one stream on each replica, directly
            stream = replica.jobs.WatchJob(jobs_pb2.WatchJobRequest(job_id=job_id), timeout=60)
            streams.append(stream)
            next(stream)  # its first update: the watcher is running
        eventually(lambda: _roles(fleet, "leader") == 1 and _roles(fleet, "follower") == 2,
                   20, "one leader and two followers")  # fmt: skip
        assert all(r.metric("runtime_gateway_redis_up") == 1 for r in fleet.replicas)
        fleet.redis.stop()
        eventually(lambda: all(r.metric("runtime_gateway_redis_up") == 0 for r in fleet.replicas),
                   20, "every replica reporting Redis down")  # fmt: skip
        eventually(lambda: _roles(fleet, "alone") == 3, 20, "every replica polling alone")
        fleet.redis.start()
        eventually(lambda: _roles(fleet, "leader") == 1 and _roles(fleet, "follower") == 2,
                   30, "one leader again")  # fmt: skip
    finally:
        fleet.runtime.admin("POST", "/queue/resume")
        for stream in streams:
            stream.cancel()
