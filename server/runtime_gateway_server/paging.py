"""Opaque page tokens for ListJobs: a signed creation-time cursor, not an offset.

Offsets get slow and shift when jobs are inserted (accounts have tens of thousands of
jobs); a cursor `(created, ids seen at that instant)` names a fixed point in the ordering.
Tokens are HMAC-signed so a client cannot forge one, and bound to the request's filters.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from runtime_gateway_server.errors import invalid_argument


@dataclass
class Cursor:
    filters: str  # hash of the filters the token belongs to
    created: str = ""  # ISO time of the last job returned
    seen: list[str] = field(default_factory=list)  # ids returned with exactly that time
    total: int = 0  # matching jobs when the listing started


class PageTokens:
    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)

    @staticmethod
    def filters_hash(filters: dict[str, Any]) -> str:
        canonical = json.dumps(filters, sort_keys=True, default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def encode(self, cursor: Cursor) -> str:
        payload = json.dumps(
            {"f": cursor.filters, "c": cursor.created, "s": cursor.seen, "t": cursor.total},
            separators=(",", ":"),
        ).encode()
        mac = hmac.new(self._secret, payload, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(mac + payload).decode().rstrip("=")

    def decode(self, token: str, filters: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            mac, payload = raw[:16], raw[16:]
            expected = hmac.new(self._secret, payload, hashlib.sha256).digest()[:16]
            if not hmac.compare_digest(mac, expected):
                raise ValueError("bad signature")
            data = json.loads(payload)
        except (ValueError, TypeError):
            raise invalid_argument(
                "page_token", "is not a token this gateway issued (or it has expired)"
            ) from None
        if data["f"] != filters:
            raise invalid_argument(
                "page_token", "belongs to a listing with other filters; keep them unchanged"
            )
        return Cursor(filters, data["c"], list(data["s"]), int(data["t"]))
