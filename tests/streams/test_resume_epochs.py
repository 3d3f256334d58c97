"""Resuming a job stream with (epoch, revision), per the rule documented on JobUpdate.epoch:
the same epoch gets exactly the updates missed; another epoch (a restarted gateway, a lost
history) gets the current state once, marked `reset`; never a silent gap.

Real gateway processes before the local runtime process playing IBM (tests/streams)."""

from __future__ import annotations

import time
from typing import Any

import grpc
import pytest

from runtime_gateway.v1 import jobs_pb2
from tests.gateway.conftest import GatewayClient, Upstream, bell_inputs, error_info
from tests.procs import start
from tests.streams.conftest import proxy_env, serve_args

S = jobs_pb2


def _submit(g: GatewayClient) -> str:
    request = S.RunJobRequest(program_id="sampler", backend="ibmq_qasm_simulator",
                              inputs_json=bell_inputs())  # fmt: skip
    return g.jobs.RunJob(request, metadata=g.cloud(), timeout=60).job.id


def _watch(g: GatewayClient, request: Any, limit: int = 50) -> list[Any]:
    """Reads a WatchJob stream to its end (the terminal update), heartbeats left out."""
    updates = []
    for message in g.jobs.WatchJob(request, metadata=g.cloud(), timeout=60):
        if message.update.WhichOneof("kind") != "heartbeat":
            updates.append(message.update)
        if len(updates) >= limit:
            break
    return updates


def _first_state(g: GatewayClient, job_id: str) -> Any:
    stream = g.jobs.WatchJob(S.WatchJobRequest(job_id=job_id), metadata=g.cloud(), timeout=60)
    for message in stream:
        if message.update.WhichOneof("kind") == "state":
            stream.cancel()
            return message.update
    raise AssertionError("no state update")


def _queued_then_done(g: GatewayClient) -> tuple[str, Any]:
    """A job seen QUEUED by a first stream (its first update), then run to the end."""
    g.upstream.admin("POST", "/queue/pause")
    try:
        job_id = _submit(g)
        first = _first_state(g, job_id)
        assert first.state.job.state == S.JOB_STATE_QUEUED
    finally:
        g.upstream.admin("POST", "/queue/resume")
    g.wait(job_id, g.cloud())
    return job_id, first


def test_updates_carry_an_epoch_and_consecutive_revisions(streamer: GatewayClient) -> None:
    job_id = _submit(streamer)
    updates = _watch(streamer, S.WatchJobRequest(job_id=job_id))
    assert updates and updates[-1].state.terminal
    epochs = {u.epoch for u in updates}
    assert len(epochs) == 1 and "" not in epochs
    revisions = [u.revision for u in updates]
    assert revisions == list(range(revisions[0], revisions[0] + len(revisions)))
    assert not any(u.reset for u in updates)


def test_resuming_in_the_same_epoch_sends_exactly_what_was_missed(
    streamer: GatewayClient,
) -> None:
    job_id, first = _queued_then_done(streamer)
    resumed = _watch(
        streamer,
        S.WatchJobRequest(job_id=job_id, resume_after_revision=first.revision,
                          resume_epoch=first.epoch),
    )  # fmt: skip
    assert resumed, "the job changed after the first update"
    assert [u.revision for u in resumed] == list(
        range(first.revision + 1, first.revision + 1 + len(resumed))
    )
    assert {u.epoch for u in resumed} == {first.epoch}
    assert not any(u.reset for u in resumed)
    assert resumed[-1].state.terminal


def test_resuming_from_another_epoch_gets_the_current_state_marked_reset(
    streamer: GatewayClient,
) -> None:
    job_id, first = _queued_then_done(streamer)
    resumed = _watch(
        streamer,
        S.WatchJobRequest(job_id=job_id, resume_after_revision=first.revision + 5,
                          resume_epoch="0123456789abcdef"),
    )  # fmt: skip
    # The state the gateway knows (it may still be the remembered QUEUED one, then the
    # watcher's fresh observation follows on from it), marked reset; nothing else is.
    assert resumed[0].reset and resumed[0].WhichOneof("kind") == "state"
    assert not any(u.reset for u in resumed[1:])
    assert [u.revision for u in resumed] == list(
        range(resumed[0].revision, resumed[0].revision + len(resumed))
    )
    assert resumed[-1].state.terminal
    assert {u.epoch for u in resumed} == {first.epoch}


