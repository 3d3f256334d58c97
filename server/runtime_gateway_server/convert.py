"""Upstream JSON and domain objects to protobuf messages."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from runtime_gateway.v1 import accounts_pb2, backends_pb2, jobs_pb2, sessions_pb2
from runtime_gateway_server import results
from runtime_gateway_server.accounts import Account
from runtime_gateway_server.backends import Backend, Status
from runtime_gateway_server.ibm import Instance
from runtime_gateway_server.jobs import created_of, state_of, visible_tags

CHANNEL_TO_PROTO = {
    "ibm_quantum": accounts_pb2.CHANNEL_IBM_QUANTUM,
    "ibm_cloud": accounts_pb2.CHANNEL_IBM_CLOUD,
    "ibm_quantum_platform": accounts_pb2.CHANNEL_IBM_QUANTUM_PLATFORM,
    "local": accounts_pb2.CHANNEL_LOCAL,
}
CHANNEL_FROM_PROTO = {v: k for k, v in CHANNEL_TO_PROTO.items()}
JOB_STATES = {
    "QUEUED": jobs_pb2.JOB_STATE_QUEUED,
    "RUNNING": jobs_pb2.JOB_STATE_RUNNING,
    "COMPLETED": jobs_pb2.JOB_STATE_COMPLETED,
    "FAILED": jobs_pb2.JOB_STATE_FAILED,
    "CANCELLED": jobs_pb2.JOB_STATE_CANCELLED,
}


def timestamp(value: str | datetime | None) -> Timestamp | None:
    if not value:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def account(acct: Account) -> accounts_pb2.Account:
    proxies = None
    if acct.proxies:
        proxies = accounts_pb2.ProxyConfiguration(
            urls={str(k): masked_url(str(v)) for k, v in (acct.proxies.get("urls") or {}).items()},
            username_ntlm=str(acct.proxies.get("username_ntlm") or ""),
        )
    return accounts_pb2.Account(
        name=acct.name or "",
        channel=CHANNEL_TO_PROTO.get(acct.channel, accounts_pb2.CHANNEL_UNSPECIFIED),
        url=acct.url,
        masked_token=acct.masked_token,
        instance=acct.instance or "",
        proxies=proxies,
        verify=acct.verify,
        channel_strategy=acct.channel_strategy or "",
        is_default=acct.is_default,
    )


def masked_url(url: str) -> str:
    """A URL with the password of its user information replaced by `***`: proxy URLs carry
    credentials (`http://user:password@proxy:3128`), and accounts' secrets are write-only."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def account_from_proto(message: accounts_pb2.Account) -> Account:
    proxies: dict[str, Any] | None = None
    if message.HasField("proxies"):
        proxies = {"urls": dict(message.proxies.urls)} if message.proxies.urls else {}
        if message.proxies.username_ntlm:
            proxies["username_ntlm"] = message.proxies.username_ntlm
        if message.proxies.password_ntlm:
            proxies["password_ntlm"] = message.proxies.password_ntlm
        proxies = proxies or None
    return Account(
        channel=CHANNEL_FROM_PROTO.get(message.channel, ""),
        token=message.token,
        url=message.url,
        instance=message.instance or None,
        name=message.name or None,
        proxies=proxies,
        verify=message.verify if message.HasField("verify") else True,
        channel_strategy=message.channel_strategy or None,
    )


def instance(inst: Instance) -> accounts_pb2.Instance:
    return accounts_pb2.Instance(
        id=inst.id,
        name=inst.name,
        plan=inst.plan,
        pricing_type=inst.pricing_type,
        tags=list(inst.tags),
        is_default=inst.is_default,
    )


def job(data: dict[str, Any], with_inputs: bool = False) -> jobs_pb2.Job:
    state = data.get("state") or {}
    params = data.get("params")
    body = {k: v for k, v in data.items() if k != "params"}
    usage = data.get("usage") or {}
    message = jobs_pb2.Job(
        id=str(data.get("id", "")),
        program_id=str((data.get("program") or {}).get("id", "")),
        backend=str(data.get("backend") or ""),
        state=JOB_STATES.get(state_of(data), jobs_pb2.JOB_STATE_UNSPECIFIED),
        status_reason=str(state.get("reason") or ""),
        status_reason_code=int(state.get("reason_code") or state.get("reasonCode") or 0),
        create_time=timestamp(created_of(data)) if data.get("created") else None,
        session_id=str(data.get("session_id") or ""),
        tags=visible_tags(data.get("tags")),
        instance=_job_instance(data),
        private=bool(data.get("private", False)),
        estimated_running_time_seconds=float(data.get("estimated_running_time_seconds") or 0),
        usage_seconds=float(usage.get("quantum_seconds") or usage.get("seconds") or 0),
        raw_json=json.dumps(body),
        usage_quantum_seconds=_number(usage.get("quantum_seconds")) or 0.0,
    )
    if with_inputs and params is not None:
        message.inputs_json = params if isinstance(params, str) else json.dumps(params)
    return message


