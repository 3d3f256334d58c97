"""The backend as a `qiskit.providers.BackendV2`, built only when Qiskit is importable.

Imported on first use by `service.backend_class()`, never by `import runtime_gateway`. The
target, configuration, properties and status are built from the gateway's raw JSON with
qiskit-ibm-runtime's own decoders and `convert_to_target` (the same code the SDK runs), so a
device's target here equals the SDK's target for it.
"""

from __future__ import annotations

import json
from datetime import datetime as python_datetime
from typing import TYPE_CHECKING, Any

from qiskit.providers import BackendV2, Options

from runtime_gateway.exceptions import IBMError, QiskitBackendNotFoundError
from runtime_gateway.service import IBMBackend, _api, _timestamp

if TYPE_CHECKING:
    from runtime_gateway.service import QiskitRuntimeService
    from runtime_gateway.v1 import backends_pb2


def _sdk() -> Any:
    """qiskit-ibm-runtime's decoders and converter (it must be installed for a target)."""
    try:
        from qiskit_ibm_runtime.models import BackendStatus
        from qiskit_ibm_runtime.utils.backend_converter import convert_to_target
        from qiskit_ibm_runtime.utils.backend_decoder import (
            configuration_from_server_data,
            properties_from_server_data,
        )
    except ImportError as error:
        raise ImportError(
            "Building a backend's target needs qiskit-ibm-runtime (its converters are reused "
            f"so the target equals the SDK's): pip install qiskit-ibm-runtime ({error})"
        ) from None
    return (
        BackendStatus,
        convert_to_target,
        configuration_from_server_data,
        (properties_from_server_data),
    )


