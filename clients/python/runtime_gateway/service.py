"""`QiskitRuntimeService` over the gateway: the documented 0.21 surface, gRPC underneath.

Signatures, defaults, account selection and exceptions follow qiskit-ibm-runtime 0.21
(`../shared/reference/QiskitRuntimeService-0.21.md`, and its code where the two differ), so
code written for the SDK runs against the gateway. The gateway address comes from
`RUNTIME_GATEWAY_ADDRESS` (default `localhost:50051`); `RUNTIME_GATEWAY_TLS=1` (with
`RUNTIME_GATEWAY_TLS_CA` for a private CA) turns TLS on, `RUNTIME_GATEWAY_API_KEY` is sent
as the gateway API key. Only grpcio and protobuf are imported; Qiskit and the SDK are used
when installed, to encode inputs and decode results.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from runtime_gateway import accounts
from runtime_gateway.exceptions import (
    IBMInputValueError,
    IBMRuntimeError,
    QiskitBackendNotFoundError,
    RuntimeInvalidStateError,
    RuntimeJobFailureError,
    RuntimeJobMaxTimeoutError,
    RuntimeJobNotFound,
    RuntimeJobTimeoutError,
    from_rpc_error,
    reason_of,
)

if TYPE_CHECKING:
    from google.protobuf.timestamp_pb2 import Timestamp

    from runtime_gateway.v1 import backends_pb2, jobs_pb2

ADDRESS_ENV = "RUNTIME_GATEWAY_ADDRESS"
DEFAULT_ADDRESS = "localhost:50051"
CALL_TIMEOUT = 120.0
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # the gateway's limit on a message either way
STREAM_WINDOW = 60.0  # longest silence on a job stream before reconnecting
# How long a job wait rides out a gateway that cannot be reached (a restart takes seconds)
# before it raises, as the SDK raises once its connection retries are spent.
UNREACHABLE_GRACE = 60.0
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_FINAL = {"DONE", "ERROR", "CANCELLED"}
# runtime_gateway.v1.JobState numbers (checked by a test against the generated enum)
_STATUS = {1: "QUEUED", 2: "RUNNING", 3: "DONE", 4: "ERROR", 5: "CANCELLED"}
_RAN_TOO_LONG = 1305


_API: SimpleNamespace | None = None


def _api() -> Any:
    """grpcio, protobuf's Timestamp and the generated stubs, imported on first use: importing
    this module stays cheap (grpcio alone takes about 0.12 s to import)."""
    global _API
    if _API is None:
        import grpc
        from google.protobuf.timestamp_pb2 import Timestamp

        from runtime_gateway.v1 import (
            accounts_pb2,
            accounts_pb2_grpc,
            backends_pb2,
            backends_pb2_grpc,
            jobs_pb2,
            jobs_pb2_grpc,
            sessions_pb2,
            sessions_pb2_grpc,
        )

        _API = SimpleNamespace(
            grpc=grpc,
            Timestamp=Timestamp,
            accounts_pb2=accounts_pb2,
            accounts_pb2_grpc=accounts_pb2_grpc,
            backends_pb2=backends_pb2,
            backends_pb2_grpc=backends_pb2_grpc,
            jobs_pb2=jobs_pb2,
            jobs_pb2_grpc=jobs_pb2_grpc,
            sessions_pb2=sessions_pb2,
            sessions_pb2_grpc=sessions_pb2_grpc,
        )
    return _API


class _AttrDict(dict):  # type: ignore[type-arg]
    """A JSON document whose keys read as attributes (configuration, properties)."""

    def __getattr__(self, name: str) -> Any:
        try:
            value = self[name]
        except KeyError:
            raise AttributeError(name) from None
        return _AttrDict(value) if isinstance(value, dict) else value

    def to_dict(self) -> dict[str, Any]:
        return dict(self)


def _sdk_json() -> Any | None:
    """qiskit-ibm-runtime's json module when it is installed (never imported otherwise)."""
    for name in ("qiskit_ibm_runtime.json", "qiskit_ibm_runtime.utils.json"):
        try:
            if importlib.util.find_spec("qiskit_ibm_runtime") is None:
                return None
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


def encode_inputs(inputs: Any) -> str:
    sdk = _sdk_json()
    try:
        if sdk is not None:
            return str(json.dumps(inputs, cls=sdk.RuntimeEncoder))
        return json.dumps(inputs)
    except TypeError as error:
        raise IBMInputValueError(
            f"The inputs cannot be encoded ({error}); "
            "install qiskit-ibm-runtime to send Qiskit objects."
        ) from None


def _plain_hook(value: dict[str, Any]) -> Any:
    """Decodes what plain Python can without Qiskit: ndarray (with NumPy), complex."""
    kind = value.get("__type__")
    if kind == "ndarray" and isinstance(value.get("__value__"), str):
        try:
            import base64
            import io
            import zlib

            import numpy as np

            raw = zlib.decompress(base64.standard_b64decode(value["__value__"]))
            return np.load(io.BytesIO(raw), allow_pickle=False)
        except ImportError:
            return value
    if kind == "complex":
        real, imag = value["__value__"]
        return complex(real, imag)
    return value


