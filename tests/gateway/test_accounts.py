"""Server-held accounts: API keys, isolation, the SDK's file layout, concurrent writers."""

from __future__ import annotations

import json
import os
import stat
import threading
import uuid
from pathlib import Path

import grpc
import pytest

from runtime_gateway.v1 import accounts_pb2, backends_pb2
from tests.gateway.conftest import API_KEYS, DOMAIN, UPSTREAM_TOKEN, GatewayClient, error_info


def _key(team: str) -> list[tuple[str, str]]:
    return [("x-gateway-api-key", API_KEYS[team])]


def _save(gateway: GatewayClient, team: str, name: str, **fields) -> accounts_pb2.Account:
    account = accounts_pb2.Account(
        name=name,
        channel=accounts_pb2.CHANNEL_IBM_QUANTUM_PLATFORM,
        token=UPSTREAM_TOKEN,
        url=f"http://{DOMAIN}",
        instance=gateway.upstream.crn,
    )
    request = accounts_pb2.SaveAccountRequest(account=account, **fields)
    return gateway.accounts.SaveAccount(request, metadata=_key(team), timeout=30).account


def test_save_list_use_delete(gateway: GatewayClient, accounts_dir: Path) -> None:
    name = f"acct-{uuid.uuid4().hex[:6]}"
    saved = _save(gateway, "team-a", name)
    assert saved.name == name and saved.token == ""
    assert (
        saved.masked_token.endswith(UPSTREAM_TOKEN[-4:])
        and UPSTREAM_TOKEN not in saved.masked_token
    )
    listed = gateway.accounts.ListAccounts(
        accounts_pb2.ListAccountsRequest(name=name), metadata=_key("team-a"), timeout=30
    )
    assert [a.name for a in listed.accounts] == [name]
    # Calls act for the account by name.
    md = [*_key("team-a"), ("x-runtime-account", name)]
    reply = gateway.backends.ListBackends(
        backends_pb2.ListBackendsRequest(), metadata=md, timeout=30
    )
    assert "ibm_torino" in {b.name for b in reply.backends}
    active = gateway.accounts.GetActiveAccount(
        accounts_pb2.GetActiveAccountRequest(), metadata=md, timeout=30
    )
    assert active.account.name == name and active.account.token == ""
    verified = gateway.accounts.VerifyAccount(
        accounts_pb2.VerifyAccountRequest(), metadata=md, timeout=30
    )
    assert verified.instance.id == gateway.upstream.crn and verified.instance.plan == "open"
    deleted = gateway.accounts.DeleteAccount(
        accounts_pb2.DeleteAccountRequest(name=name), metadata=_key("team-a"), timeout=30
    )
    assert deleted.deleted
    again = gateway.accounts.DeleteAccount(
        accounts_pb2.DeleteAccountRequest(name=name), metadata=_key("team-a"), timeout=30
    )
    assert not again.deleted
    with pytest.raises(grpc.RpcError) as failure:
        gateway.backends.ListBackends(backends_pb2.ListBackendsRequest(), metadata=md, timeout=30)
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(failure.value)[0] == "ACCOUNT_NOT_FOUND"


def test_each_key_sees_only_its_own_accounts(gateway: GatewayClient) -> None:
    name = f"mine-{uuid.uuid4().hex[:6]}"
    _save(gateway, "team-a", name)
    theirs = gateway.accounts.ListAccounts(
        accounts_pb2.ListAccountsRequest(), metadata=_key("team-b"), timeout=30
    )
    assert name not in {a.name for a in theirs.accounts}
    md = [*_key("team-b"), ("x-runtime-account", name)]
    with pytest.raises(grpc.RpcError) as failure:
        gateway.backends.ListBackends(backends_pb2.ListBackendsRequest(), metadata=md, timeout=30)
    assert error_info(failure.value)[0] == "ACCOUNT_NOT_FOUND"


@pytest.mark.parametrize(
    "metadata",
    [[], [("x-gateway-api-key", "not-a-key")], [("x-gateway-api-key", API_KEYS["team-a"] + "x")]],
)
def test_account_operations_need_a_valid_api_key(gateway: GatewayClient, metadata) -> None:
    with pytest.raises(grpc.RpcError) as failure:
        gateway.accounts.ListAccounts(
            accounts_pb2.ListAccountsRequest(), metadata=metadata, timeout=30
        )
    assert failure.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_info(failure.value)[0] == "GATEWAY_API_KEY_INVALID"


