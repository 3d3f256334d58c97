from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.gateway.conftest import (  # noqa: F401 - shared by tests/gateway, tests/streams, tests/client
    accounts_dir,
    gateway,
    upstream,
)
from tests.procs import Proc, start

# Local runtimes started by the tests (and gateways' embedded ones) run device jobs without
# the realistic 2 s floor; tests that need jobs seen QUEUED/RUNNING set it (PUT /_local/execution).
os.environ.setdefault("RUNTIME_GATEWAY_LOCAL_JOB_SECONDS", "0")


@pytest.fixture(scope="module")
def gateway_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    """`runtime-gateway serve` as a real subprocess on a free loopback port."""
    tmp = tmp_path_factory.mktemp("gateway")
    proc = start(["serve", "--listen", "127.0.0.1:0"], tmp)
    yield proc
    proc.stop()