def decode_result(text: str, decoder: Any = None) -> Any:
    if decoder is not None:
        return decoder.decode(text)
    if not text:
        return None
    sdk = _sdk_json()
    try:
        if sdk is not None:
            return json.loads(text, cls=sdk.RuntimeDecoder)
        return json.loads(text, object_hook=_plain_hook)
    except ValueError:
        return text


def _timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.astimezone()  # the SDK's created_after/before are local time
    stamp = _api().Timestamp()
    stamp.FromDatetime(value.astimezone(UTC))
    return stamp


def _warn_unsent_settings(account: accounts.Account) -> None:
    """The gateway, not this process, reaches IBM: the account's `proxies` and `verify` are
    not sent with a per-call account, so say where they are set instead of dropping them."""
    if account.proxies:
        warnings.warn(
            "'proxies' is not used by this client: the runtime gateway reaches IBM through "
            "the proxies of its own environment (HTTPS_PROXY / HTTP_PROXY / NO_PROXY on the "
            "gateway) or of an account saved on the gateway.",
            UserWarning,
            stacklevel=3,
        )
    if account.verify is False:
        warnings.warn(
            "'verify=False' is not used by this client: the runtime gateway verifies IBM's "
            "certificates with its own CA bundle (REQUESTS_CA_BUNDLE on the gateway) or the "
            "settings of an account saved on the gateway.",
            UserWarning,
            stacklevel=3,
        )


class _Gateway:
    """One gRPC channel to the gateway and the account's call metadata."""

    def __init__(self, account: accounts.Account) -> None:
        address = os.environ.get(ADDRESS_ENV, DEFAULT_ADDRESS)
        self.address = address
        # The gateway's own limit (64 MiB); gRPC's default of 4 MiB would refuse large
        # results and `job.inputs`.
        options = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ]
        if os.environ.get("RUNTIME_GATEWAY_TLS", "0").lower() in ("1", "true", "yes"):
            ca_path = os.environ.get("RUNTIME_GATEWAY_TLS_CA")
            ca = open(ca_path, "rb").read() if ca_path else None
            self.channel = _api().grpc.secure_channel(
                address, _api().grpc.ssl_channel_credentials(ca), options
            )
        else:
            self.channel = _api().grpc.insecure_channel(address, options)
        self.backends = _api().backends_pb2_grpc.BackendServiceStub(self.channel)
        self.jobs = _api().jobs_pb2_grpc.JobServiceStub(self.channel)
        self.accounts = _api().accounts_pb2_grpc.AccountServiceStub(self.channel)
        self.sessions = _api().sessions_pb2_grpc.SessionServiceStub(self.channel)
        md: list[tuple[str, str]] = [("x-runtime-channel", account.channel)]
        if account.channel != "local":
            md += [
                ("authorization", f"Bearer {account.token}"),
                ("x-runtime-url", str(account.url)),
            ]
        if account.instance:
            md.append(("x-runtime-instance", account.instance))
        if os.environ.get("RUNTIME_GATEWAY_API_KEY"):
            md.append(("x-gateway-api-key", os.environ["RUNTIME_GATEWAY_API_KEY"]))
        self.metadata = tuple(md)

    def call(self, method: Any, request: Any, errors: type[Exception] = IBMRuntimeError) -> Any:
        try:
            return method(request, metadata=self.metadata, timeout=CALL_TIMEOUT)
        except _api().grpc.RpcError as error:
            raise self.error(error, errors) from None

    def error(self, error: Any, default: type[Exception] = IBMRuntimeError) -> Exception:
        """The SDK exception for a failed call: the gateway's reason decides; a gateway that
        cannot be reached (UNAVAILABLE with no reason of the gateway's) is an IBMRuntimeError
        naming the address, never the caller's `default` (e.g. RuntimeJobNotFound)."""
        grpc = _api().grpc
        if not reason_of(error):
            code = error.code()
            if code == grpc.StatusCode.UNAVAILABLE:
                return IBMRuntimeError(
                    f"The runtime gateway at {self.address} cannot be reached: {error.details()}"
                )
            if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                return IBMRuntimeError(f"The gateway refused the message: {error.details()}")
        return from_rpc_error(error, default)  # type: ignore[arg-type]


class BackendStatus:
    """A backend's status, with the attributes of qiskit's BackendStatus."""

    def __init__(self, message: backends_pb2.BackendStatus) -> None:
        self.backend_name = message.backend_name
        self.backend_version = message.backend_version
        self.operational = message.operational
        self.pending_jobs = message.pending_jobs
        self.status_msg = message.status_msg

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))

    def __repr__(self) -> str:
        return (
            f"<BackendStatus({self.backend_name}, operational={self.operational}, "
            f"pending_jobs={self.pending_jobs})>"
        )


