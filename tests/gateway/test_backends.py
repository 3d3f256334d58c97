"""BackendService over a real gateway, for each channel."""

from __future__ import annotations

import json

import grpc
import pytest

from runtime_gateway.v1 import backends_pb2
from tests.gateway.conftest import GatewayClient, error_info

DEVICES = {
    "ibmq_manila",
    "ibmq_lima",
    "ibm_algiers",
    "ibm_brisbane",
    "ibm_torino",
    "ibmq_qasm_simulator",
}


@pytest.fixture(params=["local", "cloud", "ibm_cloud", "legacy"])
def md(request: pytest.FixtureRequest, gateway: GatewayClient) -> list[tuple[str, str]]:
    return {
        "local": [],
        "cloud": gateway.cloud(),
        "ibm_cloud": gateway.cloud("ibm_cloud"),
        "legacy": gateway.legacy(),
    }[request.param]


def _names(gateway: GatewayClient, md, **filter_fields) -> set[str]:
    request = backends_pb2.ListBackendsRequest(filter=backends_pb2.BackendFilter(**filter_fields))
    reply = gateway.backends.ListBackends(request, metadata=md, timeout=30)
    return {b.name for b in reply.backends}


def test_list_and_filters(gateway: GatewayClient, md) -> None:
    assert _names(gateway, md) == DEVICES
    assert _names(gateway, md, min_num_qubits=100) == {"ibm_brisbane", "ibm_torino"}
    assert _names(gateway, md, simulator=True) == {"ibmq_qasm_simulator"}
    assert "ibmq_lima" in _names(gateway, md, dynamic_circuits=False)
    assert "ibmq_manila" in _names(gateway, md, dynamic_circuits=True)
    assert _names(gateway, md, operational=True) == DEVICES
    assert _names(gateway, md, name="ibm_torino") == {"ibm_torino"}
    assert _names(gateway, md, attributes={"n_qubits": "27"}) == {"ibm_algiers"}
    assert _names(
        gateway, md, attributes={"status_msg": '"active"', "simulator": "false"}
    ) == DEVICES - {"ibmq_qasm_simulator"}


def test_backend_summary_and_full_view(gateway: GatewayClient, md) -> None:
    reply = gateway.backends.GetBackend(
        backends_pb2.GetBackendRequest(name="ibmq_manila", view=backends_pb2.BACKEND_VIEW_FULL),
        metadata=md,
        timeout=30,
    )
    backend = reply.backend
    assert backend.num_qubits == 5 and not backend.simulator and backend.dynamic_circuits
    assert backend.status.operational and backend.status.status_msg == "active"
    config = backend.configuration
    assert config.n_qubits == 5 and config.backend_name == "ibmq_manila"
    assert len(config.coupling_map) > 0 and "cx" in config.basis_gates
    assert json.loads(config.raw_json)["backend_name"] == "ibmq_manila"
    basic = gateway.backends.GetBackend(
        backends_pb2.GetBackendRequest(name="ibmq_manila"), metadata=md, timeout=30
    )
    assert not basic.backend.HasField("configuration")


def test_status_properties_least_busy(gateway: GatewayClient, md) -> None:
    status = gateway.backends.GetBackendStatus(
        backends_pb2.GetBackendStatusRequest(name="ibm_brisbane"), metadata=md, timeout=30
    ).status
    assert status.backend_name == "ibm_brisbane" and status.operational
    props = gateway.backends.GetBackendProperties(
        backends_pb2.GetBackendPropertiesRequest(name="ibmq_manila"), metadata=md, timeout=30
    ).properties
    assert len(props.qubits) == 5 and props.qubits[0].t1 > 0 and props.gates
    assert props.last_update_time.seconds > 0
    sim = gateway.backends.GetBackendProperties(
        backends_pb2.GetBackendPropertiesRequest(name="ibmq_qasm_simulator"),
        metadata=md,
        timeout=30,
    )
    assert not sim.HasField("properties")
    least = gateway.backends.GetLeastBusyBackend(
        backends_pb2.GetLeastBusyBackendRequest(
            filter=backends_pb2.BackendFilter(min_num_qubits=100)
        ),
        metadata=md,
        timeout=30,
    ).backend
    assert least.name in {"ibm_brisbane", "ibm_torino"}


def test_paging_in_name_order(gateway: GatewayClient) -> None:
    seen: list[str] = []
    token = ""
    for _ in range(10):
        reply = gateway.backends.ListBackends(
            backends_pb2.ListBackendsRequest(page_size=4, page_token=token), timeout=30
        )
        seen += [b.name for b in reply.backends]
        token = reply.next_page_token
        if not token:
            break
    assert seen == sorted(DEVICES)


@pytest.mark.parametrize(
    ("call", "code", "reason", "field"),
    [
        (lambda g: g.backends.GetBackend(backends_pb2.GetBackendRequest(name="ibm_nowhere"), timeout=30),
         grpc.StatusCode.NOT_FOUND, "BACKEND_NOT_FOUND", ""),
        (lambda g: g.backends.GetBackend(backends_pb2.GetBackendRequest(), timeout=30),
         grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "name"),
        (lambda g: g.backends.ListBackends(backends_pb2.ListBackendsRequest(
            filter=backends_pb2.BackendFilter(attributes={"no_such_attribute": "1"})), timeout=30),
         grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "filter.attributes[no_such_attribute]"),
        (lambda g: g.backends.ListBackends(backends_pb2.ListBackendsRequest(
            filter=backends_pb2.BackendFilter(attributes={"n_qubits": "not json"})), timeout=30),
         grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "filter.attributes[n_qubits]"),
        (lambda g: g.backends.ListBackends(backends_pb2.ListBackendsRequest(
            filter=backends_pb2.BackendFilter(min_num_qubits=-1)), timeout=30),
         grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "filter.min_num_qubits"),
        (lambda g: g.backends.ListBackends(backends_pb2.ListBackendsRequest(page_token="garbage!"), timeout=30),
         grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "page_token"),
        (lambda g: g.backends.GetLeastBusyBackend(backends_pb2.GetLeastBusyBackendRequest(
            filter=backends_pb2.BackendFilter(min_num_qubits=1000)), timeout=30),
         grpc.StatusCode.NOT_FOUND, "BACKEND_NOT_FOUND", ""),
        (lambda g: g.backends.ListBackends(backends_pb2.ListBackendsRequest(
            filter=backends_pb2.BackendFilter(instance="a/b/c")), metadata=g.cloud(), timeout=30),
         grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "filter.instance"),
    ],
)  # fmt: skip
def test_errors_name_the_problem(gateway: GatewayClient, call, code, reason, field) -> None:
    with pytest.raises(grpc.RpcError) as failure:
        call(gateway)
    assert failure.value.code() == code, failure.value.details()
    assert error_info(failure.value) == (reason, field)


def test_legacy_instance_selection(gateway: GatewayClient) -> None:
    md = gateway.legacy(instance="local-hub/local-group/local-project")
    assert _names(gateway, md) == DEVICES
    with pytest.raises(grpc.RpcError) as failure:
        _names(gateway, gateway.legacy(instance="no/such/project"))
    assert failure.value.code() == grpc.StatusCode.PERMISSION_DENIED
