"""Thin Python client of the runtime gateway: `from runtime_gateway import QiskitRuntimeService`.

The class has the documented surface of qiskit-ibm-runtime's `QiskitRuntimeService` (0.21) and
talks to the gateway over gRPC (`RUNTIME_GATEWAY_ADDRESS`, default `localhost:50051`). The
generated gRPC modules live in `runtime_gateway.v1`. Importing this package loads only grpcio
and protobuf: never qiskit, numpy, requests or structlog.
"""

from runtime_gateway.exceptions import (
    AccountAlreadyExistsError,
    AccountNotFoundError,
    IBMError,
    IBMInputValueError,
    IBMNotAuthorizedError,
    IBMRuntimeError,
    InvalidAccountError,
    QiskitBackendNotFoundError,
    RuntimeInvalidStateError,
    RuntimeJobFailureError,
    RuntimeJobMaxTimeoutError,
    RuntimeJobNotFound,
    RuntimeJobTimeoutError,
    RuntimeProgramNotFound,
)
from runtime_gateway.service import IBMBackend, QiskitRuntimeService, RuntimeJob

__version__ = "0.1.0"

# Loaded on first access (PEP 562), so `import runtime_gateway` stays free of Qiskit:
# the primitives subclass qiskit-ibm-runtime's; Session and Batch need only gRPC.
_LAZY = {
    "SamplerV2": "runtime_gateway.primitives",
    "EstimatorV2": "runtime_gateway.primitives",
    "Sampler": "runtime_gateway.primitives",
    "Estimator": "runtime_gateway.primitives",
    "Session": "runtime_gateway.sessions",
    "Batch": "runtime_gateway.sessions",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'runtime_gateway' has no attribute '{name}'")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AccountAlreadyExistsError",
    "AccountNotFoundError",
    "Batch",
    "Estimator",
    "EstimatorV2",
    "IBMBackend",
    "IBMError",
    "IBMInputValueError",
    "IBMNotAuthorizedError",
    "IBMRuntimeError",
    "InvalidAccountError",
    "QiskitBackendNotFoundError",
    "QiskitRuntimeService",
    "RuntimeInvalidStateError",
    "RuntimeJob",
    "RuntimeJobFailureError",
    "RuntimeJobMaxTimeoutError",
    "RuntimeJobNotFound",
    "RuntimeJobTimeoutError",
    "RuntimeProgramNotFound",
    "Sampler",
    "SamplerV2",
    "Session",
]
