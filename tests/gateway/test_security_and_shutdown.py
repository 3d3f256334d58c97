"""TLS, mTLS, refusing plaintext beyond loopback, graceful shutdown with calls in flight."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from runtime_gateway.v1 import jobs_pb2, jobs_pb2_grpc
from tests.gateway.conftest import GatewayClient
from tests.pki import make_pki
from tests.procs import CLI, start


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl."""
    return make_pki(tmp_path_factory.mktemp("pki"), ("server", "client"))


def _health(channel: grpc.Channel) -> int:
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    return int(reply.status)


def test_tls(pki: Path, tmp_path: Path) -> None:
    proc = start(
        ["serve", "--listen", "127.0.0.1:0", "--no-local-runtime",
         "--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key")],
        tmp_path,
    )  # fmt: skip
    try:
        address = proc.ready["address"]
        creds = grpc.ssl_channel_credentials(root_certificates=(pki / "ca.pem").read_bytes())
        with grpc.secure_channel(address, creds) as channel:
            assert _health(channel) == health_pb2.HealthCheckResponse.SERVING
        with grpc.insecure_channel(address) as channel, pytest.raises(grpc.RpcError):
            _health(channel)  # plaintext clients cannot talk to a TLS gateway
        # The health command (the container's HEALTHCHECK) probes over TLS when told how.
        assert _health_command(address, tmp_path) == 1  # plaintext: refused
        assert _health_command(address, tmp_path, "--tls-ca", str(pki / "ca.pem")) == 0
        env = {"RUNTIME_GATEWAY_HEALTH_TLS_CA": str(pki / "ca.pem")}
        assert _health_command(address, tmp_path, env=env) == 0
    finally:
        assert proc.stop() == 0
    # The plaintext attempts failed TLS handshakes; gRPC's C core reports them in lines of
    # its own, which must not break the JSON log.
    for line in filter(None, proc.stderr().splitlines()):
        json.loads(line)


def _health_command(address: str, cwd: Path, *flags: str, env: dict[str, str] | None = None) -> int:
    """`runtime-gateway health` as the container runs it; its exit status."""
    done = subprocess.run(
        [*CLI, "health", "--address", address, "--timeout", "10", *flags],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        timeout=60,
        check=False,
    )
    return done.returncode


def test_mutual_tls(pki: Path, tmp_path: Path) -> None:
    proc = start(
        ["serve", "--listen", "127.0.0.1:0", "--no-local-runtime",
         "--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key"),
         "--tls-client-ca", str(pki / "ca.pem")],
        tmp_path,
    )  # fmt: skip
    try:
        address = proc.ready["address"]
        ca = (pki / "ca.pem").read_bytes()
        with_cert = grpc.ssl_channel_credentials(
            root_certificates=ca,
            private_key=(pki / "client.key").read_bytes(),
            certificate_chain=(pki / "client.pem").read_bytes(),
        )
        with grpc.secure_channel(address, with_cert) as channel:
            assert _health(channel) == health_pb2.HealthCheckResponse.SERVING
        without = grpc.ssl_channel_credentials(root_certificates=ca)
        with grpc.secure_channel(address, without) as channel, pytest.raises(grpc.RpcError):
            _health(channel)
        tls = ("--tls-ca", str(pki / "ca.pem"))
        assert _health_command(address, tmp_path, *tls) == 1  # no client certificate
        client = ("--tls-client-cert", str(pki / "client.pem"))
        key = ("--tls-client-key", str(pki / "client.key"))
        assert _health_command(address, tmp_path, *tls, *client, *key) == 0
    finally:
        assert proc.stop() == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--listen", "0.0.0.0:0"], "refusing to serve plaintext"),
        (["--listen", "127.0.0.1:0", "--tls-cert", "/nonexistent.pem"], "go together"),
        (
            [
                "--listen",
                "127.0.0.1:0",
                "--tls-cert",
                "/nonexistent.pem",
                "--tls-key",
                "/nonexistent.key",
            ],
            "cannot read TLS files",
        ),
        (["--listen", "127.0.0.1:0", "--api-key", "team=abc"], "64 hex digits"),
    ],
)
def test_unsafe_or_broken_settings_are_refused(
    args: list[str], message: str, tmp_path: Path
) -> None:
    # Nothing binds beyond loopback here: the check fails before any socket is opened.
    result = subprocess.run([*CLI, "serve", "--no-local-runtime", *args], capture_output=True,
                            text=True, timeout=30, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_graceful_shutdown_finishes_calls_in_flight(gateway: GatewayClient, tmp_path: Path) -> None:
    """SIGTERM: health turns NOT_SERVING, new calls are refused, the in-flight call completes."""
    up = gateway.upstream
    port = up.url.rsplit(":", 1)[1]
    proc = start(
        ["serve", "--listen", "127.0.0.1:0", "--no-local-runtime", "--grace-seconds", "10"],
        tmp_path,
        env={"HTTP_PROXY": f"http://127.0.0.1:{port}", "NO_PROXY": "127.0.0.1,localhost",
             "IAM_URL": "http://iam.cloud.example.test",
             "RUNTIME_GATEWAY_ALLOW_UPSTREAM": "*.cloud.example.test"},
    )  # fmt: skip
    outcome: dict[str, object] = {}
    try:
        channel = grpc.insecure_channel(proc.ready["address"])
        jobs = jobs_pb2_grpc.JobServiceStub(channel)
        md = gateway.cloud()
        jobs.ListJobs(
            jobs_pb2.ListJobsRequest(page_size=1), metadata=md, timeout=30
        )  # warm: token, instance
        up.faults(latency_ms=1500, path_pattern="/jobs$", methods=["GET"])

        def slow_call() -> None:
            try:
                outcome["reply"] = jobs.ListJobs(
                    jobs_pb2.ListJobsRequest(page_size=1), metadata=md, timeout=30
                )
            except grpc.RpcError as error:
                outcome["error"] = error

        caller = threading.Thread(target=slow_call)
        caller.start()
        time.sleep(0.5)  # the call is now waiting on the slow upstream
        proc.popen.send_signal(signal.SIGTERM)
        caller.join(30)
        assert "reply" in outcome, outcome.get("error")
        assert proc.popen.wait(30) == 0
        channel.close()
    finally:
        up.faults()
        proc.stop()
    events = proc.stderr()
    assert events.index('"shutdown_started"') < events.index('"shutdown_complete"')
