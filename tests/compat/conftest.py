"""The real qiskit-ibm-runtime SDK, unchanged, against a local runtime process on loopback.

The recipe (also in the README): the local runtime accepts proxy-form requests and routes
them by host-name prefix, so with HTTP_PROXY=http://127.0.0.1:PORT and
IAM_URL=http://iam.cloud.example.test the SDK reaches it for every IBM host it derives from
url="http://cloud.example.test".
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.procs import Proc, start

TOKEN = "compat-token-0123456789"
DOMAIN = "cloud.example.test"


@pytest.fixture(scope="session")
def local_runtime_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    tmp: Path = tmp_path_factory.mktemp("local-runtime")
    proc = start(
        ["local-runtime", "--listen", "127.0.0.1:0", "--token", TOKEN, "--workers", "2"], tmp
    )
    yield proc
    died = proc.popen.poll()
    proc.stop()
    assert died is None, (
        f"the local runtime died (exit {died}) during the run:\n{proc.stderr()[-3000:]}"
    )


@pytest.fixture(scope="module")
def sdk_env(local_runtime_process: Proc) -> Iterator[dict[str, str]]:
    port = local_runtime_process.ready["url"].rsplit(":", 1)[1]
    env = {
        "HTTP_PROXY": f"http://127.0.0.1:{port}",
        "http_proxy": f"http://127.0.0.1:{port}",
        "IAM_URL": f"http://iam.{DOMAIN}",
        "NO_PROXY": "",
        "no_proxy": "",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        for name in (
            "QISKIT_IBM_TOKEN",
            "QISKIT_IBM_URL",
            "QISKIT_IBM_INSTANCE",
            "QISKIT_IBM_CHANNEL",
        ):
            patch.delenv(name, raising=False)
        yield env
