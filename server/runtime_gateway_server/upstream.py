"""HTTP to IBM Runtime (or the local runtime): pooled sessions, deadlines, retries, errors.

- One `requests.Session` per upstream origin and proxy/TLS setting, shared by all calls
  (connection pooling).
- Idempotent requests (GET, PUT, DELETE) retry on connection errors, 5xx and 429, with
  exponential backoff and full jitter, honouring `Retry-After`, but never past the caller's
  deadline. Other methods are sent once (a retried `POST /jobs` can create two jobs).
- `verify` is passed on every request: `requests` ignores a Session's `verify=False` when
  REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE is set.
- Every URL (and every explicit proxy) passes the gateway's `UpstreamAllowList` before any
  connection: PERMISSION_DENIED / UPSTREAM_NOT_ALLOWED otherwise. Redirects are not followed.
- A failure says why (connection refused, DNS, TLS, timeout, IBM's status and message) and is
  logged once at WARNING as `upstream_failed`, without token, userinfo or query string.
- Upstream bodies are never echoed: only IBM's JSON error message, short and sanitized.
"""

from __future__ import annotations

import json
import os
import random
import re
import socket
import ssl
import threading
import time
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import grpc
import requests
import structlog

from runtime_gateway_server.allowlist import NotAllowed, UpstreamAllowList
from runtime_gateway_server.errors import GatewayError
from runtime_gateway_server.metrics import UPSTREAM_RETRIES, endpoint_template, observe_upstream