def _job_instance(data: dict[str, Any]) -> str:
    if data.get("hub"):
        return f"{data['hub']}/{data.get('group')}/{data.get('project')}"
    return str(data.get("crn") or "")


def backend_status(status: Status) -> backends_pb2.BackendStatus:
    return backends_pb2.BackendStatus(
        backend_name=status.backend_name,
        backend_version=status.backend_version,
        operational=status.operational,
        pending_jobs=status.pending_jobs,
        status_msg=status.status_msg,
        raw_json=status.raw_json,
    )


def backend_configuration(config: dict[str, Any], raw: str) -> backends_pb2.BackendConfiguration:
    coupling = config.get("coupling_map") or []
    return backends_pb2.BackendConfiguration(
        backend_name=str(config.get("backend_name", "")),
        backend_version=str(config.get("backend_version", "")),
        n_qubits=int(config.get("n_qubits") or 0),
        basis_gates=[str(g) for g in config.get("basis_gates") or []],
        coupling_map=[backends_pb2.CouplingEdge(source=int(a), target=int(b)) for a, b in coupling],
        simulator=bool(config.get("simulator")),
        local=bool(config.get("local")),
        conditional=bool(config.get("conditional")),
        open_pulse=bool(config.get("open_pulse")),
        memory=bool(config.get("memory")),
        max_shots=int(config.get("max_shots") or 0),
        max_experiments=int(config.get("max_experiments") or 0),
        supported_instructions=[str(i) for i in config.get("supported_instructions") or []],
        supported_features=[str(f) for f in config.get("supported_features") or []],
        processor_family=str((config.get("processor_type") or {}).get("family", "")),
        raw_json=raw,
    )


def backend(item: Backend, full: bool) -> backends_pb2.Backend:
    config = item.configuration
    message = backends_pb2.Backend(
        name=item.name,
        num_qubits=item.num_qubits,
        simulator=item.simulator,
        dynamic_circuits=item.dynamic_circuits,
        basis_gates=[str(g) for g in config.get("basis_gates") or []],
        max_shots=int(config.get("max_shots") or 0),
        backend_version=str(config.get("backend_version", "")),
        status=backend_status(item.status),
    )
    if full:
        message.configuration.CopyFrom(backend_configuration(config, item.configuration_json))
    return message


def backend_properties(props: dict[str, Any], raw: str) -> backends_pb2.BackendProperties:
    qubits = []
    for index, entries in enumerate(props.get("qubits") or []):
        values = {e.get("name"): e.get("value") for e in entries if isinstance(e, dict)}
        qubits.append(
            backends_pb2.QubitProperties(
                qubit=index,
                t1=_seconds(entries, "T1"),
                t2=_seconds(entries, "T2"),
                frequency=float(values.get("frequency") or 0) * 1e9,
                readout_error=float(values.get("readout_error") or 0),
            )
        )
    gates = []
    for gate in props.get("gates") or []:
        params = {p.get("name"): p.get("value") for p in gate.get("parameters") or []}
        gates.append(
            backends_pb2.GateProperties(
                gate=str(gate.get("gate", "")),
                qubits=[int(q) for q in gate.get("qubits") or []],
                gate_error=float(params.get("gate_error") or 0),
                gate_length=float(params.get("gate_length") or 0) * 1e-9,
            )
        )
    return backends_pb2.BackendProperties(
        backend_name=str(props.get("backend_name", "")),
        backend_version=str(props.get("backend_version", "")),
        last_update_time=timestamp(props.get("last_update_date")),
        qubits=qubits,
        gates=gates,
        raw_json=raw,
    )


def _seconds(entries: list[dict[str, Any]], name: str) -> float:
    for entry in entries:
        if entry.get("name") == name:
            unit = entry.get("unit", "us")
            scale = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}.get(unit, 1e-6)
            return float(entry.get("value") or 0) * scale
    return 0.0


