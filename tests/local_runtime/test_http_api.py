"""The local runtime's HTTP API, over real HTTP on loopback: shapes, errors, limits."""

from __future__ import annotations

import json
import socket
import time
from datetime import UTC, datetime, timedelta

import jwt as pyjwt
import pytest
import requests

from runtime_gateway_local.runtime import LocalRuntime
from tests.local_runtime.conftest import API_VERSION, TOKEN, Client, sampler_params


def _error_message(reply: requests.Response) -> str:
    return str(reply.json()["errors"][0]["message"])


# --- auth -----------------------------------------------------------------------------------
def test_iam_issues_a_real_jwt_with_exp_and_iat(client: Client) -> None:
    claims = pyjwt.decode(client.jwt(), options={"verify_signature": False})
    assert claims["exp"] > claims["iat"] >= int(time.time()) - 5


def test_iam_rejects_a_wrong_api_key_as_ibm_does(client: Client) -> None:
    reply = requests.post(
        f"{client.base}/identity/token",
        data={"grant_type": "urn:ibm:params:oauth:grant-type:apikey", "apikey": "wrong-key"},
        timeout=10,
    )
    assert reply.status_code == 400
    assert reply.json()["errorCode"] == "BXNIM0415E"


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer not-a-jwt", "apikey wrong-key", "Basic abc"],
)
def test_runtime_rejects_bad_credentials_with_401(
    client: Client, authorization: str | None
) -> None:
    headers = {"Service-CRN": client.crn, **API_VERSION}
    if authorization:
        headers["Authorization"] = authorization
    reply = requests.get(f"{client.base}/api/v1/backends", headers=headers, timeout=10)
    assert reply.status_code == 401
    assert reply.json()["errors"][0]["code"] == "unauthorized"
    assert "trace" in reply.json()


def test_apikey_auth_of_the_021_cloud_channel(client: Client) -> None:
    reply = requests.get(
        f"{client.base}/backends",
        headers={"Authorization": f"apikey {TOKEN}", "Service-CRN": client.crn},
        timeout=10,
    )
    assert reply.status_code == 200
    assert "ibmq_manila" in reply.json()["devices"]  # 0.21 shape: names


def test_unknown_instance_is_forbidden(client: Client) -> None:
    reply = client.call("GET", "/backends", headers={"Service-CRN": "crn:v1:nope"})
    assert reply.status_code == 403


def test_expired_tokens_must_be_renewed(make_runtime) -> None:
    runtime: LocalRuntime = make_runtime(token_ttl_seconds=1)
    c = Client(runtime)
    assert c.call("GET", "/backends").status_code == 200
    time.sleep(2.1)
    assert c.call("GET", "/backends").status_code == 401
    c._jwt = None  # re-authenticate
    assert c.call("GET", "/backends").status_code == 200


def test_admin_token_expiry_invalidates_issued_tokens(make_runtime) -> None:
    c = Client(make_runtime())
    assert c.call("GET", "/backends").status_code == 200
    time.sleep(1.1)  # JWT iat has one-second resolution
    assert c.admin("POST", "/tokens/expire").status_code == 204
    assert c.call("GET", "/backends").status_code == 401
    c._jwt = None
    assert c.call("GET", "/backends").status_code == 200


def test_admin_endpoints_need_the_admin_token(client: Client) -> None:
    reply = requests.get(f"{client.base}/_local/info", timeout=10)
    assert reply.status_code == 401


