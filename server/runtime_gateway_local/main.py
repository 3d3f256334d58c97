"""`runtime-gateway local-runtime`: the local runtime as a process of its own."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

import structlog

from runtime_gateway_local.runtime import LocalRuntime, LocalRuntimeSettings

log = structlog.get_logger("runtime_gateway_local")


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise OSError(f"--listen must be HOST:PORT, got {listen!r}")
    return host.strip("[]"), int(port)


def run_local_runtime(
    settings: LocalRuntimeSettings, on_ready: Callable[[dict[str, Any]], None]
) -> int:
    runtime = LocalRuntime(settings).start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    on_ready(runtime.info())
    log.info("local_runtime_ready", url=runtime.base_url, backends=len(runtime.catalog.names()))
    stop.wait()
    log.info("local_runtime_stopping")
    runtime.stop()
    return 0
