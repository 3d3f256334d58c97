"""The exceptions of qiskit-ibm-runtime, by the same names, without importing it.

Code written for the SDK catches these by name; the gateway's `ErrorInfo` reasons map to
them (`from_rpc_error`). `IBMInputValueError` is also a `ValueError`, as in the SDK.
"""

from __future__ import annotations

import sys
from typing import Any


class IBMError(Exception):
    """Base class of the runtime errors.

    Raising any of these creates an instance of a subclass that is also Qiskit's matching
    exception (`QiskitError`, `JobError`, `JobTimeoutError`, `QiskitBackendNotFoundError`) when
    the program has imported qiskit, and also qiskit-ibm-runtime's same-named class when it has
    imported that: `except qiskit.providers.JobError` works, and importing this module imports
    neither (a program that never imported them cannot be catching their classes).
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> IBMError:
        return Exception.__new__(_flavoured(cls), *args)

    def __init__(self, *args: Any) -> None:
        Exception.__init__(self, *args)
        self.message = " ".join(str(a) for a in args)  # as QiskitError has it

    __str__ = Exception.__str__  # QiskitError would quote the message


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


# Qiskit's classes (module, name) each of ours also becomes; IBMError's entry covers the rest.
_QISKIT_BASES: dict[str, tuple[str, str]] = {
    "IBMError": ("qiskit.exceptions", "QiskitError"),
    "RuntimeJobTimeoutError": ("qiskit.providers", "JobTimeoutError"),
    "RuntimeJobMaxTimeoutError": ("qiskit.providers", "JobError"),
    "RuntimeJobFailureError": ("qiskit.providers", "JobError"),
    "QiskitBackendNotFoundError": ("qiskit.providers", "QiskitBackendNotFoundError"),
}
_FLAVOURED: dict[tuple[type, bool, bool], type] = {}


def _flavoured(cls: type) -> type:
    """`cls`, or a subclass of it and of the Qiskit/SDK classes loaded in this process."""
    has_qiskit = "qiskit" in sys.modules
    has_sdk = "qiskit_ibm_runtime.exceptions" in sys.modules
    if not has_qiskit or cls.__dict__.get("_flavour_of") is not None:
        return cls
    key = (cls, has_qiskit, has_sdk)
    found = _FLAVOURED.get(key)
    if found is not None:
        return found
    extra: list[type] = []
    if has_sdk:
        sdk_cls = getattr(sys.modules["qiskit_ibm_runtime.exceptions"], cls.__name__, None)
        if isinstance(sdk_cls, type) and issubclass(sdk_cls, Exception):
            extra.append(sdk_cls)
    for klass in cls.__mro__:
        where = _QISKIT_BASES.get(klass.__name__)
        if where is None:
            continue
        module = sys.modules.get(where[0])
        if module is None:
            try:
                module = __import__(where[0], fromlist=[where[1]])  # qiskit is loaded already
            except ImportError:
                continue
        base = getattr(module, where[1], None)
        if isinstance(base, type) and not any(issubclass(e, base) for e in extra):
            extra.append(base)
    if not extra:
        _FLAVOURED[key] = cls
        return cls
    try:
        flavoured = type(
            cls.__name__, (cls, *extra), {"_flavour_of": cls, "__module__": cls.__module__}
        )
    except TypeError:  # an MRO the bases cannot share: keep ours
        flavoured = cls
    _FLAVOURED[key] = flavoured
    return flavoured


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
