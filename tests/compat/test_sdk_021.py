"""The 0.21 SDK's ibm_quantum channel (IBM Quantum Classic) against the local runtime.

0.21.2 needs qiskit<1.1, which cannot share a virtualenv with the newest SDK, so it runs
in its own (.venv-sdk021, built by `make test` from tests/compat/sdk021/requirements.txt).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.compat.conftest import TOKEN
from tests.procs import ROOT, Proc

pytestmark = pytest.mark.compat

VENV_PYTHON = ROOT / ".venv-sdk021" / "bin" / "python"
FLOW = Path(__file__).parent / "sdk021" / "flow.py"


@pytest.fixture(scope="module")
def observed(local_runtime_process: Proc) -> dict:
    if not VENV_PYTHON.exists():
        pytest.fail(".venv-sdk021 is missing: `make test` builds it (make sdk021-venv)")
    result = subprocess.run(
        [str(VENV_PYTHON), str(FLOW), local_runtime_process.ready["url"], TOKEN],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "HOME": str(ROOT / ".venv-sdk021")},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return dict(json.loads(result.stdout))


def test_it_really_is_the_021_sdk(observed: dict) -> None:
    assert observed["sdk_version"] == "0.21.2"


def test_login_instances_and_backends(observed: dict) -> None:
    assert observed["instances"] == ["local-hub/local-group/local-project", "ibm-q/open/main"]
    assert "ibmq_qasm_simulator" in observed["backends"] and "ibm_torino" in observed["backends"]
    assert observed["big_backends"] == ["ibm_brisbane", "ibm_torino"]
    assert observed["least_busy"] in observed["backends"]


def test_run_sampler_and_result(observed: dict) -> None:
    counts = observed["run_counts"]
    assert set(counts) == {"00", "11"} and sum(counts.values()) == 1000
    assert observed["run_status"] == "DONE"
    assert set(observed["sampler_v2_counts"]) == {"00", "11"}


def test_jobs_job_logs_delete(observed: dict) -> None:
    assert observed["jobs_tagged"] == [observed["run_job_id"]]
    assert observed["job_lookup_status"] in ("JobStatus.DONE", "DONE")
    assert observed["logs_have_start"] is True
    assert observed["deleted"] is True