class IBMBackend:
    """A backend as the SDK shows it: name, size, configuration, properties, status."""

    def __init__(self, service: QiskitRuntimeService, message: backends_pb2.Backend) -> None:
        self._service = service
        self._name = message.name
        self._num_qubits = message.num_qubits
        self.simulator = message.simulator
        self.dynamic_circuits = message.dynamic_circuits
        self.basis_gates = list(message.basis_gates)
        self.max_shots = message.max_shots
        self.backend_version = message.backend_version
        self._status = message.status
        self._configuration: _AttrDict | None = None
        if message.HasField("configuration") and message.configuration.raw_json:
            self._set_configuration(json.loads(message.configuration.raw_json))

    @property
    def name(self) -> str:
        return self._name

    @property
    def num_qubits(self) -> int:
        return int(self._num_qubits)

    def _set_configuration(self, raw: dict[str, Any]) -> None:
        self._configuration = _AttrDict(raw)

    def configuration(self) -> _AttrDict:
        if self._configuration is None:
            request = _api().backends_pb2.GetBackendRequest(
                name=self.name, view=_api().backends_pb2.BACKEND_VIEW_FULL
            )
            reply = self._service._gateway.call(
                self._service._gateway.backends.GetBackend, request, QiskitBackendNotFoundError
            )
            self._set_configuration(json.loads(reply.backend.configuration.raw_json))
        assert self._configuration is not None
        return self._configuration

    def properties(
        self, refresh: bool = False, datetime: datetime | None = None
    ) -> _AttrDict | None:
        request = _api().backends_pb2.GetBackendPropertiesRequest(
            name=self.name, updated_before=_timestamp(datetime)
        )
        reply = self._service._gateway.call(
            self._service._gateway.backends.GetBackendProperties,
            request,
            QiskitBackendNotFoundError,
        )
        if not reply.HasField("properties"):
            return None
        return _AttrDict(json.loads(reply.properties.raw_json))

    def status(self) -> BackendStatus:
        request = _api().backends_pb2.GetBackendStatusRequest(name=self.name)
        reply = self._service._gateway.call(
            self._service._gateway.backends.GetBackendStatus, request, QiskitBackendNotFoundError
        )
        return BackendStatus(reply.status)

    @property
    def operational(self) -> bool:
        return bool(self._status.operational)

    @property
    def pending_jobs(self) -> int:
        return int(self._status.pending_jobs)

    @property
    def service(self) -> QiskitRuntimeService:
        return self._service

    def __repr__(self) -> str:
        return f"<IBMBackend('{self.name}')>"


_BACKEND_CLASS: type[IBMBackend] | None = None


def backend_class() -> type[IBMBackend]:
    """The class of the service's backends: a `qiskit.providers.BackendV2` when Qiskit is
    importable (its module is imported here, on the first backend, not with this package),
    else the plain `IBMBackend`."""
    global _BACKEND_CLASS
    if _BACKEND_CLASS is None:
        if importlib.util.find_spec("qiskit") is None:
            _BACKEND_CLASS = IBMBackend
        else:
            from runtime_gateway.qiskit_backend import QiskitBackend

            _BACKEND_CLASS = QiskitBackend
    return _BACKEND_CLASS


