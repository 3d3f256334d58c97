"""Bounds on every caller-supplied value, and the one way a caller value enters an upstream URL.

Every string a caller sends is bounded before any work is done, and refused with
INVALID_ARGUMENT naming the field; error messages quote at most a short prefix of the bad
value. Values that become part of an upstream path (job, session and backend ids) must
also match IBM's id alphabet, and are still percent-escaped with `path_segment`, so no
caller value can change the upstream path or query.

The numbers are generous against what IBM accepts (job and session ids are 20 characters,
backend names under 40, CRNs under 200) and small against the gateway's memory.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from urllib.parse import quote

from google.protobuf.message import Message

from runtime_gateway_server.errors import invalid_argument

MAX_ID = 128  # job ids, session ids, request ids
MAX_NAME = 128  # backend names, program ids, account names
MAX_INSTANCE = 512  # CRNs and hub/group/project
MAX_URL = 2048
MAX_TAG = 256
MAX_TAGS = 64
MAX_PAGE_TOKEN = 4096
MAX_FILTER_ENTRIES = 32
MAX_FILTER_VALUE = 256
MAX_JOB_IDS = 1000  # WatchJobs.job_ids
MAX_JSON_DEPTH = 64  # inputs_json nesting (Qiskit's encoded inputs stay under 20)
QUOTED_PREFIX = 40  # characters of a bad value an error message may quote
MAX_RESULT_DECODED_BYTES = 32 << 20  # arrays one typed result may inflate to: half of a message
MAX_SECRET = 4096  # tokens and API keys (IAM access tokens: 1-2 KB; metadata: 8 KB in all)
MAX_STRING = 1024  # any other string field or metadata value without a bound of its own
MAX_REPEATED = 1000  # entries of any other repeated or map field
MAX_PROXY_URLS = 16

# IBM's ids and names: letters, digits, '_', '-', '.', not starting with a separator.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def excerpt(value: str, length: int = QUOTED_PREFIX) -> str:
    """A short, printable quotation of caller input for error messages."""
    head = value[:length]
    return repr(head) + ("..." if len(value) > length else "")


def check_length(field: str, value: str, maximum: int) -> str:
    if len(value) > maximum:
        raise invalid_argument(
            field, f"is {len(value)} characters long; at most {maximum} are allowed"
        )
    return value


def check_id(field: str, value: str, *, required: bool = True, maximum: int = MAX_ID) -> str:
    """An id or name that goes into an upstream path: bounded and in IBM's alphabet."""
    if not value:
        if required:
            raise invalid_argument(field, "is required")
        return value
    check_length(field, value, maximum)
    if not _ID.fullmatch(value):
        raise invalid_argument(
            field,
            "must start with a letter or digit and contain only letters, digits, '_', '-' "
            f"and '.', got {excerpt(value)}",
        )
    return value


def check_name(field: str, value: str, *, required: bool = False) -> str:
    """Backend names and program ids (same alphabet as ids, same bound)."""
    return check_id(field, value, required=required, maximum=MAX_NAME)


def check_tags(field: str, tags: Iterable[str]) -> list[str]:
    values = list(tags)
    if len(values) > MAX_TAGS:
        raise invalid_argument(field, f"has {len(values)} entries; at most {MAX_TAGS} are allowed")
    for index, tag in enumerate(values):
        if not tag:
            raise invalid_argument(f"{field}[{index}]", "must be a non-empty string")
        check_length(f"{field}[{index}]", tag, MAX_TAG)
    return values


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')  # unrolled: fast on long strings
_BRACKET = re.compile(r"[\[\]{}]")


def json_depth_ok(text: str, maximum: int = MAX_JSON_DEPTH) -> bool:
    """Whether JSON text nests at most `maximum` levels, checked before parsing so a deeply
    nested document never reaches the recursive parser. Linear; strings (Qiskit's inputs are
    mostly one long base64 string) are skipped by the regex engine, not a Python loop."""
    depth = 0
    for match in _BRACKET.finditer(_JSON_STRING.sub("", text)):
        depth += 1 if match.group() in "[{" else -1
        if depth > maximum:
            return False
    return True


def path_segment(value: str) -> str:
    """A value placed in an upstream URL path: every reserved character percent-escaped."""
    return quote(value, safe="")


