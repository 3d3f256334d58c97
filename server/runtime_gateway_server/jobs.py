"""Jobs: submission (idempotent by request id), reads, cursor paging, cancel, delete.

Inputs are passed to IBM byte-exact: the caller's JSON text is spliced into the request
body as it is, never parsed and re-serialized.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import grpc

from runtime_gateway_server.errors import GatewayError, invalid_argument
from runtime_gateway_server.ibm import AccountClient
from runtime_gateway_server.idempotency import Admission, RequestIds, RequestIdStore
from runtime_gateway_server.limits import (
    MAX_JSON_DEPTH,
    check_id,
    check_name,
    check_request_id,
    check_tags,
    excerpt,
    json_depth_ok,
    path_segment,
)
from runtime_gateway_server.paging import Cursor, PageTokens
from runtime_gateway_server.sessions import session_refusal
from runtime_gateway_server.upstream import Deadline, Reply, error_from_reply

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
IMAGE_PATTERN = re.compile(r"^[a-zA-Z0-9._/-]+:[a-zA-Z0-9._-]+$")
UPSTREAM_PAGE_LIMIT = 200
# A job submitted with a request id carries one more tag, derived from the account and the
# request id: IBM has no client-chosen job id or idempotency key, and a tag is the one mark a
# client can put on a job and search for. Reconciliation (`_find_submitted`) adopts only a
# job carrying the tag of the id being retried, never another request's identical job. The
# gateway hides these tags in its answers (`convert.job`).
REQUEST_TAG_PREFIX = "rg-request-"


def request_tag(account_key: str, request_id: str) -> str:
    """The tag of a request id (`rg-request-` + 20 hex digits of a SHA-256)."""
    digest = hashlib.sha256(f"{account_key}\n{request_id}".encode()).hexdigest()[:20]
    return REQUEST_TAG_PREFIX + digest


def visible_tags(tags: Any) -> list[str]:
    """A job's tags without the gateway's own request tags."""
    return [str(t) for t in tags or [] if not str(t).startswith(REQUEST_TAG_PREFIX)]


MAX_PAGE_SIZE = 1000
# IBM pages with offsets; far beyond any account's job count, and bounded so a caller
# cannot make the gateway walk an unbounded offset.
MAX_SKIP = 1_000_000
MAX_SESSION_SECONDS = 8 * 3600  # IBM's longest session (max_ttl)
DEFAULT_PAGE_SIZE = 10
STATES = {"QUEUED", "RUNNING", "COMPLETED", "FAILED", "CANCELLED"}
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED"}


@dataclass
class RunRequest:
    program_id: str
    inputs_json: str
    backend: str = ""
    session_id: str = ""
    start_session: bool = False
    session_time: int = 0
    tags: list[str] = field(default_factory=list)
    log_level: str = ""
    max_execution_time: int = 0
    image: str = ""
    private: bool = False
    instance: str = ""
    channel_strategy: str = ""
    request_id: str = ""

    def fingerprint(self) -> str:
        """SHA-256 over every field but the request id; the inputs (up to tens of MB) are
        hashed in slices rather than copied into one more JSON document."""
        fields = self.__dict__ | {"request_id": "", "inputs_json": ""}
        digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode())
        step = 1 << 20
        for start in range(0, len(self.inputs_json), step):
            digest.update(self.inputs_json[start : start + step].encode("utf-8", "surrogatepass"))
        return digest.hexdigest()


@dataclass
class ListRequest:
    page_size: int = 0
    page_token: str = ""
    skip: int = 0
    backend: str = ""
    pending: bool | None = None
    program_id: str = ""
    instance: str = ""
    tags: list[str] = field(default_factory=list)
    session_id: str = ""
    created_after: datetime | None = None
    created_before: datetime | None = None
    order_by: str = ""


@dataclass
class JobPage:
    jobs: list[dict[str, Any]]
    next_page_token: str
    total_size: int


def state_of(job: dict[str, Any]) -> str:
    """The upper-case state; '' for a state IBM has not documented."""
    state = job.get("state") or {}
    status = str(state.get("status") or job.get("status") or "").upper()
    return status if status in STATES else ""


def created_of(job: dict[str, Any]) -> datetime:
    text = str(job.get("created") or "")
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return datetime.fromtimestamp(0, UTC)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# Answers to POST /jobs that prove IBM created no job. Anything else (429, 5xx, a timeout, a
# dropped connection, a body that does not parse) may come after IBM created it.
REFUSALS = frozenset({400, 401, 403, 404, 409})


class SubmissionRefused(GatewayError):
    """IBM refused a job submission (one of REFUSALS): no job exists for it."""

    @classmethod
    def of(cls, error: GatewayError) -> SubmissionRefused:
        return cls(
            error.code,
            error.reason,
            error.message,
            field=error.field,
            retry_after=error.retry_after,
            metadata=error.metadata,
        )


class JobOperations:
    def __init__(self, request_ids: RequestIdStore, tokens: PageTokens | None = None) -> None:
        self.request_ids = request_ids
        self.tokens = tokens or PageTokens()

    # --- submission -----------------------------------------------------------------------
    @cached_property
    def ids(self) -> RequestIds:
        """Request ids as RunJob uses them: waits on the event loop, leases renewed."""
        return RequestIds(self.request_ids)

    async def admit(
        self, account_key: str, request: RunRequest, deadline: Deadline
    ) -> Admission | None:
        """On the event loop, before a RunJob with a request id takes an upstream thread: waits
        (holding no thread) until this call owns the id or the id's job is known. None without
        a request id. INVALID_ARGUMENT for an id used for another request, ABORTED when the
        deadline comes first (see `RequestIds.admit`)."""
        if not request.request_id:
            return None
        check_request_id("request_id", request.request_id)
        key = f"{account_key}:{request.request_id}"
        return await self.ids.admit(key, request.fingerprint, deadline)

    def run(
        self,
        client: AccountClient,
        request: RunRequest,
        deadline: Deadline,
        admission: Admission | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Submits a job; returns (job, replayed). A known request id returns the first job.

        With a request id, `admission` (from `admit`) says whether this call submits or
        replays; without one the id is claimed here without waiting (ABORTED while another
        call submits it)."""
        if not request.request_id:
            body = self._body(client, request, deadline)
            return self._submit(client, body, request, deadline), False
        if admission is None:
            key = f"{client.account.key}:{request.request_id}"
            admission = self.ids.claim_now(key, request.fingerprint())
        if not admission.take():  # the call ended while it waited for a thread
            raise GatewayError(
                grpc.StatusCode.CANCELLED, "UPSTREAM_ERROR", "the call ended before it submitted"
            )
        if admission.claim.job_id is not None:
            return self.get(client, admission.claim.job_id, False, deadline), True
        return self._submit_once(client, request, deadline, admission)

    def _submit_once(
        self, client: AccountClient, request: RunRequest, deadline: Deadline, admission: Admission
    ) -> tuple[dict[str, Any], bool]:
        """The owner of a request id: adopts the job an earlier attempt may have created, or
        submits; then records the outcome for the retries. Only an answer that proves IBM
        created nothing (`SubmissionRefused`), or a failure before the POST went out,
        releases the id; any other failure leaves it uncertain, and the next retry looks for
        the job before it submits (a 429 or a 5xx may come after IBM created it)."""
        window = admission.claim.uncertain
        resolved = window is None  # no earlier attempt's job left to look for
        sent: float | None = None
        try:
            body = self._body(client, request, deadline)
            if window is not None:
                # Up to now, not to the end of the failed attempt: IBM may create the job
                # after the gateway gave up on the answer (a slow POST outlives its deadline).
                found = self._find_submitted(client, request, (window[0], time.time()), deadline)
                if found is not None:
                    self.ids.settle(admission, str(found["id"]), nothing_exists=False)
                    return found, True
                resolved = True
            sent = time.time()
            job = self._submit(client, body, request, deadline)
        except SubmissionRefused:
            self.ids.settle(admission, None, nothing_exists=resolved)
            raise
        except BaseException:
            attempt = None if sent is None else (sent, time.time())
            self.ids.settle(admission, None, resolved and sent is None, attempt)
            raise
        self.ids.settle(admission, str(job["id"]), nothing_exists=False)
        return job, False

    def _find_submitted(
        self,
        client: AccountClient,
        request: RunRequest,
        window: tuple[float, float],
        deadline: Deadline,
    ) -> dict[str, Any] | None:
        """A job a failed-looking attempt created: same program, backend, tags and inputs,
        carrying this request id's tag (`request_tag`), created between that attempt's start
        and now, and owned by no other request id. (IBM has no client-chosen job ids to ask
        for; the tag tells this request's job from an identical one submitted by another
        request, which is never adopted.)"""
        margin = 1.0  # clock skew between the gateway and IBM
        params: dict[str, Any] = {
            "program": request.program_id,
            "created_after": datetime.fromtimestamp(window[0] - margin, UTC).isoformat(),
            "created_before": datetime.fromtimestamp(window[1] + margin, UTC).isoformat(),
            "limit": UPSTREAM_PAGE_LIMIT,
        }
        if request.backend:
            params["backend"] = request.backend
        marker = request_tag(client.account.key, request.request_id)
        params["tags"] = [*request.tags, marker]
        reply = client.runtime("GET", "/jobs", deadline, params=params)
        if not reply.ok:
            raise error_from_reply(reply)
        listed = reply.json()
        jobs = listed.get("jobs") if isinstance(listed, dict) else None
        wanted = json.loads(request.inputs_json or "{}")  # checked by _body
        for job in jobs if isinstance(jobs, list) else []:
            if not isinstance(job, dict) or self.request_ids.known(str(job.get("id"))):
                continue
            tags = set(job.get("tags") or [])
            if marker not in tags or set(visible_tags(tags)) != set(request.tags):
                continue  # another request's job, however identical
            sent = job.get("params")
            if isinstance(sent, str):
                try:
                    sent = json.loads(sent)
                except (ValueError, RecursionError):
                    continue
            if sent == wanted:
                found: dict[str, Any] = {k: v for k, v in job.items() if k != "params"}
                return found
        return None

    def _body(self, client: AccountClient, request: RunRequest, deadline: Deadline) -> bytes:
        check_name("program_id", request.program_id, required=True)
        check_name("backend", request.backend)
        check_id("session_id", request.session_id, required=False)
        check_request_id("request_id", request.request_id)
        _check_tags(request.tags)
        text = request.inputs_json or "{}"
        check_inputs(text)
        if request.log_level and request.log_level.upper() not in LOG_LEVELS:
            raise invalid_argument(
                "log_level",
                f"must be one of {', '.join(LOG_LEVELS)}, got {excerpt(request.log_level)}",
            )
        if request.max_execution_time < 0:
            raise invalid_argument("max_execution_time", "must not be negative")
        if not 0 <= request.session_time <= MAX_SESSION_SECONDS:
            raise invalid_argument(
                "session_time", f"must be between 0 and {MAX_SESSION_SECONDS} (IBM's 8 hours)"
            )
        if request.image and not IMAGE_PATTERN.match(request.image):
            raise invalid_argument("image", "must be in the form name:tag")
        if any(not isinstance(t, str) or not t for t in request.tags):
            raise invalid_argument("tags", "must be non-empty strings")
        if request.session_id and request.start_session:
            raise invalid_argument("start_session", "cannot be set together with session_id")
        fields: dict[str, Any] = {"program_id": request.program_id}
        if request.backend:
            fields["backend"] = request.backend
        elif client.legacy:
            raise invalid_argument("backend", "is required for the ibm_quantum channel")
        elif client.account.channel != "local":
            # IBM's cloud channels need one (0.51 always sends it); picking one here would run
            # the job somewhere the caller did not choose. Only the local runtime picks.
            raise invalid_argument(
                "backend", f"is required for the {client.account.channel} channel"
            )
        tags = list(request.tags)
        if request.request_id:
            tags.append(request_tag(client.account.key, request.request_id))
        if tags:
            fields["tags"] = tags
        if request.log_level:
            fields["log_level"] = request.log_level.upper()
        if request.max_execution_time:
            fields["cost"] = request.max_execution_time
        if request.session_id:
            fields["session_id"] = request.session_id
        if request.start_session:
            fields["start_session"] = True
            fields["session_time"] = request.session_time or None
        if request.image:
            fields["runtime"] = request.image
        if request.private:
            fields["private"] = True
        if request.channel_strategy:
            if client.account.channel != "ibm_cloud":
                raise invalid_argument(
                    "channel_strategy", "is only supported on the ibm_cloud channel"
                )
            fields["channel_strategy"] = request.channel_strategy
        if client.legacy:
            hgp = request.instance or client.instance(deadline)
            if hgp.count("/") != 2:
                raise invalid_argument("instance", f"must be hub/group/project, got {excerpt(hgp)}")
            fields["hub"], fields["group"], fields["project"] = hgp.split("/")
        elif request.instance and request.instance != client.instance(deadline):
            raise invalid_argument(
                "instance",
                "for cloud channels the instance comes from the account (x-runtime-instance)",
            )
        head = json.dumps(fields)[:-1] + ', "params": '
        # The inputs byte-exact, encoded once and joined once: no intermediate str of the
        # whole body (each copy of a 20 MB input is 20 MB more per request in flight).
        return b"".join((head.encode(), text.encode(), b"}"))

    def _submit(
        self, client: AccountClient, body: bytes, request: RunRequest, deadline: Deadline
    ) -> dict[str, Any]:
        """POSTs the job and describes it. Raises `SubmissionRefused` when IBM's answer proves
        it created no job; any other error leaves open whether it did."""
        reply = client.runtime("POST", "/jobs", deadline, data=body, retry=False)
        if not reply.ok:
            error = submit_not_found(reply)  # program, session or backend
            error = error or session_refusal(reply)  # a closed or expired session
            if error is None and reply.status == 409:
                error = GatewayError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    "UPSTREAM_RATE_LIMITED",
                    f"IBM refused the job: {reply.upstream_message()}",
                )
            if error is None and reply.status == 400:
                error = _refused_inputs(reply)
            error = error or error_from_reply(reply)
            if reply.status in REFUSALS:
                raise SubmissionRefused.of(error)
            raise error  # 429, 5xx, ...: said by a proxy, or after IBM created the job
        created = reply.json()
        job_id = str(created.get("id") or "") if isinstance(created, dict) else ""
        if not job_id:
            raise GatewayError(
                grpc.StatusCode.UNAVAILABLE,
                "UPSTREAM_ERROR",
                "IBM accepted the job but its answer names no job id",
            )
        try:
            return self.get(client, job_id, False, deadline)
        except GatewayError:  # the job exists; describe it from what we sent
            return {
                "id": job_id,
                "backend": created.get("backend") or request.backend,
                "program": {"id": request.program_id},
                "state": {"status": "Queued"},
                "created": datetime.now(UTC).isoformat(),
                "tags": request.tags,
                "session_id": created.get("session_id") or request.session_id or None,
            }

    # --- reads ----------------------------------------------------------------------------
    def get(
        self, client: AccountClient, job_id: str, with_inputs: bool, deadline: Deadline
    ) -> dict[str, Any]:
        _require_id(job_id)
        params = None if with_inputs else {"exclude_params": "true"}
        reply = client.runtime("GET", f"/jobs/{path_segment(job_id)}", deadline, params=params)
        _raise_for_job(reply, job_id)
        job: dict[str, Any] = reply.json()
        return job

    def result(self, client: AccountClient, job_id: str, deadline: Deadline) -> str:
        job = self.get(client, job_id, False, deadline)
        state = state_of(job)
        if state != "COMPLETED":
            reason = (job.get("state") or {}).get("reason") or ""
            if state == "FAILED":
                raise GatewayError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "JOB_FAILED",
                    f"Job {job_id} has failed: {reason}".rstrip(": "),
                )
            raise GatewayError(
                grpc.StatusCode.FAILED_PRECONDITION,
                "JOB_INVALID_STATE",
                f"the result of job {job_id} is not available: "
                f"the job is {state or 'in an unknown state'}",
                metadata={"state": state},
            )
        reply = client.runtime("GET", f"/jobs/{path_segment(job_id)}/results", deadline)
        _raise_for_job(reply, job_id)
        return reply.text

    def logs(self, client: AccountClient, job_id: str, deadline: Deadline) -> str:
        _require_id(job_id)
        reply = client.runtime("GET", f"/jobs/{path_segment(job_id)}/logs", deadline)
        if reply.status == 404:
            self.get(client, job_id, False, deadline)  # NOT_FOUND if the job itself is unknown
            return ""  # the job exists and has no logs (the SDK answers "" too)
        _raise_for_job(reply, job_id)
        return reply.text

    def metrics(
        self, client: AccountClient, job_id: str, deadline: Deadline
    ) -> tuple[dict[str, Any], str]:
        _require_id(job_id)
        reply = client.runtime("GET", f"/jobs/{path_segment(job_id)}/metrics", deadline)
        _raise_for_job(reply, job_id)
        return reply.json(), reply.text

    # --- changes --------------------------------------------------------------------------
    def cancel(self, client: AccountClient, job_id: str, deadline: Deadline) -> dict[str, Any]:
        _require_id(job_id)
        reply = client.runtime(
            "POST", f"/jobs/{path_segment(job_id)}/cancel", deadline, retry=False
        )
        _raise_for_job(reply, job_id)
        return self.get(client, job_id, False, deadline)

    def delete(self, client: AccountClient, job_id: str, deadline: Deadline) -> None:
        _require_id(job_id)
        reply = client.runtime("DELETE", f"/jobs/{path_segment(job_id)}", deadline)
        _raise_for_job(reply, job_id)

    def update_tags(
        self, client: AccountClient, job_id: str, tags: list[str], deadline: Deadline
    ) -> dict[str, Any]:
        _require_id(job_id)
        _check_tags(tags)
        reply = client.runtime(
            "PUT",
            f"/jobs/{path_segment(job_id)}/tags",
            deadline,
            json_body={"tags": list(dict.fromkeys(tags))},
        )
        _raise_for_job(reply, job_id)
        return self.get(client, job_id, False, deadline)

    # --- listing --------------------------------------------------------------------------
    def list(self, client: AccountClient, request: ListRequest, deadline: Deadline) -> JobPage:
        size = request.page_size or DEFAULT_PAGE_SIZE
        if request.page_size < 0 or size > MAX_PAGE_SIZE:
            raise invalid_argument("page_size", f"must be between 0 and {MAX_PAGE_SIZE}")
        if not 0 <= request.skip <= MAX_SKIP:
            raise invalid_argument("skip", f"must be between 0 and {MAX_SKIP}")
        check_name("backend", request.backend)
        check_name("program_id", request.program_id)
        check_id("session_id", request.session_id, required=False)
        check_tags("tags", request.tags)
        order = (request.order_by or "create_time desc").strip().lower()
        if order not in ("create_time desc", "create_time asc", "create_time"):
            raise invalid_argument(
                "order_by",
                f'must be "create_time desc" or "create_time asc", got {excerpt(request.order_by)}',
            )
        ascending = order != "create_time desc"
        if request.instance and not client.legacy:
            raise invalid_argument("instance", "is only supported for the ibm_quantum channel")
        if (
            request.created_after
            and request.created_before
            and request.created_after > request.created_before
        ):
            raise invalid_argument("created_after", "must not be later than created_before")
        base: dict[str, Any] = {"exclude_params": "true"}
        if ascending:
            base["sort"] = "ASC"
        for name, value in (
            ("backend", request.backend),
            ("program", request.program_id),
            ("session_id", request.session_id),
            ("provider", request.instance),
        ):
            if value:
                base[name] = value
        if request.pending is not None:
            base["pending"] = "true" if request.pending else "false"
        if request.tags:
            base["tags"] = list(request.tags)
        after = request.created_after.isoformat() if request.created_after else None
        before = request.created_before.isoformat() if request.created_before else None
        filters = self.tokens.filters_hash(
            # The account too: a token is good for the listing of the account it came from.
            {
                **base,
                "after": after,
                "before": before,
                "skip": request.skip,
                "account": client.account.key,
            }
        )
        cursor = self.tokens.decode(request.page_token, filters) if request.page_token else None
        if cursor is not None:  # continue after the cursor, not at an offset
            if ascending:
                after = cursor.created
            else:
                before = cursor.created
        seen = set(cursor.seen) if cursor else set()
        jobs: list[dict[str, Any]] = []
        total: int | None = cursor.total if cursor else None
        offset = request.skip if cursor is None else 0
        while True:
            want = min(UPSTREAM_PAGE_LIMIT, size - len(jobs) + len(seen))
            params = {**base, "limit": want}
            if offset:
                params["offset"] = offset
            if after:
                params["created_after"] = after
            if before:
                params["created_before"] = before
            reply = client.runtime("GET", "/jobs", deadline, params=params)
            if not reply.ok:
                raise error_from_reply(reply)
            page = reply.json()
            raw = page.get("jobs") or []
            count = int(page.get("count") or 0)  # all matches of this query, ignoring paging
            if total is None:
                total = count
            fresh = [j for j in raw if j.get("id") not in seen]
            taken = fresh[: size - len(jobs)]
            jobs += taken
            upstream_has_more = count > offset + len(raw)
            if len(jobs) >= size:
                more = len(fresh) > len(taken) or upstream_has_more
                break
            if not raw or not upstream_has_more:
                more = False
                break
            offset += len(raw)
        token = ""
        if more and jobs:
            last = str(jobs[-1].get("created"))
            same = [str(j["id"]) for j in jobs if str(j.get("created")) == last]
            if cursor and cursor.created == last:
                same = list(dict.fromkeys(cursor.seen + same))
            token = self.tokens.encode(Cursor(filters, last, same, total or 0))
        return JobPage(jobs, token, total or 0)