class RuntimeJob:
    """A job: the SDK's RuntimeJob surface, with updates from the gateway's job stream."""

    def __init__(
        self, service: QiskitRuntimeService, message: jobs_pb2.Job, result_decoder: Any = None
    ) -> None:
        self._service = service
        self._update(message)
        decoders = (
            result_decoder
            if isinstance(result_decoder, (list, tuple))
            else [result_decoder, result_decoder]
        )
        self._interim_decoder, self._final_decoder = ([*list(decoders), None, None])[:2]
        self._result_json: str | None = None
        self._stream_thread: threading.Thread | None = None
        self._stream_stop = threading.Event()

    def _update(self, message: jobs_pb2.Job) -> None:
        self._message = message
        self._job_id = message.id
        self._backend_name = message.backend
        self.program_id = message.program_id
        self.session_id = message.session_id or None
        self.tags = list(message.tags)
        self.creation_date = (
            message.create_time.ToDatetime(tzinfo=UTC).astimezone()
            if message.HasField("create_time")
            else None
        )
        self.private = message.private

    def job_id(self) -> str:
        return self._job_id

    def _state(self) -> str:
        message = self._message
        state = _STATUS.get(message.state, "UNKNOWN")
        if state == "CANCELLED" and message.status_reason_code == _RAN_TOO_LONG:
            return "ERROR"
        return state

    def status(self) -> str:
        """QUEUED, RUNNING, DONE, ERROR or CANCELLED (a job that ran too long is ERROR)."""
        reply = self._service._gateway.call(
            self._service._gateway.jobs.GetJob,
            _api().jobs_pb2.GetJobRequest(job_id=self._job_id),
            RuntimeJobNotFound,
        )
        self._update(reply.job)
        return self._state()

    def in_final_state(self) -> bool:
        return self.status() in _FINAL

    def done(self) -> bool:
        return self.status() == "DONE"

    def running(self) -> bool:
        return self.status() == "RUNNING"

    def cancelled(self) -> bool:
        return self.status() == "CANCELLED"

    @property
    def primitive_id(self) -> str:
        """The program the job runs ('sampler', 'estimator', ...), as the SDK names it."""
        return self.program_id

    @property
    def instance(self) -> str | None:
        return self._message.instance or None

    @property
    def usage_estimation(self) -> dict[str, Any]:
        """{'quantum_seconds': float | None}: the runtime's estimate made when queued."""
        estimate = self._message.estimated_running_time_seconds
        return {"quantum_seconds": estimate or None}

    def usage(self, partial: bool = False) -> float | None:
        """Quantum seconds charged: 0 until the usage is final (or the partial figure so far
        with `partial=True`), as the SDK's `RuntimeJobV2.usage`."""
        usage = self.metrics().get("usage", {}) or {}
        if partial:
            value = usage.get("qpu_charge_time_seconds", usage.get("quantum_seconds"))
            return None if value is None else float(value)
        if usage.get("status", "pending") == "pending":
            return 0
        return float(usage.get("quantum_seconds") or usage.get("seconds") or 0)

    def backend(self) -> IBMBackend:
        return self._service.backend(self._backend_name)

    @property
    def inputs(self) -> dict[str, Any]:
        request = _api().jobs_pb2.GetJobRequest(
            job_id=self._job_id, view=_api().jobs_pb2.JOB_VIEW_FULL
        )
        reply = self._service._gateway.call(
            self._service._gateway.jobs.GetJob, request, RuntimeJobNotFound
        )
        decoded: dict[str, Any] = decode_result(reply.job.inputs_json) or {}
        return decoded

    def wait_for_final_state(self, timeout: float | None = None) -> None:
        """Waits on the gateway's job stream (not by polling).

        RuntimeJobTimeoutError after `timeout` seconds."""
        if self._state() in _FINAL:
            return  # a final state never changes: no stream needed (result() fetches it)
        deadline = None if timeout is None else time.monotonic() + timeout
        resume = 0
        epoch = ""  # revisions are comparable only within one epoch (JobUpdate.epoch)
        with_result = not self.private
        unreachable_since: float | None = None
        while True:  # reconnect with the last revision when a stream breaks or goes silent
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise RuntimeJobTimeoutError(
                    f"Timed out waiting for job {self._job_id} to complete."
                )
            # Bounded windows: the gateway sends a heartbeat at least every 15 s, so a silent
            # window means a lost stream (grpc.aio can drop streams opened in a large burst).
            window = STREAM_WINDOW if remaining is None else min(remaining, STREAM_WINDOW)
            request = _api().jobs_pb2.WatchJobRequest(
                job_id=self._job_id,
                include_result=with_result,
                resume_after_revision=resume,
                resume_epoch=epoch,
            )
            stream = self._service._gateway.jobs.WatchJob(
                request, metadata=self._service._gateway.metadata, timeout=window
            )
            try:
                for message in stream:
                    unreachable_since = None
                    update = message.update
                    if update.epoch and update.epoch != epoch:
                        epoch, resume = update.epoch, update.revision  # a new history
                    else:
                        resume = max(resume, update.revision)
                    if update.WhichOneof("kind") == "state":
                        self._update(update.state.job)
                        if update.state.terminal:
                            if update.state.result_json:
                                self._result_json = update.state.result_json
                            return
            except _api().grpc.RpcError as error:
                code = error.code()
                if code in (
                    _api().grpc.StatusCode.UNKNOWN,
                    _api().grpc.StatusCode.INTERNAL,
                ) and not reason_of(error):
                    # Not the gateway's error (those carry a reason): a load balancer in
                    # front cut the stream when its replica died ("Stream removed").
                    code = _api().grpc.StatusCode.UNAVAILABLE
                if code in (
                    _api().grpc.StatusCode.DEADLINE_EXCEEDED,
                    _api().grpc.StatusCode.UNAVAILABLE,
                ):
                    if code == _api().grpc.StatusCode.UNAVAILABLE:
                        now = time.monotonic()
                        unreachable_since = unreachable_since or now
                        if now - unreachable_since > UNREACHABLE_GRACE:
                            raise self._service._gateway.error(error, IBMRuntimeError) from None
                        time.sleep(0.5)  # the gateway went away: give it a moment
                    continue  # the loop raises RuntimeJobTimeoutError once the caller's time is up
                if code == _api().grpc.StatusCode.RESOURCE_EXHAUSTED and with_result:
                    # The final update (result and its typed form) outgrew the message
                    # limit: watch without it; result() fetches the result on its own.
                    with_result = False
                    continue
                raise self._service._gateway.error(error, RuntimeJobNotFound) from None
            if self._state() in _FINAL:
                return

    def result(self, timeout: float | None = None, decoder: Any = None) -> Any:
        self.wait_for_final_state(timeout)
        state = self._state()
        if state == "ERROR":
            message = self._message
            if message.status_reason_code == _RAN_TOO_LONG:
                raise RuntimeJobMaxTimeoutError(
                    f"Job {self._job_id} ran longer than maximum execution time. "
                    f"Job was cancelled:\n{message.status_reason}"
                )
            raise RuntimeJobFailureError(
                "Unable to retrieve job result. "
                f"Job {self._job_id} has failed:\n{message.status_reason}"
            )
        if state == "CANCELLED":
            raise RuntimeInvalidStateError(
                f"Unable to retrieve result for job {self._job_id}. Job was cancelled."
            )
        if self._result_json is None:
            reply = self._service._gateway.call(
                self._service._gateway.jobs.GetJobResult,
                _api().jobs_pb2.GetJobResultRequest(job_id=self._job_id),
            )
            self._result_json = reply.result_json
        return decode_result(self._result_json, decoder or self._final_decoder)

    def cancel(self) -> None:
        try:
            reply = self._service._gateway.jobs.CancelJob(
                _api().jobs_pb2.CancelJobRequest(job_id=self._job_id),
                metadata=self._service._gateway.metadata,
                timeout=CALL_TIMEOUT,
            )
        except _api().grpc.RpcError as error:
            if error.code() == _api().grpc.StatusCode.FAILED_PRECONDITION:
                raise RuntimeInvalidStateError(
                    f"Job cannot be cancelled: {error.details()}"
                ) from None
            raise self._service._gateway.error(error, IBMRuntimeError) from None
        self._update(reply.job)
        self.cancel_result_streaming()

    def logs(self) -> str:
        reply = self._service._gateway.call(
            self._service._gateway.jobs.GetJobLogs,
            _api().jobs_pb2.GetJobLogsRequest(job_id=self._job_id),
        )
        return str(reply.logs)

    def metrics(self) -> dict[str, Any]:
        reply = self._service._gateway.call(
            self._service._gateway.jobs.GetJobMetrics,
            _api().jobs_pb2.GetJobMetricsRequest(job_id=self._job_id),
        )
        metrics: dict[str, Any] = json.loads(reply.metrics_json)
        return metrics

    def update_tags(self, new_tags: list[str]) -> list[str]:
        """Replaces the job's tags with `new_tags` (a list of strings, else IBMInputValueError:
        a bare string would otherwise become one tag per letter)."""
        if not isinstance(new_tags, list) or not all(isinstance(t, str) for t in new_tags):
            raise IBMInputValueError(
                f"'new_tags' needs to be a list of strings, not {type(new_tags).__name__}."
            )
        request = _api().jobs_pb2.UpdateJobTagsRequest(job_id=self._job_id, tags=new_tags)
        reply = self._service._gateway.call(self._service._gateway.jobs.UpdateJobTags, request)
        self._update(reply.job)
        return self.tags

    def error_message(self) -> str | None:
        self.status()
        if self._state() in ("ERROR", "CANCELLED") and self._message.status_reason:
            return f"Job {self._job_id} has failed:\n{self._message.status_reason}"
        return None

    def interim_results(self, decoder: Any = None) -> Any:
        return None  # the gateway relays interim results through the stream only

    def stream_results(self, callback: Callable[[str, Any], None], decoder: Any = None) -> None:
        """Calls `callback(job_id, result)` with interim results and the final result, from
        the gateway's job stream, on a background thread."""
        if self._stream_thread is not None and self._stream_thread.is_alive():
            raise RuntimeInvalidStateError("A callback function is already streaming results.")
        self._stream_stop.clear()

        def relay() -> None:
            request = _api().jobs_pb2.WatchJobRequest(
                job_id=self._job_id, include_result=not self.private, include_interim=True
            )
            stream = self._service._gateway.jobs.WatchJob(
                request, metadata=self._service._gateway.metadata
            )
            try:
                for message in stream:
                    if self._stream_stop.is_set():
                        stream.cancel()
                        return
                    update = message.update
                    kind = update.WhichOneof("kind")
                    if kind == "interim_result":
                        callback(
                            self._job_id,
                            decode_result(
                                update.interim_result.result_json, decoder or self._interim_decoder
                            ),
                        )
                    elif kind == "state" and update.state.terminal:
                        self._update(update.state.job)
                        if update.state.result_json:
                            self._result_json = update.state.result_json
                            callback(
                                self._job_id, decode_result(self._result_json, self._final_decoder)
                            )
                        return
            except _api().grpc.RpcError:
                return  # cancelled, or the stream ended: the caller can still ask result()

        self._stream_thread = threading.Thread(
            target=relay, name=f"job-{self._job_id}", daemon=True
        )
        self._stream_thread.start()

    def cancel_result_streaming(self) -> None:
        self._stream_stop.set()

    def __repr__(self) -> str:
        return f"<RuntimeJob('{self._job_id}', '{self.program_id}')>"


