"""Saved accounts exactly as qiskit-ibm-runtime 0.21 keeps them (`~/.qiskit/qiskit-ibm.json`).

The file layout, validation, default names and the account-selection order follow the
0.21.2 code (see `docs/ibm-runtime-rest.md` and the contract's section 5), so a file the SDK
wrote is read here and the other way round. Two channels are added: `ibm_quantum_platform`
(the SDK's current default) and `local` (the gateway's local runtime, no token).
Unlike the SDK, writes are atomic and the file is created with mode 0600.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from runtime_gateway.exceptions import (
    AccountAlreadyExistsError,
    AccountNotFoundError,
    InvalidAccountError,
)

DEFAULT_FILE = os.path.join("~", ".qiskit", "qiskit-ibm.json")  # expanded on use: HOME may change
CHANNELS = ("ibm_cloud", "ibm_quantum", "ibm_quantum_platform", "local")
DEFAULT_CHANNEL = "ibm_cloud"  # 0.21's default
IBM_QUANTUM_URL = "https://auth.quantum-computing.ibm.com/api"
IBM_CLOUD_URL = "https://cloud.ibm.com"
DEFAULT_NAMES = {
    "ibm_cloud": "default-ibm-cloud",
    "ibm_quantum": "default-ibm-quantum",
    "ibm_quantum_platform": "default-ibm-quantum-platform",
    "local": "default-local",
}
CHANNEL_STRATEGIES = ("q-ctrl", "default")


def default_url(channel: str) -> str:
    return IBM_QUANTUM_URL if channel == "ibm_quantum" else IBM_CLOUD_URL


@dataclass
class Account:
    channel: str
    token: str | None
    url: str | None = None
    instance: str | None = None
    proxies: dict[str, Any] | None = None
    verify: bool | None = None
    channel_strategy: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # fields of newer SDKs, kept on rewrite

    def __post_init__(self) -> None:
        self.url = self.url or default_url(self.channel)

    def to_saved_format(self) -> dict[str, Any]:
        """As the SDK writes it (and as `active_account()` returns it): non-None fields."""
        data: dict[str, Any] = {"channel": self.channel, "url": self.url, "token": self.token}
        for key in ("instance", "proxies", "verify", "channel_strategy"):
            value = getattr(self, key)
            if value is not None:
                data[key] = value
        data.update({k: v for k, v in self.extra.items() if v is not None})
        return data

    @classmethod
    def from_saved_format(cls, data: dict[str, Any]) -> Account:
        known = {"channel", "url", "token", "instance", "proxies", "verify", "channel_strategy"}
        extra = {k: v for k, v in data.items() if k not in known and k != "is_default_account"}
        return cls(
            channel=data.get("channel", ""),
            token=data.get("token"),
            url=data.get("url"),
            instance=data.get("instance"),
            proxies=data.get("proxies"),
            verify=data.get("verify"),
            channel_strategy=data.get("channel_strategy"),
            extra=extra,
        )

    def validate(self) -> Account:
        """The SDK's checks, with its messages."""
        if self.channel not in CHANNELS:
            raise InvalidAccountError(
                f"Invalid `channel` value. Expected one of {list(CHANNELS)}, got '{self.channel}'."
            )
        if self.channel != "local" and (not isinstance(self.token, str) or not self.token):
            raise InvalidAccountError(
                f"Invalid `token` value. Expected a non-empty string, got '{self.token}'."
            )
        try:
            urlparse(self.url or "")
        except ValueError as error:
            raise InvalidAccountError(f"Invalid `url` value: {error}") from None
        if self.channel == "ibm_quantum" and self.instance is not None:
            parts = self.instance.split("/")
            if len(parts) != 3 or not all(parts):
                raise InvalidAccountError(
                    "Invalid `instance` value. Expected hub/group/project format, "
                    f"got {self.instance}"
                )
        if self.channel == "ibm_cloud" and (
            not isinstance(self.instance, str) or not self.instance
        ):
            raise InvalidAccountError(
                f"Invalid `instance` value. Expected a non-empty string, got '{self.instance}'."
            )
        if self.channel_strategy not in (None, *CHANNEL_STRATEGIES):
            raise InvalidAccountError(
                f"Invalid `channel_strategy` value. Expected one of {list(CHANNEL_STRATEGIES)}, "
                f"got '{self.channel_strategy}'."
            )
        if self.proxies is not None:
            urls = self.proxies.get("urls")
            if urls is not None and not isinstance(urls, dict):
                raise ValueError(f"Invalid proxy configuration: urls must be a dict, got {urls!r}")
            if bool(self.proxies.get("username_ntlm")) != bool(self.proxies.get("password_ntlm")):
                raise ValueError(
                    "Invalid proxy configuration: NTLM user name and password go together"
                )
        return self


