"""The log redaction processor: the last line of defence against leaked credentials."""

from __future__ import annotations

from runtime_gateway_server.logs import REDACTED, SecretRegistry, redact_secrets


def test_registered_secret_is_scrubbed_anywhere() -> None:
    registry = SecretRegistry()
    registry.add("my-very-secret-token-42")
    assert registry.scrub("url?x=my-very-secret-token-42&y=1") == f"url?x={REDACTED}&y=1"


def test_credential_shapes_are_scrubbed_without_registration() -> None:
    registry = SecretRegistry()
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjE3MDAwMDAwMDB9.c2lnbmF0dXJl"
    cases = {
        "Authorization: Bearer abcdef123456": "Authorization: Bearer " + REDACTED,
        "Authorization: apikey ABCDEFGH1234": "Authorization: apikey " + REDACTED,
        f"token {jwt} here": f"token {REDACTED} here",
        '{"apiToken": "s3cr3t-value"}': '{"apiToken": "' + REDACTED + '"}',
        "password=hunter22": "password=" + REDACTED,
    }
    for raw, expected in cases.items():
        assert registry.scrub(raw) == expected


def test_short_values_are_not_registered() -> None:
    registry = SecretRegistry()
    registry.add("abc")  # would scrub every "abc" in every log line
    assert registry.scrub("abc") == "abc"


def test_processor_scrubs_nested_values() -> None:
    event = {"event": "call", "headers": {"authorization": "Bearer zzzzzzzzzzz"}, "n": 3}
    out = redact_secrets(None, "info", event)
    assert out["headers"]["authorization"] == "Bearer " + REDACTED
    assert out["n"] == 3
