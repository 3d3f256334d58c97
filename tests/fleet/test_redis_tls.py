"""`rediss://`: replicas reach Redis over TLS (Debian's redis-server with a TLS port only,
a CA made with openssl), with a password; the shared request ids work through it and the
password is in no log line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from runtime_gateway.v1 import jobs_pb2, jobs_pb2_grpc
from tests.pki import make_pki
from tests.procs import Proc, start
from tests.redis_server import RedisServer

PASSWORD = "tls-redis-SECRET-7f3a91"
QASM_BELL = (
    'OPENQASM 3.0; include "stdgates.inc"; qubit[2] q; bit[2] c; '
    "h q[0]; cx q[0], q[1]; c = measure q;"
)


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    pki = make_pki(tmp_path_factory.mktemp("redis-pki"))
    server = RedisServer(pki / "data", password=PASSWORD, tls=pki).start()
    yield server
    server.stop()


def test_replicas_share_request_ids_over_tls(tls_redis: RedisServer, tmp_path: Path) -> None:
    assert tls_redis.url.startswith("rediss://")
    local = start(["local-runtime", "--listen", "127.0.0.1:0", "--workers", "1"], tmp_path)
    gateways: list[Proc] = []
    try:
        env = {
            "RUNTIME_GATEWAY_REDIS_URL": tls_redis.url,
            "RUNTIME_GATEWAY_LOCAL_RUNTIME_URL": local.ready["url"],
            "RUNTIME_GATEWAY_LOCAL_RUNTIME_TOKEN": local.ready["token"],
        }
        gateways = [start(["serve", "--listen", "127.0.0.1:0"], tmp_path, env=env) for _ in "ab"]
        request = jobs_pb2.RunJobRequest(
            program_id="sampler", backend="ibmq_qasm_simulator", request_id="tls-retry-1",
            inputs_json=json.dumps({"pubs": [[QASM_BELL, None, 20]], "version": 2}),
        )  # fmt: skip
        ids = []
        for proc in gateways:
            with grpc.insecure_channel(proc.ready["address"]) as channel:
                ids.append(jobs_pb2_grpc.JobServiceStub(channel).RunJob(request, timeout=60).job.id)
        assert ids[0] == ids[1]
    finally:
        for proc in gateways:
            proc.stop()
        local.stop()
    for proc in gateways:
        log = proc.stderr()
        assert '"request_id_store": "redis"' in log
        assert "rediss://:***@127.0.0.1" in log
        assert PASSWORD not in log
