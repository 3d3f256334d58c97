"""The upstream allow-list (SSRF), sanitized upstream errors, readable upstream failures, and
the bounded log scrubber, against a real gateway process.

The "upstream" here is a stdlib HTTP server in the test playing IBM Quantum's auth API on an
allowed loopback port, and plain listening sockets on ports that are not allowed: whatever the
gateway is asked, those sockets must never see a connection.
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest

from runtime_gateway.v1 import accounts_pb2, accounts_pb2_grpc, backends_pb2, backends_pb2_grpc
from tests.gateway.conftest import error_info
from tests.procs import Proc, start

TOKEN = "ssrf-test-SECRET-token-4d2e8a1c9f"
LEAK = "internal-SECRET-page-91b7"  # in the fake upstream's HTML error page


class Trap:
    """A listening socket on a loopback port the gateway must never connect to."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]

    def connections(self) -> int:
        """Connections the kernel completed so far (they wait in the backlog until accepted)."""
        count = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return count
            conn.close()
            count += 1


class FakeAuth(ThreadingHTTPServer):
    """IBM Quantum's auth API (loginWithToken, /users/me), with the answers a test sets."""

    daemon_threads = True
    runtime_url = ""
    login_status = 200
    login_body = b""
    login_type = "application/json"


class FakeAuthHandler(BaseHTTPRequestHandler):
    server: FakeAuth

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.endswith("/users/loginWithToken"):
            if self.server.login_status != 200:
                self._send(self.server.login_status, self.server.login_body, self.server.login_type)
            else:
                self._send(200, json.dumps({"id": "access-" + secrets.token_hex(16)}).encode())
        else:
            self._send(404, b'{"error": {"message": "not found"}}')

    def do_GET(self) -> None:
        if self.path.endswith("/users/me"):
            runtime = self.server.runtime_url
            urls = {"http": runtime, "services": {"runtime": runtime}}
            self._send(200, json.dumps({"urls": urls}).encode())
        else:
            self._send(404, b'{"error": {"message": "not found"}}')

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def trap() -> Iterator[Trap]:
    t = Trap()
    yield t
    t.sock.close()