def test_legacy_ibm_quantum_login_flow(client: Client) -> None:
    base = f"{client.base}/api"
    assert "api-auth" in requests.get(f"{base}/version", timeout=10).json()
    bad = requests.post(f"{base}/users/loginWithToken", json={"apiToken": "nope"}, timeout=10)
    assert bad.status_code == 401 and bad.json()["error"]["name"] == "LOGIN_FAILED"
    login = requests.post(f"{base}/users/loginWithToken", json={"apiToken": TOKEN}, timeout=10)
    access = login.json()["id"]
    me = requests.get(f"{base}/users/me", headers={"X-Access-Token": access}, timeout=10).json()
    runtime_url = me["urls"]["services"]["runtime"]
    network = requests.get(f"{base}/Network", headers={"X-Access-Token": access}, timeout=10)
    hub = network.json()[0]
    assert hub["groups"]["open"]["projects"]["main"]["isDefault"] is True
    devices = requests.get(
        f"{runtime_url}/backends",
        params={"provider": "ibm-q/open/main"},
        headers={"X-Access-Token": access},
        timeout=10,
    ).json()["devices"]
    assert "ibmq_qasm_simulator" in devices


def test_proxy_form_requests_route_by_host(client: Client) -> None:
    # What the SDK sends through HTTP_PROXY: the absolute URL names the emulated service.
    with socket.create_connection(("127.0.0.1", client.runtime.port), timeout=10) as sock:
        sock.sendall(
            b"GET http://globalcatalog.cloud.example.test/api/v1/local-plan-open HTTP/1.1\r\n"
            b"Host: globalcatalog.cloud.example.test\r\nConnection: close\r\n\r\n"
        )
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert json.loads(body)["overview_ui"]["en"]["display_name"] == "Open"


# --- backends -------------------------------------------------------------------------------
def test_backends_list_in_the_051_shape(client: Client) -> None:
    devices = client.call("GET", "/backends", params={"include_mocks": "True"}).json()["devices"]
    by_name = {d["name"]: d for d in devices}
    assert {"ibmq_manila", "ibm_brisbane", "ibm_torino", "ibmq_qasm_simulator"} <= set(by_name)
    assert by_name["ibm_brisbane"]["qubits"] == 127
    assert by_name["ibm_brisbane"]["status"]["name"] == "online"
    assert by_name["ibmq_qasm_simulator"]["is_simulator"] is True


def test_backend_configuration_status_properties(client: Client) -> None:
    config = client.call("GET", "/backends/ibmq_manila/configuration").json()
    assert config["backend_name"] == "ibmq_manila" and config["n_qubits"] == 5
    assert "dynamic_circuits" in config["supported_features"]
    lima = client.call("GET", "/backends/ibmq_lima/configuration").json()
    assert "dynamic_circuits" not in (lima.get("supported_features") or [])
    status = client.call("GET", "/backends/ibmq_manila/status").json()
    assert status["state"] is True and status["status"] == "active"
    assert isinstance(status["length_queue"], int)
    props = client.call("GET", "/backends/ibmq_manila/properties").json()
    assert len(props["qubits"]) == 5 and props["last_update_date"]
    assert client.call("GET", "/backends/ibmq_qasm_simulator/properties").json() == {}
    missing = client.call("GET", "/backends/ibm_nowhere/configuration")
    assert missing.status_code == 404 and "ibm_nowhere" in _error_message(missing)


# --- jobs -----------------------------------------------------------------------------------
def test_job_runs_and_returns_sampler_results(client: Client) -> None:
    from qiskit_ibm_runtime.json import RuntimeDecoder

    job_id = client.submit(tags=["bell"])
    job = client.wait(job_id)
    assert job["state"]["status"] == "Completed"
    assert job["tags"] == ["bell"] and job["program"]["id"] == "sampler"
    text = client.call("GET", f"/jobs/{job_id}/results").text
    result = json.loads(text, cls=RuntimeDecoder)
    counts = result[0].data.meas.get_counts()
    assert set(counts) == {"00", "11"} and sum(counts.values()) == 200


def test_results_without_api_version_use_the_portable_form(client: Client) -> None:
    job_id = client.submit()
    client.wait(job_id)
    headers = {"Authorization": f"apikey {TOKEN}", "Service-CRN": client.crn}
    text = requests.get(f"{client.base}/jobs/{job_id}/results", headers=headers, timeout=10).text
    assert '"SamplerPubResult"' not in text and '"field_types"' in text


