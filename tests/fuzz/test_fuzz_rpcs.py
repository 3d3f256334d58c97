"""Property-based fuzzing of every RPC of `runtime_gateway.v1` against a real gateway process.

The RPCs come from the generated descriptors (`*_pb2.DESCRIPTOR.services_by_name` of every
`runtime_gateway.v1` module), so a new RPC is fuzzed without touching this file. The gateway
is a real `runtime-gateway serve` process in front of a real local runtime process playing IBM
(as in tests/gateway/conftest.py; both the fuzzer's own, so its accounts and jobs meet no
other test). Every example runs alone
and names an account that reaches that process, so the upstream's request log shows exactly
what each call cost (only metadata examples without credentials go to the gateway's embedded
local runtime, whose requests are not counted). https never leaves the machine.

What is sent:
- request messages built field by field from their descriptors: a plausible request with one
  field fuzzed, or every field unset, plausible or malformed: empty, huge, unicode, control
  characters, `/ ? # % ..`; out-of-range and negative numbers; enum values outside the enum;
  timestamps out of range; deeply nested JSON in `*_json` fields; huge repeated fields and
  maps; real page tokens of other list calls and tampered ones; nested messages likewise;
- random bytes (and invalid UTF-8 in string fields) as whole messages, through a raw
  channel method without serializers;
- malformed metadata: authorization shapes, channels, instances, `x-runtime-url` values,
  server-held account names, API keys, request ids, huge values, repeated keys.
Streaming RPCs are read up to their first message or status, then cancelled.

What must hold for every example:
- the status is never INTERNAL or UNKNOWN;
- a request holding an enum value outside its enum, a Timestamp outside 0001..9999 (or nanos
  outside 0..999,999,999), a string over 10,000 characters (`*_json` excepted) or a repeated
  field or map over 1,000 entries is answered INVALID_ARGUMENT (`must_refuse`);
- INVALID_ARGUMENT carries a `google.rpc.BadRequest` naming a field of the request (its first
  path segment is a field of the request message, or a metadata key); for bytes that do not
  decode as the request type, a `google.rpc.ErrorInfo` with reason INVALID_ARGUMENT;
- a call answered INVALID_ARGUMENT made no upstream request;
- no response, error message or trailer holds a secret the test sent (tokens, API keys, proxy
  passwords: all carry a `SeCrEt<hex>` marker) nor an IAM JWT.
After each batch the gateway process is alive and its health check answers SERVING; once the
streams were cancelled it stops calling the upstream; at the end its log holds no secret.

Runs (a bounded number of examples, derandomized so CI is reproducible; about a minute):
    .venv/bin/python -m pytest tests/fuzz -q
A longer, randomized run by hand (prints a reproduction blob for each failure):
    HYPOTHESIS_PROFILE=long .venv/bin/python -m pytest tests/fuzz -q
`FUZZ_EXAMPLES=N` sets the number of examples per batch for either profile. Hypothesis stops
each batch at its first failure and shrinks it to a minimal example.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
import pytest
from google.protobuf import message_factory, timestamp_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import runtime_gateway.v1 as v1
from runtime_gateway.v1 import accounts_pb2, accounts_pb2_grpc, jobs_pb2, jobs_pb2_grpc
from tests.gateway.conftest import (
    DOMAIN,
    UPSTREAM_TOKEN,
    Upstream,
    bell_inputs,
    key_digest,
    upstream_env,
)
from tests.procs import Proc, start

pytestmark = pytest.mark.slow

# --- what is fuzzed ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Rpc:
    service: str
    name: str
    input: Descriptor
    output: Descriptor
    client_streaming: bool
    server_streaming: bool

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.name}"

    def __repr__(self) -> str:  # how hypothesis prints a failing example
        return self.path


def _api_modules() -> list[Any]:
    """Every generated `*_pb2` module of the API, so a new proto file is fuzzed too."""
    names = [m.name for m in pkgutil.iter_modules(v1.__path__) if m.name.endswith("_pb2")]
    return [importlib.import_module(f"{v1.__name__}.{name}") for name in sorted(names)]


RPCS = [
    Rpc(s.full_name, m.name, m.input_type, m.output_type, m.client_streaming, m.server_streaming)
    for module in _api_modules()
    for s in module.DESCRIPTOR.services_by_name.values()
    for m in s.methods
]
RPC_IDS = [f"{r.service.rsplit('.', 1)[1]}.{r.name}" for r in RPCS]

METADATA_KEYS = (
    "authorization",
    "x-runtime-channel",
    "x-runtime-instance",
    "x-runtime-url",
    "x-runtime-account",
    "x-gateway-api-key",
    "x-request-id",
)

# --- profiles ---------------------------------------------------------------------------------

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
_EXAMPLES = {"ci": 12, "long": 300}


def fuzz_settings(scale: float = 1.0) -> settings:
    """Per-batch settings; not a global profile, so other hypothesis tests are unaffected."""
    base = int(os.environ.get("FUZZ_EXAMPLES") or _EXAMPLES.get(PROFILE, _EXAMPLES["ci"]))
    return settings(
        max_examples=max(1, int(base * scale)),
        deadline=None,
        derandomize=PROFILE != "long",
        database=None,
        print_blob=PROFILE == "long",
        suppress_health_check=list(HealthCheck),
    )


UNARY_SECONDS = 20.0  # a call's deadline: far above any honest answer on loopback
STREAM_SECONDS = 3.0  # a stream's first message (a heartbeat comes every 0.5 s) or status
HEARTBEAT_SECONDS = "0.5"

# --- secrets ----------------------------------------------------------------------------------

API_KEY = "gw-key-SeCrEt0f1e2d3c4b"
HELD_ACCOUNT = "fuzz-held-account"
MARKER = re.compile(r"SeCrEt[0-9a-f]{10}")
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}")
FIXED_SECRETS = (UPSTREAM_TOKEN, API_KEY)
SECRET_FIELDS = {"token", "password_ntlm"}

_hex = st.text("0123456789abcdef", min_size=10, max_size=10)
_printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)


def secret_values(around: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A secret with a recognisable marker, wrapped in fuzz."""
    return st.builds(lambda a, h, b: f"{a}SeCrEt{h}{b}", around, _hex, around)


