"""Every public callable of QiskitRuntimeService has the seed's signature (names, order,
defaults, static-ness), read from the reference in ../shared."""

from __future__ import annotations

import inspect
import re

import pytest

from runtime_gateway import QiskitRuntimeService
from tests.procs import ROOT

SEED = ROOT.parent / "shared" / "reference" / "QiskitRuntimeService-0.21.md"


def _seed() -> dict[str, tuple[str, bool]]:
    if not SEED.exists():
        pytest.fail(f"the seed reference is missing: {SEED} (CI puts ../shared beside the project)")
    text = SEED.read_text()
    found = {}
    for match in re.finditer(
        r'<(Class|Function) id="qiskit_ibm_runtime\.QiskitRuntimeService(?:\.(\w+))?"[^>]*?signature="([^"]+)"([^>]*)>',
        text,
    ):
        name = match.group(2) or "__init__"
        signature = match.group(3).split("(", 1)[1].rsplit(")", 1)[0]
        found[name] = (signature, 'modifiers="static"' in match.group(4))
    return found


SEED_METHODS = _seed() if SEED.exists() else {}


def _ours(name: str) -> tuple[str, bool]:
    raw = inspect.getattr_static(QiskitRuntimeService, name)
    static = isinstance(raw, staticmethod)
    params = inspect.signature(getattr(QiskitRuntimeService, name)).parameters.values()
    rendered = []
    for p in params:
        if p.name == "self":
            continue
        if p.kind is p.VAR_KEYWORD:
            rendered.append(f"**{p.name}")
        elif p.default is inspect.Parameter.empty:
            rendered.append(p.name)
        else:
            rendered.append(f"{p.name}={p.default!r}")
    return ", ".join(rendered), static


def test_the_seed_was_read() -> None:
    assert (
        len(SEED_METHODS) == 14 and "__init__" in SEED_METHODS and "jobs" in SEED_METHODS
    )  # __init__ + 13 methods


@pytest.mark.parametrize("name", sorted(SEED_METHODS))
def test_signature_matches_the_seed(name: str) -> None:
    seed_signature, seed_static = SEED_METHODS[name]
    ours, static = _ours(name)
    assert ours == seed_signature
    assert static == seed_static


def test_attributes() -> None:
    assert QiskitRuntimeService.global_service is None
    assert QiskitRuntimeService.version == 1
    assert isinstance(inspect.getattr_static(QiskitRuntimeService, "channel"), property)
    assert isinstance(inspect.getattr_static(QiskitRuntimeService, "runtime"), property)


def test_no_public_callable_is_missing() -> None:
    ours = {
        n
        for n, v in vars(QiskitRuntimeService).items()
        if not n.startswith("_") and callable(getattr(QiskitRuntimeService, n))
    }
    assert set(SEED_METHODS) - {"__init__"} <= ours


def test_job_state_numbers_match_the_generated_enum() -> None:
    from runtime_gateway import service
    from runtime_gateway.v1 import jobs_pb2

    names = {
        "QUEUED": "QUEUED",
        "RUNNING": "RUNNING",
        "COMPLETED": "DONE",
        "FAILED": "ERROR",
        "CANCELLED": "CANCELLED",
    }
    assert service._STATUS == {
        jobs_pb2.JobState.Value(f"JOB_STATE_{k}"): v for k, v in names.items()
    }
