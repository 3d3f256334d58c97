from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.conftest import GatewayClient, Upstream
from tests.procs import start

POLL = 0.1


def serve_args(extra: list[str] | None = None) -> list[str]:
    return ["serve", "--listen", "127.0.0.1:0", "--no-local-runtime", "--watch-poll-seconds", str(POLL),
            "--watch-max-poll-seconds", "0.5", "--watch-heartbeat-seconds", "1", *(extra or [])]  # fmt: skip


def proxy_env(upstream: Upstream) -> dict[str, str]:
    port = upstream.url.rsplit(":", 1)[1]
    return {"HTTP_PROXY": f"http://127.0.0.1:{port}", "http_proxy": f"http://127.0.0.1:{port}",
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
            "IAM_URL": "http://iam.cloud.example.test",
            "RUNTIME_GATEWAY_ALLOW_UPSTREAM": f"*.cloud.example.test,127.0.0.1:{port}"}  # fmt: skip


@pytest.fixture(scope="module")
def streamer(
    upstream: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayClient]:
    """A gateway with fast polling and short heartbeats, before the shared upstream."""
    tmp: Path = tmp_path_factory.mktemp("streamer")
    proc = start(serve_args(), tmp, env=proxy_env(upstream))
    client = GatewayClient(proc, upstream)
    upstream.admin("PUT", "/execution", json={"min_seconds": 0.5})  # jobs are visibly RUNNING
    yield client
    upstream.admin("PUT", "/execution", json={"min_seconds": 0})
    client.channel.close()
    proc.stop()
