"""The log scrubber: bounded memory, registered secrets removed, the gateway's words kept."""

from __future__ import annotations

import secrets

import pytest

from runtime_gateway_server.logs import REDACTED, SecretRegistry


def test_memory_stays_bounded_after_100000_distinct_secrets() -> None:
    registry = SecretRegistry(max_values=10_000, max_bytes=1_000_000)
    first = secrets.token_urlsafe(32)
    registry.add(first)
    for _ in range(100_000):
        registry.add(secrets.token_urlsafe(32))
    assert len(registry) <= 10_000
    assert registry.size_bytes <= 1_000_000
    assert first not in registry  # the least recently used went first
    recent = secrets.token_urlsafe(32)
    registry.add(recent)
    assert registry.scrub(f"sent {recent}") == f"sent {REDACTED}"


def test_long_values_are_bounded_by_bytes() -> None:
    registry = SecretRegistry(max_values=1_000_000, max_bytes=100_000)
    for _ in range(1_000):
        registry.add(secrets.token_hex(2_000))  # 4,000 characters each
    assert registry.size_bytes <= 100_000 and len(registry) <= 25


def test_a_value_in_use_is_not_evicted() -> None:
    registry = SecretRegistry(max_values=100)
    kept = "kept-secret-" + secrets.token_hex(8)
    registry.add(kept)
    for _ in range(1_000):
        registry.add(secrets.token_hex(16))
        registry.add(kept)  # every call re-registers the tokens it uses
    assert registry.scrub(f"x {kept} y") == f"x {REDACTED} y"


@pytest.mark.parametrize(
    "template",
    [
        "{s}",
        "token {s} expired",
        '{{"key": "{s}"}}',
        "url https://host/path/{s}/more?x=1",
        "k={s}&next=1",
        "a {s}. b",
        "x-access-token:{s},",
        "twice {s} {s}",
    ],
)
def test_a_registered_secret_embedded_in_text_is_removed(template: str) -> None:
    registry = SecretRegistry()
    secret = "upstream-SECRET-token-" + secrets.token_hex(6)
    registry.add(secret)
    scrubbed = registry.scrub(template.format(s=secret))
    assert secret not in scrubbed and REDACTED in scrubbed


def test_padded_jwt_and_odd_secrets_are_removed() -> None:
    registry = SecretRegistry()
    padded = secrets.token_urlsafe(31) + "=="
    odd = "user:pass word!" + secrets.token_hex(4)
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    for value in (padded, odd, jwt):
        registry.add(value)
    text = registry.scrub(f"a {padded} b {odd} c /x/{jwt}/y")
    assert padded.rstrip("=") not in text and odd not in text and jwt not in text


@pytest.mark.parametrize(
    "message",
    [
        "channel ibm_cloud needs a token: send 'authorization: Bearer <token>' or the name of a "
        "server-held account in x-runtime-account",
        "token expired",
        "the authorization metadata must be 'Bearer <IBM API token or key>'",
        "IBM Cloud IAM rejected the API key: Provided API key could not be found",
        "bearer tokens are refreshed at 80 % of their life",
        "the password: please set one",
    ],
)
def test_the_gateways_own_messages_survive(message: str) -> None:
    registry = SecretRegistry()
    registry.add(secrets.token_urlsafe(24))
    assert registry.scrub(message) == message


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("token=abc123def456", "token="),
        ('{"apikey": "someValueHere"}', '{"apikey": "'),
        ("Authorization: Bearer xyz123abc456", "Authorization: Bearer "),
        ("apikey Zm9vYmFyMTIzNDU2", "apikey "),
        ("token: 7f3a9c1e5b8d", "token: "),
        ("got eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abcdefg here", "got "),
    ],
)
def test_credential_shapes_are_removed_unregistered(text: str, kept: str) -> None:
    scrubbed = SecretRegistry().scrub(text)
    assert scrubbed.startswith(kept) and REDACTED in scrubbed
