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
__all__ = [
    "AccountAlreadyExistsError",
    "AccountNotFoundError",
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
]
