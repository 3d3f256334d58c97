"""The container image's own commands, run here as the image runs them.

No Docker engine runs on these machines, so the Dockerfile is linted (hadolint, in
`make lint`) and this test runs its exact ENTRYPOINT and HEALTHCHECK commands with its ENV,
except that the listen address is a loopback port (tests never bind beyond loopback).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.procs import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _final_stage() -> str:
    return DOCKERFILE[DOCKERFILE.rindex("\nFROM ") :]


def _instruction(name: str) -> str:
    joined = re.sub(r"\\\n\s*", " ", _final_stage())
    (line,) = [line for line in joined.splitlines() if line.startswith(name + " ")]
    return line[len(name) + 1 :].strip()


def _env() -> dict[str, str]:
    values = {}
    for item in shlex.split(_instruction("ENV")):
        key, _, value = item.partition("=")
        values[key] = value
    return values


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_image_is_multi_stage_non_root_and_installs_server_and_local() -> None:
    assert DOCKERFILE.count("\nFROM ") + DOCKERFILE.startswith("FROM ") >= 2
    assert _instruction("USER").isdigit() and int(_instruction("USER")) != 0
    assert _instruction("EXPOSE") == "50051"
    assert (
        "'.[server,local]'" in DOCKERFILE
        and "dev" not in DOCKERFILE.split("pip install", 1)[1].split("\n")[0]
    )


def test_entrypoint_and_healthcheck_commands_work(tmp_path: Path) -> None:
    entrypoint = json.loads(_instruction("ENTRYPOINT"))
    health = json.loads(_instruction("HEALTHCHECK").split("CMD", 1)[1].strip())
    assert entrypoint[0] == health[0] == "runtime-gateway"
    port = _free_port()
    env = {**os.environ, **_env(), "RUNTIME_GATEWAY_LISTEN": f"127.0.0.1:{port}",
           "RUNTIME_GATEWAY_ADDRESS": f"127.0.0.1:{port}"}  # fmt: skip
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    gateway = subprocess.Popen(
        entrypoint,
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert gateway.stdout is not None
        ready = json.loads(gateway.stdout.readline())
        assert ready["address"] == f"127.0.0.1:{port}"
        for _ in range(50):  # bounded: the probe must pass within a few seconds
            probe = subprocess.run(health, env=env, capture_output=True, text=True, timeout=30)
            if probe.returncode == 0:
                break
            time.sleep(0.1)
        assert probe.returncode == 0 and probe.stdout.strip() == "SERVING"
    finally:
        gateway.terminate()
        assert gateway.wait(30) == 0
    probe = subprocess.run(health, env=env, capture_output=True, text=True, timeout=30)
    assert probe.returncode == 1  # the probe fails once the gateway is gone
