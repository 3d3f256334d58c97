"""A real `redis-server` (Debian's, installed by `make test`) on a free loopback port, for the
fleet tests: started in a temporary directory, stoppable and restartable on the same port (to
test outages), with an optional password and no persistence (a restart loses everything,
like a Redis that failed over to an empty replica)."""

from __future__ import annotations

import shutil
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RedisServer:
    """`url` is what `--redis-url` takes (with the password when one is set)."""

    directory: Path
    password: str | None = None
    port: int = field(default_factory=free_port)
    popen: subprocess.Popen[bytes] | None = None
    # TLS only (`rediss://`): a directory with ca.pem, server.pem and server.key for 127.0.0.1.
    tls: Path | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.tls is not None:
            return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={self.tls / 'ca.pem'}"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=0.5)
        if self.tls is None:
            return sock
        context = ssl.create_default_context(cafile=str(self.tls / "ca.pem"))
        return context.wrap_socket(sock, server_hostname="127.0.0.1")

    def start(self, timeout: float = 20.0) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: run `make test` (make system-deps)")
        args = [
            binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--logfile", str(self.directory / f"redis-{self.port}.log"),
            "--daemonize", "no",
        ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        if self.tls is not None:
            args[args.index("--port") + 1] = "0"  # TLS only
            args += [
                "--tls-port", str(self.port),
                "--tls-cert-file", str(self.tls / "server.pem"),
                "--tls-key-file", str(self.tls / "server.key"),
                "--tls-ca-cert-file", str(self.tls / "ca.pem"),
                "--tls-auth-clients", "no",
            ]  # fmt: skip
        self.directory.mkdir(parents=True, exist_ok=True)
        self.popen = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.popen.returncode}")
            try:
                with self._connect() as sock:
                    if self.password:
                        sock.sendall(f"AUTH {self.password}\r\n".encode())
                        sock.recv(64)
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port} in {timeout} s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self.popen = None

    def restart(self) -> None:
        """Stops and starts again on the same port: everything stored is gone."""
        self.stop()
        self.start()