def test_overwrite_and_default_semantics(gateway: GatewayClient) -> None:
    name = f"dup-{uuid.uuid4().hex[:6]}"
    _save(gateway, "team-b", name)
    with pytest.raises(grpc.RpcError) as failure:
        _save(gateway, "team-b", name)
    assert failure.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_info(failure.value)[0] == "ACCOUNT_ALREADY_EXISTS"
    assert _save(gateway, "team-b", name, overwrite=True, set_as_default=True).is_default
    other = f"dup2-{uuid.uuid4().hex[:6]}"
    with pytest.raises(grpc.RpcError):  # another default needs overwrite=True
        _save(gateway, "team-b", other, set_as_default=True)
    assert _save(gateway, "team-b", other, set_as_default=True, overwrite=True).is_default
    listed = gateway.accounts.ListAccounts(
        accounts_pb2.ListAccountsRequest(), metadata=_key("team-b"), timeout=30
    )
    assert [a.name for a in listed.accounts if a.is_default] == [other]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"channel": accounts_pb2.CHANNEL_UNSPECIFIED}, "account.channel"),
        ({"token": ""}, "account.token"),
        ({"url": "ftp://x"}, "account.url"),
        ({"instance": "not-a-crn"}, "account.instance"),
        (
            {"channel": accounts_pb2.CHANNEL_IBM_QUANTUM, "instance": "hub/group"},
            "account.instance",
        ),
        ({"channel_strategy": "fancy"}, "account.channel_strategy"),
    ],
)
def test_invalid_accounts_are_refused(gateway: GatewayClient, fields, field) -> None:
    base = {
        "name": "bad",
        "channel": accounts_pb2.CHANNEL_IBM_CLOUD,
        "token": "some-token-123",
        "url": "https://cloud.ibm.com",
        "instance": gateway.upstream.crn,
    }
    request = accounts_pb2.SaveAccountRequest(account=accounts_pb2.Account(**{**base, **fields}))
    with pytest.raises(grpc.RpcError) as failure:
        gateway.accounts.SaveAccount(request, metadata=_key("team-a"), timeout=30)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(failure.value) == ("INVALID_ARGUMENT", field)


def test_file_has_the_sdk_layout_and_mode_0600(gateway: GatewayClient, accounts_dir: Path) -> None:
    name = f"sdk-{uuid.uuid4().hex[:6]}"
    _save(gateway, "team-a", name)
    path = accounts_dir / "team-a.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    entry = json.loads(path.read_text())[name]
    assert entry == {
        "channel": "ibm_quantum_platform",
        "instance": gateway.upstream.crn,
        "token": UPSTREAM_TOKEN,
        "url": f"http://{DOMAIN}",
        "verify": True,
    }
    # The real SDK reads the file the gateway wrote.
    from qiskit_ibm_runtime import QiskitRuntimeService

    saved = QiskitRuntimeService.saved_accounts(filename=str(path), name=name)
    assert saved[name]["instance"] == gateway.upstream.crn


def test_an_sdk_written_file_is_usable(gateway: GatewayClient, accounts_dir: Path) -> None:
    from qiskit_ibm_runtime import QiskitRuntimeService

    name = f"from-sdk-{uuid.uuid4().hex[:6]}"
    QiskitRuntimeService.save_account(
        channel="ibm_quantum_platform",
        token=UPSTREAM_TOKEN,
        url=f"http://{DOMAIN}",
        instance=gateway.upstream.crn,
        name=name,
        filename=str(accounts_dir / "team-b.json"),
    )
    md = [*_key("team-b"), ("x-runtime-account", name)]
    reply = gateway.backends.ListBackends(
        backends_pb2.ListBackendsRequest(), metadata=md, timeout=30
    )
    assert reply.backends


def test_concurrent_writers_lose_nothing(gateway: GatewayClient, accounts_dir: Path) -> None:
    prefix = f"conc-{uuid.uuid4().hex[:4]}"
    errors: list[BaseException] = []

    def save(i: int) -> None:
        try:
            _save(gateway, "team-a", f"{prefix}-{i}")
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=save, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    names = set(json.loads((accounts_dir / "team-a.json").read_text()))
    assert {f"{prefix}-{i}" for i in range(16)} <= names
