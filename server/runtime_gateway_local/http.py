"""A small threaded HTTP/1.1 server with a route table, for the local runtime.

Requests may be origin-form (`GET /api/v1/jobs`) or proxy-form
(`GET http://quantum.cloud.example.test/api/v1/jobs`), which is how the SDK reaches the
emulator through `HTTP_PROXY`. Every response leaves in one buffered write, with
TCP_NODELAY: headers and body in separate writes meet TCP delayed ACKs (44 ms a request
measured here).
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import structlog

log = structlog.get_logger("runtime_gateway_local.http")

MAX_BODY_BYTES = 256 * 1024 * 1024


@dataclass
class Request:
    """One HTTP request, already parsed."""

    method: str
    host: str  # lower-case host name, without port
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    params: dict[str, str] = field(default_factory=dict)  # path parameters from the route

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def args(self, name: str) -> list[str]:
        return self.query.get(name, [])

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def json(self) -> Any:
        """The body as JSON; HttpError 400 when it is not."""
        if not self.body:
            raise HttpError(400, "The request body is empty; a JSON document is required.")
        try:
            return json.loads(self.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise HttpError(400, f"The request body is not valid JSON: {error}") from None


@dataclass
class Response:
    """What a handler returns."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return cls(status, json.dumps(value).encode(), headers=headers or {})

    @classmethod
    def text(cls, value: str, status: int = 200) -> Response:
        return cls(status, value.encode(), content_type="text/plain; charset=utf-8")

    @classmethod
    def empty(cls, status: int = 204) -> Response:
        return cls(status, b"", content_type="")


class HttpError(Exception):
    """An error answered with IBM's error body shape."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or _DEFAULT_CODES.get(status, "error")
        self.headers = headers or {}
        self.body = body

    def response(self, trace: str) -> Response:
        body = self.body
        if body is None:
            body = {
                "errors": [{"code": self.code, "message": self.message, "more_info": ""}],
                "trace": trace,
                "status_code": self.status,
            }
        return Response.json(body, self.status, self.headers)


_DEFAULT_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    429: "too_many_requests",
    500: "internal_error",
    503: "service_unavailable",
}

Handler = Callable[[Request], Response]


class Router:
    """Routes (service, method, path pattern) to handlers. Patterns use `{name}` segments."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, str, re.Pattern[str], Handler]] = []

    def add(self, service: str, method: str, pattern: str, handler: Handler) -> None:
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern.rstrip("/") or "/")
        self._routes.append((service, method, re.compile(f"^{regex}/?$"), handler))

    def match(self, service: str, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        path_known = False
        for route_service, route_method, regex, handler in self._routes:
            if route_service != service:
                continue
            found = regex.match(path)
            if found:
                if route_method == method:
                    return handler, found.groupdict()
                path_known = True
        if path_known:
            raise HttpError(405, f"Method {method} is not allowed on {path}.", "method_not_allowed")
        raise HttpError(404, f"No such resource: {method} {path}", "not_found")


class Dispatcher:
    """What the server calls for each request; the local runtime implements it."""

    def dispatch(self, request: Request) -> Response | None:  # None: drop the connection
        raise NotImplementedError


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = -1  # buffered: the whole response leaves in one write (see module docstring)
    server: LocalHttpServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # requests are logged by the dispatcher, without query strings or headers

    def _handle(self) -> None:
        target = urlsplit(self.path)
        if target.scheme:  # proxy form: the host names the service
            host, path = (target.hostname or ""), target.path or "/"
        else:
            host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
            path = target.path
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._send(HttpError(413, "The request body is too large.").response(""))
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        request = Request(
            method=self.command,
            host=host.lower(),
            path=path,
            query=parse_qs(target.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        response = self.server.dispatcher.dispatch(request)
        if response is None:  # fault injection: drop the connection without an answer
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send(response)

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        if response.content_type:
            self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle


class LocalHttpServer(ThreadingHTTPServer):
    """A threaded HTTP server that hands every request to a Dispatcher."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        super().__init__(address, _Handler)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start_background(self) -> None:
        self._thread = threading.Thread(
            target=self.serve_forever,
            kwargs={"poll_interval": 0.2},
            daemon=True,
            name="local-runtime-http",
        )
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(5)
