"""HTTP to IBM Runtime (or the local runtime): pooled sessions, deadlines, retries, errors.

- One `requests.Session` per upstream origin and proxy/TLS setting, shared by all calls
  (connection pooling).
- Idempotent requests (GET, PUT, DELETE) retry on connection errors, 5xx and 429, with
  exponential backoff and full jitter, honouring `Retry-After`, but never past the caller's
  deadline. Other methods are sent once (a retried `POST /jobs` can create two jobs).
- `verify` is passed on every request: `requests` ignores a Session's `verify=False` when
  REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE is set.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import grpc
import requests
import structlog

from runtime_gateway_server.errors import GatewayError

log = structlog.get_logger("runtime_gateway_server.upstream")

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, 520, 521, 522, 524})


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay: float = 0.1
    max_delay: float = 2.0
    connect_timeout: float = 5.0
    read_timeout: float = 60.0

    def backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(max, base * 2**attempt)]."""
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))  # noqa: S311


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            raise GatewayError(
                grpc.StatusCode.UNAVAILABLE,
                "UPSTREAM_ERROR",
                f"the upstream answered {self.status} with a body that is not JSON",
            ) from None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def upstream_message(self) -> str:
        """IBM's error message, whichever of its error shapes the body has."""
        try:
            body = json.loads(self.body)
        except ValueError:
            return self.text[:500] or f"HTTP {self.status}"
        if isinstance(body, dict):
            errors = body.get("errors")
            if isinstance(errors, list) and errors and isinstance(errors[0], dict):
                return str(errors[0].get("message") or errors[0])
            if isinstance(body.get("error"), dict):
                return str(body["error"].get("message") or body["error"])
            for key in ("errorMessage", "message"):
                if key in body:
                    return str(body[key])
        return self.text[:500]

    def retry_after(self) -> float | None:
        value = self.headers.get("Retry-After")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            return None


@dataclass
class Deadline:
    """The caller's gRPC deadline as a monotonic instant (None: no deadline)."""

    at: float | None = None

    @classmethod
    def after(cls, seconds: float | None) -> Deadline:
        return cls(None if seconds is None else time.monotonic() + seconds)

    def remaining(self) -> float | None:
        return None if self.at is None else self.at - time.monotonic()


