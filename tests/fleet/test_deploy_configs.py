"""The deployment examples are valid: every Kubernetes manifest under deploy/kubernetes/ against
Kubernetes' own schemas (kubernetes-validate bundles them: no cluster, no network), strictly (an
unknown field is an error), and deploy/haproxy/haproxy.cfg by `haproxy -c`."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.procs import ROOT

KUBERNETES = ROOT / "deploy" / "kubernetes"
HAPROXY_CFG = ROOT / "deploy" / "haproxy" / "haproxy.cfg"
# The oldest Kubernetes still widely run, and the newest the validator knows.
VERSIONS = ("1.29.0", kubernetes_validate.latest_version())


def _documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found.append((f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return found


DOCUMENTS = _documents()


def _find(kind: str, name: str) -> dict[str, Any]:
    return next(d for _, d in DOCUMENTS if d["kind"] == kind and d["metadata"]["name"] == name)


def _gateway_container() -> dict[str, Any]:
    spec = _find("Deployment", "runtime-gateway")["spec"]["template"]["spec"]
    return next(c for c in spec["containers"] if c["name"] == "gateway")


def test_the_examples_hold_what_a_fleet_needs() -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for _, d in DOCUMENTS}
    assert {("Deployment", "runtime-gateway"), ("Service", "runtime-gateway"),
            ("Service", "runtime-gateway-headless"), ("Deployment", "runtime-gateway-redis"),
            ("Service", "runtime-gateway-redis"), ("Secret", "runtime-gateway")} <= kinds  # fmt: skip


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("name", "doc"), DOCUMENTS, ids=[n for n, _ in DOCUMENTS])
def test_manifest_passes_the_kubernetes_schema(
    name: str, doc: dict[str, Any], version: str
) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize(
    "break_it",
    [
        lambda d: d["spec"].__setitem__("replicas", "three"),
        lambda d: d["spec"]["template"]["spec"].__setitem__("terminationGracePeriod", 30),
    ],
    ids=["wrong type", "unknown field"],
)
def test_the_schema_check_catches_a_broken_manifest(break_it: Any) -> None:
    broken = copy.deepcopy(_find("Deployment", "runtime-gateway"))
    break_it(broken)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)


def test_the_pod_outlives_its_drain() -> None:
    """Kubernetes SIGKILLs a pod terminationGracePeriodSeconds after it starts stopping: that
    must cover the preStop pause and the gateway's own grace."""
    spec = _find("Deployment", "runtime-gateway")["spec"]["template"]["spec"]
    container = _gateway_container()
    env = {e["name"]: e.get("value") for e in container["env"]}
    pause = float(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    grace = float(env["RUNTIME_GATEWAY_GRACE_SECONDS"])
    assert spec["terminationGracePeriodSeconds"] > pause + grace


def test_probes_ask_the_gateways_grpc_health() -> None:
    container = _gateway_container()
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["exec"]["command"][:2] == ["runtime-gateway", "health"], probe


def test_secrets_come_from_the_secret_not_the_manifest() -> None:
    env = {e["name"]: e for e in _gateway_container()["env"]}
    for name in ("RUNTIME_GATEWAY_REDIS_URL", "RUNTIME_GATEWAY_API_KEYS"):
        assert "secretKeyRef" in env[name]["valueFrom"], name


def _haproxy_env(**overrides: str) -> dict[str, str]:
    env = {**os.environ, "RG_ADMIN_SOCKET": "/tmp/rg-check.sock", "RG_PIDFILE": "/tmp/rg-check.pid"}
    for index in (1, 2, 3):
        env[f"RG_REPLICA_{index}"] = f"10.0.0.{10 + index}:50051"
        env[f"RG_HEALTH_PORT_{index}"] = "9464"
    env.update(overrides)
    return env


def _haproxy_check(cfg: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("haproxy")
    assert binary, "haproxy is not installed: run `make test` (make system-deps)"
    return subprocess.run([binary, "-c", "-f", str(cfg)], env=env, capture_output=True,
                          text=True, timeout=30, check=False)  # fmt: skip


def test_haproxy_config_is_valid() -> None:
    result = _haproxy_check(HAPROXY_CFG, _haproxy_env())
    assert result.returncode == 0, result.stdout + result.stderr


def test_haproxy_check_refuses_a_config_without_replica_addresses() -> None:
    result = _haproxy_check(HAPROXY_CFG, _haproxy_env(RG_REPLICA_2=""))
    assert result.returncode != 0
