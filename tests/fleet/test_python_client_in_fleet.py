"""The Python `QiskitRuntimeService` wrapper against the fleet through HAProxy: a job's
`result()` survives the death (kill -9) of the replica that carried its update stream. HAProxy
ends such a stream without gRPC trailers (UNKNOWN "Stream removed"); the client resumes it
on another replica with its (epoch, revision)."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from runtime_gateway import QiskitRuntimeService
from tests.fleet.conftest import Fleet, bell_inputs, eventually


def test_result_survives_the_death_of_the_replica_streaming_it(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNTIME_GATEWAY_ADDRESS", fleet.haproxy.address)
    service = QiskitRuntimeService(channel="local")
    # Held in the queue until the stream's replica is dead: nothing can end it earlier.
    fleet.runtime.admin("POST", "/queue/pause")
    outcome: dict[str, Any] = {}
    try:
        job = service.run(  # the 0.21 program-level call, with plain PUB inputs
            program_id="sampler",
            inputs=json.loads(bell_inputs()),
            options={"backend": "ibmq_qasm_simulator"},
        )

        def wait() -> None:
            try:
                outcome["result"] = job.result(timeout=120)
            except Exception as error:  # reported below, with its type
                outcome["error"] = error

        waiter = threading.Thread(target=wait)
        waiter.start()

        def streaming() -> Any:
            assert waiter.is_alive(), f"result() returned early: {outcome!r}"
            for replica in fleet.replicas:
                if replica.running() and replica.metric(
                    "runtime_gateway_open_streams", method="WatchJob"
                ):
                    return replica
            return None

        carrier = eventually(streaming, 30, "a replica carrying the client's WatchJob")
        carrier.kill9()
        fleet.runtime.admin("POST", "/queue/resume")
        waiter.join(150)
        assert not waiter.is_alive()
    finally:
        fleet.runtime.admin("POST", "/queue/resume")
    assert "error" not in outcome, repr(outcome.get("error"))
    assert outcome["result"] is not None
    assert job.status() == "DONE"