log = structlog.get_logger("runtime_gateway_server.upstream")

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, 520, 521, 522, 524})
MAX_UPSTREAM_MESSAGE = 200  # characters of IBM's error message an error may carry


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
        """IBM's error message from IBM's JSON error shapes, at most MAX_UPSTREAM_MESSAGE
        printable characters; otherwise only `HTTP <status> (<content type>, <n> bytes)`.

        The body's text is never echoed: an upstream (or whatever answers in its place) could
        put anything in it, secrets and internal pages included."""
        try:
            body = json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            body = None
        message: Any = None
        if isinstance(body, dict):
            errors = body.get("errors")
            error = body.get("error")
            if isinstance(errors, list) and errors and isinstance(errors[0], dict):
                message = errors[0].get("message")
            elif isinstance(error, dict):
                message = error.get("message")
            elif isinstance(error, str):
                message = error
            if message is None:
                message = body.get("errorMessage", body.get("message"))
        text = _printable(message) if isinstance(message, str) else ""
        return text or self.describe()

    def describe(self) -> str:
        """`HTTP <status> (<content type>, <n> bytes)`: what a body is, never what it says."""
        kind = self.headers.get("Content-Type", "").split(";")[0].strip()
        kind = kind if re.fullmatch(r"[\w.+-]{1,40}/[\w.+-]{1,60}", kind) else "no content type"
        return f"HTTP {self.status} ({kind}, {len(self.body)} bytes)"

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
    """Sends requests with retries; one instance serves every account of the gateway.

    `allow`: the origins it may contact (the gateway always passes one); None checks nothing,
    for library use and unit tests against loopback servers."""

    policy: RetryPolicy = field(default_factory=RetryPolicy)
    user_agent: str = "runtime-gateway/0.1"
    allow: UpstreamAllowList | None = None

    def __post_init__(self) -> None:
        self._sessions: dict[tuple[str, str], requests.Session] = {}
        self._lock = threading.Lock()
        self.request_count = 0  # for tests and benchmarks
        # Read once: requests would re-read proxies, NO_PROXY and ~/.netrc on every request
        # (a third of a cached-connection call, measured), so sessions do not trust the
        # environment; its proxies are resolved per origin and its CA bundle kept here.
        self.ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        # Set when the gateway drains: no request (or retry) starts after that, so nothing
        # reaches IBM on behalf of calls the gateway has already answered UNAVAILABLE.
        self.closing = threading.Event()

    def close(self) -> None:
        """Refuses every later request; requests already on the wire finish or time out."""
        self.closing.set()

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

    def check(self, url: str, proxies: Mapping[str, str] | None = None) -> None:
        """PERMISSION_DENIED / UPSTREAM_NOT_ALLOWED unless the allow-list admits the URL and
        the account's explicit proxies (proxies from the environment are the operator's)."""
        if self.allow is None:
            return
        try:
            self.allow.check(url)
            for proxy in (proxies or {}).values():
                if proxy:
                    self.allow.check(str(proxy), proxy=True)
        except NotAllowed as refused:
            raise not_allowed(refused) from None

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
        The URL is checked against the allow-list first (no connection when refused).
        """
        self.check(url, proxies)
        session = self._session(url, proxies)
        retryable = method.upper() in IDEMPOTENT if retry is None else retry
        where = f"{method} {_path(url)} at {_host(url)}"
        endpoint = endpoint_template(_path(url))  # a bounded metric label
        attempt = 0
        while True:
            if self.closing.is_set():
                raise GatewayError(
                    grpc.StatusCode.UNAVAILABLE,
                    "UPSTREAM_UNAVAILABLE",
                    f"the gateway is shutting down; {where} was not sent",
                )
            remaining = deadline.remaining()
            if remaining is not None and remaining <= 0:
                raise GatewayError(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    "UPSTREAM_UNAVAILABLE",
                    f"the deadline passed before {where} could complete",
                )
            read = (
                self.policy.read_timeout
                if remaining is None
                else min(self.policy.read_timeout, remaining)
            )
            timeout = (min(self.policy.connect_timeout, read), read)
            self.request_count += 1
            sent_at = time.perf_counter()
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
            except requests.Timeout as error:
                observe_upstream(endpoint, method, "error", time.perf_counter() - sent_at)
                cause = (
                    "timed out connecting"
                    if isinstance(error, requests.ConnectTimeout)
                    else "timed out waiting for the answer"
                )
                if remaining is not None and read >= remaining:
                    _log_failure(method, url, f"{cause} (the caller's deadline)", attempt + 1)
                    raise GatewayError(
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                        "UPSTREAM_UNAVAILABLE",
                        f"{where} did not answer before the deadline: {cause}",
                    ) from None
                failure: GatewayError | Reply = GatewayError(
                    grpc.StatusCode.UNAVAILABLE,
                    "UPSTREAM_UNAVAILABLE",
                    f"cannot reach the upstream for {where}: {cause}",
                )
                failure_cause = cause
            except requests.RequestException as error:  # connection, TLS, proxy, protocol
                observe_upstream(endpoint, method, "error", time.perf_counter() - sent_at)
                failure_cause = connection_cause(error)
                failure = GatewayError(
                    grpc.StatusCode.UNAVAILABLE,
                    "UPSTREAM_UNAVAILABLE",
                    f"cannot reach the upstream for {where}: {failure_cause}",
                )
            else:
                observe_upstream(endpoint, method, str(reply.status), time.perf_counter() - sent_at)
                if reply.status not in RETRY_STATUSES:
                    return reply
                failure = reply
                failure_cause = f"answered {reply.status}: {reply.upstream_message()}"
            attempt += 1
            delay = self.policy.backoff(attempt)
            if isinstance(failure, Reply) and failure.retry_after() is not None:
                delay = failure.retry_after() or 0.0
            remaining = deadline.remaining()
            out_of_time = remaining is not None and delay >= remaining
            if not retryable or attempt >= self.policy.max_attempts or out_of_time:
                _log_failure(method, url, failure_cause, attempt)
                if isinstance(failure, Reply):
                    return failure  # the caller maps 429/5xx with the upstream's message
                if attempt > 1:
                    failure = GatewayError(
                        failure.code,
                        failure.reason,
                        f"{failure.message} (after {attempt} attempts)",
                    )
                raise failure
            UPSTREAM_RETRIES.labels(endpoint, method).inc()
            log.debug(
                "upstream_retry",
                method=method,
                path=_path(url),
                attempt=attempt,
                delay=round(delay, 3),
                cause=failure_cause,
            )
            time.sleep(delay)


def not_allowed(refused: NotAllowed, source: str = "") -> GatewayError:
    """The gRPC error for a refused upstream URL (`source`: where the URL came from)."""
    prefix = f"{source}: " if source else ""
    return GatewayError(
        grpc.StatusCode.PERMISSION_DENIED, "UPSTREAM_NOT_ALLOWED", f"{prefix}{refused}"
    )


def connection_cause(error: BaseException) -> str:
    """Why a request failed to get an answer, in words (no URL, no token): the innermost
    cause requests and urllib3 wrap."""
    seen: set[int] = set()
    stack = [error]
    found: list[BaseException] = []
    while stack:  # every exception in the chain: args, __cause__, __context__, .reason
        current = stack.pop()
        if id(current) in seen or len(seen) > 50:
            continue
        seen.add(id(current))
        found.append(current)
        linked = [a for a in current.args if isinstance(a, BaseException)]
        linked += [
            v
            for v in (current.__cause__, current.__context__, getattr(current, "reason", None))
            if isinstance(v, BaseException)
        ]
        stack += linked
    kinds = [type(e) for e in found]

    def has(*types: type[BaseException]) -> bool:
        return any(issubclass(k, types) for k in kinds)

    if has(ssl.SSLCertVerificationError):
        return "TLS verification failed (the upstream's certificate is not trusted)"
    if has(ssl.SSLError) or isinstance(error, requests.exceptions.SSLError):
        return "the TLS handshake failed"
    if isinstance(error, requests.exceptions.ProxyError):
        return "the proxy failed or refused the connection"
    if has(socket.gaierror):
        return "the DNS name could not be resolved"
    if has(ConnectionRefusedError):
        return "connection refused"
    if has(ConnectionResetError):
        return "the connection was reset"
    if has(TimeoutError, socket.timeout):
        return "timed out"
    if any(k.__name__ in ("RemoteDisconnected", "ProtocolError", "IncompleteRead") for k in kinds):
        return "the upstream closed the connection without a complete answer"
    return f"connection failed ({type(error).__name__})"


def _log_failure(method: str, url: str, cause: str, attempts: int) -> None:
    log.warning(
        "upstream_failed",
        method=method,
        host=_host(url),
        path=path_template(_path(url)),
        cause=cause,
        attempts=attempts,
    )


_WORD = re.compile(r"[A-Za-z][A-Za-z_-]*|v[0-9]+")  # words stay; ids (digits) go


def path_template(path: str) -> str:
    """The path with its variable segments (ids, names) as `*`: `/api/v1/jobs/*/results`."""
    segments = path.split("/")
    return "/".join(s if not s or _WORD.fullmatch(s) else "*" for s in segments)[:200]


def _path(url: str) -> str:
    return urlsplit(url).path


def _host(url: str) -> str:
    """`host:port` of a URL, without user information."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{port}" if port else host


def _printable(text: str) -> str:
    """One line of printable text (control and format characters dropped), at most
    MAX_UPSTREAM_MESSAGE characters."""
    kept = "".join(
        " " if c.isspace() else c for c in text if c.isspace() or unicodedata.category(c)[0] != "C"
    )
    kept = " ".join(kept.split())
    if len(kept) > MAX_UPSTREAM_MESSAGE:
        kept = kept[: MAX_UPSTREAM_MESSAGE - 3].rstrip() + "..."
    return kept


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