def job_update(update: Any, instance: str = "") -> jobs_pb2.JobUpdate:
    """A watch.Update as the JobUpdate message streams carry; `instance` (the subscriber's)
    fills the job's instance when IBM's job does not name it, as GetJob does."""
    message = jobs_pb2.JobUpdate(
        job_id=update.job_id,
        revision=update.revision,
        observe_time=timestamp(datetime.fromtimestamp(update.observed, UTC)),
        epoch=update.epoch,
        reset=update.reset,
    )
    if update.kind == "state":
        state = job(update.job or {})
        if not state.instance:
            state.instance = instance
        message.state.CopyFrom(
            jobs_pb2.JobStateUpdate(
                job=state, terminal=update.terminal, result_json=update.result_json
            )
        )
        if update.result_json:  # the subscriber asked for the result: also in typed form
            message.state.typed_result.CopyFrom(results.decode(update.result_json, counts=True))
    elif update.kind == "log":
        message.log.CopyFrom(jobs_pb2.JobLogChunk(text=update.text))
    elif update.kind == "error":
        message.error.CopyFrom(jobs_pb2.JobStreamError(reason=update.reason, message=update.text))
    else:
        message.heartbeat.CopyFrom(jobs_pb2.JobHeartbeat())
    return message


# --- sessions and usage ----------------------------------------------------------------------
SESSION_MODES = {
    "dedicated": sessions_pb2.SESSION_MODE_DEDICATED,
    "batch": sessions_pb2.SESSION_MODE_BATCH,
}
SESSION_MODE_NAMES = {v: k for k, v in SESSION_MODES.items()}
# IBM's states; the SDK 0.51 also knows `pending_inactive` / `pending_closed` (still running
# jobs, about to turn inactive / closed), reported here as ACTIVE like its `status()` does.
SESSION_STATES = {
    "open": sessions_pb2.SESSION_STATE_OPEN,
    "active": sessions_pb2.SESSION_STATE_ACTIVE,
    "pending_inactive": sessions_pb2.SESSION_STATE_ACTIVE,
    "pending_closed": sessions_pb2.SESSION_STATE_ACTIVE,
    "inactive": sessions_pb2.SESSION_STATE_INACTIVE,
    "closed": sessions_pb2.SESSION_STATE_CLOSED,
}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _time(value: Any) -> Timestamp | None:
    """An upstream ISO 8601 time; anything else (null, a number) as unset."""
    return timestamp(value) if isinstance(value, str) else None


def _duration(value: Any) -> Duration | None:
    seconds = _number(value)
    if seconds is None:
        return None
    duration = Duration()  # within Duration's range (about 10,000 years)
    duration.FromNanoseconds(int(min(max(seconds, 0), 315_576_000_000) * 1e9))
    return duration


def session(data: dict[str, Any], instance: str = "") -> sessions_pb2.Session:
    """IBM's session object (`GET /sessions/{id}`) as a Session message."""
    return sessions_pb2.Session(
        id=str(data.get("id") or ""),
        backend=str(data.get("backend_name") or data.get("backend") or ""),
        mode=SESSION_MODES.get(str(data.get("mode") or ""), sessions_pb2.SESSION_MODE_UNSPECIFIED),
        state=SESSION_STATES.get(
            str(data.get("state") or "").lower(), sessions_pb2.SESSION_STATE_UNSPECIFIED
        ),
        state_reason=str(data.get("state_reason") or ""),
        accepting_jobs=bool(data.get("accepting_jobs", False)),
        max_ttl=_duration(data.get("max_ttl")),
        interactive_ttl=_duration(data.get("interactive_ttl")),
        active_ttl=_duration(data.get("active_ttl")),
        start_time=_time(data.get("started_at")),
        activate_time=_time(data.get("activated_at")),
        close_time=_time(data.get("closed_at")),
        last_job_start_time=_time(data.get("last_job_started")),
        last_job_complete_time=_time(data.get("last_job_completed")),
        usage_seconds=_number(data.get("elapsed_time")) or 0.0,
        instance=str(data.get("instance") or instance),
        raw_json=json.dumps(data),
    )


def usage(instance: str, data: dict[str, Any]) -> sessions_pb2.GetUsageResponse:
    """IBM's `GET /instances/usage` answer; the remaining time as the SDK's `usage()` computes
    it: max(limit or allocation - consumed, 0), when a limit or allocation is set."""
    consumed = _number(data.get("usage_consumed_seconds")) or 0.0
    limit = _number(data.get("usage_limit_seconds"))
    allocation = _number(data.get("usage_allocation_seconds"))
    period = data.get("usage_period")
    period = period if isinstance(period, dict) else {}
    message = sessions_pb2.GetUsageResponse(
        instance=str(data.get("instance_id") or instance),
        usage_consumed_seconds=consumed,
        usage_limit_reached=bool(data.get("usage_limit_reached", False)),
        period_start_time=_time(period.get("start_time")),
        period_end_time=_time(period.get("end_time")),
    )
    if limit is not None:
        message.usage_limit_seconds = limit
    if allocation is not None:
        message.usage_allocation_seconds = allocation
    if limit or allocation:
        message.usage_remaining_seconds = max((limit or allocation or 0.0) - consumed, 0.0)
    return message