# --- values -----------------------------------------------------------------------------------

NASTY_STRINGS = [
    "", " ", "\t", "\n", "\r\n", "\x00", "a\x00b", "\x7f", "\x1b[31m", "\u202e", "\ufeff",
    ".", "..", "../", "../../etc/passwd", "..%2F..%2Fadmin", "%2e%2e", "/", "a/b", "//x",
    "?", "a?x=1&y=2", "#", "a#frag", "%", "%00", "%ZZ", "\\", "a b", " lead", "trail ",
    "*", "'\"", "<script>", "${jndi:ldap://x}", "{}", "null", "NaN", "-1", "0", "-", "_x",
    "é", "日本語", "🧪🧪🧪", "\U0010ffff", "a" * 129, "x" * 513, "crn:v1", "crn:v1:::::::::",
    "crn:v1:bluemix:public:quantum-computing:us-east:a/x:y::z", "h//p", "h/g/p/q", "h/g/",
    "crn:v1:bluemix:public:quantum-computing:us-east:a/x:y::/..",
]  # fmt: skip
_huge_strings = st.builds(
    lambda piece, n: piece * n,
    st.sampled_from(["a", "é", "/", "%", "\x00", "ab/..?#", "🧪"]),
    st.integers(1_000, 300_000),
)
MALFORMED_STRINGS = st.one_of(st.sampled_from(NASTY_STRINGS), st.text(max_size=40), _huge_strings)

_deep = [
    "[" * 65 + "]" * 65,
    "[" * 5_000 + "]" * 5_000,
    "[" * 200_000 + "]" * 200_000,
    '{"a":' * 100_000 + "1" + "}" * 100_000,
    "[" * 200_000,
    '{"pubs": ' + "[" * 10_000 + "]" * 10_000 + "}",
]
NASTY_JSON = [
    *_deep, "", " ", "{", "}", "[", "{'a': 1}", "NaN", '{"x": NaN}', '{"x": Infinity}',
    "null", "1", '"text"', "[]", "{}", '{"a":1,"a":2}', '{"pubs": "x"}', '{"pubs": [[1]]}',
    '{"x": "\\ud800"}', '{"x": "\x00"}', '{"x": 1e999}', "1" * 100_000,
    '{"x": "' + "a" * 500_000 + '"}',
]  # fmt: skip

INT_EDGES = {
    32: [0, -1, 1, -(2**31), 2**31 - 1, 2**30, 1_000, 1_000_000],
    64: [0, -1, 1, -(2**63), 2**63 - 1, 2**53 + 1, 2**62, 1_000_000_000_000],
}
TIMESTAMP_SECONDS = [
    0, -1, -(2**63), 2**63 - 1, -62_135_596_801, 253_402_300_800, 2**40, -(2**40), 1_700_000_000,
]  # fmt: skip
TIMESTAMP_NANOS = [0, -1, 999_999_999, 1_000_000_000, -(2**31), 2**31 - 1]
timestamps = st.builds(
    lambda s, n: timestamp_pb2.Timestamp(seconds=s, nanos=n),
    st.one_of(st.sampled_from(TIMESTAMP_SECONDS), st.integers(-(2**63), 2**63 - 1)),
    st.one_of(st.sampled_from(TIMESTAMP_NANOS), st.integers(-(2**31), 2**31 - 1)),
)

_INT_TYPES = {
    FieldDescriptor.TYPE_INT32: (32, True),
    FieldDescriptor.TYPE_SINT32: (32, True),
    FieldDescriptor.TYPE_SFIXED32: (32, True),
    FieldDescriptor.TYPE_INT64: (64, True),
    FieldDescriptor.TYPE_SINT64: (64, True),
    FieldDescriptor.TYPE_SFIXED64: (64, True),
    FieldDescriptor.TYPE_UINT32: (32, False),
    FieldDescriptor.TYPE_FIXED32: (32, False),
    FieldDescriptor.TYPE_UINT64: (64, False),
    FieldDescriptor.TYPE_FIXED64: (64, False),
}


def ints(bits: int, signed: bool) -> st.SearchStrategy[int]:
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    edges = [e for e in INT_EDGES[bits] if low <= e <= high] + [high]
    return st.one_of(st.sampled_from(edges), st.integers(low, high))


