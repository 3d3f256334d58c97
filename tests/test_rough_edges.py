# ruff: noqa: F811 - the gateway fixtures are imported from tests/gateway/conftest.py
"""What a new user meets first: make help, readable configuration errors, type checkers
seeing the editable install, readable logs, and the API's rough edges (issue 15)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from runtime_gateway.v1 import backends_pb2, jobs_pb2
from tests.gateway.conftest import (  # noqa: F401 - fixtures used by name
    API_KEYS,
    DOMAIN,
    UPSTREAM_TOKEN,
    GatewayClient,
    Upstream,
    accounts_dir,
    bell_inputs,
    error_info,
    gateway,
    key_digest,
    upstream,
    upstream_env,
)
from tests.procs import CLI, ROOT, start


# --- make help ---------------------------------------------------------------------------------
def test_make_help_lists_every_target_with_one_line() -> None:
    run = subprocess.run(
        ["make", "--no-print-directory", "help"], cwd=ROOT, capture_output=True, text=True,
        timeout=30,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    phony = re.search(r"^\.PHONY:(.*)$", (ROOT / "Makefile").read_text(), re.M)
    assert phony
    listed = {line.split()[0]: line for line in run.stdout.splitlines() if line.strip()}
    for target in phony.group(1).split():
        assert target in listed, f"make help does not list {target}"
        assert len(listed[target].split(None, 1)) == 2, f"{target} has no description"


# --- configuration errors ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("env", "args", "named"),
    [
        ({"RUNTIME_GATEWAY_GRACE_SECONDS": "xyz"}, [], "RUNTIME_GATEWAY_GRACE_SECONDS"),
        ({"RUNTIME_GATEWAY_WORKERS": "two"}, [], "RUNTIME_GATEWAY_WORKERS"),
        ({"RUNTIME_GATEWAY_UPSTREAM_TIMEOUT": ""}, [], "RUNTIME_GATEWAY_UPSTREAM_TIMEOUT"),
        ({}, ["--grace-seconds", "xyz"], "--grace-seconds"),
        ({}, ["--metrics-listen", "nonsense"], "--metrics-listen"),
    ],
)
def test_a_bad_setting_is_one_clear_line(
    env: dict[str, str], args: list[str], named: str, tmp_path: Path
) -> None:
    run = subprocess.run(
        [*CLI, "serve", "--listen", "127.0.0.1:0", "--no-local-runtime", *args],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, env={**os.environ, **env},
    )  # fmt: skip
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if "usage:" not in line and line.strip()]
    assert len(errors) == 1 and named in errors[0], run.stderr


# --- type checkers see the editable install ---------------------------------------------------
def test_mypy_strict_finds_the_installed_client(tmp_path: Path) -> None:
    program = tmp_path / "uses_client.py"
    program.write_text(
        "from runtime_gateway import QiskitRuntimeService\n\n\n"
        "def make() -> QiskitRuntimeService:\n"
        "    return QiskitRuntimeService(channel='local')\n"
    )
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental",
         "--python-executable", sys.executable, str(program)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert "Cannot find implementation or library stub" not in run.stdout, run.stdout
    assert run.returncode == 0, run.stdout


# --- logs --------------------------------------------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again when the block ends


def _lines(stderr: str) -> list[dict]:
    found = []
    for line in stderr.splitlines():
        try:
            found.append(json.loads(line))
        except ValueError:
            continue
    return found


def test_a_refused_upstream_connection_is_logged_once_with_its_cause(tmp_path: Path) -> None:
    port = _closed_port()
    proc = start(
        ["serve", "--listen", "127.0.0.1:0", "--no-local-runtime", "--log-level", "DEBUG"],
        tmp_path,
        env={"IAM_URL": f"http://127.0.0.1:{port}",
             "RUNTIME_GATEWAY_ALLOW_UPSTREAM": f"127.0.0.1:{port},*.{DOMAIN}"},
    )  # fmt: skip
    try:
        md = [
            ("authorization", f"Bearer {UPSTREAM_TOKEN}"),
            ("x-runtime-channel", "ibm_quantum_platform"),
            ("x-runtime-url", f"http://{DOMAIN}"),
            (
                "x-runtime-instance",
                "crn:v1:bluemix:public:quantum-computing:us-east:a/0123456789abcdef0123456789abcdef:i1::",
            ),
        ]
        with grpc.insecure_channel(proc.ready["address"]) as channel:
            from runtime_gateway.v1 import backends_pb2_grpc

            with pytest.raises(grpc.RpcError) as failure:
                backends_pb2_grpc.BackendServiceStub(channel).ListBackends(
                    backends_pb2.ListBackendsRequest(), metadata=md, timeout=30
                )
        assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "connection refused" in (failure.value.details() or "")
    finally:
        proc.stop()
    lines = _lines(proc.stderr())
    failed = [e for e in lines if e.get("event") == "upstream_failed"]
    assert len(failed) == 1, failed
    assert failed[0]["level"] == "warning"
    assert failed[0]["cause"] == "connection refused"
    assert failed[0]["path"] == "/identity/token" and failed[0]["method"] == "POST"
    assert UPSTREAM_TOKEN not in proc.stderr()
    # DEBUG is the gateway's, not grpc's per-call chatter.
    assert "Loaded running loop" not in proc.stderr()
    # One start-up line with the effective configuration.
    (config,) = [e for e in lines if e.get("event") == "gateway_config"]
    assert config["level"] == "info" and config["listen"] == "127.0.0.1:0"
    assert config["upstream"] == "IBM only" and config["workers"] == 1 and config["tls"] == "off"


def test_the_start_up_line_masks_secrets(upstream: Upstream, tmp_path: Path) -> None:
    digest = key_digest(API_KEYS["team-a"])
    proc = start(
        ["serve", "--listen", "127.0.0.1:0", "--api-key", f"team-a={digest}"],
        tmp_path,
        env=upstream_env(upstream),
    )
    proc.stop()
    (config,) = [e for e in _lines(proc.stderr()) if e.get("event") == "gateway_config"]
    assert config["api_keys"] == 1 and config["upstream"] == "local runtime"
    assert config["local_runtime_url"].startswith("http://127.0.0.1:")
    text = json.dumps(config)
    assert digest not in text and API_KEYS["team-a"] not in text
    assert proc.ready["local_runtime_url"] not in [None, ""]


def test_each_rpc_log_line_carries_the_request_id_and_the_reply_echoes_it(
    gateway: GatewayClient,
) -> None:
    md = gateway.cloud()
    _, call = gateway.backends.ListBackends.with_call(
        backends_pb2.ListBackendsRequest(), metadata=[*md, ("x-request-id", "rough-edge-41")],
        timeout=30,
    )  # fmt: skip
    assert ("x-request-id", "rough-edge-41") in call.trailing_metadata()
    # Without one, the gateway makes one up, logs it and says which.
    _, call = gateway.backends.ListBackends.with_call(
        backends_pb2.ListBackendsRequest(), metadata=md, timeout=30
    )
    made = dict(call.trailing_metadata())["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{16}", made)
    # Errors echo it too.
    with pytest.raises(grpc.RpcError) as failure:
        gateway.jobs.GetJob(
            jobs_pb2.GetJobRequest(job_id="nosuchjob2"),
            metadata=[*md, ("x-request-id", "rough-edge-42")], timeout=30,
        )  # fmt: skip
    assert ("x-request-id", "rough-edge-42") in failure.value.trailing_metadata()
    wanted = {"rough-edge-41", "rough-edge-42", made}
    deadline = time.monotonic() + 10  # an error's log line may follow its status by a moment
    while True:
        rpc_lines = [e for e in _lines(gateway.proc.stderr()) if e.get("event") == "rpc"]
        ids = {e.get("request_id") for e in rpc_lines}
        if wanted <= ids or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert wanted <= ids
    assert all(e.get("request_id") for e in rpc_lines if not e.get("admission"))


# --- the API -----------------------------------------------------------------------------------
@pytest.mark.parametrize("channel", ["ibm_quantum_platform", "ibm_cloud"])
def test_run_job_without_a_backend_on_a_cloud_channel_names_backend(
    gateway: GatewayClient, channel: str
) -> None:
    gateway.upstream.clear_log()
    with pytest.raises(grpc.RpcError) as failure:
        gateway.jobs.RunJob(
            jobs_pb2.RunJobRequest(program_id="sampler", inputs_json=bell_inputs()),
            metadata=gateway.cloud(channel), timeout=30,
        )  # fmt: skip
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(failure.value)[1] == "backend"
    assert "backend" in (failure.value.details() or "")
    posts = [e for e in gateway.upstream.requests_log() if e.get("method") == "POST"
             and str(e.get("path", "")).endswith("/jobs")]  # fmt: skip
    assert not posts  # refused before anything reached IBM


def test_run_job_without_a_backend_is_left_to_the_local_runtime(gateway: GatewayClient) -> None:
    """The local runtime picks a backend itself (it may then refuse the circuit for that
    backend's instruction set): the gateway does not require one there."""
    try:
        gateway.jobs.RunJob(
            jobs_pb2.RunJobRequest(program_id="sampler", inputs_json=bell_inputs()), timeout=60
        )
    except grpc.RpcError as error:
        assert error_info(error)[1] != "backend", error.details()


def test_program_not_found_is_said_once(gateway: GatewayClient) -> None:
    with pytest.raises(grpc.RpcError) as failure:
        gateway.jobs.RunJob(
            jobs_pb2.RunJobRequest(
                program_id="hello-world", backend="ibmq_qasm_simulator", inputs_json="{}"
            ),
            metadata=gateway.cloud(), timeout=30,
        )  # fmt: skip
    details = failure.value.details() or ""
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND
    assert details.lower().count("program not found") == 1, details
    assert "hello-world" in details


def test_watch_job_updates_carry_the_same_job_fields_as_get_job(gateway: GatewayClient) -> None:
    md = gateway.cloud()
    job = gateway.jobs.RunJob(
        jobs_pb2.RunJobRequest(
            program_id="sampler", backend="ibmq_qasm_simulator", inputs_json=bell_inputs()
        ),
        metadata=md, timeout=60,
    ).job  # fmt: skip
    states = [
        r.update.state.job
        for r in gateway.jobs.WatchJob(
            jobs_pb2.WatchJobRequest(job_id=job.id), metadata=md, timeout=60
        )
        if r.update.HasField("state")
    ]
    got = gateway.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job.id), metadata=md, timeout=30).job
    assert states and got.instance
    last = states[-1]
    assert last.instance == got.instance
    for name in ("id", "program_id", "backend", "state", "session_id", "tags", "private"):
        assert getattr(last, name) == getattr(got, name), name
