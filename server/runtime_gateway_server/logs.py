"""Structured logging (structlog) with a last line of defence against leaked secrets.

Code never logs tokens on purpose; `redact_secrets` still scrubs every event before it is
rendered: values registered with `SECRETS.add` (every token the gateway handles is
registered) and anything shaped like a bearer token, an API key assignment or a JWT.

The registry is bounded and its scrub costs the same whatever the number of secrets: it
keeps the most recently used values (an LRU of at most `MAX_SECRETS` values and
`MAX_SECRET_BYTES` characters) in a set, and looks up the token-shaped words of a text in
it, instead of searching the text for every value. Tokens in use are re-registered on every
call, so only tokens nobody sent for a long time are forgotten (the shape patterns still
catch bearer headers, key assignments and JWTs). At its bounds the registry holds about
15 MB (65,536 values of 43 characters, with Python's per-object overhead) or 4 Mi characters
of long values.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from collections import OrderedDict
from collections.abc import Mapping, MutableMapping
from typing import Any, Literal

import structlog

LogFormat = Literal["json", "console"]

REDACTED = "[REDACTED]"

# A registered value is found where it stands as a word of the token alphabet (base64,
# base64url, hex, UUIDs, JWTs), or as a piece of such a word between '/' or '.', and with or
# without its '=' padding. Values with other characters (rare) are searched for directly,
# among at most MAX_ODD_SECRETS of them.
_WORD = re.compile(r"[A-Za-z0-9_~+/.-]{6,}")
_WORD_PIECES = re.compile(r"[/.]")
_TOKEN_ALPHABET = re.compile(r"[A-Za-z0-9_~+/.-]+")
_MIN_SECRET_LENGTH = 6
MAX_SECRET_LENGTH = 16 * 1024  # longer values are not credentials; not registered
MAX_SECRETS = 65_536
MAX_SECRET_BYTES = 4 * 1024 * 1024  # characters kept, all values together
MAX_ODD_SECRETS = 256

# Credentials in a shape we recognise even when nobody registered them. The value must look
# like one (a digit, or 20+ characters) where English could stand: "needs a token: send ...".
_KEYS = r"(?:api[_-]?key|apikey|access[_-]?token|refresh[_-]?token|token|password|passwd|secret)"
_KEY_STEMS = ("key", "token", "passw", "secret")  # every _KEYS alternative has one
_VALUE = r"[^\s\"',}&;]{4,}"
_BEARER = re.compile(r"(?i)\b(bearer|apikey)(\s+)([A-Za-z0-9._~+/=-]{6,})")
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
_ASSIGNED = re.compile(rf"(?i)({_KEYS}\s*=\s*[\"']?)({_VALUE})")  # token=..., always
_QUOTED_KEY = re.compile(rf"(?i)([\"'][\w-]*{_KEYS}[\"']\s*:\s*[\"']?)({_VALUE})")  # "apiToken": ""
_COLON = re.compile(rf"(?i)(\b{_KEYS}\s*:\s*[\"']?)({_VALUE})")  # token: ..., when secret-like


def _looks_secret(value: str) -> bool:
    return len(value) >= 20 or any(c.isdigit() for c in value)


def _bearer(match: re.Match[str]) -> str:
    if match.group(1).islower() and not _looks_secret(match.group(3)):
        return match.group(0)  # English: "bearer tokens"; a header says "Bearer xyz"
    return f"{match.group(1)}{match.group(2)}{REDACTED}"


def _always(match: re.Match[str]) -> str:
    return f"{match.group(1)}{REDACTED}"


def _if_secret(match: re.Match[str]) -> str:
    return f"{match.group(1)}{REDACTED}" if _looks_secret(match.group(2)) else match.group(0)


class SecretRegistry:
    """Exact secret values to scrub from every log line (tokens, API keys): bounded memory
    (`max_values` values, `max_bytes` characters, least recently added forgotten first) and a
    scrub whose cost depends on the text, not on how many secrets are registered."""

    def __init__(self, max_values: int = MAX_SECRETS, max_bytes: int = MAX_SECRET_BYTES) -> None:
        self._lock = threading.Lock()
        self.max_values = max_values
        self.max_bytes = max_bytes
        self._values: OrderedDict[str, None] = OrderedDict()  # LRU, most recent last
        self._bytes = 0
        self._odd: OrderedDict[str, None] = OrderedDict()  # values outside the token alphabet

    def __len__(self) -> int:
        return len(self._values) + len(self._odd)

    @property
    def size_bytes(self) -> int:
        """Characters held, all values together (for tests and diagnostics)."""
        return self._bytes + sum(len(v) for v in list(self._odd))

    def add(self, value: str | None) -> None:
        """Registers a secret, or marks it recently used. O(1)."""
        if not value or len(value) < _MIN_SECRET_LENGTH or len(value) > MAX_SECRET_LENGTH:
            return
        core = value.rstrip("=")  # base64 padding: the word pattern stops before it
        if len(core) < _MIN_SECRET_LENGTH:
            return
        with self._lock:
            if _TOKEN_ALPHABET.fullmatch(core):
                if core in self._values:
                    self._values.move_to_end(core)
                    return
                self._values[core] = None
                self._bytes += len(core)
                while self._values and (
                    len(self._values) > self.max_values or self._bytes > self.max_bytes
                ):
                    old, _ = self._values.popitem(last=False)
                    self._bytes -= len(old)
            else:
                self._odd[value] = None
                self._odd.move_to_end(value)
                while len(self._odd) > MAX_ODD_SECRETS:
                    self._odd.popitem(last=False)

    def __contains__(self, value: str) -> bool:
        return value.rstrip("=") in self._values or value in self._odd

    def _word(self, match: re.Match[str]) -> str:
        word = match.group(0)
        values = self._values
        if word in values:
            return REDACTED
        if not _WORD_PIECES.search(word):
            return word
        # Pieces between '/' and between '.', and the pieces between '/' that contain dots
        # (a JWT in a path): each piece is hashed once, so the cost stays linear in the text.
        parts = word.split("/")
        for i, part in enumerate(parts):
            if part in values:
                parts[i] = REDACTED
            elif "." in part:
                dots = part.split(".")
                parts[i] = ".".join(REDACTED if d in values else d for d in dots)
        return "/".join(parts)

    def scrub(self, text: str) -> str:
        if self._values:
            text = _WORD.sub(self._word, text)
        for value in list(self._odd):  # at most MAX_ODD_SECRETS
            if value in text:
                text = text.replace(value, REDACTED)
        # The shape patterns, each only when a cheap test says it could match.
        low = text.lower()
        if "bearer" in low or "apikey" in low:
            text = _BEARER.sub(_bearer, text)
        if "eyJ" in text:
            text = _JWT.sub(REDACTED, text)
        if any(key in low for key in _KEY_STEMS):
            if "=" in text:
                text = _ASSIGNED.sub(_always, text)
            if ":" in text:
                text = _QUOTED_KEY.sub(_always, text)
                text = _COLON.sub(_if_secret, text)
        return text


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
    # grpc's own debug lines (`[_cygrpc] Loaded running loop`, one per call) drown the
    # gateway's at DEBUG: they stay out unless RUNTIME_GATEWAY_GRPC_DEBUG=1 asks for them.
    grpc_debug = os.environ.get("RUNTIME_GATEWAY_GRPC_DEBUG", "") in ("1", "true", "yes")
    logging.getLogger("grpc").setLevel(logging.NOTSET if grpc_debug else logging.INFO)