def test_job_inputs_round_trip(client: Client) -> None:
    params = sampler_params(shots=321)
    body = {"program_id": "sampler", "backend": "ibmq_qasm_simulator", "params": params}
    job_id = client.call("POST", "/jobs", data=json.dumps(body)).json()["id"]
    full = client.call("GET", f"/jobs/{job_id}").json()
    assert full["params"] == params
    brief = client.call("GET", f"/jobs/{job_id}", params={"exclude_params": "true"}).json()
    assert "params" not in brief


_SIM = {"program_id": "sampler", "backend": "ibmq_qasm_simulator"}
_BAD_QASM = {"version": 2, "pubs": [["OPENQASM 3.0; nonsense"]]}


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"backend": "ibmq_qasm_simulator", "params": {}}, 400, "program_id"),
        ({**_SIM, "program_id": "no-such-program", "params": {}}, 404, "Program not found"),
        ({**_SIM, "backend": "ibm_nowhere", "params": {"version": 2}}, 400, "ibm_nowhere"),
        ({**_SIM, "params": {"version": 2}}, 400, "pubs"),
        ({**_SIM, "params": {"circuits": []}}, 400, "V1"),
        ({**_SIM, "params": "x"}, 400, "params"),
        ({**_SIM, "params": _BAD_QASM}, 400, "OpenQASM"),
        ({**_SIM, "tags": "x", "params": {}}, 400, "tags"),
        ({**_SIM, "cost": -5, "params": {}}, 400, "cost"),
        ({**_SIM, "log_level": "LOUD", "params": {}}, 400, "log_level"),
    ],
)
def test_bad_job_submissions_get_ibm_errors(client: Client, body, status, fragment) -> None:
    reply = client.call("POST", "/jobs", data=json.dumps(body))
    assert reply.status_code == status, reply.text
    assert fragment in _error_message(reply)


def test_malformed_json_body_is_a_400(client: Client) -> None:
    reply = client.call("POST", "/jobs", data=b"{not json")
    assert reply.status_code == 400 and "not valid JSON" in _error_message(reply)


def test_non_isa_circuit_on_a_device_is_rejected(client: Client) -> None:
    body = {"program_id": "sampler", "backend": "ibmq_manila", "params": sampler_params()}
    reply = client.call("POST", "/jobs", data=json.dumps(body))
    assert reply.status_code == 400 and "ISA" in _error_message(reply)


def test_qasm3_circuit_runs(client: Client) -> None:
    qasm = (
        'OPENQASM 3.0; include "stdgates.inc"; qubit[2] q; bit[2] c; '
        "h q[0]; cx q[0], q[1]; c = measure q;"
    )
    params = {"pubs": [[qasm, None, 100]], "version": 2, "options": {}}
    body = {"program_id": "sampler", "backend": "ibmq_qasm_simulator", "params": params}
    job_id = client.call("POST", "/jobs", data=json.dumps(body)).json()["id"]
    assert client.wait(job_id)["state"]["status"] == "Completed"


def test_parameterized_circuit_with_parameter_values(client: Client) -> None:
    import numpy as np
    from qiskit import QuantumCircuit
    from qiskit.circuit import Parameter
    from qiskit_ibm_runtime.json import RuntimeDecoder, RuntimeEncoder

    theta = Parameter("theta")
    circuit = QuantumCircuit(1)
    circuit.rx(theta, 0)
    circuit.measure_all()
    values = np.array([[0.0], [np.pi]])  # |0> always, then |1> always
    params = {"pubs": [[circuit, values, 100]], "version": 2, "options": {}}
    body = {**_SIM, "params": json.loads(json.dumps(params, cls=RuntimeEncoder))}
    job_id = client.call("POST", "/jobs", data=json.dumps(body)).json()["id"]
    client.wait(job_id)
    result = json.loads(client.call("GET", f"/jobs/{job_id}/results").text, cls=RuntimeDecoder)
    bits = result[0].data.meas
    assert bits.shape == (2,)
    assert bits[0].get_counts() == {"0": 100} and bits[1].get_counts() == {"1": 100}


