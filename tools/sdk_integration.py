#!/usr/bin/env python3
"""Runs qiskit-ibm-runtime's own integration suite against the local runtime.

The SDK's sdist ships `test/integration`; aimed unchanged at `runtime-gateway local-runtime`
with the README's proxy recipe, it is the judge of the local runtime's fidelity. This script
does the whole thing reproducibly and within a time bound:

1. `pip download --no-binary :all: --no-deps qiskit-ibm-runtime==VERSION` into a cache
   directory (once), and extracts the sdist into a temporary directory;
2. installs into this interpreter what the suite runs as a command, pinned as the sdist's
   `test` extra pins it (`pproxy`, the HTTP proxy `test_proxies` starts), when it is missing;
3. starts `runtime-gateway local-runtime` on a free loopback port with a fixed token;
4. runs pytest on `test/integration` with the suite's environment (`QISKIT_IBM_TOKEN`,
   `QISKIT_IBM_URL` under a made-up `.test` domain — so tests marked `production` skip
   themselves —, `QISKIT_IBM_INSTANCE`, `QISKIT_IBM_QPU`) and the proxy variables
   (`HTTP_PROXY` to the local runtime, `IAM_URL`), with this interpreter's scripts directory
   first on `PATH` (so the suite finds `pproxy`);
5. prints passed/failed/skipped per test file and every failure with its first error line,
   from pytest's JUnit XML; `--json FILE` writes the same summary as JSON.

    .venv/bin/python tools/sdk_integration.py                 # the whole suite
    .venv/bin/python tools/sdk_integration.py -k test_backend  # a subset (pytest -k)

The QPU defaults to `test_eagle_kyiv` (the ibm_kyiv Eagle snapshot under a `test_eagle*`
name, the only names the suite's `backend_test` fixture accepts). Not `test_eagle_brisbane`:
the suite's mirror circuit (`make_mirror_circuit_with_phases`, 2 qubits) only puts an ECR
from qubit 0 to qubit 1 when the device supports that direction. Brisbane's ECR on that pair
runs 1->0 only, so the circuit has no two-qubit gate, the PEC samplex no layer to twirl, and
`test_pec_estimator` fails ("Results must contain 'pauli_signs'"); kyiv's runs 0->1.
`--qpu test_eagle_brisbane` still runs on brisbane.

The SDK under test is the one installed in this interpreter (it must be the same version
as the suite). Exit status: 0 when the suite ran (whatever its outcome), 2 when it could
not run or overran `--timeout`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path
from typing import Any

TOKEN = "sdk-integration-token"  # noqa: S105 (a throwaway token for a loopback runtime)
DOMAIN = "cloud.example.test"  # contains "test": the suite skips its production-only tests
# The Internal plan's instance: the only one allocated the `test_eagle*` test device that the
# suite's `backend_test` fixture looks for (as IBM's test devices belong to internal instances).
INSTANCE = (
    "crn:v1:bluemix:public:quantum-computing:us-east:"
    "a/0123456789abcdef0123456789abcdef:local-runtime-internal::"
)
HISTORY_JOBS = 11  # finished jobs in the suite's instance before it starts (see seed_history)
DEFAULT_QPU = "test_eagle_kyiv"  # a 127-qubit Eagle (ibm_kyiv), ECR 0->1: see the docstring
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"), "runtime-gateway")


def fetch_sdist(version: str, cache: Path) -> Path:
    """The sdist of qiskit-ibm-runtime `version`, downloaded once into `cache`."""
    target = cache / f"qiskit_ibm_runtime-{version}.tar.gz"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
         f"qiskit-ibm-runtime=={version}", "-d", str(cache), "-q"],
        check=True, timeout=600,
    )  # fmt: skip
    if not target.exists():
        raise SystemExit(f"pip download did not produce {target}")
    return target


def extract(sdist: Path, into: Path) -> Path:
    with tarfile.open(sdist) as archive:
        archive.extractall(into, filter="data")
    (root,) = [p for p in into.iterdir() if p.is_dir()]
    return root


# Tools the suite starts as commands (by name, from PATH), not imports: pytest's own plugins
# and the SDK's dependencies are this interpreter's already.
SUITE_COMMANDS = ("pproxy",)


def suite_requirements(root: Path) -> list[str]:
    """The requirements of the sdist's `test` extra for `SUITE_COMMANDS` (e.g.
    `pproxy==2.7.8`), as its pyproject.toml pins them."""
    import tomllib
    from packaging.requirements import Requirement

    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    wanted = []
    for text in project.get("optional-dependencies", {}).get("test", []):
        if Requirement(text).name in SUITE_COMMANDS:
            wanted.append(text)
    return wanted


def install_suite_requirements(root: Path) -> None:
    """pip-installs into this interpreter each of `suite_requirements` not already met."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.requirements import Requirement

    missing = []
    for text in suite_requirements(root):
        requirement = Requirement(text)
        try:
            installed = version(requirement.name)
        except PackageNotFoundError:
            installed = None
        if installed is None or not requirement.specifier.contains(installed, prereleases=True):
            missing.append(text)
    if missing:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", *missing], check=True, timeout=600
        )


