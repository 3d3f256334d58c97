"""Sessions, batches and instance usage over IBM's REST API (`/sessions`, `/instances/usage`).

Body shapes follow the SDKs, per channel (docs/ibm-runtime-rest.md, contract section 3.7):
- ibm_quantum (0.21): `{"backend", "instance": "hub/group/project", "max_session_ttl"?}`, plus
  `"mode": "batch"` for a batch;
- IBM Cloud channels (0.51): `{"mode", "backend", "instance": CRN, "max_ttl"?}`.
Closing is `PATCH /sessions/{id}` `{"accepting_jobs": false}` (queued jobs still run);
cancelling is `DELETE /sessions/{id}/close` (queued jobs are cancelled). IBM offers no list of
sessions, so neither does the gateway.
"""

from __future__ import annotations

import json
from typing import Any

import grpc

from runtime_gateway_server.errors import GatewayError, invalid_argument
from runtime_gateway_server.ibm import AccountClient
from runtime_gateway_server.limits import check_id, check_name, excerpt, path_segment
from runtime_gateway_server.upstream import Deadline, Reply, error_from_reply

DEDICATED, BATCH = "dedicated", "batch"
MAX_TTL_SECONDS = 8 * 3600  # IBM's longest session


def create(
    client: AccountClient,
    backend: str,
    mode: str,
    max_ttl_seconds: int,
    instance: str,
    deadline: Deadline,
) -> dict[str, Any]:
    """Creates a session; returns IBM's session object (see `get`).

    `mode` is DEDICATED or BATCH; `max_ttl_seconds` 0 leaves IBM's default. INVALID_ARGUMENT
    for a missing backend, a TTL out of 1..28800 s, or an instance the account cannot use
    here; NOT_FOUND (BACKEND_NOT_FOUND) for an unknown backend."""
    check_name("backend", backend, required=True)
    if mode not in (DEDICATED, BATCH):
        raise invalid_argument("mode", f"must be dedicated or batch, got {excerpt(mode)}")
    if not 0 <= max_ttl_seconds <= MAX_TTL_SECONDS:
        raise invalid_argument(
            "max_ttl", f"must be between 1 and {MAX_TTL_SECONDS} seconds (8 hours)"
        )
    body: dict[str, Any] = {"backend": backend}
    if client.legacy:
        hgp = instance or client.instance(deadline)
        if hgp.count("/") != 2:
            raise invalid_argument("instance", f"must be hub/group/project, got {excerpt(hgp)}")
        body["instance"] = hgp
        if mode == BATCH:
            body["mode"] = BATCH
        if max_ttl_seconds:
            body["max_session_ttl"] = max_ttl_seconds
    else:
        crn = client.instance(deadline)
        if instance and instance != crn:
            raise invalid_argument(
                "instance",
                "for cloud channels the instance comes from the account (x-runtime-instance)",
            )
        body["mode"] = mode
        body["instance"] = crn
        if max_ttl_seconds:
            body["max_ttl"] = max_ttl_seconds
    reply = client.runtime("POST", "/sessions", deadline, json_body=body, retry=False)
    if not reply.ok:
        raise _backend_error(reply, backend) or error_from_reply(reply)
    created = _json_object(reply)
    session_id = str(created.get("id") or "")
    if not session_id:
        raise GatewayError(
            grpc.StatusCode.UNAVAILABLE, "UPSTREAM_ERROR", "IBM created a session without an id"
        )
    if "state" not in created:  # some answers carry only the id: read the whole session
        return get(client, session_id, deadline)
    return created


def get(client: AccountClient, session_id: str, deadline: Deadline) -> dict[str, Any]:
    """IBM's session object: `id, backend_name, mode, state, state_reason, accepting_jobs,
    max_ttl, interactive_ttl, active_ttl` (seconds), `started_at, activated_at, closed_at,
    last_job_started, last_job_completed` (ISO 8601), `elapsed_time` (seconds).
    NOT_FOUND (SESSION_NOT_FOUND) for an unknown session."""
    check_id("session_id", session_id)
    reply = client.runtime("GET", f"/sessions/{path_segment(session_id)}", deadline)
    _raise_for_session(reply, session_id)
    return _json_object(reply)


