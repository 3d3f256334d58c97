"""Backends of the local runtime: real device snapshots plus a noiseless simulator.

Device configurations and calibrations are the JSON snapshots qiskit-ibm-runtime ships
for its fake backends, read from the installed package at run time. Jobs on a device run
on Qiskit Aer with the noise model built from that device's calibration.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

# Snapshot directory name -> fake backend class in qiskit_ibm_runtime.fake_provider.
# Different sizes and generations; the Falcon r5.11, Eagle and Heron devices support
# dynamic circuits, ibmq_lima does not.
DEFAULT_DEVICES: dict[str, str] = {
    "manila": "FakeManilaV2",  # 5 qubits, Falcon r5.11
    "lima": "FakeLimaV2",  # 5 qubits, Falcon r4T, no dynamic circuits
    "algiers": "FakeAlgiers",  # 27 qubits, Falcon r5.11
    "brisbane": "FakeBrisbane",  # 127 qubits, Eagle r3
    "torino": "FakeTorino",  # 133 qubits, Heron r1
}

# Test devices: IBM's integration suite (the SDK's `backend_test` fixture) only accepts
# backends named `test_eagle*`. Alias -> (snapshot directory, fake backend class): a
# 127-qubit Eagle snapshot under its own name, served by the default catalog whether or not
# the snapshot is also served under its own name (visible to internal instances only, see
# instances.py). Two, because the Eagles' ECR gates run one way per qubit pair: brisbane has
# ECR 1->0 only, kyiv has ECR 0->1, which the suite's PEC test needs: its mirror circuit
# gets an ECR only if qubit 0 -> 1 is supported, and PEC needs a two-qubit layer.
TEST_DEVICES: dict[str, tuple[str, str]] = {
    "test_eagle_brisbane": ("brisbane", "FakeBrisbane"),  # ibm_brisbane, ECR 1->0 on (0, 1)
    "test_eagle_kyiv": ("kyiv", "FakeKyiv"),  # ibm_kyiv, ECR 0->1 on (0, 1)
}

SIMULATOR_NAME = "ibmq_qasm_simulator"
SIMULATOR_QUBITS = 32

_SIMULATOR_GATES = ["id", "rz", "sx", "x", "cx", "cz", "ecr", "h", "s", "sdg", "t", "tdg",
                    "y", "z", "rx", "ry", "p", "u", "swap", "ccx"]  # fmt: skip


@dataclass
class BackendEntry:
    """One backend: its configuration, calibration and how to simulate it."""

    name: str
    configuration: dict[str, Any]
    properties: dict[str, Any] | None
    fake_class: str | None  # None for the noiseless simulator
    operational: bool = True
    status_msg: str = "active"
    # A device runs one job at a time, like the real one (held while a worker process runs it).
    run_lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    # Guards the lazy models below; never held during a simulation, so validation of new jobs
    # on this device does not wait for a running one.
    model_lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @property
    def simulator(self) -> bool:
        return self.fake_class is None

    @property
    def num_qubits(self) -> int:
        return int(self.configuration["n_qubits"])

    @cached_property
    def calibration_id(self) -> str | None:
        """The id of the calibration in force (the snapshot's); None for the simulator.

        IBM names calibrations with opaque ids; here it is derived from the snapshot's
        `last_update_date` so it is stable across restarts."""
        if not self.properties:
            return None
        stamp = str(self.properties.get("last_update_date") or "")
        digits = "".join(c for c in stamp if c.isdigit())[:14]
        return f"{self.name}-{digits or '0'}"

    @cached_property
    def calibrated_at(self) -> datetime | None:
        """When the calibration in force was taken (the snapshot's `last_update_date`)."""
        stamp = (self.properties or {}).get("last_update_date")
        if not stamp:
            return None
        parsed = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

    def list_entry(self, queue_length: int) -> dict[str, Any]:
        """The backend as the 0.51 `GET /backends` lists it ("BackendsResponseV2")."""
        config = self.configuration
        processor = dict(config.get("processor_type") or {})
        entry: dict[str, Any] = {
            "name": self.name,
            "status": {
                "name": "online" if self.operational else "offline",
                "reason": "available" if self.operational else self.status_msg,
            },
            "qubits": self.num_qubits,
            # All of a snapshot's qubits are usable here (IBM's count can be lower when
            # qubits are disabled; the snapshots have none disabled).
            "physical_qubits": self.num_qubits,
            "queue_length": queue_length,
            "is_simulator": self.simulator,
            "processor_type": processor,
            "clops": {"type": "hpc", "value": config.get("clops_h") or 0},
            "performance_metrics": {
                "quantum_volume": {"value": config.get("quantum_volume") or 0},
            },
        }
        if self.calibration_id is not None:
            entry["calibration_id"] = self.calibration_id
        return entry

    @cached_property
    def configuration_json(self) -> bytes:
        """The configuration, serialized once: it never changes and large ones are 150 KB."""
        return json.dumps(self.configuration).encode()

    @cached_property
    def properties_json(self) -> bytes:
        """The calibration, serialized once; `{}` for the simulator, which has none."""
        return json.dumps(self.properties or {}).encode()

    @cached_property
    def fake_backend(self) -> Any:
        """The qiskit-ibm-runtime fake backend (a BackendV2 with this device's target)."""
        if self.fake_class is None:
            raise ValueError(f"{self.name} is a simulator and has no device model")
        module = importlib.import_module("qiskit_ibm_runtime.fake_provider")
        return getattr(module, self.fake_class)()

    @cached_property
    def aer_simulator(self) -> Any:
        """An AerSimulator with this device's noise model and coupling (built once)."""
        from qiskit_aer import AerSimulator

        return AerSimulator() if self.simulator else AerSimulator.from_backend(self.fake_backend)


class SnapshotsUnavailable(RuntimeError):
    """qiskit-ibm-runtime (the `local` extra) is not installed."""


def _snapshot_root() -> Path:
    # find_spec on the top-level package locates it without importing it (and Qiskit with
    # it): the gateway reads these JSON files at start-up and imports Qiskit only to run jobs.
    spec = importlib.util.find_spec("qiskit_ibm_runtime")
    if spec is None or not spec.submodule_search_locations:
        raise SnapshotsUnavailable(
            "the local runtime needs qiskit-ibm-runtime for its device snapshots: "
            "pip install 'runtime-gateway[local]'"
        )
    return Path(next(iter(spec.submodule_search_locations)), "fake_provider", "backends")


def _snapshot(directory: str, kind: str) -> dict[str, Any]:
    path = _snapshot_root() / directory / f"{kind}_{directory}.json"
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _device_configuration(directory: str) -> dict[str, Any]:
    config = _snapshot(directory, "conf")
    features = list(config.get("supported_features") or [])
    # 0.21 clients read dynamic-circuit support from "qasm3", 0.51 from "dynamic_circuits".
    if "qasm3" in features and "dynamic_circuits" not in features:
        features.append("dynamic_circuits")
    config["supported_features"] = features
    return config


def simulator_configuration() -> dict[str, Any]:
    return {
        "backend_name": SIMULATOR_NAME,
        "backend_version": "0.1.0",
        "n_qubits": SIMULATOR_QUBITS,
        "basis_gates": list(_SIMULATOR_GATES),
        "gates": [
            {"name": g, "parameters": [], "qasm_def": f"gate {g} q {{ }}"} for g in _SIMULATOR_GATES
        ],
        "local": False,
        "simulator": True,
        "conditional": True,
        "open_pulse": False,
        "memory": True,
        "max_shots": 100000,
        "max_experiments": 300,
        "coupling_map": None,
        "supported_instructions": [*_SIMULATOR_GATES, "measure", "reset", "delay", "barrier",
                                   "if_else", "for_loop", "while_loop", "switch_case"],
        "supported_features": ["qasm3", "dynamic_circuits"],
        "description": "Noiseless Qiskit Aer simulator of the local runtime",
        "online_date": "2024-01-01T00:00:00Z",
        "processor_type": {"family": "Simulator", "revision": "1"},
    }  # fmt: skip


class BackendCatalog:
    """The backends one local runtime serves, by name."""

    def __init__(self, devices: dict[str, str] | None = None, include_simulator: bool = True):
        """`devices`: snapshot directory -> fake backend class; None serves `DEFAULT_DEVICES`
        plus `TEST_DEVICES` (a custom set serves exactly its devices, no test devices)."""
        self._entries: dict[str, BackendEntry] = {}
        for directory, fake_class in (devices or DEFAULT_DEVICES).items():
            config = _device_configuration(directory)
            properties = _snapshot(directory, "props")
            name = config["backend_name"]
            self._entries[name] = BackendEntry(name, config, properties, fake_class)
        for alias, (directory, fake_class) in ({} if devices else TEST_DEVICES).items():
            config = _device_configuration(directory)
            config["backend_name"] = alias
            config["description"] = f"Test device of the local runtime (the {directory} snapshot)"
            properties = _snapshot(directory, "props")
            properties["backend_name"] = alias
            self._entries[alias] = BackendEntry(alias, config, properties, fake_class)
        if include_simulator:
            self._entries[SIMULATOR_NAME] = BackendEntry(
                SIMULATOR_NAME, simulator_configuration(), None, None
            )
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str) -> BackendEntry | None:
        return self._entries.get(name)

    def set_operational(self, name: str, operational: bool, status_msg: str = "active") -> None:
        with self._lock:
            entry = self._entries[name]
            entry.operational = operational
            entry.status_msg = status_msg
