from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.gateway.conftest import (  # noqa: F401 - shared by tests/gateway, tests/streams, tests/client
    accounts_dir,
    gateway,
    upstream,
)
from tests.procs import Proc, start


@pytest.fixture(scope="module")
def gateway_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    """`runtime-gateway serve` as a real subprocess on a free loopback port."""
    tmp = tmp_path_factory.mktemp("gateway")
    proc = start(["serve", "--listen", "127.0.0.1:0"], tmp)
    yield proc
    proc.stop()