def test_estimator_job(client: Client) -> None:
    import numpy as np
    from qiskit import QuantumCircuit
    from qiskit_ibm_runtime.json import RuntimeDecoder, RuntimeEncoder

    circuit = QuantumCircuit(2)
    circuit.h(0)
    circuit.cx(0, 1)
    pubs = [[circuit, [{"ZZ": 1.0}, {"XX": 0.5, "IZ": 1.0}], np.zeros((0,)), 0.01]]
    params = json.loads(json.dumps({"pubs": pubs, "version": 2, "options": {}}, cls=RuntimeEncoder))
    body = {"program_id": "estimator", "backend": "ibmq_qasm_simulator", "params": params}
    job_id = client.call("POST", "/jobs", data=json.dumps(body)).json()["id"]
    client.wait(job_id)
    result = json.loads(client.call("GET", f"/jobs/{job_id}/results").text, cls=RuntimeDecoder)
    evs = result[0].data.evs
    assert abs(evs[0] - 1.0) < 0.06 and abs(evs[1] - 0.5) < 0.06  # exact: 1 and 0.5
    assert result[0].metadata["target_precision"] == 0.01


def test_unknown_job_is_404(client: Client) -> None:
    for method, path in [
        ("GET", "/jobs/nope"),
        ("GET", "/jobs/nope/results"),
        ("POST", "/jobs/nope/cancel"),
        ("DELETE", "/jobs/nope"),
    ]:
        reply = client.call(method, path)
        assert reply.status_code == 404, (method, path)
        assert "nope" in _error_message(reply)


def test_other_users_jobs_are_invisible(make_runtime) -> None:
    runtime: LocalRuntime = make_runtime(extra_tokens={"other-user-token-0002": "other"})
    owner = Client(runtime)
    job_id = owner.submit()
    stranger = Client(runtime)
    stranger._jwt = runtime.authenticator.issue_jwt(
        runtime.authenticator.principal_for_api_key("other-user-token-0002")
    )[0]
    assert stranger.call("GET", f"/jobs/{job_id}").status_code == 404
    assert stranger.call("GET", "/jobs").json()["count"] == 0


def test_cancel_a_queued_job_and_a_final_one(make_runtime) -> None:
    c = Client(make_runtime())
    c.admin("POST", "/queue/pause")
    job_id = c.submit()
    assert c.call("GET", f"/jobs/{job_id}").json()["state"]["status"] == "Queued"
    status = c.call("GET", "/backends/ibmq_qasm_simulator/status").json()
    assert status["length_queue"] >= 1
    assert c.call("POST", f"/jobs/{job_id}/cancel").status_code == 204
    c.admin("POST", "/queue/resume")
    assert c.wait(job_id)["state"]["status"] == "Cancelled"
    again = c.call("POST", f"/jobs/{job_id}/cancel")
    assert again.status_code == 409


def test_delete_requires_a_final_state(make_runtime) -> None:
    c = Client(make_runtime())
    c.admin("POST", "/queue/pause")
    job_id = c.submit()
    assert c.call("DELETE", f"/jobs/{job_id}").status_code == 409
    c.call("POST", f"/jobs/{job_id}/cancel")
    assert c.call("DELETE", f"/jobs/{job_id}").status_code == 204
    assert c.call("GET", f"/jobs/{job_id}").status_code == 404


def test_tags_replace_answers_204(client: Client) -> None:
    job_id = client.submit(tags=["a"])
    reply = client.call("PUT", f"/jobs/{job_id}/tags", data=json.dumps({"tags": ["x", "y", "x"]}))
    assert reply.status_code == 204
    assert client.call("GET", f"/jobs/{job_id}").json()["tags"] == ["x", "y"]
    bad = client.call("PUT", f"/jobs/{job_id}/tags", data=json.dumps({"tags": [1]}))
    assert bad.status_code == 400


