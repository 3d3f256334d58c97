"""The gateway's plain modules, each on its own (no gRPC server)."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
import threading
import time
from pathlib import Path

import grpc
import pytest

from runtime_gateway_server.accounts import Account, AccountFile, mask
from runtime_gateway_server.cache import TTLCache
from runtime_gateway_server.credentials import from_metadata
from runtime_gateway_server.errors import GatewayError, to_status
from runtime_gateway_server.logs import SECRETS
from runtime_gateway_server.paging import Cursor, PageTokens
from runtime_gateway_server.upstream import (
    Deadline,
    HttpUpstream,
    Reply,
    RetryPolicy,
    error_from_reply,
)


# --- paging -----------------------------------------------------------------------------
def test_page_tokens_round_trip_and_resist_tampering() -> None:
    tokens = PageTokens(b"k" * 32)
    cursor = Cursor("f1", "2026-01-01T00:00:00Z", ["a", "b"], 42)
    token = tokens.encode(cursor)
    assert tokens.decode(token, "f1") == cursor
    for bad in (token[:-2], token + "x", "", "!!!"):
        with pytest.raises(GatewayError) as failure:
            tokens.decode(bad, "f1")
        assert failure.value.field == "page_token"
    with pytest.raises(GatewayError):
        tokens.decode(token, "other-filters")
    with pytest.raises(GatewayError):  # another gateway's secret
        PageTokens(b"z" * 32).decode(token, "f1")


# --- cache ------------------------------------------------------------------------------
def test_cache_single_flight_and_ttl() -> None:
    cache: TTLCache[int] = TTLCache(ttl_seconds=1.0)
    calls = []

    def load() -> int:
        calls.append(1)
        time.sleep(0.1)
        return len(calls)

    threads = [threading.Thread(target=cache.get_or_load, args=("k", load)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1  # eight concurrent misses, one load
    assert cache.get_or_load("k", load) == 1
    time.sleep(1.05)
    assert cache.get_or_load("k", load) == 2


def test_cache_keeps_no_failures() -> None:
    cache: TTLCache[int] = TTLCache(ttl_seconds=10)
    with pytest.raises(ValueError):
        cache.get_or_load("k", lambda: (_ for _ in ()).throw(ValueError("boom")))
    assert cache.get_or_load("k", lambda: 7) == 7


# --- accounts ---------------------------------------------------------------------------
def _account(name: str) -> Account:
    return Account(channel="ibm_cloud", token=f"token-{name}-123456", url="https://cloud.ibm.com",
                   instance="crn:v1:bluemix:public:quantum-computing:us-east:a/1:2::", name=name)  # fmt: skip


def _save_many(path: str, prefix: str) -> None:
    file = AccountFile(Path(path))
    for i in range(10):
        file.save(_account(f"{prefix}-{i}"), overwrite=False, set_as_default=False)


def test_account_file_writers_in_separate_processes(tmp_path: Path) -> None:
    path = tmp_path / "accounts.json"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_save_many, args=(str(path), f"p{i}")) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    names = set(json.loads(path.read_text()))
    assert names == {f"p{i}-{j}" for i in range(4) for j in range(10)}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert not [
        p for p in tmp_path.iterdir() if p.name.startswith(".accounts.json.")
    ]  # no temp files left


def test_masking() -> None:
    assert mask("abcdefghijklmnop") == "************mnop"
    assert mask("short") == "*****"  # too short to show any of it
    assert mask("") == ""


# --- credentials --------------------------------------------------------------------------
def test_metadata_parsing() -> None:
    creds = from_metadata([("authorization", "Bearer tok-123456"), ("x-runtime-channel", "ibm_quantum"),
                           ("x-runtime-instance", "h/g/p"), ("x-request-id", "r-1"), ("bin-bin", b"\x00")])  # fmt: skip
    assert (creds.token, creds.channel, creds.instance, creds.request_id) == (
        "tok-123456",
        "ibm_quantum",
        "h/g/p",
        "r-1",
    )
    with pytest.raises(GatewayError) as failure:
        from_metadata([("x-runtime-channel", "ibm_quantum"), ("x-runtime-instance", "h/g")])
    assert failure.value.field == "x-runtime-instance"


# --- errors and upstream -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "code", "reason"),
    [
        (400, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
        (401, grpc.StatusCode.UNAUTHENTICATED, "UPSTREAM_UNAUTHENTICATED"),
        (403, grpc.StatusCode.PERMISSION_DENIED, "UPSTREAM_PERMISSION_DENIED"),
        (409, grpc.StatusCode.FAILED_PRECONDITION, "JOB_INVALID_STATE"),
        (429, grpc.StatusCode.RESOURCE_EXHAUSTED, "UPSTREAM_RATE_LIMITED"),
        (503, grpc.StatusCode.UNAVAILABLE, "UPSTREAM_UNAVAILABLE"),
        (418, grpc.StatusCode.UNKNOWN, "UPSTREAM_ERROR"),
    ],
)
def test_upstream_statuses_map_to_grpc_codes(
    status: int, code: grpc.StatusCode, reason: str
) -> None:
    body = json.dumps({"errors": [{"code": "x", "message": "IBM says no"}], "trace": "t"}).encode()
    error = error_from_reply(Reply(status, {"Retry-After": "3"}, body))
    assert (error.code, error.reason) == (code, reason)
    assert "IBM says no" in error.message
    if status == 429:
        assert error.retry_after == 3.0


def test_error_messages_never_carry_registered_secrets() -> None:
    SECRETS.add("a-registered-secret-value")
    error = GatewayError(
        grpc.StatusCode.INTERNAL, "UPSTREAM_ERROR", "echo a-registered-secret-value back"
    )
    assert "a-registered-secret-value" not in error.message
    status = to_status(error)
    assert b"a-registered-secret-value" not in b"".join(
        v for k, v in status.trailing_metadata if isinstance(v, bytes)
    )


def test_retries_stop_at_the_deadline() -> None:
    # Nothing listens on this loopback port: connection errors, retried until the deadline.
    http = HttpUpstream(RetryPolicy(max_attempts=50, base_delay=0.05, max_delay=0.1))
    started = time.monotonic()
    with pytest.raises(GatewayError) as failure:
        http.request("GET", "http://127.0.0.1:1/x", deadline=Deadline.after(0.5))
    assert failure.value.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert time.monotonic() - started < 5  # bounded by the deadline, not by 50 attempts


def test_posts_are_sent_once() -> None:
    http = HttpUpstream(RetryPolicy(max_attempts=5, base_delay=0.01))
    with pytest.raises(GatewayError):
        http.request("POST", "http://127.0.0.1:1/jobs", deadline=Deadline.after(5))
    assert http.request_count == 1


def test_an_accounts_directory_the_gateway_creates_is_private(tmp_path: Path) -> None:
    from runtime_gateway_server.accounts import Account, AccountFile

    directory = tmp_path / "accounts"
    AccountFile(directory / "team-a.json").save(
        Account(channel="ibm_cloud", token="t0ken-0123456789", url="https://cloud.ibm.com"),
        overwrite=False,
        set_as_default=False,
    )
    assert directory.stat().st_mode & 0o777 == 0o700
    assert (directory / "team-a.json").stat().st_mode & 0o777 == 0o600
