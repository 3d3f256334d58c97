"""The exceptions of qiskit-ibm-runtime, by the same names, without importing it.

Code written for the SDK catches these by name; the gateway's `ErrorInfo` reasons map to
them (`from_rpc_error`). `IBMInputValueError` is also a `ValueError`, as in the SDK.
"""

from __future__ import annotations

from typing import Any


class IBMError(Exception):
    """Base class of the runtime errors."""


class IBMAccountError(IBMError):
    pass


class AccountsError(IBMAccountError):
    pass


class InvalidAccountError(AccountsError):
    pass


class AccountNotFoundError(AccountsError):
    pass


class AccountAlreadyExistsError(AccountsError):
    pass


class IBMInputValueError(IBMError, ValueError):
    pass


class IBMNotAuthorizedError(IBMError):
    pass


class IBMApiError(IBMError):
    pass


class IBMRuntimeError(IBMError):
    pass


class RuntimeProgramNotFound(IBMRuntimeError):
    pass


class RuntimeJobNotFound(IBMRuntimeError):
    pass


class RuntimeInvalidStateError(IBMRuntimeError):
    pass


class RuntimeJobMaxTimeoutError(IBMRuntimeError):
    pass


class RuntimeJobFailureError(IBMRuntimeError):
    pass


class RuntimeJobTimeoutError(IBMRuntimeError):
    pass


class QiskitBackendNotFoundError(IBMError):
    """No backend matches (qiskit's `QiskitBackendNotFoundError`, by name)."""


_BY_REASON: dict[str, type[IBMError]] = {
    "JOB_NOT_FOUND": RuntimeJobNotFound,
    "PROGRAM_NOT_FOUND": RuntimeProgramNotFound,
    "BACKEND_NOT_FOUND": QiskitBackendNotFoundError,
    "INVALID_ARGUMENT": IBMInputValueError,
    "JOB_INVALID_STATE": RuntimeInvalidStateError,
    "JOB_FAILED": RuntimeJobFailureError,
    "CREDENTIALS_MISSING": IBMNotAuthorizedError,
    "UPSTREAM_UNAUTHENTICATED": IBMNotAuthorizedError,
    "UPSTREAM_PERMISSION_DENIED": IBMNotAuthorizedError,
    "UPSTREAM_NOT_ALLOWED": IBMNotAuthorizedError,
    "GATEWAY_API_KEY_INVALID": IBMNotAuthorizedError,
    "ACCOUNT_NOT_FOUND": AccountNotFoundError,
    "ACCOUNT_ALREADY_EXISTS": AccountAlreadyExistsError,
    "INVALID_ACCOUNT": InvalidAccountError,
}


def reason_of(error: Any) -> str:
    """The gateway's error reason of a grpc.RpcError ('' if none).

    The gateway sends it twice: in `google.rpc.ErrorInfo` (for any gRPC client) and as the
    plain `runtime-gateway-reason` trailing metadata read here, so this client needs no
    googleapis-common-protos.
    """
    try:
        metadata = error.trailing_metadata() or ()
    except Exception:
        return ""
    for key, value in metadata:
        if key == "runtime-gateway-reason":
            return str(value)
    return ""


def from_rpc_error(error: Any, default: type[IBMError] = IBMRuntimeError) -> IBMError:
    """The SDK exception for a gateway error."""
    cls = _BY_REASON.get(reason_of(error), default)
    details = error.details() if hasattr(error, "details") else str(error)
    return cls(details or str(error))
