"""Admission of each call before a servicer sees it: decodable, checked, and within budget.

A grpc.aio server interceptor that wraps each API method's handler:

- its `request_deserializer`: counts the serialized request against the in-flight byte
  budget first (over it, the bytes are never parsed), then parses; bytes that are not a
  valid message become a sentinel instead of an exception (grpc would answer UNKNOWN with
  a Python class name);
- its behaviour: a sentinel ends the call with INVALID_ARGUMENT ("the request is not a
  valid <Message>") or RESOURCE_EXHAUSTED/GATEWAY_OVERLOADED with a RetryInfo; a parsed
  request passes `limits.check_message` (bounds, enum values, timestamps); the budget is
  released when the call ends, however it ends.

The budget bounds the memory that large requests (20 MB `inputs_json`) can pin at once:
each is held several times over while a job is submitted (the message, the text, the body).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import inspect
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import structlog
from google.protobuf.message import DecodeError, Message

from runtime_gateway_server import limits
from runtime_gateway_server.errors import GatewayError, to_status

log = structlog.get_logger("runtime_gateway_server.rpc")

DEFAULT_MAX_INFLIGHT_BYTES = 512 * 1024 * 1024
RETRY_AFTER_SECONDS = 1.0
# Requests at least this large hand their memory back to the OS when they end (see
# `tune_malloc`); smaller ones are left to the allocator's free lists.
LARGE_REQUEST_BYTES = 1024 * 1024
API_PREFIX = "/runtime_gateway.v1."
# A request is held several times over while a job is submitted (the received bytes, the
# parsed message, its text, the validation's parse, the body sent upstream, requests'
# buffer): with 20 MB inputs the gateway's peak RSS reached 4.5-7.6x the serialized bytes in
# flight (bench/resilience.py). The budget counts that memory, not the bytes.
COPIES_PER_REQUEST = 8


class Budget:
    """Bytes of serialized requests in flight, bounded. Thread-safe (deserializers run on
    the event loop today, but nothing in grpc promises that)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self._lock = threading.Lock()

    def reserve(self, size: int) -> Reservation | None:
        """A reservation of `size` bytes, or None when it would exceed the limit. A request
        larger than the whole limit is admitted alone (when nothing else is in flight), so a
        retry can succeed; the message-size limit bounds it."""
        with self._lock:
            if self.in_flight and self.in_flight + size > self.limit:
                return None
            self.in_flight += size
        return Reservation(self, size)

    def _release(self, size: int) -> None:
        with self._lock:
            self.in_flight -= size


class Reservation:
    """Released exactly once: when the call ends, or when grpc drops the request unserved."""

    def __init__(self, budget: Budget, size: int) -> None:
        self._budget: Budget | None = budget
        self.size = size

    def release(self) -> None:
        budget, self._budget = self._budget, None
        if budget is not None:
            budget._release(self.size)
            if self.size >= LARGE_REQUEST_BYTES:
                trim_malloc()

    def __del__(self) -> None:
        self.release()


class _Admitted:
    __slots__ = ("message", "reservation")

    def __init__(self, message: Message, reservation: Reservation) -> None:
        self.message = message
        self.reservation = reservation


class _Refused:
    __slots__ = ("error",)

    def __init__(self, error: GatewayError) -> None:
        self.error = error


def _wrap_deserializer(
    parse: Callable[[bytes], Message], message_name: str, budget: Budget
) -> Callable[[bytes], _Admitted | _Refused]:
    def deserialize(raw: bytes) -> _Admitted | _Refused:
        reservation = budget.reserve(len(raw) * COPIES_PER_REQUEST)
        if reservation is None:
            return _Refused(
                GatewayError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    "GATEWAY_OVERLOADED",
                    f"the gateway holds requests costing {budget.in_flight} bytes of memory "
                    f"(at most {budget.limit}); retry later",
                    retry_after=RETRY_AFTER_SECONDS,
                )
            )
        try:
            return _Admitted(parse(raw), reservation)
        except (DecodeError, ValueError, RecursionError):  # invalid UTF-8 is a DecodeError
            reservation.release()
            return _Refused(
                GatewayError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "INVALID_ARGUMENT",
                    f"the request is not a valid {message_name}",
                )
            )

    return deserialize


