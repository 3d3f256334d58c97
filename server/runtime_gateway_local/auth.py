"""Credentials of the local runtime: API tokens, IAM JWTs and legacy login tokens.

- IBM Cloud / Quantum Platform: `POST /identity/token` exchanges an API key for a signed JWT
  with `exp` and `iat` claims (the SDK decodes it); runtime calls send `Bearer <jwt>`
  (0.51) or `apikey <key>` (0.21 `ibm_cloud`, no exchange).
- IBM Quantum Classic (0.21 `ibm_quantum`): `loginWithToken` returns an opaque access token
  sent as `X-Access-Token`.
Tokens expire after `token_ttl_seconds`; `expire_all()` invalidates every issued token at
once (fault injection: clients must re-authenticate).
"""

from __future__ import annotations

import hmac
import math
import secrets
import threading
import time
from dataclasses import dataclass

import jwt

from runtime_gateway_local.http import HttpError, Request


@dataclass(frozen=True)
class Principal:
    """Who a request acts for."""

    user_id: str
    api_key: str


class Authenticator:
    def __init__(self, api_tokens: dict[str, str], token_ttl_seconds: int = 3600) -> None:
        """`api_tokens` maps each accepted API token/key to its user id."""
        self._api_tokens = dict(api_tokens)
        self.token_ttl_seconds = token_ttl_seconds
        self._signing_key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._access_tokens: dict[str, tuple[Principal, float]] = {}
        self._not_before = 0.0  # tokens issued before this instant are expired

    # --- issuing -------------------------------------------------------------------------
    def principal_for_api_key(self, api_key: str) -> Principal | None:
        for known, user in self._api_tokens.items():
            if hmac.compare_digest(known.encode(), api_key.encode()):
                return Principal(user, known)
        return None

    def issue_jwt(self, principal: Principal) -> tuple[str, int, int]:
        issued = time.time()
        now = int(issued)
        # JWT times are whole seconds: round the expiry up, so that a token lives at least
        # token_ttl_seconds (rounding down could issue one that is already expired).
        exp = math.ceil(issued + self.token_ttl_seconds)
        claims = {
            "iam_id": principal.user_id,
            "sub": principal.user_id,
            "iat": now,
            "exp": exp,
            "jti": secrets.token_hex(8),
            "iss": "local-runtime-iam",
        }
        return jwt.encode(claims, self._signing_key, algorithm="HS256"), now, exp

    def issue_access_token(self, principal: Principal) -> str:
        token = secrets.token_urlsafe(48)
        with self._lock:
            self._drop_expired_locked()
            self._access_tokens[token] = (principal, time.time())
        return token

    def expire_all(self) -> None:
        """Every token issued so far stops working (fault injection)."""
        with self._lock:
            self._not_before = time.time()
            self._access_tokens.clear()

    # --- checking ------------------------------------------------------------------------
    def authenticate(self, request: Request) -> Principal:
        """The principal of a runtime request; HttpError 401 otherwise."""
        access = request.header("x-access-token")
        if access:
            return self._check_access_token(access)
        authorization = request.header("authorization") or ""
        scheme, _, credential = authorization.partition(" ")
        credential = credential.strip()
        if scheme.lower() == "bearer" and credential:
            return self._check_jwt(credential)
        if scheme.lower() == "apikey" and credential:
            principal = self.principal_for_api_key(credential)
            if principal is None:
                raise unauthorized("The API key is not valid.")
            return principal
        raise unauthorized("Authentication is required: no credentials in the request.")

    def _check_jwt(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token, self._signing_key, algorithms=["HS256"], options={"require": ["exp", "iat"]}
            )
        except jwt.ExpiredSignatureError:
            raise unauthorized("The access token has expired.") from None
        except jwt.InvalidTokenError:
            raise unauthorized("The access token is not valid.") from None
        if claims["iat"] < int(self._not_before):
            raise unauthorized("The access token has expired.")
        user = str(claims["iam_id"])
        key = next((k for k, u in self._api_tokens.items() if u == user), "")
        return Principal(user, key)

    def _check_access_token(self, token: str) -> Principal:
        with self._lock:
            entry = self._access_tokens.get(token)
        if entry is None or time.time() - entry[1] > self.token_ttl_seconds:
            raise unauthorized("The access token is not valid or has expired.")
        return entry[0]

    def _drop_expired_locked(self) -> None:
        cutoff = time.time() - self.token_ttl_seconds
        for token in [t for t, (_, issued) in self._access_tokens.items() if issued < cutoff]:
            del self._access_tokens[token]


def unauthorized(message: str) -> HttpError:
    return HttpError(401, message, "unauthorized")