def test_logs_and_metrics(client: Client) -> None:
    job_id = client.submit()
    client.wait(job_id)
    logs = client.call("GET", f"/jobs/{job_id}/logs").text
    assert "Job started on ibmq_qasm_simulator" in logs
    metrics = client.call("GET", f"/jobs/{job_id}/metrics").json()
    stamps = metrics["timestamps"]
    assert stamps["created"] <= stamps["running"] <= stamps["finished"]
    assert metrics["usage"]["status"] == "final" and metrics["num_circuits"] == 1


def test_private_job_results_can_be_read_once(client: Client) -> None:
    job_id = client.submit(private=True)
    client.wait(job_id)
    assert client.call("GET", f"/jobs/{job_id}/results").status_code == 200
    # IBM then answers an empty body: the SDK's own suite asserts `not job.result()`.
    second = client.call("GET", f"/jobs/{job_id}/results")
    assert second.status_code == 200 and second.text == ""


def test_list_filters_pagination_and_count(make_runtime) -> None:
    c = Client(make_runtime())
    c.admin("POST", "/queue/pause")
    ids = [c.submit(tags=["batch", f"n{i}"]) for i in range(5)]
    other = c.submit(tags=["other"])
    everything = c.call("GET", "/jobs", params={"limit": 2}).json()
    assert everything["count"] == 6 and len(everything["jobs"]) == 2
    assert everything["jobs"][0]["id"] == other  # newest first
    pages = []
    for offset in range(0, 6, 2):
        page = c.call("GET", "/jobs", params={"limit": 2, "offset": offset, "tags": "batch"}).json()
        assert page["count"] == 5
        pages += [j["id"] for j in page["jobs"]]
    assert pages == list(reversed(ids))
    ascending = c.call("GET", "/jobs", params={"sort": "ASC", "tags": ["batch", "n0"]}).json()
    assert [j["id"] for j in ascending["jobs"]] == [ids[0]]
    pending = c.call("GET", "/jobs", params={"pending": "true"}).json()
    assert pending["count"] == 6
    assert c.call("GET", "/jobs", params={"pending": "false"}).json()["count"] == 0
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert c.call("GET", "/jobs", params={"created_after": future}).json()["count"] == 0
    assert c.call("GET", "/jobs", params={"created_before": future}).json()["count"] == 6
    assert c.call("GET", "/jobs", params={"backend": "ibmq_manila"}).json()["count"] == 0
    assert c.call("GET", "/jobs", params={"program": "estimator"}).json()["count"] == 0
    for bad in (
        {"limit": "-1"},
        {"limit": "x"},
        {"pending": "maybe"},
        {"created_after": "yesterday"},
        {"sort": "UP"},
    ):
        assert c.call("GET", "/jobs", params=bad).status_code == 400, bad


def test_sessions(client: Client) -> None:
    session = client.call(
        "POST", "/sessions", json={"mode": "batch", "backend": "ibmq_qasm_simulator"}
    )
    session_id = session.json()["id"]
    job_id = client.submit(session_id=session_id)
    assert client.call("GET", f"/jobs/{job_id}").json()["session_id"] == session_id
    listed = client.call("GET", "/jobs", params={"session_id": session_id}).json()
    assert [j["id"] for j in listed["jobs"]] == [job_id]
    assert (
        client.call("PATCH", f"/sessions/{session_id}", json={"accepting_jobs": False}).status_code
        == 204
    )
    details = client.call("GET", f"/sessions/{session_id}").json()
    assert details["accepting_jobs"] is False and details["mode"] == "batch"
    reply = client.call(
        "POST",
        "/jobs",
        data=json.dumps(
            {
                "program_id": "sampler",
                "backend": "ibmq_qasm_simulator",
                "params": sampler_params(),
                "session_id": session_id,
            }
        ),
    )
    assert reply.status_code == 400 and "closed" in _error_message(reply)
    started = client.submit(start_session=True)
    assert client.call("GET", f"/jobs/{started}").json()["session_id"] == started