# --- whole request messages -----------------------------------------------------------------
# Bounds by field name, for every request message of the API (the names mean the same thing
# wherever they appear). (max characters per value, max entries when repeated or a map).
# None: no bound of its own (inputs_json: bounded by the message size and the admission
# budget).
FIELD_BOUNDS: dict[str, tuple[int | None, int]] = {
    "job_id": (MAX_ID, 1),
    "session_id": (MAX_ID, 1),
    "request_id": (MAX_ID, 1),
    "job_ids": (MAX_ID, MAX_JOB_IDS),
    "resume_after_revisions": (MAX_ID, MAX_JOB_IDS),  # map: job id -> revision
    "name": (MAX_NAME, 1),
    "backend": (MAX_NAME, 1),
    "program_id": (MAX_NAME, 1),
    "instance": (MAX_INSTANCE, 1),
    "url": (MAX_URL, 1),
    "urls": (MAX_URL, MAX_PROXY_URLS),  # proxies: protocol -> proxy URL
    "page_token": (MAX_PAGE_TOKEN, 1),
    "tags": (MAX_TAG, MAX_TAGS),
    "attributes": (MAX_FILTER_VALUE, MAX_FILTER_ENTRIES),  # BackendFilter: name -> JSON text
    "token": (MAX_SECRET, 1),
    "password_ntlm": (MAX_SECRET, 1),
    "inputs_json": (None, 1),
}
_TIMESTAMP = "google.protobuf.Timestamp"
# Timestamp.ToDatetime accepts 0001-01-01 to 9999-12-31 (as the protobuf spec bounds it).
_MIN_SECONDS = int((datetime(1, 1, 1) - datetime(1970, 1, 1)).total_seconds())
_MAX_SECONDS = int((datetime(9999, 12, 31, 23, 59, 59) - datetime(1970, 1, 1)).total_seconds())


def check_message(message: Message, prefix: str = "") -> None:
    """Checks every field a caller set in a request, recursively: strings and repeated/map
    fields bounded (`FIELD_BOUNDS`, else MAX_STRING / MAX_REPEATED), enum values defined in
    their enum (proto3 keeps unknown numbers; they must not select a default action), and
    timestamps within what `Timestamp.ToDatetime` accepts. INVALID_ARGUMENT naming the
    field (e.g. `filter.attributes[n_qubits]`, `tags[2]`) otherwise."""
    for fd in message.DESCRIPTOR.fields:
        length, entries = FIELD_BOUNDS.get(fd.name, (MAX_STRING, MAX_REPEATED))
        if length is None and fd.type == fd.TYPE_STRING and not fd.is_repeated:
            continue  # never read: reading makes one more copy of (say) 20 MB of inputs
        if fd.message_type is not None and not fd.is_repeated and not message.HasField(fd.name):
            continue
        name = f"{prefix}{fd.name}"
        value = getattr(message, fd.name)
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            if len(value) > entries:
                raise invalid_argument(
                    name, f"has {len(value)} entries; at most {entries} are allowed"
                )
            value_fd = fd.message_type.fields_by_name["value"]
            for key in value:
                label = f"{name}[{_label(str(key))}]"
                _check_scalar(label, key, length, None)
                if value_fd.message_type is not None:
                    check_message(value[key], f"{label}.")
                else:
                    _check_scalar(label, value[key], length, value_fd.enum_type)
        elif fd.is_repeated:
            if len(value) > entries:
                raise invalid_argument(
                    name, f"has {len(value)} entries; at most {entries} are allowed"
                )
            for index, item in enumerate(value):
                if fd.message_type is not None:
                    check_message(item, f"{name}[{index}].")
                else:
                    _check_scalar(f"{name}[{index}]", item, length, fd.enum_type)
        elif fd.message_type is not None:
            if fd.message_type.full_name == _TIMESTAMP:
                _check_timestamp(name, value)
            else:
                check_message(value, f"{name}.")
        else:
            _check_scalar(name, value, length, fd.enum_type)


def _label(key: str) -> str:
    """A map key as it appears in a field path: short keys whole, long ones cut."""
    return key if len(key) <= QUOTED_PREFIX else key[:QUOTED_PREFIX] + "..."


def _check_scalar(field: str, value: Any, length: int | None, enum: Any) -> None:
    if isinstance(value, str):
        if length is not None:
            check_length(field, value, length)
    elif isinstance(value, bytes):
        if length is not None and len(value) > length:
            raise invalid_argument(
                field, f"is {len(value)} bytes long; at most {length} are allowed"
            )
    elif enum is not None and value not in enum.values_by_number:
        raise invalid_argument(
            field,
            f"{value} is not a value of {enum.name} "
            f"(one of {', '.join(v.name for v in enum.values)})",
        )


def _check_timestamp(field: str, value: Any) -> None:
    if not _MIN_SECONDS <= value.seconds <= _MAX_SECONDS:
        raise invalid_argument(
            field, f"seconds must be between {_MIN_SECONDS} and {_MAX_SECONDS} (years 1 to 9999)"
        )
    if not 0 <= value.nanos <= 999_999_999:
        raise invalid_argument(field, "nanos must be between 0 and 999999999")


_REQUEST_ID = re.compile(r"[!-~]+")  # printable ASCII, no space


def check_request_id(field: str, value: str) -> str:
    """A client-chosen idempotency key (AIP-155 suggests a UUID): bounded printable ASCII,
    so it is safe in logs and store keys."""
    if not value:
        return value
    check_length(field, value, MAX_ID)
    if not _REQUEST_ID.fullmatch(value):
        raise invalid_argument(
            field, f"must be printable ASCII without spaces (a UUID, say), got {excerpt(value)}"
        )
    return value