class QiskitRuntimeService:
    """Class for interacting with the Qiskit Runtime service, through the runtime gateway."""

    global_service = None
    version = 1

    def __init__(
        self,
        channel: str | None = None,
        token: str | None = None,
        url: str | None = None,
        filename: str | None = None,
        name: str | None = None,
        instance: str | None = None,
        proxies: dict[str, Any] | None = None,
        verify: bool | None = None,
        channel_strategy: str | None = None,
    ) -> None:
        if channel_strategy is not None:
            if channel_strategy not in accounts.CHANNEL_STRATEGIES:
                raise ValueError(f"{channel_strategy} is not a valid channel strategy.")
            if channel and channel != "ibm_cloud":
                raise ValueError(
                    f"The channel strategy {channel_strategy} is only supported "
                    "on the ibm_cloud channel."
                )
        self._account = self._discover_account(
            token, url, instance, channel, filename, name, proxies, verify, channel_strategy
        )
        _warn_unsent_settings(self._account)
        self._gateway = _Gateway(self._account)
        self._targets: dict[tuple[str, str, str], Any] = {}  # (name, config, properties) -> Target
        if self._account.channel != "local":  # the SDK contacts IBM when constructed
            self._gateway.call(
                self._gateway.accounts.VerifyAccount, _api().accounts_pb2.VerifyAccountRequest()
            )

    @staticmethod
    def _discover_account(
        token: str | None,
        url: str | None,
        instance: str | None,
        channel: str | None,
        filename: str | None,
        name: str | None,
        proxies: dict[str, Any] | None,
        verify: bool | None,
        channel_strategy: str | None,
    ) -> accounts.Account:
        if name:
            account = accounts.get(filename=filename, name=name)
        elif channel:
            if channel not in accounts.CHANNELS:
                raise ValueError(
                    "'channel' can only be 'ibm_cloud', 'ibm_quantum', "
                    "'ibm_quantum_platform' or 'local'"
                )
            if token or channel == "local":
                account = accounts.Account(
                    channel=channel,
                    token=token,
                    url=url,
                    instance=instance,
                    proxies=proxies,
                    verify=verify,
                    channel_strategy=channel_strategy,
                )
            else:
                account = accounts.get(filename=filename, channel=channel)
        elif token or url:
            raise ValueError(
                "'channel' is required if 'token', or 'url' is specified but 'name' is not."
            )
        else:
            account = accounts.get(filename=filename)
        if instance is not None:
            account.instance = instance
        if proxies is not None:
            account.proxies = proxies
        if verify is not None:
            account.verify = verify
        return account.validate()

    # --- attributes -------------------------------------------------------------------------
    @property
    def channel(self) -> str:
        return self._account.channel

    @property
    def runtime(self) -> QiskitRuntimeService:
        return self

    def close(self) -> None:
        """Closes the channel to the gateway (also done when used as a context manager)."""
        self._gateway.channel.close()

    def __enter__(self) -> QiskitRuntimeService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def active_account(self) -> dict[str, Any] | None:
        """The account in use, as the SDK returns it, but with the token masked."""
        saved = self._account.to_saved_format()
        if self._account.channel == "local":  # the gateway's local runtime, not IBM's URL
            reply = self._gateway.call(
                self._gateway.accounts.GetActiveAccount,
                _api().accounts_pb2.GetActiveAccountRequest(),
            )
            saved["url"] = reply.account.url
        token = saved.get("token") or ""
        saved["token"] = (
            "*" * max(0, len(token) - 4) + token[-4:] if len(token) >= 12 else "*" * len(token)
        )
        return saved

    def usage(self) -> dict[str, Any]:
        """The active instance's usage, as qiskit-ibm-runtime 0.51's `service.usage()` returns
        it: IBM's `GET /instances/usage` keys (`instance_id`, `usage_consumed_seconds`,
        `usage_limit_seconds` and `usage_allocation_seconds` when the instance has them,
        `usage_limit_reached`, `usage_period` with ISO `start_time`/`end_time`), plus
        `usage_remaining_seconds` when a limit or allocation is set (seconds throughout).

        Raises IBMRuntimeError on the ibm_quantum channel, which has no usage endpoint."""
        reply = self._gateway.call(
            self._gateway.sessions.GetUsage, _api().sessions_pb2.GetUsageRequest()
        )
        found: dict[str, Any] = {
            "instance_id": reply.instance,
            "usage_consumed_seconds": reply.usage_consumed_seconds,
            "usage_limit_reached": reply.usage_limit_reached,
        }
        for name in ("usage_limit_seconds", "usage_allocation_seconds", "usage_remaining_seconds"):
            if reply.HasField(name):
                found[name] = getattr(reply, name)
        period = {}
        for key, field in (("start_time", "period_start_time"), ("end_time", "period_end_time")):
            if reply.HasField(field):
                stamp = getattr(reply, field).ToDatetime().isoformat(timespec="milliseconds")
                period[key] = stamp + "Z"
        if period:
            found["usage_period"] = period
        return found

    def instances(self) -> list[Any]:
        if self._account.channel == "ibm_cloud":
            return []  # as 0.21
        reply = self._gateway.call(
            self._gateway.accounts.ListInstances, _api().accounts_pb2.ListInstancesRequest()
        )
        if self._account.channel == "ibm_quantum":
            return [i.id for i in reply.instances]
        return [
            {
                "crn": i.id,
                "plan": i.plan,
                "name": i.name,
                "tags": list(i.tags),
                "pricing_type": i.pricing_type,
            }
            for i in reply.instances
        ]

    # --- backends ---------------------------------------------------------------------------
    def backends(
        self,
        name: str | None = None,
        min_num_qubits: int | None = None,
        instance: str | None = None,
        dynamic_circuits: bool | None = None,
        filters: Callable[[IBMBackend], bool] | None = None,
        **kwargs: Any,
    ) -> list[IBMBackend]:
        if instance and self._account.channel != "ibm_quantum":
            raise IBMInputValueError(
                "The 'instance' keyword is only supported for ``ibm_quantum`` runtime."
            )
        where = _api().backends_pb2.BackendFilter(
            name=name or "", min_num_qubits=min_num_qubits or 0, instance=instance or ""
        )
        if dynamic_circuits is not None:
            where.dynamic_circuits = dynamic_circuits
        for key, value in kwargs.items():
            if key in ("simulator", "operational") and isinstance(value, bool):
                setattr(where, key, value)
            else:
                where.attributes[key] = json.dumps(value)
        request = _api().backends_pb2.ListBackendsRequest(filter=where)
        reply = self._gateway.call(self._gateway.backends.ListBackends, request, IBMInputValueError)
        make = backend_class()
        found = [make(self, b) for b in reply.backends]
        if name and not found:
            raise QiskitBackendNotFoundError("No backend matches the criteria.")
        return [b for b in found if filters(b)] if filters else found

    def backend(self, name: str | None = None, instance: str | None = None) -> IBMBackend:
        found = self.backends(name, instance=instance)
        if not found:
            raise QiskitBackendNotFoundError("No backend matches the criteria.")
        return found[0]

    def get_backend(self, name: str | None = None, **kwargs: Any) -> IBMBackend:
        found = self.backends(name, **kwargs)
        if len(found) != 1:
            raise QiskitBackendNotFoundError(
                "No backend matches the criteria."
                if not found
                else "More than one backend matches the criteria."
            )
        return found[0]

    def least_busy(
        self,
        min_num_qubits: int | None = None,
        instance: str | None = None,
        filters: Callable[[IBMBackend], bool] | None = None,
        **kwargs: Any,
    ) -> IBMBackend:
        candidates = [
            b
            for b in self.backends(
                min_num_qubits=min_num_qubits, instance=instance, filters=filters, **kwargs
            )
            if b.operational and b._status.status_msg == "active"
        ]
        if not candidates:
            raise QiskitBackendNotFoundError("No backend matches the criteria.")
        return min(candidates, key=lambda b: b.pending_jobs)

    # --- jobs -------------------------------------------------------------------------------
    def run(
        self,
        program_id: str,
        inputs: dict[str, Any],
        options: Any = None,
        callback: Callable[[str, Any], None] | None = None,
        result_decoder: Any = None,
        session_id: str | None = None,
        start_session: bool | None = False,
    ) -> RuntimeJob:
        opts = (
            options if isinstance(options, dict) else (vars(options) if options is not None else {})
        )
        tags = opts.get("job_tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise IBMInputValueError("job_tags needs to be a list of strings.")
        image = opts.get("image")
        if image and not re.match(
            r"[a-zA-Z0-9]+([/.\-_][a-zA-Z0-9]+)*:[a-zA-Z0-9]+([.\-_][a-zA-Z0-9]+)*$", image
        ):
            raise IBMInputValueError('"image" needs to be in form of image_name:tag')
        log_level = opts.get("log_level")
        if log_level and str(log_level).upper() not in LOG_LEVELS:
            raise IBMInputValueError(
                f"{log_level} is not a valid log level. The valid log levels are: {LOG_LEVELS}"
            )
        if self._account.channel == "ibm_quantum" and not opts.get("backend"):
            raise IBMInputValueError(
                '"backend" is required field in "options" for "ibm_quantum" channel.'
            )
        if opts.get("instance") and self._account.channel != "ibm_quantum":
            raise IBMInputValueError('"instance" is only supported for "ibm_quantum" channel.')
        request = _api().jobs_pb2.RunJobRequest(
            program_id=program_id,
            inputs_json=encode_inputs(inputs),
            backend=opts.get("backend") or "",
            session_id=session_id or "",
            start_session=bool(start_session),
            session_time=int(opts.get("session_time") or 0),
            tags=tags,
            log_level=str(log_level or "").upper(),
            max_execution_time=int(opts.get("max_execution_time") or 0),
            image=image or "",
            instance=opts.get("instance") or "",
            channel_strategy=self._account.channel_strategy
            if self._account.channel_strategy not in (None, "default")
            else "",
            request_id=str(uuid.uuid4()),  # a retry below reuses it: never two jobs
        )
        reply = None
        for attempt in range(3):
            try:
                reply = self._gateway.jobs.RunJob(
                    request, metadata=self._gateway.metadata, timeout=CALL_TIMEOUT
                )
                break
            except _api().grpc.RpcError as error:
                if error.code() == _api().grpc.StatusCode.UNAVAILABLE and attempt < 2:
                    time.sleep(0.5 * (attempt + 1))
                    continue
                raise self._gateway.error(error, IBMRuntimeError) from None
        assert reply is not None
        job = RuntimeJob(self, reply.job, result_decoder)
        if callback is not None:
            job.stream_results(callback)
        return job

    def _run(
        self,
        program_id: str,
        inputs: dict[str, Any],
        options: Any = None,
        result_decoder: Any = None,
        session_id: str | None = None,
        start_session: bool | None = False,
        calibration_id: str | None = None,
        dry_run: bool = False,
    ) -> RuntimeJob:
        """What the primitives call (the SDK's `_run` contract): `options` holds the runtime
        options of the primitive's options (backend object or name, job_tags,
        max_execution_time, log_level, image, private, instance)."""
        if dry_run:
            raise IBMInputValueError("dry_run is not supported through the gateway.")
        opts = dict(options or {}) if isinstance(options, dict) else dict(vars(options or {}))
        backend = opts.get("backend")
        run_options: dict[str, Any] = {
            "backend": backend if isinstance(backend, str) or backend is None else backend.name,
        }
        for key in ("job_tags", "max_execution_time", "log_level", "image", "session_time"):
            if opts.get(key) is not None:
                run_options[key] = opts[key]
        if opts.get("instance") and self._account.channel == "ibm_quantum":
            run_options["instance"] = opts["instance"]
        return self.run(
            program_id,
            inputs,
            options=run_options,
            result_decoder=result_decoder,
            session_id=session_id,
            start_session=start_session,
        )

    def job(self, job_id: str) -> RuntimeJob:
        reply = self._gateway.call(
            self._gateway.jobs.GetJob,
            _api().jobs_pb2.GetJobRequest(job_id=job_id),
            RuntimeJobNotFound,
        )
        return RuntimeJob(self, reply.job)

    def jobs(
        self,
        limit: int | None = 10,
        skip: int = 0,
        backend_name: str | None = None,
        pending: bool | None = None,
        program_id: str | None = None,
        instance: str | None = None,
        job_tags: list[str] | None = None,
        session_id: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        descending: bool = True,
    ) -> list[RuntimeJob]:
        if instance and self._account.channel != "ibm_quantum":
            raise IBMInputValueError(
                "The 'instance' keyword is only supported for ``ibm_quantum`` runtime."
            )
        found: list[RuntimeJob] = []
        token = ""
        while limit is None or len(found) < limit:
            request = _api().jobs_pb2.ListJobsRequest(
                page_size=min(1000, (limit - len(found)) if limit is not None else 1000),
                page_token=token,
                skip=skip,
                backend=backend_name or "",
                program_id=program_id or "",
                instance=instance or "",
                tags=job_tags or [],
                session_id=session_id or "",
                created_after=_timestamp(created_after),
                created_before=_timestamp(created_before),
                order_by="create_time desc" if descending else "create_time asc",
            )
            if pending is not None:
                request.pending = pending
            reply = self._gateway.call(self._gateway.jobs.ListJobs, request, IBMInputValueError)
            found += [RuntimeJob(self, j) for j in reply.jobs]
            token = reply.next_page_token
            if not token or not reply.jobs:
                break
        return found

    def delete_job(self, job_id: str) -> None:
        self._gateway.call(
            self._gateway.jobs.DeleteJob,
            _api().jobs_pb2.DeleteJobRequest(job_id=job_id),
            RuntimeJobNotFound,
        )

    # --- saved accounts (local file, the SDK's format) --------------------------------------
    @staticmethod
    def save_account(
        token: str | None = None,
        url: str | None = None,
        instance: str | None = None,
        channel: str | None = None,
        filename: str | None = None,
        name: str | None = None,
        proxies: dict[str, Any] | None = None,
        verify: bool | None = None,
        overwrite: bool | None = False,
        channel_strategy: str | None = None,
        set_as_default: bool | None = None,
    ) -> None:
        channel = channel or os.environ.get("QISKIT_IBM_CHANNEL") or accounts.DEFAULT_CHANNEL
        account = accounts.Account(
            channel=channel,
            token=token,
            url=url,
            instance=instance,
            proxies=proxies,
            verify=verify,
            channel_strategy=channel_strategy,
        )
        accounts.save(account, filename, name, bool(overwrite), set_as_default)

    @staticmethod
    def saved_accounts(
        default: bool | None = None,
        channel: str | None = None,
        filename: str | None = None,
        name: str | None = None,
    ) -> dict[str, Any]:
        return accounts.listing(default, channel, filename, name)

    @staticmethod
    def delete_account(
        filename: str | None = None, name: str | None = None, channel: str | None = None
    ) -> bool:
        return accounts.delete(filename, name, channel)


__all__: Sequence[str] = ("IBMBackend", "QiskitRuntimeService", "RuntimeJob")
