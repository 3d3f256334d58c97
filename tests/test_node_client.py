"""Another language uses the API: a Node.js client (grpc-js) loads protos/ and calls the gateway."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.procs import ROOT, Proc

NODE_DIR = ROOT / "tests" / "node"


def run_node(address: str, command: str) -> dict:
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        pytest.fail(
            "Node.js and tests/node/node_modules are required: run `make test` (it installs them)"
        )
    result = subprocess.run(
        [node, str(NODE_DIR / "client.js"), address, str(ROOT / "protos"), command],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_node_loads_the_protos_and_checks_health(gateway_process: Proc) -> None:
    result = run_node(gateway_process.ready["address"], "health")
    assert result["status"] == "SERVING"
    assert "RunJob" in result["services"]["JobService"]
    assert "WatchJob" in result["services"]["JobService"]
    assert "ListBackends" in result["services"]["BackendService"]
    assert "SaveAccount" in result["services"]["AccountService"]


def test_node_lists_backends(gateway_process: Proc) -> None:
    result = run_node(gateway_process.ready["address"], "backends")
    assert "ibm_brisbane" in result["names"] and result["qubits"]["ibm_brisbane"] == 127


def test_node_runs_a_job(gateway_process: Proc) -> None:
    result = run_node(gateway_process.ready["address"], "run")
    assert result["state"] == "JOB_STATE_COMPLETED"
    assert result["result_type"] == "PrimitiveResult"
