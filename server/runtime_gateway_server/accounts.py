"""Accounts: validation, masking, and server-held account files in the SDK's layout.

A server-held account file has exactly the layout of `~/.qiskit/qiskit-ibm.json`
(`{name: {channel, url, token, instance, proxies, verify, channel_strategy,
is_default_account}}`), so an operator can mount an existing one. Each gateway API key owns
one file; writes are atomic (temporary file + rename), mode 0600, serialized across
threads and processes by an exclusive lock on a sibling lock file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
import structlog

from runtime_gateway_server.errors import GatewayError, invalid_argument
from runtime_gateway_server.limits import MAX_INSTANCE, check_length, excerpt

log = structlog.get_logger("runtime_gateway_server.accounts")

CHANNELS = ("ibm_quantum", "ibm_cloud", "ibm_quantum_platform", "local")
IBM_QUANTUM_URL = "https://auth.quantum-computing.ibm.com/api"
IBM_CLOUD_URL = "https://cloud.ibm.com"
DEFAULT_URLS = {
    "ibm_quantum": IBM_QUANTUM_URL,
    "ibm_cloud": IBM_CLOUD_URL,
    "ibm_quantum_platform": IBM_CLOUD_URL,
}
DEFAULT_NAMES = {
    "ibm_quantum": "default-ibm-quantum",
    "ibm_cloud": "default-ibm-cloud",
    "ibm_quantum_platform": "default-ibm-quantum-platform",
}
CHANNEL_STRATEGIES = ("q-ctrl", "default")


@dataclass(frozen=True)
class Account:
    channel: str
    token: str = field(repr=False)
    url: str = ""
    instance: str | None = None
    name: str | None = None
    proxies: dict[str, Any] | None = None
    verify: bool = True
    channel_strategy: str | None = None
    is_default: bool = False

    @property
    def masked_token(self) -> str:
        return mask(self.token)

    @cached_property
    def key(self) -> str:
        """Identifies the credentials (for caches and idempotency) without holding the token."""
        material = json.dumps(
            [self.channel, self.url, self.instance, self.token, self.proxies, self.verify],
            sort_keys=True,
        )
        return hashlib.sha256(material.encode()).hexdigest()[:32]

    def with_defaults(self) -> Account:
        return replace(self, url=self.url or DEFAULT_URLS.get(self.channel, ""))

    def validate(self, prefix: str = "account") -> Account:
        """Checks the account as the SDK does; INVALID_ARGUMENT naming the field otherwise."""
        if self.channel not in CHANNELS:
            raise invalid_argument(
                f"{prefix}.channel",
                f"must be one of {', '.join(CHANNELS)}, got {excerpt(self.channel)}",
            )
        if self.channel != "local" and (not isinstance(self.token, str) or not self.token.strip()):
            raise invalid_argument(f"{prefix}.token", "must be a non-empty string")
        if self.channel != "local":
            check_account_url(f"{prefix}.url", self.url)
        check_instance(self.channel, self.instance, f"{prefix}.instance")
        if self.channel_strategy is not None:
            if self.channel_strategy not in CHANNEL_STRATEGIES:
                raise invalid_argument(
                    f"{prefix}.channel_strategy",
                    f"must be one of {', '.join(CHANNEL_STRATEGIES)}, "
                    f"got {excerpt(self.channel_strategy)}",
                )
            if self.channel != "ibm_cloud":
                raise invalid_argument(
                    f"{prefix}.channel_strategy", "is only supported on the ibm_cloud channel"
                )
        if self.proxies is not None:
            urls = self.proxies.get("urls")
            if urls is not None and not isinstance(urls, dict):
                raise invalid_argument(f"{prefix}.proxies.urls", "must map protocols to proxy URLs")
            if bool(self.proxies.get("username_ntlm")) != bool(self.proxies.get("password_ntlm")):
                raise invalid_argument(
                    f"{prefix}.proxies", "username_ntlm and password_ntlm go together"
                )
        return self

    def to_saved(self) -> dict[str, Any]:
        """The entry as the SDK writes it (non-None fields, sorted by the writer)."""
        entry: dict[str, Any] = {"channel": self.channel, "url": self.url, "token": self.token}
        if self.instance:
            entry["instance"] = self.instance
        if self.proxies:
            entry["proxies"] = self.proxies
        entry["verify"] = self.verify
        if self.channel_strategy:
            entry["channel_strategy"] = self.channel_strategy
        if self.is_default:
            entry["is_default_account"] = True
        return entry

    @classmethod
    def from_saved(cls, name: str, entry: dict[str, Any]) -> Account:
        if not isinstance(entry, dict):
            raise GatewayError(
                grpc.StatusCode.FAILED_PRECONDITION,
                "INVALID_ACCOUNT",
                f"saved account {name!r} is not a JSON object",
            )
        return cls(
            channel=str(entry.get("channel", "")),
            token=str(entry.get("token", "")),
            url=str(entry.get("url") or DEFAULT_URLS.get(str(entry.get("channel")), "")),
            instance=entry.get("instance") or None,
            name=name,
            proxies=entry.get("proxies"),
            verify=bool(entry.get("verify", True)),
            channel_strategy=entry.get("channel_strategy"),
            is_default=bool(entry.get("is_default_account", False)),
        )


def mask(token: str) -> str:
    if not token:
        return ""
    visible = 4 if len(token) >= 12 else 0
    return "*" * (len(token) - visible) + token[len(token) - visible :]


# crn:version:cname:ctype:service-name:location:scope:service-instance:resource-type:resource
# The first eight fields are required; the location becomes part of the runtime's host name.
_CRN = re.compile(
    r"crn:[A-Za-z0-9]+:[A-Za-z0-9_.-]+:[A-Za-z0-9_.-]+:[A-Za-z0-9_.-]+:[a-z0-9-]+"
    r":[A-Za-z0-9_./-]+:[A-Za-z0-9_.-]+:[A-Za-z0-9_.-]*:[A-Za-z0-9_./-]*"
)
_HGP_PART = re.compile(r"[A-Za-z0-9_.-]+")


def check_account_url(field: str, url: str) -> None:
    """An account's URL: http(s), a host, no user information, query or fragment, no
    backslash or `..` segment, a port in 1-65535. The upstream hosts are derived from it (or
    it is used as is), so anything a URL parser could read two ways is refused outright."""
    problem = ""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        parts, problem = None, "must be an http(s) URL"
    port = None
    if parts is not None:
        try:
            port = parts.port  # ValueError for a port that is not a number or out of range
        except ValueError:
            problem = "must have a port between 1 and 65535"
    if parts is not None and not problem:
        if parts.scheme not in ("http", "https") or not parts.hostname:
            problem = "must be an http(s) URL"
        elif "@" in parts.netloc:
            problem = "must not carry user information (user@host)"
        elif "\\" in url:
            problem = "must not contain a backslash"
        elif parts.query or parts.fragment or "?" in url or "#" in url:
            problem = "must not have a query or a fragment"
        elif ".." in parts.path.split("/"):
            problem = "must not contain '..' path segments"
        elif port == 0:
            problem = "must not use port 0"
    if problem:
        raise invalid_argument(field, f"{problem}, got {excerpt(url)}")


def check_instance(channel: str, instance: str | None, field_name: str) -> None:
    if not instance:
        return
    check_length(field_name, instance, MAX_INSTANCE)
    if channel == "ibm_quantum":
        parts = instance.split("/")
        if len(parts) != 3 or not all(_HGP_PART.fullmatch(p) for p in parts):
            raise invalid_argument(
                field_name, f"must be hub/group/project, got {excerpt(instance)}"
            )
    elif channel in ("ibm_cloud", "ibm_quantum_platform", "local"):
        if not _CRN.fullmatch(instance):
            raise invalid_argument(
                field_name,
                "must be an IBM Cloud CRN (crn:v1:bluemix:public:quantum-computing:REGION:"
                f"a/ACCOUNT:INSTANCE::), got {excerpt(instance)}",
            )


class AccountFile:
    """One account file in the SDK's layout."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # files hold tokens
        lock_path = self.path.with_name(self.path.name + ".lock")
        with self._lock:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    def _read(self) -> dict[str, Any]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {}
        try:
            data = json.loads(text) if text.strip() else {}
        except ValueError:
            raise GatewayError(
                grpc.StatusCode.FAILED_PRECONDITION,
                "INVALID_ACCOUNT",
                "the server-held account file is not valid JSON",
            ) from None
        if not isinstance(data, dict):
            raise GatewayError(
                grpc.StatusCode.FAILED_PRECONDITION,
                "INVALID_ACCOUNT",
                "the server-held account file is not a JSON object",
            )
        return data

    def _write(self, data: dict[str, Any]) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(data, handle, sort_keys=True, indent=4)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def accounts(self) -> dict[str, Account]:
        with self._locked():
            data = self._read()
        found = {}
        for name, entry in data.items():
            try:
                found[name] = Account.from_saved(name, entry).validate(f"account {name!r}")
            except GatewayError as error:
                log.warning("saved_account_invalid", account=name, error=error.message)
        return found

    def get(self, name: str) -> Account:
        with self._locked():
            entry = self._read().get(name)
        if entry is None:
            raise GatewayError(
                grpc.StatusCode.NOT_FOUND,
                "ACCOUNT_NOT_FOUND",
                f"no server-held account is named {name!r}",
            )
        return Account.from_saved(name, entry).validate(f"account {name!r}")

    def save(self, account: Account, overwrite: bool, set_as_default: bool) -> Account:
        name = account.name or DEFAULT_NAMES.get(account.channel)
        if not name:
            raise invalid_argument("account.name", f"is required for channel {account.channel}")
        account = replace(account, name=name, is_default=set_as_default).validate()
        with self._locked():
            data = self._read()
            if name in data and not overwrite:
                raise GatewayError(
                    grpc.StatusCode.ALREADY_EXISTS,
                    "ACCOUNT_ALREADY_EXISTS",
                    f"Named account ({name}) already exists. Set overwrite=True to overwrite.",
                )
            if set_as_default:
                others = [
                    n
                    for n, e in data.items()
                    if n != name and isinstance(e, dict) and e.get("is_default_account")
                ]
                if others and not overwrite:
                    raise GatewayError(
                        grpc.StatusCode.ALREADY_EXISTS,
                        "ACCOUNT_ALREADY_EXISTS",
                        f"default_account ({name}) already exists. "
                        "Set overwrite=True to overwrite.",
                    )
                for other in others:
                    data[other].pop("is_default_account", None)
            data[name] = account.to_saved()
            self._write(data)
        return account

    def delete(self, name: str) -> bool:
        with self._locked():
            data = self._read()
            if name not in data:
                return False
            del data[name]
            self._write(data)
        return True


