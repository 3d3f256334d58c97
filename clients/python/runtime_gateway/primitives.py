"""`SamplerV2` and `EstimatorV2` over the gateway: qiskit-ibm-runtime's primitives, reused.

The classes subclass the SDK's own `SamplerV2`/`EstimatorV2`, so the documented signatures,
the option models and their validation (`default_shots`, `default_precision`,
`dynamical_decoupling`, `twirling`, `resilience_level`, `environment.job_tags`,
`max_execution_time`, ...; unknown options rejected) and the PUB encoding are the SDK's. Only
where a job goes differs: the mode (this client's backend, `Session` or `Batch`) is resolved
here, and the job is submitted through the gateway. Needs qiskit-ibm-runtime; imported on
first use (`from runtime_gateway import SamplerV2`), never by `import runtime_gateway`.
"""

from __future__ import annotations

from typing import Any

try:
    from qiskit.primitives.base import BaseEstimatorV2, BaseSamplerV2
    from qiskit_ibm_runtime import EstimatorV2 as _SdkEstimatorV2
    from qiskit_ibm_runtime import SamplerV2 as _SdkSamplerV2
except ImportError as error:  # pragma: no cover - the message is the point
    raise ImportError(
        "runtime_gateway's SamplerV2/EstimatorV2 reuse qiskit-ibm-runtime's option models and "
        f"input encoding: pip install qiskit-ibm-runtime ({error})"
    ) from None

from runtime_gateway.service import IBMBackend
from runtime_gateway.sessions import Session, active_mode


def _mode_service_backend(mode: Any) -> tuple[Session | None, Any, Any]:
    """(session or batch or None, service, backend) for `mode`, as the SDK resolves it."""
    if isinstance(mode, Session):
        return mode, mode.service, mode._backend
    if isinstance(mode, IBMBackend):
        session = active_mode()
        if session is not None and session._backend is not None:
            if session._backend.name != mode.name:
                raise ValueError(
                    "The backend passed in to the primitive is different from the session "
                    "backend. Please check which backend you intend to use or leave the mode "
                    "parameter empty to use the session backend."
                )
            return session, mode.service, mode
        return None, mode.service, mode
    if mode is None:
        session = active_mode()
        if session is None:
            raise ValueError(
                "A backend or session/batch must be specified (mode=backend, or inside "
                "`with Session(backend)`)."
            )
        return session, session.service, session._backend
    raise ValueError(
        "mode must be of type Backend, Session, Batch or None "
        "(a backend from runtime_gateway.QiskitRuntimeService)"
    )


class SamplerV2(_SdkSamplerV2):  # type: ignore[misc]
    """The SDK's `SamplerV2`, submitting through the gateway: `SamplerV2(mode=backend |
    session | batch, options=dict | SamplerOptions)`, `.run(pubs, shots=None)`."""

    def __init__(self, mode: Any = None, options: Any = None) -> None:
        BaseSamplerV2.__init__(self)
        self._mode, self._service, self._backend = _mode_service_backend(mode)
        self._set_options(options)


class EstimatorV2(_SdkEstimatorV2):  # type: ignore[misc]
    """The SDK's `EstimatorV2`, submitting through the gateway: `EstimatorV2(mode=...,
    options=dict | EstimatorOptions)`, `.run(pubs, precision=None)`."""

    def __init__(self, mode: Any = None, options: Any = None) -> None:
        BaseEstimatorV2.__init__(self)
        self._mode, self._service, self._backend = _mode_service_backend(mode)
        self._set_options(options)


Sampler = SamplerV2
Estimator = EstimatorV2
__all__ = ["Estimator", "EstimatorV2", "Sampler", "SamplerV2"]
