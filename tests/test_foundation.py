"""The foundation: the CLI, health, reflection, the generated modules, the thin import."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import grpc
import pytest
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2

from runtime_gateway.v1 import accounts_pb2, backends_pb2, errors_pb2, jobs_pb2
from runtime_gateway_server import reflection as gateway_reflection
from tests.procs import CLI, ROOT, Proc, start

API_SERVICES = {
    "runtime_gateway.v1.AccountService",
    "runtime_gateway.v1.BackendService",
    "runtime_gateway.v1.JobService",
}


def _list_services(address: str, method: str) -> set[str]:
    with grpc.insecure_channel(address) as channel:
        call = channel.stream_stream(
            method,
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        replies = list(
            call(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
        )
    assert len(replies) == 1
    return {s.name for s in replies[0].list_services_response.service}


def test_health_reports_serving(gateway_process: Proc) -> None:
    address = gateway_process.ready["address"]
    assert address.startswith("127.0.0.1:")
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ["", *sorted(API_SERVICES)]:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, service
        with pytest.raises(grpc.RpcError) as unknown:
            stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10)
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
def test_reflection_lists_every_api_service(gateway_process: Proc, version: str) -> None:
    method = f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo"
    names = _list_services(gateway_process.ready["address"], method)
    assert names >= API_SERVICES
    assert "grpc.health.v1.Health" in names
    assert {
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names


def test_reflection_describes_the_api(gateway_process: Proc) -> None:
    with grpc.insecure_channel(gateway_process.ready["address"]) as channel:
        call = channel.stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        request = reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="runtime_gateway.v1.JobService"
        )
        (reply,) = list(call(iter([request]), timeout=10))
    assert reply.file_descriptor_response.file_descriptor_proto, reply


def test_health_command_exit_status(gateway_process: Proc, tmp_path) -> None:
    ok = subprocess.run(
        [*CLI, "health", "--address", gateway_process.ready["address"]],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "SERVING"
    # A port nobody listens on: the probe fails instead of hanging.
    unused = subprocess.run(
        [*CLI, "health", "--address", "127.0.0.1:1", "--timeout", "1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert unused.returncode == 1
    assert "UNAVAILABLE" in unused.stderr or "DEADLINE_EXCEEDED" in unused.stderr


def test_sigterm_drains_and_exits_cleanly(tmp_path) -> None:
    proc = start(["serve", "--listen", "127.0.0.1:0", "--grace-seconds", "2"], tmp_path)
    assert proc.stop(signal.SIGTERM) == 0
    events = [
        json.loads(line)["event"] for line in proc.stderr().splitlines() if line.startswith("{")
    ]
    assert events[-2:] == ["shutdown_started", "shutdown_complete"]


def test_serve_refuses_a_port_in_use(gateway_process: Proc, tmp_path) -> None:
    result = subprocess.run(
        [*CLI, "serve", "--listen", gateway_process.ready["address"]],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert "cannot listen on" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["serve", "local-runtime", "health"])
def test_help_describes_each_command(command: str) -> None:
    result = subprocess.run([*CLI, command, "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    assert "--listen" in result.stdout or "--address" in result.stdout


def test_console_script_is_installed() -> None:
    script = shutil.which("runtime-gateway", path=os.path.dirname(sys.executable))
    assert script, "the runtime-gateway console script is not installed next to python"
    result = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and "serve" in result.stdout


def test_generated_modules_import_from_anywhere(tmp_path) -> None:
    # No sys.path tricks: a fresh interpreter in an unrelated directory imports every stub.
    code = (
        "import runtime_gateway.v1.accounts_pb2_grpc, runtime_gateway.v1.backends_pb2_grpc, "
        "runtime_gateway.v1.jobs_pb2_grpc, runtime_gateway.v1.errors_pb2; print('ok')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=30
    )
    assert result.stdout.strip() == "ok", result.stderr


def test_thin_client_import_loads_no_heavy_modules(tmp_path) -> None:
    code = (
        "import sys, runtime_gateway, runtime_gateway.v1.jobs_pb2_grpc; "
        "heavy = ['qiskit', 'numpy', 'requests', 'structlog', 'qiskit_ibm_runtime']; "
        "print([m for m in heavy if m in sys.modules])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=30
    )
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def test_generated_stubs_are_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, "tools/genproto.py", "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def _all_fields():
    for module in (accounts_pb2, backends_pb2, jobs_pb2):
        for message in module.DESCRIPTOR.message_types_by_name.values():
            yield from ((message, f) for f in message.fields)
            for nested in message.nested_types:
                yield from ((nested, f) for f in nested.fields)


def test_json_payloads_travel_as_text_not_struct() -> None:
    # google.protobuf.Struct turns every integer into a double (shots: 1024 -> 1024.0).
    for message, fld in _all_fields():
        if fld.message_type is not None:
            assert fld.message_type.full_name not in {
                "google.protobuf.Struct",
                "google.protobuf.Value",
                "google.protobuf.ListValue",
            }, f"{message.full_name}.{fld.name}"
        if fld.name.endswith("_json"):
            assert fld.type == fld.TYPE_STRING, f"{message.full_name}.{fld.name}"


def test_enums_start_with_unspecified() -> None:
    pool = descriptor_pool.Default()
    for module in (accounts_pb2, backends_pb2, jobs_pb2, errors_pb2):
        for enum in module.DESCRIPTOR.enum_types_by_name.values():
            zero = enum.values_by_number[0].name
            assert zero.endswith("_UNSPECIFIED"), enum.full_name
            assert pool.FindEnumTypeByName(enum.full_name) is enum


def test_reflection_v1_descriptor_mirrors_v1alpha() -> None:
    pool = descriptor_pool.Default()
    gateway_reflection._add_v1_descriptor(pool)
    v1 = pool.FindServiceByName(gateway_reflection.V1_SERVICE_NAME)
    method = v1.methods_by_name["ServerReflectionInfo"]
    assert method.input_type.full_name == "grpc.reflection.v1.ServerReflectionRequest"
    assert method.output_type.full_name == "grpc.reflection.v1.ServerReflectionResponse"


def test_serve_embeds_the_local_runtime_by_default(gateway_process: Proc) -> None:
    import requests

    url = gateway_process.ready["local_runtime_url"]
    assert url.startswith("http://127.0.0.1:")
    assert "api-auth" in requests.get(f"{url}/api/version", timeout=10).json()
    # Its token stays inside the gateway: not in the ready line, not in the logs.
    assert "token" not in gateway_process.ready
    assert "local-" not in gateway_process.stderr()


def test_serve_without_the_local_runtime(tmp_path) -> None:
    proc = start(["serve", "--listen", "127.0.0.1:0", "--no-local-runtime"], tmp_path)
    try:
        assert proc.ready["local_runtime_url"] is None
    finally:
        assert proc.stop() == 0


def test_local_runtime_command_prints_what_clients_need(tmp_path) -> None:
    import requests

    proc = start(
        ["local-runtime", "--listen", "127.0.0.1:0", "--token", "cli-token-12345"], tmp_path
    )
    try:
        ready = proc.ready
        assert ready["service"] == "local-runtime" and ready["token"] == "cli-token-12345"
        assert ready["instances"]["hgps"][0] == "ibm-q/open/main"
        assert all(crn.startswith("crn:v1:") for crn in ready["instances"]["crns"])
        assert "ibm_brisbane" in ready["backends"]
        login = requests.post(
            f"{ready['auth_url']}/users/loginWithToken",
            json={"apiToken": "cli-token-12345"},
            timeout=10,
        )
        assert login.status_code == 200
    finally:
        assert proc.stop() == 0
