"""Shared by the other-language tests: the SDK's reading of a job's result, README snippets."""

from __future__ import annotations

import json
import re
from pathlib import Path

import grpc

from runtime_gateway.v1 import jobs_pb2, jobs_pb2_grpc
from tests.procs import ROOT

README = ROOT / "README.md"


def sdk_counts(address: str, job_id: str) -> dict[str, int]:
    """The job's counts as qiskit-ibm-runtime decodes them from `result_json`."""
    from qiskit_ibm_runtime import RuntimeDecoder

    with grpc.insecure_channel(address) as channel:
        reply = jobs_pb2_grpc.JobServiceStub(channel).GetJobResult(
            jobs_pb2.GetJobResultRequest(job_id=job_id), timeout=30
        )
    result = json.loads(reply.result_json, cls=RuntimeDecoder)
    return dict(result[0].data.c.get_counts())


def readme_snippets(source: Path) -> list[str]:
    """The README's code blocks marked `<!-- snippet: PATH -->` for this file."""
    rel = source.relative_to(ROOT).as_posix()
    pattern = re.compile(rf"<!-- snippet: {re.escape(rel)} -->\n```\w*\n(.*?)```", re.S)
    return pattern.findall(README.read_text())


def assert_readme_shows(source: Path) -> None:
    """Each README snippet of `source` is a verbatim part of the tested program."""
    snippets = readme_snippets(source)
    assert snippets, f"README.md has no snippet of {source.name}"
    text = source.read_text()
    for snippet in snippets:
        assert snippet in text, f"README.md's snippet of {source.name} drifted from the file"


def check_bell_run(address: str, out: dict) -> None:
    """What every language's Bell program must have seen, checked against the SDK."""
    assert "ibm_brisbane" in out["backends"] and "ibmq_qasm_simulator" in out["backends"]
    assert out["state"] == "JOB_STATE_COMPLETED"
    counts = {k: int(v) for k, v in out["counts"].items()}
    assert sum(counts.values()) == 1000 and set(counts) <= {"00", "01", "10", "11"}
    assert counts == sdk_counts(address, out["jobId"])
    assert out["reason"] == "JOB_NOT_FOUND"
