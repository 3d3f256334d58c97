"""Which account a call acts for, from its metadata (never from its message).

authorization: Bearer <IBM token or API key>   x-runtime-channel, -instance, -url
x-runtime-account: <server-held account name>  (with x-gateway-api-key)
neither: the embedded local runtime, when the gateway runs one
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import grpc

from runtime_gateway_server.accounts import (
    CHANNELS,
    DEFAULT_NAMES,
    Account,
    AccountRegistry,
    check_instance,
)
from runtime_gateway_server.errors import GatewayError, invalid_argument
from runtime_gateway_server.limits import (
    MAX_ID,
    MAX_INSTANCE,
    MAX_NAME,
    MAX_SECRET,
    MAX_URL,
    check_length,
    excerpt,
)
from runtime_gateway_server.logs import SECRETS

AUTHORIZATION = "authorization"
CHANNEL = "x-runtime-channel"
INSTANCE = "x-runtime-instance"
URL = "x-runtime-url"
ACCOUNT = "x-runtime-account"
API_KEY = "x-gateway-api-key"
REQUEST_ID = "x-request-id"
# Bounds on metadata values (grpc itself admits 8 KB of metadata by default; these are
# per value, and tighter where the value has a shape).
METADATA_BOUNDS = {
    AUTHORIZATION: MAX_SECRET + len("Bearer "),
    API_KEY: MAX_SECRET,
    CHANNEL: MAX_NAME,
    INSTANCE: MAX_INSTANCE,
    URL: MAX_URL,
    ACCOUNT: MAX_NAME,
    REQUEST_ID: MAX_ID,
}


@dataclass(frozen=True)
class CallCredentials:
    token: str | None = None
    channel: str | None = None
    instance: str | None = None
    url: str | None = None
    account_name: str | None = None
    api_key: str | None = None
    request_id: str = ""


def from_metadata(metadata: Iterable[Any] | None) -> CallCredentials:
    values: dict[str, str] = {}
    for item in metadata or ():
        key, value = item[0], item[1]
        if isinstance(value, bytes):
            continue  # binary headers carry nothing of ours
        values[key.lower()] = value.strip()
    for key, maximum in METADATA_BOUNDS.items():
        if key in values:
            check_length(key, values[key], maximum)  # names the metadata key as the field
    token = None
    authorization = values.get(AUTHORIZATION)
    if authorization:
        scheme, _, credential = authorization.partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise GatewayError(
                grpc.StatusCode.UNAUTHENTICATED,
                "CREDENTIALS_MISSING",
                "the authorization metadata must be 'Bearer <IBM API token or key>'",
            )
        token = credential.strip()
        SECRETS.add(token)
    api_key = values.get(API_KEY) or None
    SECRETS.add(api_key)
    channel = values.get(CHANNEL) or None
    if channel is not None and channel not in CHANNELS:
        raise invalid_argument(
            CHANNEL, f"must be one of {', '.join(CHANNELS)}, got {excerpt(channel)}"
        )
    instance = values.get(INSTANCE) or None
    if instance is not None:
        check_instance(channel or "ibm_quantum_platform", instance, INSTANCE)
    return CallCredentials(
        token=token,
        channel=channel,
        instance=instance,
        url=values.get(URL) or None,
        account_name=values.get(ACCOUNT) or None,
        api_key=api_key,
        request_id=values.get(REQUEST_ID, ""),
    )


# An account built from metadata: its fields are the metadata keys the caller sent.
_METADATA_FIELDS = {
    "metadata.url": URL,
    "metadata.instance": INSTANCE,
    "metadata.channel": CHANNEL,
    "metadata.token": AUTHORIZATION,
    "metadata.channel_strategy": CHANNEL,
}


def _metadata_field(error: GatewayError) -> GatewayError:
    """The same error naming the metadata key (`x-runtime-url`) instead of the account field."""
    key = _METADATA_FIELDS.get(error.field or "")
    if key is None:
        return error
    message = error.message.replace(f"{error.field}:", f"{key}:", 1)
    return GatewayError(error.code, error.reason, message, field=key, metadata=error.metadata)


class AccountResolver:
    def __init__(self, registry: AccountRegistry, local: Account | None) -> None:
        self.registry = registry
        self.local = local

    def resolve(self, creds: CallCredentials) -> Account:
        if creds.account_name:
            key = self.registry.key_for(creds.api_key)
            account = self.registry.file(key).get(creds.account_name)
            if creds.instance:
                check_instance(account.channel, creds.instance, INSTANCE)
                account = replace(account, instance=creds.instance)
            return account
        if creds.channel == "local" or (
            creds.token is None and creds.channel is None and self.local
        ):
            if self.local is None:
                raise GatewayError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "NOT_SUPPORTED",
                    "this gateway runs no local runtime; send IBM credentials",
                )
            if creds.instance:
                return replace(self.local, instance=creds.instance)
            return self.local
        if creds.token:
            channel = creds.channel or "ibm_quantum_platform"
            account = Account(
                channel=channel, token=creds.token, url=creds.url or "", instance=creds.instance
            ).with_defaults()
            try:
                return account.validate(prefix="metadata")
            except GatewayError as error:
                raise _metadata_field(error) from None
        if creds.channel:
            raise GatewayError(
                grpc.StatusCode.UNAUTHENTICATED,
                "CREDENTIALS_MISSING",
                f"channel {creds.channel} needs a token: send 'authorization: Bearer <token>' "
                f"or the name of a server-held account in {ACCOUNT}",
            )
        raise GatewayError(
            grpc.StatusCode.UNAUTHENTICATED,
            "CREDENTIALS_MISSING",
            "no credentials: send 'authorization: Bearer <token>' with x-runtime-channel, or "
            f"{ACCOUNT} with {API_KEY}",
        )


def default_name(channel: str) -> str:
    return DEFAULT_NAMES.get(channel, "")
