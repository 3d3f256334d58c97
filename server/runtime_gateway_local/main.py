"""`runtime-gateway local-runtime`: the local runtime as a process of its own."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from typing import Any

import structlog

from runtime_gateway_local.runtime import LocalRuntime, LocalRuntimeSettings
from runtime_gateway_server.subprocesses import die_with_parent

log = structlog.get_logger("runtime_gateway_local")


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise OSError(f"--listen must be HOST:PORT, got {listen!r}")
    return host.strip("[]"), int(port)


def run_local_runtime(
    settings: LocalRuntimeSettings,
    on_ready: Callable[[dict[str, Any]], None],
    parent_pid: int | None = None,
) -> int:
    """Serves until SIGTERM/SIGINT, or until `parent_pid` (the embedding gateway) is gone."""
    if parent_pid is not None:
        die_with_parent(signal.SIGTERM, parent_pid)  # Linux: the kernel tells us at once
    runtime = LocalRuntime(settings).start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    on_ready(runtime.info())
    log.info("local_runtime_ready", url=runtime.base_url, backends=len(runtime.catalog.names()))
    # Elsewhere than Linux, a reparented process notices it here, within a second.
    while not stop.wait(1.0):
        if parent_pid is not None and os.getppid() != parent_pid:
            log.warning("local_runtime_parent_gone", parent_pid=parent_pid)
            break
    # Embedded, the gateway's own shutdown_complete stays the last line of their shared log.
    (log.debug if parent_pid is not None else log.info)("local_runtime_stopping")
    runtime.stop()
    return 0