async def _abort(context: grpc.aio.ServicerContext, method: str, error: GatewayError) -> None:
    log.info("rpc", method=method, code=error.code.name, reason=error.reason, admission=True)
    status = to_status(error)
    await context.abort(status.code, status.details, status.trailing_metadata)


def _admit(request: Any) -> tuple[Message | None, GatewayError | None]:
    if isinstance(request, _Refused):
        return None, request.error
    message = request.message
    try:
        limits.check_message(message)
    except GatewayError as error:
        return None, error
    return message, None


def _wrap_unary(
    behavior: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]], method: str
) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]:
    async def admitted(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            message, error = _admit(request)
            if error is not None:
                await _abort(context, method, error)
            return await behavior(message, context)
        finally:
            if isinstance(request, _Admitted):
                request.reservation.release()

    return admitted


def _wrap_stream(behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(behavior):

        async def streamed(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            try:
                message, error = _admit(request)
                if error is not None:
                    await _abort(context, method, error)
                async for response in behavior(message, context):
                    yield response
            finally:
                if isinstance(request, _Admitted):
                    request.reservation.release()

        return streamed
    return _wrap_unary(behavior, method)  # a coroutine that writes with context.write


class AdmissionInterceptor(grpc.aio.ServerInterceptor):
    """Wraps the handlers of the gateway's API (`runtime_gateway.v1.*`) with admission;
    health and reflection pass through untouched."""

    def __init__(self, max_inflight_bytes: int = DEFAULT_MAX_INFLIGHT_BYTES) -> None:
        self.budget = Budget(max_inflight_bytes)
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        handler = await continuation(handler_call_details)
        if handler is None or not method.startswith(API_PREFIX) or handler.request_streaming:
            return handler
        wrapped = self._handlers.get(method)
        if wrapped is None:  # built once per method
            wrapped = self._handlers[method] = self._wrap(handler, method)
        return wrapped

    def _wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        parse = handler.request_deserializer
        name = getattr(getattr(parse, "__self__", None), "DESCRIPTOR", None)
        message_name = name.name if name is not None else "request message"
        deserializer = _wrap_deserializer(parse, message_name, self.budget)
        short = method.rsplit("/", 1)[-1]
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream(handler.unary_stream, short),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        return grpc.unary_unary_rpc_method_handler(
            _wrap_unary(handler.unary_unary, short),
            request_deserializer=deserializer,
            response_serializer=handler.response_serializer,
        )


# --- memory -----------------------------------------------------------------------------------
# glibc raises its mmap threshold to the size of the largest freed block (up to 32 MB), so
# after the first 20 MB request every later one is carved from a malloc arena (one per
# thread that touches it, up to 8 per core) and stays in the process when freed: RSS grows to
# gigabytes and never shrinks. A fixed threshold keeps large buffers mmapped (returned to
# the OS on free); malloc_trim hands back what the arenas' free lists still hold.
_M_MMAP_THRESHOLD = -3
_libc: Any = None
_last_trim = 0.0


def tune_malloc(mmap_threshold: int = 1024 * 1024) -> bool:
    """Fixes glibc's mmap threshold; False where the C library is not glibc."""
    global _libc
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        if not hasattr(libc, "mallopt") or not hasattr(libc, "malloc_trim"):
            return False
        ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold))
    except OSError:
        return False
    _libc = libc
    return ok


def trim_malloc(min_interval: float = 0.5) -> None:
    """malloc_trim(0), at most once per `min_interval` (it walks every arena)."""
    global _last_trim
    now = time.monotonic()
    if _libc is None or now - _last_trim < min_interval:
        return
    _last_trim = now
    _libc.malloc_trim(0)