def test_a_restarted_gateway_reports_a_reset_instead_of_a_silent_gap(
    upstream: Upstream, tmp_path: Any
) -> None:
    """Revisions restart in a new process: a client resuming there from the old process's
    (epoch, revision) must get the job's state marked `reset`, not nothing (its revision is
    ahead of the new numbering) or updates it cannot place."""
    proc = start(serve_args(), tmp_path, env=proxy_env(upstream))
    g = GatewayClient(proc, upstream)
    try:
        job_id, first = _queued_then_done(g)
        old = _watch(g, S.WatchJobRequest(job_id=job_id))  # the state at the end, old epoch
    finally:
        g.channel.close()
        proc.stop()
    proc = start(serve_args(), tmp_path, env=proxy_env(upstream))
    g = GatewayClient(proc, upstream)
    try:
        resumed = _watch(
            g,
            S.WatchJobRequest(job_id=job_id, resume_after_revision=old[-1].revision + 3,
                              resume_epoch=old[-1].epoch),
        )  # fmt: skip
    finally:
        g.channel.close()
        proc.stop()
    assert len(resumed) == 1 and resumed[0].reset and resumed[0].state.terminal
    assert resumed[0].epoch and resumed[0].epoch != first.epoch


def test_watch_jobs_resumes_per_job_epochs(streamer: GatewayClient) -> None:
    job_id, first = _queued_then_done(streamer)
    other_id, other_first = _queued_then_done(streamer)
    request = S.WatchJobsRequest(
        job_ids=[job_id, other_id],
        resume_after_revisions={job_id: first.revision, other_id: other_first.revision},
        resume_epochs={job_id: first.epoch, other_id: "fedcba9876543210"},
    )
    seen: dict[str, list[Any]] = {job_id: [], other_id: []}
    deadline = time.monotonic() + 60
    for message in streamer.jobs.WatchJobs(request, metadata=streamer.cloud(), timeout=60):
        update = message.update
        if update.WhichOneof("kind") == "state":
            seen[update.job_id].append(update)
        if all(u and u[-1].state.terminal for u in seen.values()) or time.monotonic() > deadline:
            break
    assert not any(u.reset for u in seen[job_id])
    assert seen[job_id][0].revision == first.revision + 1
    assert seen[other_id][0].reset and not any(u.reset for u in seen[other_id][1:])
    assert seen[other_id][-1].state.terminal


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (S.WatchJobRequest(job_id="j1", resume_after_revision=1, resume_epoch="not an epoch"),
         "resume_epoch"),
        (S.WatchJobRequest(job_id="j1", resume_after_revision=1, resume_epoch="a" * 65),
         "resume_epoch"),
        (S.WatchJobsRequest(job_ids=["j1"], resume_after_revisions={"j1": 1},
                            resume_epochs={"j2": "abcdef"}), "resume_epochs"),
        (S.WatchJobsRequest(job_ids=["j1"], resume_after_revisions={"j1": 1},
                            resume_epochs={"j1": "ABC/../x"}), "resume_epochs"),
    ],
)  # fmt: skip
def test_bad_epochs_are_refused_naming_the_field(
    streamer: GatewayClient, request_: Any, field: str
) -> None:
    method = (
        streamer.jobs.WatchJob
        if isinstance(request_, S.WatchJobRequest)
        else streamer.jobs.WatchJobs
    )
    with pytest.raises(grpc.RpcError) as caught:
        list(method(request_, metadata=streamer.cloud(), timeout=30))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in caught.value.details()
    assert error_info(caught.value)[0] == "INVALID_ARGUMENT"


def test_heartbeats_of_a_resumed_stream_carry_its_epoch(streamer: GatewayClient) -> None:
    """A client keeps the epoch of the last message; on a resumed stream where nothing
    changed, the heartbeats are those messages."""
    streamer.upstream.admin("POST", "/queue/pause")
    try:
        job_id = _submit(streamer)
        first = _first_state(streamer, job_id)
        request = S.WatchJobRequest(job_id=job_id, resume_after_revision=first.revision,
                                    resume_epoch=first.epoch)  # fmt: skip
        heartbeats = []
        stream = streamer.jobs.WatchJob(request, metadata=streamer.cloud(), timeout=30)
        for message in stream:
            assert message.update.WhichOneof("kind") == "heartbeat"
            heartbeats.append(message.update)
            if len(heartbeats) == 3:  # the first at once, then the idle ones (1 s apart)
                stream.cancel()
                break
    finally:
        streamer.upstream.admin("POST", "/queue/resume")
    assert [(h.epoch, h.revision) for h in heartbeats] == [(first.epoch, first.revision)] * 3
