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
from urllib.parse import quote

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
            f"must contain only letters, digits, '_', '-' and '.', got {excerpt(value)}",
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