def is_map(fd: FieldDescriptor) -> bool:
    return fd.type == FieldDescriptor.TYPE_MESSAGE and fd.message_type.GetOptions().map_entry


def is_repeated(fd: FieldDescriptor) -> bool:
    return bool(fd.is_repeated)


@dataclass
class Known:
    """Plausible values, so that fuzzing one field reaches the checks behind the others."""

    job_id: str
    backend: str
    crn: str
    page_tokens: list[str] = field(default_factory=list)  # real ones, from each list RPC

    def for_rpc(self, rpc: Rpc) -> Known:
        """Delete RPCs get a well-formed id of no job: the finished job stays for the rest."""
        if rpc.name.startswith("Delete"):
            return replace(self, job_id="d0fuzz0no0such0job0")
        return self

    def plausible(self, fd: FieldDescriptor) -> list[Any]:
        if fd.type == FieldDescriptor.TYPE_ENUM:
            return [v.number for v in fd.enum_type.values if v.number]
        by_name: dict[str, list[Any]] = {
            "job_id": [self.job_id],
            "job_ids": [self.job_id],
            "name": [self.backend, "fuzz-saved"],
            "backend": [self.backend],
            "instance": [self.crn],
            "program_id": ["sampler"],
            "inputs_json": [bell_inputs(10)],
            "url": [f"http://{DOMAIN}"],
            "tags": ["fuzz"],
            "log_level": ["INFO"],
            "image": ["runtime/image:1.0"],
            "channel_strategy": ["default"],
            "request_id": ["fuzz-request-1"],
            "order_by": ["asc", "desc"],
            "session_time": [60],
            "max_execution_time": [60],
            "page_size": [1, 10],
            "username_ntlm": ["user"],
        }
        return by_name.get(fd.name, [])