def close(client: AccountClient, session_id: str, deadline: Deadline) -> dict[str, Any]:
    """Stops the session accepting jobs (its queued jobs still run); returns the session."""
    check_id("session_id", session_id)
    reply = client.runtime(
        "PATCH",
        f"/sessions/{path_segment(session_id)}",
        deadline,
        json_body={"accepting_jobs": False},
        retry=True,  # idempotent: the session ends up not accepting jobs either way
    )
    _raise_for_session(reply, session_id)
    return get(client, session_id, deadline)


def cancel(client: AccountClient, session_id: str, deadline: Deadline) -> dict[str, Any]:
    """Cancels the session's queued jobs and closes it; returns the session."""
    check_id("session_id", session_id)
    reply = client.runtime(
        "DELETE", f"/sessions/{path_segment(session_id)}/close", deadline, retry=True
    )
    _raise_for_session(reply, session_id)
    return get(client, session_id, deadline)


def usage(client: AccountClient, deadline: Deadline) -> tuple[str, dict[str, Any]]:
    """(instance, IBM's `GET /instances/usage` answer): `usage_consumed_seconds`,
    `usage_limit_seconds`?, `usage_allocation_seconds`?, `usage_limit_reached`,
    `usage_period {start_time, end_time}`. FAILED_PRECONDITION (NOT_SUPPORTED) on the
    ibm_quantum channel, which has no such endpoint."""
    if client.legacy:
        raise GatewayError(
            grpc.StatusCode.FAILED_PRECONDITION,
            "NOT_SUPPORTED",
            "instance usage is reported for IBM Cloud instances only (not the ibm_quantum channel)",
        )
    instance = client.instance(deadline)
    reply = client.runtime("GET", "/instances/usage", deadline)
    if not reply.ok:
        raise error_from_reply(reply)
    return instance, _json_object(reply)


def session_refusal(reply: Reply) -> GatewayError | None:
    """A job submission IBM refused because its session is closed (closed, cancelled or past
    its maximum TTL): FAILED_PRECONDITION with reason SESSION_CLOSED; else None."""
    if reply.status not in (400, 409):
        return None
    message = reply.upstream_message()
    lowered = message.lower()
    if "session" in lowered and ("closed" in lowered or "not accepting" in lowered):
        return GatewayError(
            grpc.StatusCode.FAILED_PRECONDITION,
            "SESSION_CLOSED",
            f"the session accepts no more jobs (create a new session): {message}",
        )
    return None


def _raise_for_session(reply: Reply, session_id: str) -> None:
    if reply.ok:
        return
    if reply.status == 404:
        raise GatewayError(
            grpc.StatusCode.NOT_FOUND,
            "SESSION_NOT_FOUND",
            f"Session not found: {excerpt(session_id)}",
        )
    raise error_from_reply(reply, conflict=(grpc.StatusCode.FAILED_PRECONDITION, "SESSION_CLOSED"))


def _backend_error(reply: Reply, backend: str) -> GatewayError | None:
    if reply.status not in (400, 404):
        return None
    lowered = reply.upstream_message().lower()
    if "backend" in lowered and "not found" in lowered:
        return GatewayError(
            grpc.StatusCode.NOT_FOUND, "BACKEND_NOT_FOUND", f"Backend not found: {backend}"
        )
    return None


def _json_object(reply: Reply) -> dict[str, Any]:
    try:
        data = json.loads(reply.body)
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        raise GatewayError(
            grpc.StatusCode.UNAVAILABLE,
            "UPSTREAM_ERROR",
            "IBM answered with a body that is not a JSON object",
        )
    return data
