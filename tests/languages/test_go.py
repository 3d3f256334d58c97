"""The generated Go client (clients/go) against a live gateway, built in GOPATH mode.

Go modules cannot be downloaded here: the program builds against Debian's grpc-go and
protobuf packages in /usr/share/gocode (`make go-deps` installs them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.languages.conftest import assert_readme_shows, check_bell_run
from tests.procs import ROOT, Proc

GO_DIR = ROOT / "clients" / "go"
IMPORT_PATH = "runtime-gateway/clients/go"  # the protos' go_package prefix


@pytest.fixture(scope="module")
def bell_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = shutil.which("go")
    if go is None or not Path("/usr/share/gocode/src/google.golang.org/grpc").is_dir():
        pytest.fail("Go and Debian's grpc-go are required: run `make test` (make go-deps)")
    gopath = tmp_path_factory.mktemp("gopath")
    link = gopath / "src" / IMPORT_PATH
    link.parent.mkdir(parents=True)
    link.symlink_to(GO_DIR)
    binary = gopath / "bell"
    env = {**os.environ, "GOPATH": f"{gopath}:/usr/share/gocode", "GO111MODULE": "off"}
    subprocess.run(
        [go, "build", "-o", str(binary), f"{IMPORT_PATH}/examples/bell"],
        check=True,
        cwd=gopath,
        env=env,
        timeout=600,
    )
    packages = [f"{IMPORT_PATH}/runtimegatewayv1", f"{IMPORT_PATH}/examples/bell"]
    subprocess.run([go, "vet", *packages], check=True, cwd=gopath, env=env, timeout=600)
    return binary


def test_the_go_client_runs_a_bell_job(bell_binary: Path, gateway_process: Proc) -> None:
    address = gateway_process.ready["address"]
    result = subprocess.run(
        [str(bell_binary), address], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    check_bell_run(address, json.loads(result.stdout))


def test_the_readme_shows_the_tested_program() -> None:
    assert_readme_shows(GO_DIR / "examples" / "bell" / "main.go")
