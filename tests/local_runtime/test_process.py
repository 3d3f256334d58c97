"""The local runtime as its own process (`runtime-gateway local-runtime`)."""

from __future__ import annotations

import json
import time

import requests

from tests.local_runtime.conftest import API_VERSION, TOKEN, sampler_params
from tests.procs import start


def test_jobs_over_many_connections_do_not_crash_it(tmp_path) -> None:
    # Regression: qiskit 2.6's QPY loader crashed the process (SIGSEGV) when it ran in a new
    # server thread after an earlier loading thread had exited, i.e. on a job submitted over
    # a second connection. Every job here arrives on a connection of its own.
    proc = start(["local-runtime", "--listen", "127.0.0.1:0", "--token", TOKEN], tmp_path)
    try:
        base = proc.ready["url"]
        jwt = requests.post(
            f"{base}/identity/token",
            data={"grant_type": "urn:ibm:params:oauth:grant-type:apikey", "apikey": TOKEN},
            timeout=10,
        ).json()["access_token"]
        headers = {
            "Authorization": f"Bearer {jwt}",
            "Service-CRN": proc.ready["instances"]["crns"][0],
            **API_VERSION,
        }
        body = json.dumps(
            {
                "program_id": "sampler",
                "backend": "ibmq_qasm_simulator",
                "params": sampler_params(10),
            }
        )
        for _ in range(3):
            with requests.Session() as fresh:
                reply = fresh.post(f"{base}/api/v1/jobs", data=body, headers=headers, timeout=60)
                assert reply.status_code == 200, reply.text
            time.sleep(0.3)  # that connection's server thread ends before the next one
        assert proc.popen.poll() is None, proc.stderr()[-3000:]
    finally:
        proc.stop()