@dataclass
class HttpUpstream:
    """Sends requests with retries; one instance serves every account of the gateway."""

    policy: RetryPolicy = field(default_factory=RetryPolicy)
    user_agent: str = "runtime-gateway/0.1"

    def __post_init__(self) -> None:
        self._sessions: dict[tuple[str, str], requests.Session] = {}
        self._lock = threading.Lock()
        self.request_count = 0  # for tests and benchmarks
        # Read once: requests would re-read proxies, NO_PROXY and ~/.netrc on every request
        # (a third of a cached-connection call, measured), so sessions do not trust the
        # environment; its proxies are resolved per origin and its CA bundle kept here.
        self.ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")

    def _session(self, url: str, proxies: Mapping[str, str] | None) -> requests.Session:
        parts = urlsplit(url)
        key = (f"{parts.scheme}://{parts.netloc}", json.dumps(dict(proxies or {}), sort_keys=True))
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                session = requests.Session()
                session.trust_env = False
                session.headers["User-Agent"] = self.user_agent
                adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=64)
                session.mount("http://", adapter)
                session.mount("https://", adapter)
                origin = key[0]
                session.proxies.update(proxies or requests.utils.get_environ_proxies(origin))
                self._sessions[key] = session
            return session

    def request(
        self,
        method: str,
        url: str,
        *,
        deadline: Deadline,
        headers: Mapping[str, str] | None = None,
        params: Any = None,
        data: bytes | str | None = None,
        json_body: Any = None,
        proxies: Mapping[str, str] | None = None,
        verify: bool = True,
        retry: bool | None = None,
    ) -> Reply:
        """One logical call; raises GatewayError for transport failures and exhausted retries.

        HTTP error statuses that are not retried come back as a Reply for the caller to map.
        """
        session = self._session(url, proxies)
        retryable = method.upper() in IDEMPOTENT if retry is None else retry
        attempt = 0
        while True:
            remaining = deadline.remaining()
            if remaining is not None and remaining <= 0:
                raise GatewayError(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    "UPSTREAM_UNAVAILABLE",
                    f"the deadline passed before {method} {_path(url)} could complete",
                )
            read = (
                self.policy.read_timeout
                if remaining is None
                else min(self.policy.read_timeout, remaining)
            )
            timeout = (min(self.policy.connect_timeout, read), read)
            self.request_count += 1
            try:
                response = session.request(
                    method,
                    url,
                    headers=headers,
                    params=params,
                    data=data,
                    json=json_body,
                    timeout=timeout,
                    verify=(self.ca_bundle or True) if verify else False,
                    allow_redirects=False,
                )
                reply = Reply(response.status_code, response.headers, response.content)
            except requests.Timeout:
                if remaining is not None and read >= remaining:
                    raise GatewayError(
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                        "UPSTREAM_UNAVAILABLE",
                        f"{method} {_path(url)} did not answer before the deadline",
                    ) from None
                failure: GatewayError | Reply = GatewayError(
                    grpc.StatusCode.UNAVAILABLE,
                    "UPSTREAM_UNAVAILABLE",
                    f"{method} {_path(url)} timed out",
                )
            except requests.ConnectionError as error:
                failure = GatewayError(
                    grpc.StatusCode.UNAVAILABLE,
                    "UPSTREAM_UNAVAILABLE",
                    f"cannot reach the upstream for {method} {_path(url)}: {type(error).__name__}",
                )
            else:
                if reply.status not in RETRY_STATUSES:
                    return reply
                failure = reply
            attempt += 1
            delay = self.policy.backoff(attempt)
            if isinstance(failure, Reply) and failure.retry_after() is not None:
                delay = failure.retry_after() or 0.0
            remaining = deadline.remaining()
            out_of_time = remaining is not None and delay >= remaining
            if not retryable or attempt >= self.policy.max_attempts or out_of_time:
                if isinstance(failure, Reply):
                    return failure  # the caller maps 429/5xx with the upstream's message
                raise failure
            log.debug(
                "upstream_retry",
                method=method,
                path=_path(url),
                attempt=attempt,
                delay=round(delay, 3),
            )
            time.sleep(delay)


def _path(url: str) -> str:
    return urlsplit(url).path


def error_from_reply(
    reply: Reply,
    *,
    not_found_reason: str = "UPSTREAM_ERROR",
    conflict: tuple[grpc.StatusCode, str] = (
        grpc.StatusCode.FAILED_PRECONDITION,
        "JOB_INVALID_STATE",
    ),
) -> GatewayError:
    """Maps an upstream HTTP error to the gRPC status the API promises (AIP-193)."""
    message = reply.upstream_message()
    status = reply.status
    if status == 400:
        return GatewayError(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", message)
    if status == 401:
        return GatewayError(
            grpc.StatusCode.UNAUTHENTICATED,
            "UPSTREAM_UNAUTHENTICATED",
            f"IBM rejected the credentials: {message}",
        )
    if status == 403:
        return GatewayError(
            grpc.StatusCode.PERMISSION_DENIED, "UPSTREAM_PERMISSION_DENIED", message
        )
    if status == 404:
        code = (
            grpc.StatusCode.NOT_FOUND
            if not_found_reason != "UPSTREAM_ERROR"
            else grpc.StatusCode.UNKNOWN
        )
        return GatewayError(code, not_found_reason, message)
    if status == 409:
        return GatewayError(conflict[0], conflict[1], message)
    if status == 429:
        return GatewayError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "UPSTREAM_RATE_LIMITED",
            f"IBM's rate limit was reached: {message}",
            retry_after=reply.retry_after(),
        )
    if status >= 500:
        return GatewayError(
            grpc.StatusCode.UNAVAILABLE, "UPSTREAM_UNAVAILABLE", f"IBM answered {status}: {message}"
        )
    return GatewayError(
        grpc.StatusCode.UNKNOWN, "UPSTREAM_ERROR", f"IBM answered {status}: {message}"
    )
