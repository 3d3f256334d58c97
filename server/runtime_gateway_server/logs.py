"""Structured logging (structlog) with a last line of defence against leaked secrets.

Code never logs tokens on purpose; `redact_secrets` still scrubs every event before it is
rendered: values registered with `SECRETS.add` (every token the gateway handles is
registered) and anything shaped like a bearer token, an API key header or a JWT.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Mapping, MutableMapping
from typing import Any, Literal

import structlog

LogFormat = Literal["json", "console"]

REDACTED = "[REDACTED]"

# Credentials in a shape we recognise even when nobody registered them.
_PATTERNS = (
    re.compile(r"(?i)(bearer|apikey)\s+[A-Za-z0-9._~+/=-]{6,}"),
    re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),  # JWT
    re.compile(r"(?i)((?:api[_-]?key|token|password|secret)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]{4,}"),
)
_MIN_SECRET_LENGTH = 6


class SecretRegistry:
    """Exact secret values to scrub from every log line (tokens, API keys)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: frozenset[str] = frozenset()

    def add(self, value: str | None) -> None:
        if not value or len(value) < _MIN_SECRET_LENGTH:
            return
        with self._lock:
            if value not in self._values:
                self._values = self._values | {value}

    def scrub(self, text: str) -> str:
        for value in self._values:  # a frozenset snapshot: safe without the lock
            if value in text:
                text = text.replace(value, REDACTED)
        for pattern in _PATTERNS:
            text = pattern.sub(_replacement, text)
        return text


def _replacement(match: re.Match[str]) -> str:
    if match.re is _PATTERNS[0]:
        return f"{match.group(1)} {REDACTED}"
    if match.re is _PATTERNS[2]:
        return f"{match.group(1)}{REDACTED}"
    return REDACTED


SECRETS = SecretRegistry()


def _scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return SECRETS.scrub(value)
    if isinstance(value, dict):
        return {k: _scrub_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_scrub_value(v) for v in value)
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return SECRETS.scrub(str(value))


def redact_secrets(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Any:
    """structlog processor: scrubs secrets from every value of the event."""
    return {key: _scrub_value(value) for key, value in event_dict.items()}


def configure_logging(
    fmt: LogFormat = "json", level: str = "INFO", fields: Mapping[str, Any] | None = None
) -> None:
    """Sends structlog and stdlib logging to stderr as JSON lines or readable console lines.

    `fields` are added to every line (a worker's index, say)."""
    constant = dict(fields or {})

    def add_fields(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Any:
        event_dict.update(constant)
        return event_dict

    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        *([add_fields] if constant else []),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            redact_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Libraries that use stdlib logging (urllib3, grpc) go through the same redaction.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                redact_secrets,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Libraries (qiskit's transpiler, urllib3) are chatty at INFO: warnings only, unless debugging.
    root.setLevel(logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING)
