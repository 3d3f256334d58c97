"""`make demo`: starts the gateway, runs a short client session against it, stops it.

Everything runs on loopback; no IBM account is needed.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2


def start_gateway() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runtime_gateway_server",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "console",
            "--log-level",
            "WARNING",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    ready = json.loads(proc.stdout.readline() or "{}")
    if "address" not in ready:
        proc.kill()
        raise SystemExit("the gateway did not start")
    return proc, ready["address"]


def list_services(channel: grpc.Channel) -> list[str]:
    call = channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    (reply,) = list(call(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    return sorted(s.name for s in reply.list_services_response.service)


def main() -> int:
    started = time.monotonic()
    proc, address = start_gateway()
    print(f"gateway listening on {address} (started in {time.monotonic() - started:.2f} s)")
    try:
        with grpc.insecure_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            status = health.Check(health_pb2.HealthCheckRequest(), timeout=10).status
            print("health:", health_pb2.HealthCheckResponse.ServingStatus.Name(status))
            print("services (via reflection):")
            for name in list_services(channel):
                print("  ", name)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    print(f"gateway stopped (exit {code})")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
