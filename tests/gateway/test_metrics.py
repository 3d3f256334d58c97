"""`serve --metrics-listen`: a scripted session against a real gateway process (in front of
the local runtime process playing IBM), then the counters scraped from `/metrics`."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import requests

from runtime_gateway.v1 import backends_pb2, jobs_pb2
from tests.gateway.conftest import GatewayClient, Upstream, bell_inputs, upstream_env
from tests.procs import start

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


def scrape(address: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """`/metrics` as {(name, labels): value}."""
    text = requests.get(f"http://{address}/metrics", timeout=10).text
    samples = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if not match:
            continue
        name, labels, value = match.groups()
        pairs = re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels or "")
        samples[(name, frozenset(pairs))] = float(value)
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


@pytest.fixture(scope="module")
def metered(
    upstream: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayClient]:
    tmp: Path = tmp_path_factory.mktemp("metered")
    proc = start(
        ["serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
         "--watch-poll-seconds", "0.1"],
        tmp,
        env=upstream_env(upstream),
    )  # fmt: skip
    client = GatewayClient(proc, upstream)
    yield client
    client.channel.close()
    proc.stop()


def test_metrics_are_off_unless_asked(gateway: GatewayClient) -> None:
    assert "metrics_address" not in gateway.proc.ready


def test_a_scripted_session_shows_in_the_counters(metered: GatewayClient) -> None:
    address = metered.proc.ready["metrics_address"]
    assert address.startswith("127.0.0.1:")
    md = metered.cloud()
    # Two identical backend lists: one upstream round, one answer from the cache.
    for _ in range(2):
        metered.backends.ListBackends(backends_pb2.ListBackendsRequest(), metadata=md, timeout=30)
    # A job that does not exist: NOT_FOUND from IBM.
    with pytest.raises(grpc.RpcError) as missing:
        metered.jobs.GetJob(jobs_pb2.GetJobRequest(job_id="nosuchjob0"), metadata=md, timeout=30)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    # A job id beyond the bounds: refused by admission, before any servicer runs.
    with pytest.raises(grpc.RpcError) as refused:
        metered.jobs.GetJob(jobs_pb2.GetJobRequest(job_id="x" * 5000), metadata=md, timeout=30)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    # A RunJob retried with its request id: one new submission, one replay.
    again = jobs_pb2.RunJobRequest(
        program_id="sampler", backend="ibmq_qasm_simulator", inputs_json=bell_inputs(),
        request_id="metrics-request-1",
    )  # fmt: skip
    first = metered.jobs.RunJob(again, metadata=md, timeout=60).job
    assert metered.jobs.RunJob(again, metadata=md, timeout=60).job.id == first.id

    before = scrape(address)
    assert value(before, "runtime_gateway_watched_jobs") == 0
    assert value(before, "runtime_gateway_request_ids_total", outcome="new") == 1
    assert value(before, "runtime_gateway_request_ids_total", outcome="replayed") == 1
    # A job, watched over a stream until it ends; the gauges are read while it is open (the
    # queue is held until then, or a fast simulator job could end before the first read).
    metered.upstream.admin("POST", "/queue/pause")
    try:
        job = metered.jobs.RunJob(
            jobs_pb2.RunJobRequest(
                program_id="sampler", backend="ibmq_qasm_simulator", inputs_json=bell_inputs()
            ),
            metadata=md,
            timeout=60,
        ).job
        during: dict = {}
        stream = metered.jobs.WatchJob(
            jobs_pb2.WatchJobRequest(job_id=job.id), metadata=md, timeout=60
        )
        updates = [next(stream)]
        during = scrape(address)
    finally:
        metered.upstream.admin("POST", "/queue/resume")
    updates += list(stream)
    assert updates and updates[-1].update.state.job.state == jobs_pb2.JOB_STATE_COMPLETED
    assert value(during, "runtime_gateway_watched_jobs") == 1
    assert value(during, "runtime_gateway_open_streams", grpc_method="WatchJob") == 1

    deadline = time.monotonic() + 10  # the watcher retires just after the last update
    after = scrape(address)
    while value(after, "runtime_gateway_watched_jobs") and time.monotonic() < deadline:
        time.sleep(0.05)
        after = scrape(address)
    assert value(after, "runtime_gateway_watched_jobs") == 0
    assert value(after, "runtime_gateway_open_streams") == 0

    def handled(method: str, code: str) -> float:
        return value(
            after,
            "grpc_server_handled_total",
            grpc_service="runtime_gateway.v1.JobService" if "Job" in method else
            "runtime_gateway.v1.BackendService",
            grpc_method=method,
            grpc_code=code,
        )  # fmt: skip

    assert handled("ListBackends", "OK") == 2
    assert handled("GetJob", "NOT_FOUND") == 1
    assert handled("GetJob", "INVALID_ARGUMENT") == 1  # counted though admission refused it
    assert handled("RunJob", "OK") == 3
    assert handled("WatchJob", "OK") == 1
    assert value(after, "grpc_server_started_total", grpc_method="GetJob") == 2
    assert value(after, "grpc_server_started_total", grpc_type="server_stream") == 1
    assert value(after, "grpc_server_msg_sent_total", grpc_method="WatchJob") == len(updates)
    assert value(after, "grpc_server_handling_seconds_count", grpc_method="ListBackends") == 2

    # Upstream requests by endpoint template: ids never become label values.
    upstream = {
        dict(ls)["endpoint"]
        for (n, ls), v in after.items()
        if n == "runtime_gateway_upstream_requests_total" and v
    }
    assert "/api/v1/jobs" in upstream and "/api/v1/jobs/*" in upstream, upstream
    assert not any(job.id in e or "nosuchjob0" in e for e in upstream)
    posts = value(
        after, "runtime_gateway_upstream_requests_total",
        endpoint="/api/v1/jobs", method="POST", status="200",
    )  # fmt: skip
    assert posts == 2  # the replay sent nothing
    assert value(after, "runtime_gateway_upstream_requests_total", status="404") >= 1
    assert value(after, "runtime_gateway_upstream_request_seconds_count", method="POST") >= 1
    assert value(after, "runtime_gateway_cache_hits_total", cache="answers") >= 1
    assert value(after, "runtime_gateway_token_refreshes_total", reason="first") >= 1
    assert value(after, "runtime_gateway_updates_delivered_total", kind="state") >= 1
    # Bounded labels: no job id or token anywhere on the page.
    page = requests.get(f"http://{address}/metrics", timeout=10).text
    assert job.id not in page and "SECRET" not in page


def test_metrics_sum_across_workers(upstream: Upstream, tmp_path: Path) -> None:
    proc = start(
        ["serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--workers", "2"],
        tmp_path,
        env=upstream_env(upstream),
    )  # fmt: skip
    try:
        address = proc.ready["metrics_address"]
        client = GatewayClient(proc, upstream)
        calls = 20
        # New connections get spread over the workers by SO_REUSEPORT; all calls count once.
        threads = []
        for _ in range(calls):

            def one() -> None:
                with grpc.insecure_channel(client.address) as channel:
                    from runtime_gateway.v1 import backends_pb2_grpc

                    backends_pb2_grpc.BackendServiceStub(channel).ListBackends(
                        backends_pb2.ListBackendsRequest(), metadata=client.cloud(), timeout=30
                    )

            thread = threading.Thread(target=one)
            thread.start()
            threads.append(thread)
        for thread in threads:
            thread.join(60)
        client.channel.close()
        samples = scrape(address)
        assert value(samples, "grpc_server_handled_total", grpc_method="ListBackends",
                     grpc_code="OK") == calls  # fmt: skip
    finally:
        proc.stop()


def test_metrics_beyond_loopback_need_insecure(tmp_path: Path) -> None:
    import subprocess

    from tests.procs import CLI

    run = subprocess.run(
        [*CLI, "serve", "--listen", "127.0.0.1:0", "--metrics-listen", "0.0.0.0:0",
         "--no-local-runtime"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 2
    assert "--insecure" in run.stderr and "Traceback" not in run.stderr


def test_the_readme_and_the_dashboard_use_the_metrics_that_exist(metered: GatewayClient) -> None:
    from tests.procs import ROOT

    page = requests.get(f"http://{metered.proc.ready['metrics_address']}/metrics", timeout=10).text
    families = set(re.findall(r"^# TYPE (\S+) ", page, re.M))
    ours = {f for f in families if f.startswith(("grpc_server_", "runtime_gateway_"))}
    assert "grpc_server_handled_total" in ours or "grpc_server_handled" in ours
    readme = (ROOT / "README.md").read_text()
    listed = set(re.findall(r"`((?:grpc_server|runtime_gateway)_\w+)`", readme))
    dashboard = json.loads((ROOT / "deploy/grafana/runtime-gateway.json").read_text())
    used = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used |= set(re.findall(r"\b((?:grpc_server|runtime_gateway)_\w+)", target["expr"]))
    used = {re.sub(r"_bucket$", "", n) for n in used}
    assert used and used <= listed
    assert used <= families  # every name the dashboard asks for is a family on the page
    assert ours <= listed  # and the README lists every family


def test_a_killed_workers_gauges_leave_the_sum(upstream: Upstream, tmp_path: Path) -> None:
    """Streams open on a worker that is killed are no longer counted once it is replaced."""
    import os
    import signal

    from runtime_gateway.v1 import jobs_pb2_grpc

    proc = start(
        ["serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--workers", "2",
         "--no-local-runtime"],
        tmp_path,
        env=upstream_env(upstream),
    )  # fmt: skip
    client = GatewayClient(proc, upstream)
    upstream.admin("POST", "/queue/pause")  # the job stays queued: its stream stays open
    try:
        job = client.jobs.RunJob(
            jobs_pb2.RunJobRequest(
                program_id="sampler", backend="ibmq_qasm_simulator", inputs_json=bell_inputs()
            ),
            metadata=client.cloud(),
            timeout=30,
        ).job
        stream = jobs_pb2_grpc.JobServiceStub(client.channel).WatchJob(
            jobs_pb2.WatchJobRequest(job_id=job.id), metadata=client.cloud(), timeout=120
        )
        next(stream)  # the current state: the stream is open on one worker
        address = proc.ready["metrics_address"]
        assert value(scrape(address), "runtime_gateway_open_streams") == 1
        for pid in proc.ready["pids"]:  # the worker holding it is one of these: kill both
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while value(scrape(address), "runtime_gateway_open_streams") != 0:
            assert time.monotonic() < deadline, "the dead workers' streams are still counted"
            time.sleep(0.2)
        stream.cancel()
    finally:
        client.channel.close()
        proc.stop()
        upstream.admin("POST", "/queue/resume")
