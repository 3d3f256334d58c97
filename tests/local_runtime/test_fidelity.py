"""Fidelity of the local runtime to IBM's answers, over real HTTP on loopback.

Each case is one of the gaps the SDK's own integration suite found (issue 11): instances
with plans, tags and allocations as Global Search returns them, the Resource Controller's
lookup by CRN, complete backend list entries, `calibration_id`, private jobs, per-instance
backend visibility, twirling's shot accounting, and `properties?updated_before=`.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import numpy as np
import requests

from runtime_gateway_local.runtime import LocalRuntime
from tests.local_runtime.conftest import Client, sampler_params

# Names the SDK's `backend_test` fixture accepts: 127-qubit Eagles whose ECR on qubits (0, 1)
# runs in opposite directions (the suite's PEC test needs 0 -> 1).
TEST_DEVICES = {"test_eagle_brisbane": [1, 0], "test_eagle_kyiv": [0, 1]}


def _iam_headers(client: Client) -> dict[str, str]:
    return {"Authorization": f"Bearer {client.jwt()}"}


def _client_for(runtime: LocalRuntime, plan: str) -> Client:
    other = Client(runtime)
    other.crn = next(i.crn for i in runtime.instances.cloud if i.plan.lower() == plan)
    return other


def _search(client: Client) -> list[dict[str, Any]]:
    reply = requests.post(
        f"{client.base}/global-search/v3/resources/search",
        headers=_iam_headers(client),
        json={"query": "service_name:quantum-computing", "fields": ["crn", "tags", "doc"]},
        timeout=10,
    )
    assert reply.status_code == 200, reply.text
    return list(reply.json()["items"])


def _estimator_params(options: dict[str, Any]) -> dict[str, Any]:
    from qiskit import QuantumCircuit
    from qiskit.quantum_info import SparsePauliOp
    from qiskit_ibm_runtime.json import RuntimeEncoder

    circuit = QuantumCircuit(2)
    circuit.h(0)
    circuit.cx(0, 1)
    pubs = [[circuit, SparsePauliOp("ZZ"), np.zeros((0,))]]
    body = {"pubs": pubs, "options": options, "version": 2, "support_qiskit": True}
    encoded: dict[str, Any] = json.loads(json.dumps(body, cls=RuntimeEncoder))
    return encoded


def _result(client: Client, job_id: str) -> Any:
    from qiskit_ibm_runtime.json import RuntimeDecoder

    reply = client.call("GET", f"/jobs/{job_id}/results")
    assert reply.status_code == 200, reply.text
    return json.loads(reply.text, cls=RuntimeDecoder)


# --- instances (Global Search, Global Catalog, Resource Controller) ------------------------
def test_search_lists_one_instance_per_plan_kind_with_tags_and_allocations(
    client: Client,
) -> None:
    items = _search(client)
    plans = {}
    for item in items:
        assert item["doc"]["extensions"]["quantum"]["backend_allocation"] is True
        entry = requests.get(
            f"{client.base}/global-catalog/api/v1/{item['service_plan_unique_id']}", timeout=10
        ).json()
        plans[entry["overview_ui"]["en"]["display_name"].lower()] = (
            item,
            entry["metadata"]["pricing"]["type"],
        )
    assert {"open", "premium", "internal"} <= set(plans)
    assert plans["open"][1] == "free"
    internal = plans["internal"][0]
    assert internal["doc"]["extensions"]["quantum"]["usage_allocation_seconds"] > 0
    # The SDK's `tags=` filter keeps instances carrying all the tags: the first tagged
    # instance's tags must single it out (its integration suite checks exactly that).
    first_tags = next(item["tags"] for item in items if item["tags"])
    matching = [i for i in items if all(t in i["tags"] for t in first_tags)]
    assert [i["tags"] for i in matching] == [first_tags]


def test_resource_controller_looks_an_instance_up_by_crn(client: Client) -> None:
    url = f"{client.base}/v2/resource_instances/{quote(client.crn, safe='')}"
    reply = requests.get(url, headers=_iam_headers(client), timeout=10)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["crn"] == client.crn and body["name"] == "local-runtime-open"
    assert body["state"] == "active"

    missing = client.crn.replace("local-runtime-open", "no-such-instance")
    reply = requests.get(
        f"{client.base}/v2/resource_instances/{quote(missing, safe='')}",
        headers=_iam_headers(client),
        timeout=10,
    )
    assert reply.status_code == 404


# --- backends ---------------------------------------------------------------------------------
def test_backend_list_entries_carry_physical_qubits_and_calibration(client: Client) -> None:
    devices = client.call("GET", "/backends").json()["devices"]
    by_name = {d["name"]: d for d in devices}
    assert all(isinstance(d["physical_qubits"], int) for d in devices)
    assert by_name["ibm_brisbane"]["physical_qubits"] == 127
    assert by_name["ibm_brisbane"]["calibration_id"]


def test_calibration_id_is_honoured(client: Client) -> None:
    entry = next(
        d for d in client.call("GET", "/backends").json()["devices"] if d["name"] == "ibmq_manila"
    )
    known = entry["calibration_id"]
    for path in ("configuration", "properties"):
        ok = client.call("GET", f"/backends/ibmq_manila/{path}", params={"calibration_id": known})
        assert ok.status_code == 200, ok.text
        bad = client.call(
            "GET", f"/backends/ibmq_manila/{path}", params={"calibration_id": "invalid_id"}
        )
        assert bad.status_code == 404 and "invalid_id" in bad.text
    payload = {"program_id": "sampler", "backend": "ibmq_manila", "params": sampler_params(),
               "calibration_id": "invalid_id"}  # fmt: skip
    refused = client.call("POST", "/jobs", data=json.dumps(payload))
    assert refused.status_code == 400 and "invalid_id" in refused.text


def test_properties_answer_the_calibration_in_force_at_a_date(client: Client) -> None:
    current = client.call("GET", "/backends/ibm_brisbane/properties").json()
    later = client.call(
        "GET", "/backends/ibm_brisbane/properties", params={"updated_before": "2099-01-01T00:00:00"}
    )
    assert later.json()["last_update_date"] == current["last_update_date"]
    # Before the snapshot's calibration there was none: IBM's empty answer (SDK: None).
    earlier = client.call(
        "GET", "/backends/ibm_brisbane/properties", params={"updated_before": "2000-01-01T00:00:00"}
    )
    assert earlier.status_code == 200 and earlier.json() == {}


def test_test_devices_are_visible_to_the_internal_instance_only(
    shared_runtime: LocalRuntime, client: Client
) -> None:
    internal = _client_for(shared_runtime, "internal")
    listed = {d["name"] for d in internal.call("GET", "/backends").json()["devices"]}
    assert {name for name in listed if name.startswith("test_eagle")} == set(TEST_DEVICES)
    for device, ecr in TEST_DEVICES.items():
        config = internal.call("GET", f"/backends/{device}/configuration").json()
        assert config["backend_name"] == device and config["n_qubits"] == 127
        # An Eagle's coupling map is its ECR directions.
        assert ecr in config["coupling_map"] and ecr[::-1] not in config["coupling_map"]

        assert device not in {d["name"] for d in client.call("GET", "/backends").json()["devices"]}
        assert client.call("GET", f"/backends/{device}/configuration").status_code == 404
        payload = {"program_id": "sampler", "backend": device, "params": sampler_params()}
        assert client.call("POST", "/jobs", data=json.dumps(payload)).status_code == 400


def test_the_kyiv_test_device_runs_an_ecr_from_qubit_0_to_1(shared_runtime: LocalRuntime) -> None:
    """What the SDK suite's PEC test needs (its mirror circuit's ECR 0 -> 1), run by a worker
    on the kyiv snapshot; the brisbane one refuses that circuit as not ISA."""
    from qiskit import QuantumCircuit

    circuit = QuantumCircuit(2)
    circuit.x(0)
    circuit.ecr(0, 1)
    circuit.measure_all()
    internal = _client_for(shared_runtime, "internal")
    params = sampler_params(shots=100, circuit=circuit)
    refused = internal.call("POST", "/jobs", data=json.dumps(
        {"program_id": "sampler", "backend": "test_eagle_brisbane", "params": params}
    ))  # fmt: skip
    assert refused.status_code == 400 and "ecr" in refused.text.lower()
    job_id = internal.submit(backend="test_eagle_kyiv", params=params)
    assert internal.wait(job_id)["state"]["status"] == "Completed"


# --- jobs -------------------------------------------------------------------------------------
def test_private_jobs_never_return_inputs_and_results_only_once(client: Client) -> None:
    job_id = client.submit(private=True)
    client.wait(job_id)
    job = client.call("GET", f"/jobs/{job_id}").json()
    assert job["private"] is True and "params" not in job
    listed = client.call("GET", "/jobs", params={"limit": 200}).json()["jobs"]
    assert "params" not in next(j for j in listed if j["id"] == job_id)

    first = client.call("GET", f"/jobs/{job_id}/results")
    assert first.status_code == 200 and first.text
    second = client.call("GET", f"/jobs/{job_id}/results")
    assert second.status_code == 200 and second.text == ""


def test_estimator_twirling_reports_randomizations_times_shots(client: Client) -> None:
    options = {
        "default_shots": 400,
        "twirling": {"enable_gates": True, "enable_measure": True,
                     "num_randomizations": 16, "shots_per_randomization": 100},
    }  # fmt: skip
    job_id = client.submit("estimator", params=_estimator_params(options))
    assert client.wait(job_id)["state"]["status"] == "Completed"
    metadata = _result(client, job_id)[0].metadata
    assert metadata["shots"] == 1600 and metadata["num_randomizations"] == 16


def test_sampler_twirling_runs_randomizations_times_shots(client: Client) -> None:
    params = sampler_params(shots=90)
    params["options"] = {"twirling": {"enable_gates": True, "num_randomizations": 4}}
    job_id = client.submit(params=params)
    assert client.wait(job_id)["state"]["status"] == "Completed"
    # 4 randomizations of ceil(90 / 4) = 23 shots: 92 shots, as IBM runs them.
    assert _result(client, job_id)[0].data.meas.num_shots == 92


def test_estimator_without_twirling_reports_the_requested_shots(client: Client) -> None:
    options = {"default_shots": 400, "resilience_level": 0}
    job_id = client.submit("estimator", params=_estimator_params(options))
    assert client.wait(job_id)["state"]["status"] == "Completed"
    assert _result(client, job_id)[0].metadata["shots"] == 400


def test_resource_controller_needs_authentication(client: Client) -> None:
    url = f"{client.base}/v2/resource_instances/{quote(client.crn, safe='')}"
    assert requests.get(url, timeout=10).status_code == 401
    assert requests.get(url, headers=_iam_headers(client), timeout=10).status_code == 200


def test_max_execution_time_cancels_the_job_as_ibm_does(make_runtime) -> None:
    c = Client(make_runtime())
    # Jobs stay RUNNING for 30 s (the runtime's job-duration floor): past a 1 s max time.
    assert c.admin("PUT", "/execution", json={"min_seconds": 30}).status_code in (200, 204)
    job_id = c.submit(cost=1)
    job = c.wait(job_id)
    assert job["state"] == {"status": "Cancelled", "reason": "Ran too long", "reason_code": 1305}
    assert job["status"] == "Cancelled - Ran too long"
    # The SDK reads the error text from the results, as for a failed job.
    text = c.call("GET", f"/jobs/{job_id}/results").text
    assert "Traceback" in text and "maximum execution time" in text
