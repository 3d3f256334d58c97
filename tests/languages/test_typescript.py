"""The generated TypeScript client (clients/typescript) against a live gateway.

Its example program lists backends, runs a Bell Sampler job (OpenQASM 3), follows WatchJob to
the terminal update, reads the counts from the typed result and an error's ErrorInfo reason.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.languages.conftest import assert_readme_shows, check_bell_run
from tests.procs import ROOT, Proc

TS_DIR = ROOT / "clients" / "typescript"


@pytest.fixture(scope="module")
def built() -> None:
    node = shutil.which("node")
    if node is None or not (TS_DIR / "node_modules" / ".bin" / "tsc").exists():
        pytest.fail("Node.js and clients/typescript/node_modules are required: run `make test`")
    subprocess.run(
        [node, str(TS_DIR / "node_modules" / ".bin" / "tsc"), "-p", str(TS_DIR)],
        check=True,
        timeout=300,
    )


def test_the_typescript_client_runs_a_bell_job(built: None, gateway_process: Proc) -> None:
    address = gateway_process.ready["address"]
    result = subprocess.run(
        ["node", str(TS_DIR / "dist" / "examples" / "bell.js"), address],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    check_bell_run(address, json.loads(result.stdout))


def test_the_readme_shows_the_tested_program() -> None:
    assert_readme_shows(TS_DIR / "examples" / "bell.ts")
    assert_readme_shows(TS_DIR / "src" / "index.ts")
