"""Opaque, signed page tokens: ListJobs' creation-time cursor, and the small lists' "after".

Offsets get slow and shift when jobs are inserted (accounts have tens of thousands of
jobs); a cursor `(created, ids seen at that instant)` names a fixed point in the ordering.
Tokens are HMAC-signed so a client cannot forge one, and bound to the request's filters.
Small lists (backends, accounts, instances) are ordered by name or position; their tokens
carry the last name (or position) returned, signed the same way.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from runtime_gateway_server.errors import GatewayError, invalid_argument


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
        return self._sign(
            {"f": cursor.filters, "c": cursor.created, "s": cursor.seen, "t": cursor.total}
        )

    def decode(self, token: str, filters: str) -> Cursor:
        data = self._verify(token, filters)
        try:
            return Cursor(filters, str(data["c"]), [str(s) for s in data["s"]], int(data["t"]))
        except (KeyError, TypeError, ValueError):
            raise _not_ours() from None

    def encode_after(self, filters: str, last: str) -> str:
        """A token for name- or position-ordered small lists: continue after `last`."""
        return self._sign({"f": filters, "a": last})

    def decode_after(self, token: str, filters: str) -> str:
        data = self._verify(token, filters)
        last = data.get("a")
        if not isinstance(last, str):
            raise _not_ours()
        return last

    def _sign(self, data: dict[str, Any]) -> str:
        payload = json.dumps(data, separators=(",", ":")).encode()
        mac = hmac.new(self._secret, payload, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(mac + payload).decode().rstrip("=")

    def _verify(self, token: str, filters: str) -> dict[str, Any]:
        """The token's payload; INVALID_ARGUMENT naming page_token when it is not one this
        gateway signed (forged, tampered, from another key) or belongs to other filters."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            mac, payload = raw[:16], raw[16:]
            expected = hmac.new(self._secret, payload, hashlib.sha256).digest()[:16]
            if not hmac.compare_digest(mac, expected):
                raise ValueError("bad signature")
            data = json.loads(payload)  # signed by us: small and flat
        except (ValueError, TypeError, RecursionError):
            raise _not_ours() from None
        if not isinstance(data, dict):
            raise _not_ours()
        if data.get("f") != filters:
            raise invalid_argument(
                "page_token", "belongs to a listing with other filters; keep them unchanged"
            )
        return data


def _not_ours() -> GatewayError:
    return invalid_argument("page_token", "is not a token this gateway issued (or it has expired)")