def start_local_runtime(log_path: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """`runtime-gateway local-runtime` on a free loopback port; returns it and its ready line."""
    exe = Path(sys.executable).with_name("runtime-gateway")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "runtime_gateway_server"]
    proc = subprocess.Popen(
        [*command, "local-runtime", "--listen", "127.0.0.1:0", "--token", TOKEN,
         "--log-level", "WARNING"],
        stdout=subprocess.PIPE, stderr=log_path.open("w"), text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise SystemExit(f"the local runtime did not start; see {log_path}")
    return proc, json.loads(line)


def seed_history(ready: dict[str, Any], instance: str, qpu: str, timeout: float = 300) -> None:
    """Finished jobs in every cloud instance, as an IBM account has a history. The suite
    assumes one: `test_jobs_before_backend` lists the jobs of an instance it picks itself and
    expects some; `test_retrieve_jobs_order` expects the 10 oldest jobs of the last month in
    the suite's instance not to include the one it just ran; `test_retrieve_jobs_status` pages
    with `skip=5` through the finished jobs on the QPU (and the SDK loops forever when there
    are fewer). So one job per instance, and `HISTORY_JOBS` on the QPU in the suite's instance."""
    import requests
    from qiskit import QuantumCircuit
    from qiskit_ibm_runtime.json import RuntimeEncoder

    http = requests.Session()
    http.trust_env = False  # straight to the loopback runtime, not through HTTP_PROXY
    base = ready["url"].rstrip("/")
    token = http.post(
        f"{base}/identity/token",
        data={"grant_type": "urn:ibm:params:oauth:grant-type:apikey", "apikey": TOKEN},
        timeout=30,
    ).json()["access_token"]
    circuit = QuantumCircuit(1)
    circuit.x(0)  # in every device's instruction set: an ISA circuit without transpiling
    circuit.measure_all()
    params = {"pubs": [[circuit, None, 100]], "version": 2, "support_qiskit": True}
    pending = []
    seeds = [(crn, "ibmq_qasm_simulator") for crn in ready["instances"]["crns"]]
    seeds += [(instance, qpu)] * HISTORY_JOBS
    for crn, backend in seeds:
        body = json.dumps(
            {"program_id": "sampler", "backend": backend, "params": params}, cls=RuntimeEncoder
        )
        headers = {"Authorization": f"Bearer {token}", "Service-CRN": crn,
                   "IBM-API-Version": "2026-04-15", "Content-Type": "application/json"}  # fmt: skip
        reply = http.post(f"{base}/api/v1/jobs", data=body, headers=headers, timeout=30)
        reply.raise_for_status()
        pending.append((reply.json()["id"], headers))
    deadline = time.monotonic() + timeout
    for job_id, headers in pending:
        while time.monotonic() < deadline:
            job = http.get(f"{base}/api/v1/jobs/{job_id}", headers=headers, timeout=30).json()
            if job["state"]["status"] in ("Completed", "Failed", "Cancelled"):
                break
            time.sleep(0.2)


def summarise(junit: Path) -> dict[str, Any]:
    """Per test file: counts and the failures (test id and first line of the error)."""
    files: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"passed": 0, "failed": 0, "skipped": 0, "failures": [], "skips": []}
    )
    for case in ET.parse(junit).getroot().iter("testcase"):  # noqa: S314 (our own pytest output)
        classname = case.get("classname", "")
        module = classname.split(".")
        name = next((m for m in module if m.startswith("test_")), classname)
        entry = files[name]
        test_id = f"{classname.rsplit('.', 1)[-1]}::{case.get('name')}"
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        skipped = case.find("skipped")
        if problem is not None:
            entry["failed"] += 1
            message = (problem.get("message") or problem.text or "").strip().splitlines()
            entry["failures"].append(f"{test_id}: {message[0][:300] if message else ''}")
        elif skipped is not None:
            entry["skipped"] += 1
            entry["skips"].append(f"{test_id}: {(skipped.get('message') or '')[:200]}")
        else:
            entry["passed"] += 1
    totals = {k: sum(f[k] for f in files.values()) for k in ("passed", "failed", "skipped")}
    return {"files": dict(sorted(files.items())), "totals": totals}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sdk-version", default="0.51.0")
    parser.add_argument("--cache", type=Path, default=CACHE, help="where the sdist is kept")
    parser.add_argument("--timeout", type=float, default=3600, help="whole run, seconds")
    parser.add_argument("--test-timeout", type=float, default=300, help="one test, seconds")
    parser.add_argument("--qpu", default=DEFAULT_QPU, help="QISKIT_IBM_QPU")
    parser.add_argument("--instance", default=INSTANCE, help="QISKIT_IBM_INSTANCE")
    parser.add_argument("-k", dest="keyword", help="pytest -k expression")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    parser.add_argument("--show-skips", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("tests", nargs="*", help="paths under test/integration (default: all)")
    args = parser.parse_args(argv)

    sdist = fetch_sdist(args.sdk_version, args.cache)
    work = Path(tempfile.mkdtemp(prefix="sdk-integration-"))
    root = extract(sdist, work)
    install_suite_requirements(root)
    runtime, ready = start_local_runtime(work / "local-runtime.log")
    try:
        seed_history(ready, args.instance, args.qpu)
    except Exception:
        runtime.kill()
        raise
    proxy = "http://" + ready["url"].split("://", 1)[-1].rstrip("/")
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "https_proxy")}
    env.update(
        HTTP_PROXY=proxy, http_proxy=proxy,
        IAM_URL=f"http://iam.{DOMAIN}",
        QISKIT_IBM_TOKEN=TOKEN, QISKIT_IBM_URL=f"http://{DOMAIN}",
        QISKIT_IBM_INSTANCE=args.instance, QISKIT_IBM_QPU=args.qpu,
        # The suite starts `pproxy` by name; run as .venv/bin/python, PATH may lack .venv/bin.
        PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    )  # fmt: skip
    junit = work / "junit.xml"
    targets = [f"test/integration/{t}" for t in args.tests] or ["test/integration"]
    # --import-mode=append: the suite imports the installed SDK, not the sdist's copy.
    command = [sys.executable, "-m", "pytest", *targets, "-q", "-p", "no:cacheprovider",
               "--import-mode=append", f"--junitxml={junit}", "-o", "junit_family=xunit1",
               f"--timeout={args.test_timeout}", "-rN"]  # fmt: skip
    if args.keyword:
        command += ["-k", args.keyword]
    started = time.monotonic()
    status = 0
    try:
        subprocess.run(command, cwd=root, env=env, timeout=args.timeout, check=False)
    except subprocess.TimeoutExpired:
        print(f"the suite overran --timeout {args.timeout:.0f} s", file=sys.stderr)
        status = 2
    finally:
        runtime.terminate()
        try:
            runtime.wait(15)
        except subprocess.TimeoutExpired:
            runtime.kill()
    if not junit.exists():
        print(f"no results; work directory kept: {work}", file=sys.stderr)
        return 2
    summary = summarise(junit)
    summary["seconds"] = round(time.monotonic() - started, 1)
    summary["sdk_version"] = args.sdk_version
    for name, entry in summary["files"].items():
        print(f"{name:40} {entry['passed']:4} passed {entry['failed']:4} failed "
              f"{entry['skipped']:4} skipped")  # fmt: skip
    t = summary["totals"]
    print(f"{'TOTAL':40} {t['passed']:4} passed {t['failed']:4} failed {t['skipped']:4} skipped"
          f" of {sum(t.values())} in {summary['seconds']} s")  # fmt: skip
    for name, entry in summary["files"].items():
        for failure in entry["failures"]:
            print(f"FAILED {name}::{failure}")
        if args.show_skips:
            for skip in entry["skips"]:
                print(f"SKIPPED {name}::{skip}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    if args.keep:
        print(f"work directory: {work}", file=sys.stderr)
    else:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