@pytest.fixture(scope="module")
def fake_auth() -> Iterator[FakeAuth]:
    server = FakeAuth(("127.0.0.1", 0), FakeAuthHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def refused_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    sock.close()
    return port


@pytest.fixture(scope="module")
def ssrf_gateway(
    fake_auth: FakeAuth, refused_port: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proc]:
    tmp: Path = tmp_path_factory.mktemp("ssrf")
    auth_port = fake_auth.server_address[1]
    proc = start(
        ["serve", "--listen", "127.0.0.1:0", "--no-local-runtime", "--log-level", "INFO",
         "--allow-upstream", f"127.0.0.1:{auth_port}", "--allow-upstream", f"127.0.0.1:{refused_port}"],
        tmp,
        env={"NO_PROXY": "*", "no_proxy": "*", "RUNTIME_GATEWAY_ALLOW_UPSTREAM": ""},
    )  # fmt: skip
    yield proc
    proc.stop()


def _metadata(url: str, channel: str = "ibm_quantum", token: str = TOKEN) -> list[tuple[str, str]]:
    return [
        ("authorization", f"Bearer {token}"),
        ("x-runtime-channel", channel),
        ("x-runtime-url", url),
    ]


def _list_backends(proc: Proc, md: list[tuple[str, str]]) -> grpc.RpcError:
    with grpc.insecure_channel(proc.ready["address"]) as channel:
        stub = backends_pb2_grpc.BackendServiceStub(channel)
        with pytest.raises(grpc.RpcError) as failure:
            stub.ListBackends(backends_pb2.ListBackendsRequest(), metadata=md, timeout=30)
    return failure.value


def test_a_url_outside_the_allow_list_is_refused_without_any_connection(
    ssrf_gateway: Proc, trap: Trap
) -> None:
    failure = _list_backends(ssrf_gateway, _metadata(f"http://127.0.0.1:{trap.port}/api"))
    assert failure.code() == grpc.StatusCode.PERMISSION_DENIED, failure.details()
    assert error_info(failure) == ("UPSTREAM_NOT_ALLOWED", "")  # no BadRequest: not a field error
    details = failure.details() or ""
    assert f"127.0.0.1:{trap.port}" in details and "--allow-upstream" in details
    assert "x-runtime-url" in details and TOKEN not in details
    assert trap.connections() == 0


@pytest.mark.parametrize(
    ("channel", "url"),
    [
        ("ibm_quantum", "https://cloud.ibm.com.evil.test/api"),
        ("ibm_quantum", "https://auth.quantum-computing.ibm.com@127.0.0.1:{trap}/api"),
        ("ibm_quantum", "http://127.0.0.1:{auth}@127.0.0.1:{trap}/api"),
        ("ibm_quantum", "http://127.1:{trap}/api"),
        ("ibm_quantum", "http://2130706433:{trap}/api"),
        ("ibm_quantum", "http://0x7f000001:{trap}/api"),
        ("ibm_quantum", "http://[::1]:{trap}/api"),
        ("ibm_quantum", "http://[::ffff:127.0.0.1]:{trap}/api"),
        ("ibm_quantum", "http://LOCALHOST:{trap}/api"),
        ("ibm_quantum", "http://127.0.0.1.:{trap}/api"),
        ("ibm_quantum", "HTTP://127.0.0.1:{trap}/api"),
        ("ibm_quantum", "http://127.0.0.1:{trap}\\@127.0.0.1:{auth}/api"),
        ("ibm_quantum", "http://auth.quantum-computing.ibm.com/api"),  # IBM, but not https
        ("ibm_quantum", "http://169.254.169.254/latest/meta-data"),
        ("ibm_quantum_platform", "http://169.254.169.254/"),
        ("ibm_quantum_platform", "https://CLOUD.IBM.COM.evil.test"),
    ],
)
def test_host_confusion_is_refused(
    ssrf_gateway: Proc, trap: Trap, fake_auth: FakeAuth, channel: str, url: str
) -> None:
    url = url.format(trap=trap.port, auth=fake_auth.server_address[1])
    md = _metadata(url, channel)
    if channel != "ibm_quantum":
        md.append(
            (
                "x-runtime-instance",
                "crn:v1:bluemix:public:quantum-computing:us-east:a/0123456789abcdef:inst::",
            )
        )
    failure = _list_backends(ssrf_gateway, md)
    if "@" in url:  # user information: a URL two parsers read two ways is malformed outright
        assert failure.code() == grpc.StatusCode.INVALID_ARGUMENT, failure.details()
        assert error_info(failure) == ("INVALID_ARGUMENT", "x-runtime-url")
    else:
        assert failure.code() == grpc.StatusCode.PERMISSION_DENIED, failure.details()
        assert error_info(failure)[0] == "UPSTREAM_NOT_ALLOWED"
    assert trap.connections() == 0


def test_resolving_the_account_already_refuses_it(ssrf_gateway: Proc) -> None:
    """GetActiveAccount contacts no upstream: the account itself is refused."""
    with grpc.insecure_channel(ssrf_gateway.ready["address"]) as channel:
        stub = accounts_pb2_grpc.AccountServiceStub(channel)
        with pytest.raises(grpc.RpcError) as failure:
            stub.GetActiveAccount(
                accounts_pb2.GetActiveAccountRequest(),
                metadata=_metadata("http://169.254.169.254/"),
                timeout=30,
            )
    assert failure.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "169.254.169.254:80" in (failure.value.details() or "")


def test_a_runtime_url_returned_by_the_upstream_is_checked(
    ssrf_gateway: Proc, fake_auth: FakeAuth, trap: Trap
) -> None:
    """An allowed auth server names, in /users/me, a runtime host that is not allowed."""
    fake_auth.runtime_url = f"http://127.0.0.1:{trap.port}/runtime"
    auth = f"http://127.0.0.1:{fake_auth.server_address[1]}/api"
    failure = _list_backends(ssrf_gateway, _metadata(auth, token=TOKEN + "-me"))
    assert failure.code() == grpc.StatusCode.PERMISSION_DENIED, failure.details()
    assert error_info(failure)[0] == "UPSTREAM_NOT_ALLOWED"
    assert "/users/me" in (failure.details() or "")
    assert trap.connections() == 0


def test_an_upstream_error_page_is_not_echoed(ssrf_gateway: Proc, fake_auth: FakeAuth) -> None:
    page = f"<html><body><h1>Forbidden</h1><pre>{LEAK} apikey={'x' * 40}</pre>{'z' * 5000}</body>"
    fake_auth.login_status, fake_auth.login_body = 403, page.encode()
    fake_auth.login_type = "text/html; charset=utf-8"
    try:
        auth = f"http://127.0.0.1:{fake_auth.server_address[1]}/api"
        failure = _list_backends(ssrf_gateway, _metadata(auth, token=TOKEN + "-html"))
    finally:
        fake_auth.login_status = 200
    details = failure.details() or ""
    assert failure.code() == grpc.StatusCode.UNAUTHENTICATED, details
    assert LEAK not in details and "<html" not in details and len(details) < 300
    assert "HTTP 403 (text/html" in details
    assert LEAK not in ssrf_gateway.stderr()


def test_ibm_json_error_messages_stay_readable_and_short(
    ssrf_gateway: Proc, fake_auth: FakeAuth
) -> None:
    message = "Login failed: \x1b[31mthe token\x00 is not valid " + "y" * 1000
    fake_auth.login_status = 401
    fake_auth.login_body = json.dumps({"error": {"message": message}}).encode()
    fake_auth.login_type = "application/json"
    try:
        auth = f"http://127.0.0.1:{fake_auth.server_address[1]}/api"
        failure = _list_backends(ssrf_gateway, _metadata(auth, token=TOKEN + "-json"))
    finally:
        fake_auth.login_status = 200
    details = failure.details() or ""
    assert failure.code() == grpc.StatusCode.UNAUTHENTICATED, details
    assert "Login failed: [31mthe token is not valid" in details
    assert "\x1b" not in details and "\x00" not in details and len(details) < 300


def test_a_refused_connection_says_so_in_the_error_and_the_log(
    ssrf_gateway: Proc, refused_port: int
) -> None:
    failure = _list_backends(ssrf_gateway, _metadata(f"http://127.0.0.1:{refused_port}/api"))
    details = failure.details() or ""
    assert failure.code() == grpc.StatusCode.UNAVAILABLE, details
    assert "connection refused" in details and f"127.0.0.1:{refused_port}" in details
    assert "/users/loginWithToken" in details
    assert TOKEN not in details
    events = [
        json.loads(line)
        for line in ssrf_gateway.stderr().splitlines()
        if line.startswith("{") and '"upstream_failed"' in line
    ]
    mine = [e for e in events if e.get("host") == f"127.0.0.1:{refused_port}"]
    assert len(mine) == 1, events  # once, after the retries
    assert mine[0]["level"] == "warning" and mine[0]["cause"] == "connection refused"
    assert mine[0]["method"] == "POST" and mine[0]["path"] == "/api/users/loginWithToken"
    assert TOKEN not in json.dumps(mine[0])


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_the_log_scrubber_stays_bounded_under_many_distinct_tokens(ssrf_gateway: Proc) -> None:
    """5,500 made-up 4 KB tokens: the scrubber keeps only the newest (at most 4 MiB), so the
    gateway's memory stops growing once it is full. Before the bound, every token stayed
    (22 MB here)."""
    md_base = [("x-runtime-channel", "ibm_quantum_platform")]

    def burst(count: int) -> None:
        with grpc.insecure_channel(ssrf_gateway.ready["address"]) as channel:
            stub = accounts_pb2_grpc.AccountServiceStub(channel)
            for _ in range(count):
                token = secrets.token_urlsafe(3000)  # 4,000 characters
                stub.GetActiveAccount(
                    accounts_pb2.GetActiveAccountRequest(),
                    metadata=[("authorization", f"Bearer {token}"), *md_base],
                    timeout=30,
                )

    pid = ssrf_gateway.popen.pid
    burst(1_500)  # fills the scrubber (and warms every allocator arena)
    before = _rss_kib(pid)
    burst(4_000)  # 16 MB of new tokens
    growth_mib = (_rss_kib(pid) - before) / 1024
    assert growth_mib < 8, f"the gateway grew by {growth_mib:.1f} MiB"


def test_workers_get_the_allow_list(
    refused_port: int, trap: Trap, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`--workers 2`: every worker allows the flag's entry (a refused connection, not a
    refusal) and refuses the rest, whichever worker a fresh connection reaches."""
    proc = start(
        ["serve", "--listen", "127.0.0.1:0", "--no-local-runtime", "--workers", "2",
         "--allow-upstream", f"127.0.0.1:{refused_port}"],
        tmp_path_factory.mktemp("ssrf-workers"),
        env={"NO_PROXY": "*", "no_proxy": "*", "RUNTIME_GATEWAY_ALLOW_UPSTREAM": ""},
    )  # fmt: skip
    try:
        for _ in range(6):  # fresh connections: the kernel spreads them over the workers
            allowed = _list_backends(proc, _metadata(f"http://127.0.0.1:{refused_port}/api"))
            assert allowed.code() == grpc.StatusCode.UNAVAILABLE, allowed.details()
            refused = _list_backends(proc, _metadata(f"http://127.0.0.1:{trap.port}/api"))
            assert error_info(refused)[0] == "UPSTREAM_NOT_ALLOWED"
        assert trap.connections() == 0
    finally:
        proc.stop()


def test_no_secret_in_this_gateways_log(ssrf_gateway: Proc) -> None:
    log = ssrf_gateway.stderr()
    assert '"upstream_failed"' in log and TOKEN not in log and LEAK not in log


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://iam.cloud.ibm.com/identity/token", True),
        ("https://eu-de.quantum.cloud.ibm.com/api/v1/jobs", True),
        ("https://api.global-search-tagging.test.cloud.ibm.com/v3", True),
        ("https://auth.quantum-computing.ibm.com/api", True),
        ("https://iam.cloud.ibm.com:8443/", False),  # IBM: port 443 only
        ("http://iam.cloud.ibm.com/", False),  # IBM: https only
        ("https://iam.cloud.ibm.com.evil.test/", False),
        ("https://evilcloud.ibm.com/", False),
        ("https://cloud.ibm.com@evil.test/", False),
        ("http://iam.example.test/identity", True),  # IAM_URL's origin
        ("https://iam.example.test/identity", False),  # not its scheme
        ("http://quantum.fake.test:9999/api", True),  # *.fake.test, any port
        ("http://a.b.fake.test/", True),
        ("http://fake.test/", False),  # '*.' is subdomains only
        ("http://xfake.test/", False),
        ("https://exact.test:8443/", True),
        ("https://exact.test/", False),  # other port
        ("http://[::1]:7000/", True),
        ("http://[0:0:0:0:0:0:0:1]:7000/", True),
        ("http://127.0.0.1:7000/", False),
        ("http://127.0.0.1:4000/api/v1", True),  # the local runtime
        ("ftp://exact.test:8443/", False),
    ],
)
def test_allow_list_matching(url: str, allowed: bool) -> None:
    from runtime_gateway_server.allowlist import UpstreamAllowList

    allow = UpstreamAllowList.for_gateway(
        ["*.fake.test", "exact.test:8443", "[::1]:7000"],
        local_url="http://127.0.0.1:4000",
        environ={"IAM_URL": "http://iam.example.test"},
    )
    assert allow.allows(url) is allowed
    assert allow.allows(url) is allowed  # the cached decision is the same


@pytest.mark.parametrize(
    "entry", ["http://x.test", "x.test/path", "user@x.test", "*.1.2.3.4", "x.test:99999", "*."]
)
def test_a_bad_allow_entry_stops_serve(entry: str, tmp_path: Path) -> None:
    import subprocess

    from tests.procs import CLI

    result = subprocess.run(
        [*CLI, "serve", "--no-local-runtime", "--allow-upstream", entry],
        capture_output=True, text=True, timeout=30, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "--allow-upstream" in result.stderr and "Traceback" not in result.stderr