class QiskitBackend(IBMBackend, BackendV2):
    """An IBM backend through the gateway that Qiskit's transpiler and primitives accept."""

    def __init__(self, service: QiskitRuntimeService, message: backends_pb2.Backend) -> None:
        IBMBackend.__init__(self, service, message)
        BackendV2.__init__(
            self, provider=None, name=message.name, backend_version=message.backend_version
        )
        self._raw_properties: dict[str, Any] | None = None
        self._properties_model: Any = None
        self._configuration_model: Any = None
        self._target: Any = None
        self._target_key: tuple[str, str, str] | None = None

    @classmethod
    def _default_options(cls) -> Options:
        return Options(shots=4000)

    # --- raw documents ----------------------------------------------------------------------
    def _raw_configuration(self, refresh: bool = False) -> dict[str, Any]:
        if refresh or self._configuration is None:
            request = _api().backends_pb2.GetBackendRequest(
                name=self.name, view=_api().backends_pb2.BACKEND_VIEW_FULL
            )
            reply = self._service._gateway.call(
                self._service._gateway.backends.GetBackend, request, QiskitBackendNotFoundError
            )
            self._set_configuration(json.loads(reply.backend.configuration.raw_json))
            self._configuration_model = None
        assert self._configuration is not None
        return dict(self._configuration)

    def _fetch_properties(self, when: python_datetime | None = None) -> dict[str, Any] | None:
        request = _api().backends_pb2.GetBackendPropertiesRequest(
            name=self.name, updated_before=_timestamp(when)
        )
        reply = self._service._gateway.call(
            self._service._gateway.backends.GetBackendProperties,
            request,
            QiskitBackendNotFoundError,
        )
        if not reply.HasField("properties") or not reply.properties.raw_json:
            return None
        raw: dict[str, Any] = json.loads(reply.properties.raw_json)
        return raw

    # --- the SDK's model objects ------------------------------------------------------------
    def configuration(self) -> Any:  # type: ignore[override]
        """The SDK's `QasmBackendConfiguration` (as `IBMBackend.configuration()` returns)."""
        if self._configuration_model is None:
            _, _, from_config, _ = _sdk()
            self._configuration_model = from_config(self._raw_configuration())
        return self._configuration_model

    def properties(  # type: ignore[override]
        self, refresh: bool = False, datetime: python_datetime | None = None
    ) -> Any:
        """The SDK's `BackendProperties` (None for simulators): cached, except with `refresh`
        or a `datetime` (then the newest calibration before it, not cached)."""
        if not isinstance(refresh, bool):
            raise TypeError(
                f"The 'refresh' argument needs to be a boolean. {refresh} is of type "
                f" {type(refresh)}"
            )
        if self.simulator:
            return None
        if datetime is not None and not isinstance(datetime, python_datetime):
            raise TypeError(f"'{datetime}' is not of type 'datetime'.")
        _, _, _, from_properties = _sdk()
        if datetime is not None:
            raw = self._fetch_properties(datetime)
            return None if raw is None else from_properties(raw)
        if refresh or self._properties_model is None:
            raw = self._fetch_properties()
            self._raw_properties = raw
            self._properties_model = None if raw is None else from_properties(raw)
        return self._properties_model

    def defaults(self, refresh: bool = False) -> None:
        """Pulse defaults: none (Qiskit 2 and qiskit-ibm-runtime 0.51 dropped pulse)."""
        return None

    def status(self) -> Any:  # type: ignore[override]
        """Qiskit's `BackendStatus` (the SDK's model)."""
        plain = IBMBackend.status(self)
        status_model = _sdk()[0]
        return status_model.from_dict(plain.to_dict())

    # --- the target -------------------------------------------------------------------------
    @property
    def target(self) -> Any:
        """The transpiler target, built by the SDK's `convert_to_target` from this device's
        configuration and properties; built once per (backend, configuration version,
        calibration) and shared by every backend object of the service."""
        configuration = self.configuration()
        properties = self.properties()
        key = (
            self.name,
            str(configuration.backend_version),
            str(getattr(properties, "last_update_date", "")),
        )
        if self._target is None or self._target_key != key:
            cached = self._service._targets.get(key)
            if cached is None:
                convert = _sdk()[1]
                cached = convert(configuration=configuration, properties=properties)
                self._service._targets[key] = cached
            self._target, self._target_key = cached, key
        return self._target

    def target_history(self, datetime: python_datetime | None = None) -> Any:
        convert = _sdk()[1]
        return convert(
            configuration=self.configuration(), properties=self.properties(datetime=datetime)
        )

    def refresh(self) -> None:
        """Fetches the newest configuration and properties; the target follows them."""
        self._raw_configuration(refresh=True)
        self.properties(refresh=True)
        self._target = None

    @property
    def max_circuits(self) -> None:
        return None  # as the SDK: the configuration's max_experiments no longer applies

    @property
    def meas_map(self) -> list[list[int]]:
        return list(self.configuration().meas_map)

    @property
    def dtm(self) -> float:
        return float(self.configuration().dtm)

    @property
    def num_qubits(self) -> int:
        return int(self._num_qubits)

    @property
    def name(self) -> str:  # type: ignore[override]
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        self._name = value

    def check_faulty(self, circuit: Any) -> None:
        """ValueError if `circuit` uses a qubit or edge the calibration marks faulty."""
        properties = self.properties()
        if not properties:
            return
        faulty_qubits = properties.faulty_qubits()
        faulty_edges = [tuple(g.qubits) for g in properties.faulty_gates() if len(g.qubits) > 1]
        for instruction in circuit.data:
            if instruction.operation.name == "barrier":
                continue
            indices = tuple(circuit.find_bit(q).index for q in instruction.qubits)
            for index in indices:
                if index in faulty_qubits:
                    raise ValueError(
                        f"Circuit {circuit.name} contains instruction {instruction} "
                        f"operating on a faulty qubit {index}."
                    )
            if len(indices) == 2 and indices in faulty_edges:
                raise ValueError(
                    f"Circuit {circuit.name} contains instruction {instruction} "
                    f"operating on a faulty edge {indices}"
                )

    def get_translation_stage_plugin(self) -> str:
        return "ibm_dynamic_circuits"  # as the SDK's IBMBackend

    def run(self, *args: Any, **kwargs: Any) -> None:
        raise IBMError(
            "Support for backend.run() has been removed. Use SamplerV2(mode=backend) or "
            "EstimatorV2(mode=backend)."
        )

    def __call__(self) -> QiskitBackend:
        return self

    def __getattr__(self, name: str) -> Any:
        # As the SDK: anything else comes from the configuration (e.g. backend.processor_type).
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return getattr(self.configuration(), name)
        except AttributeError:
            raise AttributeError(
                f"'{type(self).__name__}' object has no attribute '{name}'"
            ) from None

    def __repr__(self) -> str:
        return f"<IBMBackend('{self.name}')>"