def test_rate_limit_answers_429_with_retry_after(make_runtime) -> None:
    c = Client(make_runtime(job_rate_limit_per_minute=5))
    c.admin("POST", "/queue/pause")
    for _ in range(5):
        c.submit()
    body = {"program_id": "sampler", "backend": "ibmq_qasm_simulator", "params": sampler_params()}
    reply = c.call("POST", "/jobs", data=json.dumps(body))
    assert reply.status_code == 429
    assert 1 <= int(reply.headers["Retry-After"]) <= 61


def test_usage_limit_answers_409(make_runtime) -> None:
    c = Client(make_runtime(usage_limit_seconds=0))
    usage = c.call("GET", "/instances/usage").json()
    assert usage["usage_limit_seconds"] == 0 and usage["usage_limit_reached"] is True
    body = {"program_id": "sampler", "backend": "ibmq_qasm_simulator", "params": sampler_params()}
    assert c.call("POST", "/jobs", data=json.dumps(body)).status_code == 409


def test_unlimited_usage_omits_the_limit_key(client: Client) -> None:
    usage = client.call("GET", "/instances/usage").json()
    assert "usage_limit_seconds" not in usage


def test_jobs_survive_a_restart_with_a_data_dir(make_runtime, tmp_path) -> None:
    first = make_runtime(data_dir=str(tmp_path))
    c = Client(first)
    done = c.submit(tags=["kept"])
    c.wait(done)
    c.admin("POST", "/queue/pause")
    queued = c.submit()
    first.stop()
    second = make_runtime(data_dir=str(tmp_path))
    c2 = Client(second)
    assert c2.call("GET", f"/jobs/{done}").json()["tags"] == ["kept"]
    assert c2.call("GET", f"/jobs/{done}/results").status_code == 200
    assert c2.wait(queued)["state"]["status"] == "Completed"  # re-queued and run


# --- fault injection ------------------------------------------------------------------------
def test_injected_5xx_429_drops_and_latency(make_runtime) -> None:
    c = Client(make_runtime())
    c.jwt()
    assert c.admin("PUT", "/faults", json={"latency_ms": 300, "path_pattern": "/status"}).ok
    started = time.monotonic()
    assert c.call("GET", "/backends/ibmq_manila/status").status_code == 200
    assert time.monotonic() - started >= 0.3  # a lower bound only: never flaky
    assert c.admin("PUT", "/faults", json={"error_rate": 1.0, "path_pattern": "/backends"}).ok
    assert c.call("GET", "/backends").status_code == 503
    assert c.call("GET", "/jobs").status_code == 200  # pattern does not match
    c.admin("PUT", "/faults", json={"rate_limit_rate": 1.0, "retry_after_seconds": 2})
    limited = c.call("GET", "/backends")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "2"
    c.admin("PUT", "/faults", json={"drop_rate": 1.0, "max_faults": 1})
    with pytest.raises(requests.ConnectionError):
        c.call("GET", "/backends")
    assert c.call("GET", "/backends").status_code == 200  # max_faults reached
    assert c.admin("PUT", "/faults", json={"bogus": 1}).status_code == 400
    c.admin("PUT", "/faults", json={})
    log = c.admin("GET", "/requests").json()["requests"]
    assert any(e["status"] == 0 for e in log)  # the dropped one
    assert all("Bearer ***" == e["headers"].get("authorization", "Bearer ***") for e in log)


def test_tokens_live_at_least_their_ttl(make_runtime) -> None:
    runtime: LocalRuntime = make_runtime(token_ttl_seconds=1)
    principal = runtime.authenticator.principal_for_api_key(TOKEN)
    for _ in range(20):  # issued at all points of a second, none is born expired
        _, _, expires = runtime.authenticator.issue_jwt(principal)
        assert expires >= time.time() + 1 - 0.001
        time.sleep(0.05)