def _path(filename: str | None) -> Path:
    return Path(os.path.expanduser(filename or DEFAULT_FILE))


def read_all(filename: str | None) -> dict[str, dict[str, Any]]:
    path = _path(filename)
    if not path.exists():
        return {}
    text = path.read_text()
    data = json.loads(text) if text.strip() else {}
    return data if isinstance(data, dict) else {}


def _write_all(filename: str | None, data: dict[str, Any]) -> None:
    path = _path(filename)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, sort_keys=True, indent=4)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(
    account: Account,
    filename: str | None,
    name: str | None,
    overwrite: bool,
    set_as_default: bool | None,
) -> None:
    account.validate()
    name = name or DEFAULT_NAMES.get(account.channel, DEFAULT_NAMES["ibm_cloud"])
    data = read_all(filename)
    if name in data and not overwrite:
        raise AccountAlreadyExistsError(
            f"Named account ({name}) already exists. Set overwrite=True to overwrite."
        )
    entry = account.to_saved_format()
    if set_as_default:
        others = [n for n, e in data.items() if n != name and e.get("is_default_account")]
        if others and not overwrite:
            raise AccountAlreadyExistsError(
                f"default_account ({name}) already exists. Set overwrite=True to overwrite."
            )
        for other in others:
            data[other].pop("is_default_account", None)
        entry["is_default_account"] = True
    data[name] = entry
    _write_all(filename, data)


def delete(filename: str | None, name: str | None, channel: str | None) -> bool:
    data = read_all(filename)
    name = name or DEFAULT_NAMES.get(channel or DEFAULT_CHANNEL, DEFAULT_NAMES["ibm_cloud"])
    if name not in data:
        return False
    del data[name]
    _write_all(filename, data)
    return True


def listing(
    default: bool | None, channel: str | None, filename: str | None, name: str | None
) -> dict[str, dict[str, Any]]:
    """`saved_accounts()`: names kept by the SDK's rules (`default` is name-based)."""
    if channel is not None and channel not in CHANNELS:
        raise ValueError(f"'channel' can only be one of {', '.join(CHANNELS)}")
    found = {}
    defaults = {"default", *DEFAULT_NAMES.values()}
    for account_name, entry in read_all(filename).items():
        account = Account.from_saved_format(entry).validate()
        if default is not None and (account_name in defaults) != default:
            continue
        if channel is not None and account.channel != channel:
            continue
        if name is not None and account_name != name:
            continue
        found[account_name] = account.to_saved_format() | (
            {"verify": True} if account.verify is None else {}
        )
    return found


def _env_account(channel: str) -> Account | None:
    token = os.environ.get("QISKIT_IBM_TOKEN")
    url = os.environ.get("QISKIT_IBM_URL")
    if not token or not url:  # 0.21 needs both
        return None
    return Account(
        channel=channel, token=token, url=url, instance=os.environ.get("QISKIT_IBM_INSTANCE")
    )


def _default_of(data: dict[str, dict[str, Any]], channel: str | None) -> Account | None:
    if channel is None:
        for entry in data.values():
            if entry.get("is_default_account"):
                return Account.from_saved_format(entry)
        return None
    of_channel = [(n, e) for n, e in data.items() if e.get("channel") == channel]
    for _, entry in of_channel:
        if entry.get("is_default_account"):
            return Account.from_saved_format(entry)
    for account_name, entry in of_channel:
        if account_name == DEFAULT_NAMES.get(channel):
            return Account.from_saved_format(entry)
    return Account.from_saved_format(of_channel[-1][1]) if of_channel else None


def get(
    filename: str | None = None, name: str | None = None, channel: str | None = None
) -> Account:
    """The SDK's `AccountManager.get`: name, then environment, then the file's defaults."""
    data = read_all(filename)
    if name:
        if name not in data:
            raise AccountNotFoundError(f"Account with the name {name} does not exist on disk.")
        return Account.from_saved_format(data[name])
    channel_ = channel or os.environ.get("QISKIT_IBM_CHANNEL") or DEFAULT_CHANNEL
    from_env = _env_account(channel_)
    if from_env is not None:
        return from_env
    for candidate in (channel, channel_):  # the given channel (or any default), then channel_
        found = _default_of(data, candidate)
        if found is not None:
            return found
    for fixed in ("default-ibm-cloud", "default-ibm-quantum"):
        if fixed in data:
            return Account.from_saved_format(data[fixed])
    raise AccountNotFoundError(
        "Unable to find account. (None is saved or set in the environment; for the gateway's "
        'own local runtime use QiskitRuntimeService(channel="local").)'
    )
