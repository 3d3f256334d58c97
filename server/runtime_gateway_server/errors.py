"""Domain errors and their gRPC form (AIP-193).

Every error carries a gRPC status code, a stable reason (`ErrorReason` without its prefix;
clients map it to their exception types) and a message. `to_status` adds the rich details:
`google.rpc.ErrorInfo` always, `BadRequest` when a field is wrong, `RetryInfo` when the
upstream said when to retry. Messages pass the secret scrubber: they never carry a token.
"""

from __future__ import annotations

import collections

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from runtime_gateway_server.logs import SECRETS

DOMAIN = "runtime-gateway"
REASON_METADATA = "runtime-gateway-reason"


class GatewayError(Exception):
    """An error to answer with; `reason` is an ErrorReason name without its prefix."""

    def __init__(
        self,
        code: grpc.StatusCode,
        reason: str,
        message: str,
        *,
        field: str | None = None,
        retry_after: float | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        message = SECRETS.scrub(message)
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.field = field
        self.retry_after = retry_after
        self.metadata = dict(metadata or {})

    def __repr__(self) -> str:
        return f"GatewayError({self.code.name}, {self.reason}, {self.message!r})"


def invalid_argument(field: str, message: str) -> GatewayError:
    return GatewayError(
        grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", f"{field}: {message}", field=field
    )


def not_found(reason: str, message: str) -> GatewayError:
    return GatewayError(grpc.StatusCode.NOT_FOUND, reason, message)


def to_status(error: GatewayError) -> grpc.Status:
    details = []
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN, metadata=error.metadata)
    details.append(info)
    if error.field:
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=error.field, description=error.message
                    )
                ]
            )
        )
    if error.retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(max(error.retry_after, 0) * 1e9))
        details.append(error_details_pb2.RetryInfo(retry_delay=delay))
    packed = []
    for detail in details:
        wrapped = any_pb2.Any()
        wrapped.Pack(detail)
        packed.append(wrapped)
    status = status_pb2.Status(
        code=getattr(code_pb2, error.code.name), message=error.message, details=packed
    )
    rich = rpc_status.to_status(status)
    # The reason again as plain metadata: clients without googleapis-common-protos (the thin
    # Python client) read it without decoding google.rpc.Status.
    return _Status(
        rich.code, rich.details, (*rich.trailing_metadata, (REASON_METADATA, error.reason))
    )


class _Status(
    collections.namedtuple("_Status", ("code", "details", "trailing_metadata")), grpc.Status
):
    """A grpc.Status with extra trailing metadata."""
