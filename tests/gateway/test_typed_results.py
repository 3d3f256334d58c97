"""Typed results through the gateway: GetJobResult and the terminal update of WatchJob.

Jobs run on the local runtime playing IBM (cloud channel, real HTTP); the typed result the
gateway decodes (NumPy only) must agree exactly with what qiskit-ibm-runtime's RuntimeDecoder
makes of the same `result_json`.
"""

from __future__ import annotations

import json

from qiskit_ibm_runtime import RuntimeDecoder

from runtime_gateway.v1 import jobs_pb2, results_pb2
from tests.gateway.conftest import QASM_BELL, GatewayClient, bell_inputs

ESTIMATOR_INPUTS = json.dumps(
    {
        "pubs": [[QASM_BELL.replace(" bit[2] c;", "").replace(" c = measure q;", ""),
                  [["ZZ", "XX"], ["IZ", "ZI"]], None, 0.02]],
        "version": 2,
        "options": {},
    }
)  # fmt: skip


def _run(gateway: GatewayClient, program: str, inputs: str) -> str:
    md = gateway.cloud()
    job = gateway.jobs.RunJob(
        jobs_pb2.RunJobRequest(
            program_id=program, backend="ibmq_qasm_simulator", inputs_json=inputs
        ),
        metadata=md,
        timeout=60,
    ).job
    assert gateway.wait(job.id, md).state == jobs_pb2.JOB_STATE_COMPLETED
    return job.id


def test_get_job_result_typed_sampler_agrees_with_the_sdk(gateway: GatewayClient) -> None:
    job_id = _run(gateway, "sampler", bell_inputs(shots=500))
    options = results_pb2.ResultOptions(typed=True, counts=True, int_counts=True)
    reply = gateway.jobs.GetJobResult(
        jobs_pb2.GetJobResultRequest(job_id=job_id, result_options=options),
        metadata=gateway.cloud(),
        timeout=30,
    )
    sdk = json.loads(reply.result_json, cls=RuntimeDecoder)[0].data.c
    typed = reply.typed_result
    assert typed.kind == results_pb2.RESULT_KIND_SAMPLER
    register = typed.pub_results[0].sampler.registers[0]
    assert (register.name, register.num_shots, register.num_bits) == ("c", 500, 2)
    assert dict(register.counts) == sdk.get_counts()
    assert dict(register.int_counts) == sdk.get_int_counts()
    assert register.packed_bits == sdk.array.tobytes()
    plain = gateway.jobs.GetJobResult(
        jobs_pb2.GetJobResultRequest(job_id=job_id), metadata=gateway.cloud(), timeout=30
    )
    assert plain.result_json == reply.result_json and not plain.HasField("typed_result")


def test_get_job_result_typed_estimator_agrees_with_the_sdk(gateway: GatewayClient) -> None:
    job_id = _run(gateway, "estimator", ESTIMATOR_INPUTS)
    reply = gateway.jobs.GetJobResult(
        jobs_pb2.GetJobResultRequest(
            job_id=job_id, result_options=results_pb2.ResultOptions(typed=True)
        ),
        metadata=gateway.cloud(),
        timeout=30,
    )
    sdk = json.loads(reply.result_json, cls=RuntimeDecoder)[0]
    pub = reply.typed_result.pub_results[0]
    assert reply.typed_result.kind == results_pb2.RESULT_KIND_ESTIMATOR
    assert tuple(pub.shape) == sdk.data.shape == (2, 2)
    assert list(pub.estimator.evs) == sdk.data.evs.ravel().tolist()
    assert list(pub.estimator.stds) == sdk.data.stds.ravel().tolist()
    assert json.loads(pub.metadata_json) == sdk.metadata


def test_watch_job_terminal_update_carries_the_typed_result(gateway: GatewayClient) -> None:
    job_id = _run(gateway, "sampler", bell_inputs(shots=300))
    updates = list(
        gateway.jobs.WatchJob(
            jobs_pb2.WatchJobRequest(job_id=job_id, include_result=True),
            metadata=gateway.cloud(),
            timeout=60,
        )
    )
    last = updates[-1].update.state
    assert last.terminal and last.result_json
    sdk = json.loads(last.result_json, cls=RuntimeDecoder)[0].data.c
    assert last.typed_result.kind == results_pb2.RESULT_KIND_SAMPLER
    assert dict(last.typed_result.pub_results[0].sampler.registers[0].counts) == sdk.get_counts()
    without = list(
        gateway.jobs.WatchJob(
            jobs_pb2.WatchJobRequest(job_id=job_id), metadata=gateway.cloud(), timeout=60
        )
    )
    assert not without[-1].update.state.HasField("typed_result")
