"""Account files and the account-selection order, as the 0.21 SDK code does them."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from runtime_gateway import (
    AccountAlreadyExistsError,
    AccountNotFoundError,
    InvalidAccountError,
    QiskitRuntimeService,
)

CRN = "crn:v1:bluemix:public:quantum-computing:us-east:a/abc:inst::"
discover = QiskitRuntimeService._discover_account


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("QISKIT_IBM_TOKEN", "QISKIT_IBM_URL", "QISKIT_IBM_INSTANCE", "QISKIT_IBM_CHANNEL"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def _select(**kwargs):
    args = {
        k: kwargs.get(k)
        for k in (
            "token",
            "url",
            "instance",
            "channel",
            "filename",
            "name",
            "proxies",
            "verify",
            "channel_strategy",
        )
    }
    return discover(**args)


def test_save_writes_the_sdk_layout_with_mode_0600(home: Path) -> None:
    QiskitRuntimeService.save_account(
        channel="ibm_quantum", token="QTOKEN", instance="ibm-q/open/main"
    )
    QiskitRuntimeService.save_account(
        channel="ibm_cloud", token="APIKEY", instance=CRN, set_as_default=True
    )
    path = home / ".qiskit" / "qiskit-ibm.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert json.loads(path.read_text()) == {
        "default-ibm-cloud": {"channel": "ibm_cloud", "instance": CRN, "is_default_account": True,
                              "token": "APIKEY", "url": "https://cloud.ibm.com"},
        "default-ibm-quantum": {"channel": "ibm_quantum", "instance": "ibm-q/open/main", "token": "QTOKEN",
                                "url": "https://auth.quantum-computing.ibm.com/api"},
    }  # fmt: skip


def test_overwrite_and_default_rules() -> None:
    QiskitRuntimeService.save_account(
        channel="ibm_cloud", token="A1", instance=CRN, name="a", set_as_default=True
    )
    with pytest.raises(AccountAlreadyExistsError, match=r"Named account \(a\) already exists"):
        QiskitRuntimeService.save_account(channel="ibm_cloud", token="A2", instance=CRN, name="a")
    with pytest.raises(AccountAlreadyExistsError, match=r"default_account \(b\) already exists"):
        QiskitRuntimeService.save_account(
            channel="ibm_cloud", token="B", instance=CRN, name="b", set_as_default=True
        )
    QiskitRuntimeService.save_account(
        channel="ibm_cloud", token="B", instance=CRN, name="b", set_as_default=True, overwrite=True
    )
    assert _select().token == "B"  # the default flag moved to b
    assert QiskitRuntimeService.delete_account(name="a") is True
    assert QiskitRuntimeService.delete_account(name="a") is False


def test_validation_errors() -> None:
    with pytest.raises(InvalidAccountError, match="Invalid `channel` value"):
        QiskitRuntimeService.save_account(channel="ibm_moon", token="x")
    with pytest.raises(InvalidAccountError, match="Invalid `token` value"):
        QiskitRuntimeService.save_account(channel="ibm_cloud", token="", instance=CRN)
    with pytest.raises(InvalidAccountError, match="hub/group/project"):
        QiskitRuntimeService.save_account(channel="ibm_quantum", token="t", instance="hub/group")
    with pytest.raises(InvalidAccountError, match="Invalid `instance` value"):
        QiskitRuntimeService.save_account(channel="ibm_cloud", token="t")  # ibm_cloud requires one
    with pytest.raises(ValueError, match="NTLM"):
        QiskitRuntimeService.save_account(
            channel="ibm_cloud", token="t", instance=CRN, proxies={"username_ntlm": "u"}
        )


def test_selection_order() -> None:
    save = QiskitRuntimeService.save_account
    save(channel="ibm_quantum", token="Q-DEFAULT", instance="h/g/p")
    save(channel="ibm_cloud", token="C-DEFAULT", instance=CRN)
    save(channel="ibm_cloud", token="C-NAMED", instance=CRN, name="named")
    # 1. the account with the input name
    assert _select(name="named").token == "C-NAMED"
    with pytest.raises(
        AccountNotFoundError, match="Account with the name nope does not exist on disk"
    ):
        _select(name="nope")
    # 2. the default account for the channel (channel, no token)
    assert _select(channel="ibm_quantum").token == "Q-DEFAULT"
    # 3. channel and token: a new account
    fresh = _select(channel="ibm_cloud", token="NEW", instance=CRN)
    assert (fresh.token, fresh.url) == ("NEW", "https://cloud.ibm.com")
    # token or url without a channel is an error
    with pytest.raises(ValueError, match="'channel' is required"):
        _select(token="x")
    # nothing given: the default name of the default channel (ibm_cloud)
    assert _select().token == "C-DEFAULT"
    # 4. an account marked default (is_default_account) wins over the channel's default name
    save(
        channel="ibm_quantum",
        token="Q-FLAGGED",
        instance="h/g/p",
        name="flagged",
        set_as_default=True,
    )
    assert _select().token == "Q-FLAGGED"


def test_environment_account_beats_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    QiskitRuntimeService.save_account(
        channel="ibm_cloud", token="FROM-FILE", instance=CRN, set_as_default=True
    )
    monkeypatch.setenv("QISKIT_IBM_TOKEN", "FROM-ENV")
    assert _select().token == "FROM-FILE"  # 0.21 needs QISKIT_IBM_URL too
    monkeypatch.setenv("QISKIT_IBM_URL", "https://cloud.ibm.com")
    monkeypatch.setenv("QISKIT_IBM_INSTANCE", CRN)
    selected = _select()
    assert (selected.token, selected.instance, selected.channel) == ("FROM-ENV", CRN, "ibm_cloud")


def test_fixed_default_names_then_not_found() -> None:
    with pytest.raises(AccountNotFoundError, match="Unable to find account"):
        _select()
    QiskitRuntimeService.save_account(channel="ibm_quantum", token="ONLY-Q", instance="h/g/p")
    assert _select().token == "ONLY-Q"  # default-ibm-quantum comes last


def test_instance_proxies_verify_override_the_loaded_account() -> None:
    QiskitRuntimeService.save_account(channel="ibm_quantum", token="Q", instance="a/b/c")
    selected = _select(
        instance="x/y/z", proxies={"urls": {"https": "http://proxy:8080"}}, verify=False
    )
    assert (selected.instance, selected.proxies["urls"]["https"], selected.verify) == (
        "x/y/z",
        "http://proxy:8080",
        False,
    )


def test_saved_accounts_filters(home: Path) -> None:
    QiskitRuntimeService.save_account(channel="ibm_cloud", token="C", instance=CRN)
    QiskitRuntimeService.save_account(
        channel="ibm_quantum", token="Q", instance="a/b/c", name="mine"
    )
    assert set(QiskitRuntimeService.saved_accounts()) == {"default-ibm-cloud", "mine"}
    assert set(QiskitRuntimeService.saved_accounts(default=True)) == {"default-ibm-cloud"}
    assert set(QiskitRuntimeService.saved_accounts(channel="ibm_quantum")) == {"mine"}
    assert QiskitRuntimeService.saved_accounts(name="mine")["mine"]["verify"] is True
    other = home / "elsewhere.json"
    QiskitRuntimeService.save_account(
        channel="ibm_cloud", token="E", instance=CRN, filename=str(other)
    )
    assert set(QiskitRuntimeService.saved_accounts(filename=str(other))) == {"default-ibm-cloud"}


def test_files_are_shared_with_the_real_sdk(home: Path) -> None:
    import qiskit_ibm_runtime

    path = str(home / "shared.json")
    # The SDK writes (0.51: ibm_cloud entries are common ground), this client reads.
    qiskit_ibm_runtime.QiskitRuntimeService.save_account(
        channel="ibm_cloud", token="SDK-TOKEN", instance=CRN, filename=path, name="sdk"
    )
    assert QiskitRuntimeService.saved_accounts(filename=path)["sdk"]["token"] == "SDK-TOKEN"
    assert _select(filename=path, name="sdk").instance == CRN
    # This client writes, the SDK reads.
    QiskitRuntimeService.save_account(
        channel="ibm_cloud", token="OURS", instance=CRN, filename=path, name="ours"
    )
    theirs = qiskit_ibm_runtime.QiskitRuntimeService.saved_accounts(filename=path)
    assert theirs["ours"]["token"] == "OURS" and theirs["sdk"]["token"] == "SDK-TOKEN"