def _require_id(job_id: str) -> None:
    """A job id before it enters an upstream path (`path_segment` escapes it as well)."""
    check_id("job_id", job_id)


def _check_tags(tags: list[str]) -> None:
    if any(not t for t in tags):  # the whole list is named (as before), not tags[i]
        raise invalid_argument("tags", "must be non-empty strings")
    check_tags("tags", tags)
    if any(t.startswith(REQUEST_TAG_PREFIX) for t in tags):
        raise invalid_argument(
            "tags", f"tags starting with {REQUEST_TAG_PREFIX!r} are reserved by the gateway"
        )


def check_inputs(text: str) -> None:
    """`inputs_json` must be a JSON object. The depth is checked before parsing, so a
    deeply nested document never reaches the recursive parser; the parsed value is dropped
    at once (only the text is sent on, byte-exact)."""
    if not text.lstrip().startswith("{"):
        raise invalid_argument("inputs_json", "must be a JSON object")
    if not json_depth_ok(text):
        raise invalid_argument("inputs_json", f"nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        json.loads(text, parse_constant=_not_json)
    except (ValueError, RecursionError) as error:
        raise invalid_argument(
            "inputs_json", f"is not valid JSON: {excerpt(str(error), 120)}"
        ) from None


def _refused_inputs(reply: Reply) -> GatewayError:
    """IBM's 400 to a submission the gateway already checked is about what only IBM checks:
    the program inputs (IBM says `params`; the caller sent `inputs_json`), the maximum
    execution time, or the job's fit with its session. Named so, with a BadRequest, so
    clients can point at the field."""
    message = reply.upstream_message()
    lowered = message.lower()
    if "session" in lowered:
        field = "session_id"
    elif "execution time" in lowered or "cost" in lowered:
        field = "max_execution_time"
    else:
        field = "inputs_json"
    return GatewayError(
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        f"{field}: IBM refused the job: {message}",
        field=field,
        metadata={"decided_by": "upstream"},  # checked by IBM, after the gateway's checks
    )


def _not_json(name: str) -> Any:
    """Python's parser accepts NaN and Infinity, which are not JSON (RFC 8259): IBM's parser
    may read them otherwise, or refuse the whole body."""
    raise ValueError(f"{name} is not a JSON value")


def _upstream_code(reply: Reply) -> str:
    """IBM's error code (`errors[0].code`, e.g. "1007"), or ""."""
    try:
        body = json.loads(reply.body)
        return str(body["errors"][0].get("code") or "")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, RecursionError):
        return ""


def submit_not_found(reply: Reply) -> GatewayError | None:
    """What an unknown name in a job submission is: IBM answers 404 for an unknown program
    or session and 400 (code 1007) for an unknown backend; the message tells them apart."""
    if reply.status not in (400, 404):
        return None
    message = reply.upstream_message()
    lowered, code = message.lower(), _upstream_code(reply)
    if code == "1007" or ("backend" in lowered and "not found" in lowered):
        return GatewayError(grpc.StatusCode.NOT_FOUND, "BACKEND_NOT_FOUND", message)
    if reply.status != 404:
        return None
    if "session" in lowered:
        return GatewayError(grpc.StatusCode.NOT_FOUND, "SESSION_NOT_FOUND", message)
    # IBM's own message usually says it already ("Program not found: hello-world").
    said = message if "program not found" in lowered else f"Program not found: {message}"
    return GatewayError(grpc.StatusCode.NOT_FOUND, "PROGRAM_NOT_FOUND", said)


def _raise_for_job(reply: Reply, job_id: str) -> None:
    if reply.ok:
        return
    if reply.status == 404:
        raise GatewayError(grpc.StatusCode.NOT_FOUND, "JOB_NOT_FOUND", f"Job not found: {job_id}")
    raise error_from_reply(reply)