@dataclass(frozen=True)
class ApiKey:
    """An operator-issued gateway API key: its id and the SHA-256 of its secret."""

    key_id: str
    sha256: str


class AccountRegistry:
    """Server-held accounts, one file per gateway API key (`<dir>/<key id>.json`)."""

    def __init__(self, directory: Path | None, api_keys: list[ApiKey]) -> None:
        self.directory = directory
        self._keys = {k.sha256.lower(): k for k in api_keys}
        self._files: dict[str, AccountFile] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.directory is not None and bool(self._keys)

    def key_for(self, presented: str | None) -> ApiKey:
        if not self.enabled:
            raise GatewayError(
                grpc.StatusCode.FAILED_PRECONDITION,
                "NOT_SUPPORTED",
                "server-held accounts are not enabled on this gateway (the operator configures "
                "--accounts-dir and --api-key)",
            )
        if not presented:
            raise GatewayError(
                grpc.StatusCode.UNAUTHENTICATED,
                "GATEWAY_API_KEY_INVALID",
                "server-held accounts need a gateway API key in the x-gateway-api-key metadata",
            )
        digest = hashlib.sha256(presented.encode()).hexdigest()
        for known, key in self._keys.items():
            if _equal(known, digest):
                return key
        raise GatewayError(
            grpc.StatusCode.UNAUTHENTICATED,
            "GATEWAY_API_KEY_INVALID",
            "the gateway API key is not valid",
        )

    def file(self, key: ApiKey) -> AccountFile:
        assert self.directory is not None
        with self._lock:
            found = self._files.get(key.key_id)
            if found is None:
                found = AccountFile(self.directory / f"{key.key_id}.json")
                self._files[key.key_id] = found
            return found


def _equal(a: str, b: str) -> bool:
    import hmac

    return hmac.compare_digest(a.encode(), b.encode())