# Page tokens made from real ones: cut, extended, altered.
_TAMPER = (
    lambda t: t[:-1],
    lambda t: t + "A",
    lambda t: t[:-2] + ("AA" if t[-2:] != "AA" else "BB"),
    lambda t: t[: len(t) // 2],
)


def scalar_values(fd: FieldDescriptor, known: Known, depth: int) -> st.SearchStrategy[Any]:
    """One value of a (non-repeated view of a) field: plausible or malformed."""
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        return message_values(fd.message_type, known, depth + 1)
    if fd.type == FieldDescriptor.TYPE_STRING and fd.name == "page_token" and known.page_tokens:
        # Real tokens of every list call (foreign to all but one), and tampered ones.
        forged = [f(t) for t in known.page_tokens for f in _TAMPER]
        return st.one_of(st.sampled_from(known.page_tokens + forged), MALFORMED_STRINGS)
    if fd.type == FieldDescriptor.TYPE_STRING:
        if fd.name in SECRET_FIELDS:
            return st.one_of(
                st.sampled_from(["", " "]), secret_values(st.sampled_from(["", " ", "x" * 300]))
            )
        bad = (
            st.one_of(st.sampled_from(NASTY_JSON), MALFORMED_STRINGS)
            if fd.name.endswith("_json")
            else MALFORMED_STRINGS
        )
    elif fd.type == FieldDescriptor.TYPE_BYTES:
        bad = st.one_of(
            st.binary(max_size=64), st.builds(lambda n: b"\xff" * n, st.integers(1, 100_000))
        )
    elif fd.type in _INT_TYPES:
        bad = ints(*_INT_TYPES[fd.type])
    elif fd.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        bad = st.one_of(
            st.sampled_from([float("nan"), float("inf"), float("-inf"), -0.0]),
            st.floats(width=64 if fd.type == FieldDescriptor.TYPE_DOUBLE else 32),
        )
    elif fd.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    elif fd.type == FieldDescriptor.TYPE_ENUM:
        # proto3 enums are open: any int32 is a legal wire value.
        bad = st.one_of(
            st.sampled_from([-1, 99, 2**31 - 1, -(2**31)]), st.integers(-(2**31), 2**31 - 1)
        )
    else:  # pragma: no cover - a new field type: fuzz it by hand
        raise AssertionError(f"no strategy for {fd.full_name} of type {fd.type}")
    plausible = known.plausible(fd)
    return st.one_of(st.sampled_from(plausible), bad) if plausible else bad


def field_values(fd: FieldDescriptor, known: Known, depth: int) -> st.SearchStrategy[Any]:
    if is_map(fd):
        key_fd = fd.message_type.fields_by_name["key"]
        value_fd = fd.message_type.fields_by_name["value"]
        keys = scalar_values(key_fd, known, depth)
        values = scalar_values(value_fd, known, depth)
        huge = (
            st.builds(
                lambda v, n: {f"k{i}": v for i in range(n)},
                values.filter(_small),
                st.integers(33, 5_000),
            )
            if key_fd.type == FieldDescriptor.TYPE_STRING
            else st.nothing()
        )
        return st.one_of(st.dictionaries(keys, values, max_size=4), huge)
    one = scalar_values(fd, known, depth)
    if not is_repeated(fd):
        return one
    return st.one_of(
        st.lists(one, max_size=4),
        st.builds(lambda v, n: [v] * n, one.filter(_small), st.integers(65, 5_000)),
    )


def _small(value: Any) -> bool:
    return not isinstance(value, (str, bytes)) or len(value) <= 300


def _message_class(descriptor: Descriptor) -> Any:
    return message_factory.GetMessageClass(descriptor)


def message_values(descriptor: Descriptor, known: Known, depth: int = 0) -> st.SearchStrategy[Any]:
    """Messages of this type, every field unset, plausible or malformed."""
    if descriptor.full_name == "google.protobuf.Timestamp":
        return timestamps
    cls = _message_class(descriptor)
    if depth > 3:
        return st.just(cls())
    optional = {fd.name: field_values(fd, known, depth) for fd in descriptor.fields}
    return st.fixed_dictionaries({}, optional=optional).map(lambda values: build(cls, values))


def requests(descriptor: Descriptor, known: Known) -> st.SearchStrategy[Any]:
    """Request messages: any mix of fields, or a plausible request with one field fuzzed (so
    that every field's check is reached, not only the first one a mix trips)."""
    fields = list(descriptor.fields)
    if not fields:
        return message_values(descriptor, known)

    def one_field(fd: FieldDescriptor) -> st.SearchStrategy[Any]:
        return field_values(fd, known, 0).map(
            lambda value: build(
                _message_class(descriptor),
                {fd.name: value},
                base=plausible_message(descriptor, known),
            )
        )

    return st.one_of(st.sampled_from(fields).flatmap(one_field), message_values(descriptor, known))


def build(cls: Any, values: dict[str, Any], base: Any = None) -> Any:
    message = cls()
    if base is not None:
        message.CopyFrom(base)
    for name, value in values.items():
        fd = cls.DESCRIPTOR.fields_by_name[name]
        target = getattr(message, name)
        if is_map(fd):
            target.clear()
            if fd.message_type.fields_by_name["value"].type == FieldDescriptor.TYPE_MESSAGE:
                for key, item in value.items():
                    target[key].CopyFrom(item)
            else:
                target.update(value)
        elif is_repeated(fd):
            del target[:]
            if fd.type == FieldDescriptor.TYPE_MESSAGE:
                for item in value:
                    target.add().CopyFrom(item)
            else:
                target.extend(value)
        elif fd.type == FieldDescriptor.TYPE_MESSAGE:
            target.CopyFrom(value)
        else:
            setattr(message, name, value)
    return message


def plausible_message(descriptor: Descriptor, known: Known) -> Any:
    """A message with the first plausible value in every field that has one."""
    cls = _message_class(descriptor)
    message = cls()
    for fd in descriptor.fields:
        if fd.type == FieldDescriptor.TYPE_MESSAGE and not is_map(fd):
            if fd.name == "account":
                getattr(message, fd.name).CopyFrom(plausible_account())
            continue
        values = known.plausible(fd)
        if not values:
            continue
        if is_repeated(fd):
            getattr(message, fd.name).append(values[0])
        else:
            setattr(
                message, fd.name, values[-1] if fd.type == FieldDescriptor.TYPE_ENUM else values[0]
            )
    return message


def plausible_account() -> accounts_pb2.Account:
    return accounts_pb2.Account(
        name="fuzz-saved",
        channel=accounts_pb2.CHANNEL_IBM_QUANTUM_PLATFORM,
        url=f"http://{DOMAIN}",
        token="SeCrEt00000000aa",
    )


def raw_payloads(descriptor: Descriptor) -> st.SearchStrategy[bytes]:
    """Whole request bodies that are not what a stub would send."""
    crafted = [
        b"\x00",  # field number 0
        b"\x08",  # a varint tag without its value
        b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # an 11-byte varint
        b"\x0a\x10ab",  # a length beyond the end
        b"\x0a\xff\xff\xff\xff\x0f",  # a 4 GiB length
        b"\x0b\x0c",  # a group
        b"\x0f",  # wire type 7
        b"\xff" * 16,
    ]
    for fd in descriptor.fields:
        tag = fd.number << 3
        if fd.type == FieldDescriptor.TYPE_STRING:
            crafted.append(_varint(tag | 2) + b"\x02\xff\xfe")  # invalid UTF-8
            crafted.append(_varint(tag | 2) + b"\x03\xed\xa0\x80")  # an encoded surrogate
        if fd.type == FieldDescriptor.TYPE_MESSAGE:
            crafted.append(_varint(tag | 2) + b"\x03\x0a\x01\xff")  # bad UTF-8 one level down
        crafted.append(_varint(tag | 5) + b"\x00\x00\x00\x00")  # the wrong wire type
    return st.one_of(st.sampled_from(crafted), st.binary(min_size=1, max_size=256))


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


# --- metadata ---------------------------------------------------------------------------------

_huge_header = st.builds(
    lambda c, n: c * n, st.sampled_from(["a", "/", "%"]), st.integers(1_000, 7_000)
)
_header = st.one_of(_printable, _huge_header)


def metadata_values(known: Known) -> dict[str, st.SearchStrategy[Any]]:
    token = secret_values(st.sampled_from(["", "x", "a" * 3000, "%00", "../"]))
    return {
        "authorization": st.one_of(
            st.builds(
                lambda scheme, sep, tok, tail: f"{scheme}{sep}{tok}{tail}",
                st.sampled_from(
                    ["Bearer", "bearer", "BEARER", "Basic", "Token", "", "Bearer:", "apikey"]
                ),
                st.sampled_from([" ", "  ", "", ":", "="]),
                token,
                st.sampled_from(["", " ", " extra", ", Bearer other", " " * 10]),
            ),
            st.sampled_from(["", " ", "Bearer", "Bearer ", "Bearer  ", "Basic", "null"]),
            _header,
        ),
        "x-runtime-channel": st.one_of(
            st.sampled_from(
                [
                    "ibm_quantum",
                    "ibm_cloud",
                    "ibm_quantum_platform",
                    "local",
                    "IBM_CLOUD",
                    "ibm_quantum ",
                    "",
                    "none",
                    "ibm_cloud,local",
                    "../",
                ]
            ),
            _header,
        ),
        "x-runtime-instance": st.one_of(
            st.sampled_from(
                [
                    known.crn,
                    "crn:v1",
                    "crn:" + ":" * 8,
                    "h/g/p",
                    "h//p",
                    "h/g/p/q",
                    "../../x",
                    known.crn + "/../x",
                    known.crn + "?x=1",
                    "crn:v1:%0d%0a::::::::",
                ]
            ),
            _header,
        ),
        "x-runtime-url": st.one_of(
            st.sampled_from(
                [
                    f"http://{DOMAIN}",
                    f"https://{DOMAIN}",
                    "http://169.254.169.254/latest/meta-data",
                    "file:///etc/passwd",
                    "gopher://x:70/_",
                    "ftp://x/",
                    "javascript:alert(1)",
                    "http://127.0.0.1:1",
                    "http://localhost:1/x",
                    "http://[::1]:1",
                    "http://",
                    "https://",
                    "http:///x",
                    "://x",
                    "http://a b",
                    "http://%00",
                    f"http://{DOMAIN}/../..",
                    f"http://{DOMAIN}?x=1#y",
                    f"http://{DOMAIN}%2F..",
                    "x" * 3000,
                    "http://" + "a" * 3000,
                    f"http://{DOMAIN}:99999",
                    f"http://{DOMAIN}:-1",
                    "http://0x7f.1",
                ]
            ),
            _header,
        ),
        "x-runtime-account": st.one_of(
            st.sampled_from(
                [
                    HELD_ACCOUNT,
                    "../" + HELD_ACCOUNT,
                    "../../etc/passwd",
                    ".",
                    "..",
                    "/",
                    "default-ibm-quantum-platform",
                    "a/../b",
                    "%2e%2e",
                ]
            ),
            _header,
        ),
        "x-gateway-api-key": st.one_of(
            st.sampled_from([API_KEY, "", " ", API_KEY + " ", API_KEY[:-1]]),
            secret_values(st.sampled_from(["", "x"])),
            _header,
        ),
        "x-request-id": _header,
    }


# --- the gateway under test -------------------------------------------------------------------


@dataclass
class Outcome:
    code: grpc.StatusCode
    message: str
    body: bytes
    trailers: list[tuple[str, Any]]
    status: status_pb2.Status | None
    status_error: str  # why the rich status could not be read, if it could not
    upstream: list[dict[str, Any]]


@dataclass
class Fuzz:
    proc: Proc
    upstream: Upstream
    known: Known
    channel: grpc.Channel
    sent_secrets: set[str] = field(default_factory=set)

    def credentials(self) -> dict[str, list[tuple[str, str]]]:
        """Well-formed metadata for each way to name an account; all reach the upstream."""
        bearer = ("authorization", f"Bearer {UPSTREAM_TOKEN}")
        key = ("x-gateway-api-key", API_KEY)
        hgp = self.upstream.proc.ready["instances"]["hgps"][0]
        return {
            "platform": [bearer, key, ("x-runtime-channel", "ibm_quantum_platform"),
                         ("x-runtime-url", f"http://{DOMAIN}"), ("x-runtime-instance", self.known.crn)],
            "cloud": [bearer, key, ("x-runtime-channel", "ibm_cloud"),
                      ("x-runtime-url", f"http://{DOMAIN}"), ("x-runtime-instance", self.known.crn)],
            "legacy": [bearer, key, ("x-runtime-channel", "ibm_quantum"),
                       ("x-runtime-url", f"{self.upstream.url}/api"), ("x-runtime-instance", hgp)],
            "held": [key, ("x-runtime-account", HELD_ACCOUNT)],
        }  # fmt: skip

    def invoke(self, rpc: Rpc, payload: bytes, metadata: list[tuple[str, Any]]) -> Outcome:
        self.upstream.clear_log()
        body = b""
        call: Any
        if rpc.server_streaming:
            stream = (
                self.channel.stream_stream(rpc.path)(
                    iter([payload]), metadata=metadata, timeout=STREAM_SECONDS
                )
                if rpc.client_streaming
                else self.channel.unary_stream(rpc.path)(
                    payload, metadata=metadata, timeout=STREAM_SECONDS
                )
            )
            call = stream
            try:
                body = next(stream)
                code = grpc.StatusCode.OK
            except StopIteration:
                code = stream.code()
            except grpc.RpcError:
                code = stream.code()
            finally:
                stream.cancel()
        else:
            method = (
                self.channel.stream_unary(rpc.path)
                if rpc.client_streaming
                else self.channel.unary_unary(rpc.path)
            )
            request = iter([payload]) if rpc.client_streaming else payload
            try:
                body, call = method.with_call(request, metadata=metadata, timeout=UNARY_SECONDS)
                code = grpc.StatusCode.OK
            except grpc.RpcError as error:
                call = error
                code = error.code()
        message, trailers, status, status_error = "", [], None, ""
        if code != grpc.StatusCode.OK:
            message = call.details() or ""
            trailers = list(call.trailing_metadata() or ())
            try:
                status = rpc_status.from_call(call)
            except ValueError as error:
                status_error = str(error)
        return Outcome(
            code, message, body or b"", trailers, status, status_error, self.upstream.requests_log()
        )

    def check(
        self, rpc: Rpc, payload: bytes, metadata: list[tuple[str, Any]], what: str
    ) -> Outcome:
        """Runs one example and asserts every property. A payload that does not decode as the
        request type has no field to name: its INVALID_ARGUMENT needs only an ErrorInfo."""
        try:
            refuse = must_refuse(_message_class(rpc.input).FromString(payload))
            decodable = True
        except DecodeError:
            refuse, decodable = "", False
        sent = set(FIXED_SECRETS) | set(MARKER.findall(payload.decode("latin-1")))
        for _, value in metadata:
            if isinstance(value, str):
                sent |= set(MARKER.findall(value))
        self.sent_secrets |= sent
        out = self.invoke(rpc, payload, metadata)
        where = f"{rpc.name} [{what}] answered {out.code.name}: {out.message[:300]!r}"
        assert out.code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), where
        assert not out.status_error, f"{where}: unreadable status details: {out.status_error}"
        if refuse:
            assert out.code == grpc.StatusCode.INVALID_ARGUMENT, (
                f"{where}: expected INVALID_ARGUMENT, the request has {refuse}"
            )
        if out.code == grpc.StatusCode.INVALID_ARGUMENT and not decodable:
            assert error_reason(out.status) == "INVALID_ARGUMENT", (
                f"{where}: no google.rpc.ErrorInfo with reason INVALID_ARGUMENT"
            )
        elif out.code == grpc.StatusCode.INVALID_ARGUMENT:
            fields = bad_request_fields(out.status)
            assert fields, f"{where}: no google.rpc.BadRequest naming a field"
            top = {fd.name for fd in rpc.input.fields} | set(METADATA_KEYS)
            for name in fields:
                assert re.split(r"[.\[]", name, maxsplit=1)[0] in top, (
                    f"{where}: BadRequest names {name!r}, not a field of {rpc.input.name} or a metadata key"
                )
        # IBM checks what only it can (a program's inputs): such a refusal says so in its
        # ErrorInfo metadata and may follow the one submission it needed.
        if out.code == grpc.StatusCode.INVALID_ARGUMENT and not decided_by_upstream(out.status):
            assert not out.upstream, (
                f"{where}: refused as invalid after {len(out.upstream)} upstream request(s): "
                + ", ".join(f"{r['method']} {r['path']}" for r in out.upstream[:5])
            )
        text = "\n".join(
            [out.body.decode("latin-1"), out.message]
            + [
                f"{k}: {v.decode('latin-1') if isinstance(v, bytes) else v}"
                for k, v in out.trailers
            ]
        )
        for secret in sent:
            assert secret not in text, f"{where}: a secret it was sent appears in the answer"
        assert not JWT.search(text), f"{where}: an IAM JWT appears in the answer"
        return out

    def assert_healthy(self) -> None:
        assert self.proc.popen.poll() is None, (
            f"the gateway exited ({self.proc.popen.returncode}):\n{self.proc.stderr()[-3000:]}"
        )
        reply = health_pb2_grpc.HealthStub(self.channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


# Beyond these a value is refused whatever the field (strings of `*_json` fields excepted):
# the gateway's own bounds (limits.py) are far below them.
MAX_STRING = 10_000
MAX_ENTRIES = 1_000
TIMESTAMP_RANGE = (-62_135_596_800, 253_402_300_799)  # 0001-01-01 .. 9999-12-31 (RFC 3339)


def must_refuse(message: Any, path: str = "") -> str:
    """Why the request must be answered INVALID_ARGUMENT whatever else it holds, or '': an
    enum value outside its enum (proto3 enums are open, so it arrives), a Timestamp out of
    range, a string or a repeated field or map beyond any bound."""
    if message.DESCRIPTOR.full_name == "google.protobuf.Timestamp":
        if not TIMESTAMP_RANGE[0] <= message.seconds <= TIMESTAMP_RANGE[1]:
            return f"{path} with seconds={message.seconds} out of range"
        if not 0 <= message.nanos < 1_000_000_000:
            return f"{path} with nanos={message.nanos} out of range"
        return ""
    for fd, value in message.ListFields():
        where = f"{path}.{fd.name}" if path else fd.name
        if is_map(fd):
            items = list(value.items())
            if len(items) > MAX_ENTRIES:
                return f"{where} with {len(items)} entries"
            value_fd = fd.message_type.fields_by_name["value"]
            for key, item in items:
                for part in (key, item):
                    if isinstance(part, str) and len(part) > MAX_STRING:
                        return f"{where} with a {len(part)}-character string"
                if value_fd.type == FieldDescriptor.TYPE_MESSAGE:
                    reason = must_refuse(item, f"{where}[{key!r}]")
                    if reason:
                        return reason
            continue
        items = list(value) if is_repeated(fd) else [value]
        if is_repeated(fd) and len(items) > MAX_ENTRIES:
            return f"{where} with {len(items)} entries"
        for item in items:
            if fd.type == FieldDescriptor.TYPE_ENUM and item not in fd.enum_type.values_by_number:
                return f"{where}={item}, not a value of {fd.enum_type.name}"
            if isinstance(item, str) and len(item) > MAX_STRING and not fd.name.endswith("_json"):
                return f"{where} of {len(item)} characters"
            if fd.type == FieldDescriptor.TYPE_MESSAGE:
                reason = must_refuse(item, where)
                if reason:
                    return reason
    return ""


def error_reason(status: status_pb2.Status | None) -> str:
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason
    return ""


def decided_by_upstream(status: status_pb2.Status | None) -> bool:
    """Whether the refusal is IBM's (a program-input check the gateway cannot make)."""
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.metadata.get("decided_by") == "upstream"
    return False


def bad_request_fields(status: status_pb2.Status | None) -> list[str]:
    fields: list[str] = []
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields += [v.field for v in bad.field_violations if v.field]
    return fields


@pytest.fixture(scope="module")
def fuzz_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    """A local runtime playing IBM, as the `upstream` fixture's but the fuzzer's own: the jobs
    it submits and deletes never meet another test's."""
    proc = start(
        ["local-runtime", "--listen", "127.0.0.1:0", "--token", UPSTREAM_TOKEN, "--workers", "1"],
        tmp_path_factory.mktemp("fuzz-upstream"),
    )
    yield Upstream(proc)
    proc.stop()


@pytest.fixture(scope="module")
def fuzz(fuzz_upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzz]:
    """A gateway of its own (its account file and streams are the fuzzer's to spoil)."""
    upstream = fuzz_upstream
    tmp: Path = tmp_path_factory.mktemp("fuzz-gateway")
    proc = start(
        [
            "serve", "--listen", "127.0.0.1:0", "--log-level", "DEBUG",
            "--accounts-dir", str(tmp / "accounts"), "--api-key", f"fuzz={key_digest(API_KEY)}",
            "--watch-heartbeat-seconds", HEARTBEAT_SECONDS,
            # The upstream plays IBM at these hosts (HTTP_PROXY routes them to it).
            "--allow-upstream", DOMAIN, "--allow-upstream", f"*.{DOMAIN}",
            "--allow-upstream", urlsplit(upstream.url).netloc,
        ],
        tmp,
        # https (IBM's real hosts, reached when a fuzzed x-runtime-url is empty) goes to a
        # closed port: nothing the fuzzer sends leaves the machine.
        env={**upstream_env(upstream), "HTTPS_PROXY": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"},
    )  # fmt: skip
    channel = grpc.insecure_channel(
        proc.ready["address"], options=[("grpc.max_receive_message_length", 64 << 20)]
    )
    try:
        crn = upstream.crn
        backends = upstream.proc.ready["backends"]
        backend = "ibmq_qasm_simulator" if "ibmq_qasm_simulator" in backends else backends[0]
        fuzz = Fuzz(proc, upstream, Known("", backend, crn), channel)
        creds = fuzz.credentials()
        accounts = accounts_pb2_grpc.AccountServiceStub(channel)
        accounts.SaveAccount(
            accounts_pb2.SaveAccountRequest(
                account=accounts_pb2.Account(
                    name=HELD_ACCOUNT, channel=accounts_pb2.CHANNEL_IBM_QUANTUM_PLATFORM,
                    url=f"http://{DOMAIN}", token=UPSTREAM_TOKEN, instance=crn,
                )
            ),
            metadata=[("x-gateway-api-key", API_KEY)],
            timeout=30,
        )  # fmt: skip
        jobs = jobs_pb2_grpc.JobServiceStub(channel)
        job = jobs.RunJob(
            jobs_pb2.RunJobRequest(
                program_id="sampler", backend=backend, inputs_json=bell_inputs(10)
            ),
            metadata=creds["platform"],
            timeout=60,
        ).job
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # a finished job: streams on it end at once
            state = jobs.GetJob(
                jobs_pb2.GetJobRequest(job_id=job.id), metadata=creds["platform"], timeout=10
            ).job.state
            if state in (jobs_pb2.JOB_STATE_COMPLETED, jobs_pb2.JOB_STATE_FAILED):
                break
            time.sleep(0.1)
        fuzz.known.job_id = job.id
        fuzz.known.page_tokens = first_page_tokens(channel, creds["platform"])
        yield fuzz
    finally:
        channel.close()
        proc.stop()


def first_page_tokens(channel: grpc.Channel, metadata: list[tuple[str, str]]) -> list[str]:
    """The next_page_token of a one-item first page of every list RPC that gives one."""
    tokens = []
    for rpc in RPCS:
        fields = rpc.input.fields_by_name
        if rpc.server_streaming or "page_size" not in fields or "page_token" not in fields:
            continue
        cls = _message_class(rpc.input)
        try:
            raw = channel.unary_unary(rpc.path)(
                cls(page_size=1).SerializeToString(), metadata=metadata, timeout=30
            )
        except grpc.RpcError:
            continue  # the fuzzing reports it
        reply = _message_class(rpc.output).FromString(raw)
        if getattr(reply, "next_page_token", ""):
            tokens.append(reply.next_page_token)
    return tokens


# --- the tests --------------------------------------------------------------------------------

CREDENTIAL_SETS = ("platform", "cloud", "legacy", "held")


@pytest.mark.parametrize("rpc", RPCS, ids=RPC_IDS)
def test_malformed_fields(fuzz: Fuzz, rpc: Rpc) -> None:
    """Every field of the request malformed in turn (and together), with valid credentials."""
    creds = fuzz.credentials()

    @fuzz_settings()
    @given(
        request=requests(rpc.input, fuzz.known.for_rpc(rpc)),
        account=st.sampled_from(CREDENTIAL_SETS),
    )
    def run(request: Any, account: str) -> None:
        fuzz.check(rpc, request.SerializeToString(), creds[account], f"{account} {_show(request)}")

    run()
    fuzz.assert_healthy()


@pytest.mark.parametrize("rpc", RPCS, ids=RPC_IDS)
def test_random_bytes(fuzz: Fuzz, rpc: Rpc) -> None:
    """Whole request bodies that are not valid messages of the request type."""
    creds = fuzz.credentials()

    @fuzz_settings(0.5)
    @given(payload=raw_payloads(rpc.input))
    def run(payload: bytes) -> None:
        fuzz.check(rpc, payload, creds["platform"], f"bytes {payload[:40]!r}")

    run()
    fuzz.assert_healthy()


def test_malformed_metadata(fuzz: Fuzz) -> None:
    """Every RPC with a plausible request and malformed or conflicting metadata."""
    bases = {**fuzz.credentials(), "none": []}
    values = metadata_values(fuzz.known)
    # One entry in eight is a binary (-bin) header, which carries nothing the gateway reads.
    values["-bin"] = st.binary(max_size=64)
    pair = st.sampled_from(list(values)).flatmap(
        lambda k: st.tuples(
            st.sampled_from(["authorization-bin", "x-runtime-account-bin"])
            if k == "-bin"
            else st.just(k),
            values[k],
        )
    )

    @fuzz_settings(len(RPCS) / 2)
    @given(
        rpc=st.sampled_from(RPCS),
        base=st.sampled_from(sorted(bases)),
        extra=st.lists(pair, min_size=1, max_size=5),
    )
    def run(rpc: Rpc, base: str, extra: list[tuple[str, Any]]) -> None:
        request = plausible_message(rpc.input, fuzz.known.for_rpc(rpc))
        fuzz.check(
            rpc, request.SerializeToString(), [*bases[base], *extra], f"{base} + {_show_md(extra)}"
        )

    run()
    fuzz.assert_healthy()


def test_streams_stop_calling_upstream(fuzz: Fuzz) -> None:
    """Once every fuzzed stream was cancelled, the gateway leaves the upstream alone: no
    watcher or filter discovery outlives its subscribers. Runs after the batches above."""
    fuzz.upstream.clear_log()
    time.sleep(5.0)  # longer than the discovery interval (2 s) and the poll interval
    left = fuzz.upstream.requests_log()
    assert not left, f"{len(left)} upstream request(s) with no call in flight: " + ", ".join(
        sorted({f"{r['method']} {r['path']}" for r in left})[:5]
    )


def test_log_holds_no_secret(fuzz: Fuzz) -> None:
    log = fuzz.proc.stderr()
    assert fuzz.sent_secrets
    leaked = sorted(s for s in fuzz.sent_secrets if s in log)
    assert not leaked, f"{len(leaked)} secret(s) the fuzzer sent appear in the gateway's log"
    assert not JWT.search(log), "an IAM JWT appears in the gateway's log"


def _show(message: Any) -> str:
    """A short description of an example for failure messages (huge values abbreviated)."""
    parts = []
    for fd, value in message.ListFields():
        parts.append(f"{fd.name}={_abbrev(value)}")
    return ", ".join(parts) or "(empty)"


def _show_md(pairs: list[tuple[str, Any]]) -> str:
    return ", ".join(f"{k}={_abbrev(v)}" for k, v in pairs)


def _abbrev(value: Any) -> str:
    if isinstance(value, (str, bytes)):
        return repr(value[:40]) + (f"...({len(value)})" if len(value) > 40 else "")
    if hasattr(value, "ListFields"):
        return "{" + _show(value) + "}"
    if hasattr(value, "items"):  # a map
        items = list(value.items())
        more = f", ...({len(items)})" if len(items) > 3 else ""
        return "{" + ", ".join(f"{_abbrev(k)}: {_abbrev(v)}" for k, v in items[:3]) + more + "}"
    if hasattr(value, "__iter__"):  # a repeated field
        items = list(value)
        if len(items) > 4:
            return f"[{_abbrev(items[0])} x{len(items)}]"
        return "[" + ", ".join(_abbrev(v) for v in items) + "]"
    return repr(value)
