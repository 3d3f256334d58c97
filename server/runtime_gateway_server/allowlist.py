"""Which upstream origins the gateway may contact (SSRF defence).

A caller's `x-runtime-url`, a saved account's `url` or `proxies`, and URLs an upstream returns
(`/users/me`'s `urls.services.runtime`) all end up as hosts the gateway connects to with the
caller's token. `UpstreamAllowList.check(url)` decides, before any connection, whether a URL
may be contacted; `HttpUpstream.request` calls it for every request.

Allowed:
- IBM's hosts, https on port 443 only, derived as the SDK derives them from `cloud.ibm.com`
  (and `test.cloud.ibm.com`, IBM's staging) and the IBM Quantum Classic hosts (`IBM_HOSTS`);
- the embedded/configured local runtime's exact origin (scheme, host, port);
- the exact origins of `IAM_URL`, `GLOBAL_SEARCH_URL` and `GLOBAL_CATALOG_URL` when set;
- the operator's `--allow-upstream HOST[:PORT]` entries (`RUNTIME_GATEWAY_ALLOW_UPSTREAM`,
  comma-separated), over http or https:
  - `HOST` matches that host exactly (case-insensitive); `*.HOST` matches any subdomain of
    HOST at any depth, but not HOST itself; IP addresses match exactly (`[::1]` for IPv6);
  - without `:PORT` any port is allowed; with it, only that port (the URL's port, or 80/443
    when the URL has none).

Never allowed, whatever the list: schemes other than http/https; URLs with user information
(`https://cloud.ibm.com@evil.test`); hosts with a trailing dot, backslashes, percent-escapes or
other characters outside DNS names and IP literals; all-numeric hosts that are not a dotted
IPv4 address (`127.1`, `2130706433`); URLs that `urllib.parse` and urllib3 (which `requests`
connects with) read as different hosts or ports. Matching is on whole host names, never by
prefix or substring: `cloud.ibm.com.evil.test` is not `cloud.ibm.com`.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from urllib3.util import parse_url

ALLOW_FLAG = "--allow-upstream"
ALLOW_ENV = "RUNTIME_GATEWAY_ALLOW_UPSTREAM"
ENDPOINT_ENV = ("IAM_URL", "GLOBAL_SEARCH_URL", "GLOBAL_CATALOG_URL")
DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_URL = 2048  # as limits.MAX_URL (not imported: limits imports errors, which is not needed)

# The hosts the SDK derives from `url=https://cloud.ibm.com` (0.21 and 0.51), for production
# and IBM's staging; `*.` entries cover `<region>.quantum.` and `private.<region>.quantum.`.
_CLOUD_PREFIXES = (
    "",
    "iam.",
    "private.iam.",
    "quantum.",
    "*.quantum.",
    "*.quantum-computing.",  # 0.21's ibm_cloud runtime, {region}.quantum-computing.{host}
    "api.global-search-tagging.",
    "globalcatalog.",
    "resource-controller.",
)
IBM_HOSTS: tuple[str, ...] = (
    *(
        f"{prefix}{base}"
        for base in ("cloud.ibm.com", "test.cloud.ibm.com")
        for prefix in _CLOUD_PREFIXES
    ),
    # IBM Quantum Classic (ibm_quantum): auth, its API, and the runtime hosts /users/me names.
    "auth.quantum.ibm.com",
    "api.quantum.ibm.com",
    "*.quantum-computing.ibm.com",
)

_LABEL = re.compile(r"[a-z0-9]([a-z0-9_-]*[a-z0-9])?")
_NUMERIC = re.compile(r"[0-9.]+")
_BAD_CHARACTERS = re.compile(r"[\x00-\x20\x7f\\]")  # anywhere in a URL
_AUTHORITY = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*")  # "scheme://authority"
_BAD_IN_HOST = re.compile(r"[%]")  # percent-escapes in the authority (paths may have them)


class NotAllowed(ValueError):
    """A URL the gateway must not contact; `str()` is a message safe to show and log.

    `origin` is `host:port` when the URL was well formed (the operator could allow it), else
    empty."""

    def __init__(self, message: str, origin: str = "") -> None:
        super().__init__(message)
        self.origin = origin


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str  # lower case; IPv6 without brackets, compressed
    port: int

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.netloc}"


@dataclass(frozen=True)
class Rule:
    """One allowed host pattern. `host` is exact, or `*.suffix`; `port` None: any port."""

    host: str
    port: int | None
    schemes: frozenset[str]
    source: str  # "IBM", "local runtime", "IAM_URL", "--allow-upstream", ...

    def matches(self, origin: Origin) -> bool:
        if origin.scheme not in self.schemes:
            return False
        if self.port is not None and origin.port != self.port:
            return False
        if self.host.startswith("*."):
            return origin.host.endswith(self.host[1:])  # ".suffix": a whole-label boundary
        return origin.host == self.host


def _canonical_host(host: str, what: str) -> str:
    """The host in the form rules compare: lower case, IPs canonical; NotAllowed otherwise."""
    host = host.lower()
    if not host:
        raise NotAllowed(f"{what} has no host")
    if host.endswith("."):
        raise NotAllowed(f"{what} names a host with a trailing dot, which is not allowed")
    if ":" in host:  # IPv6 (brackets already removed)
        try:
            address = ipaddress.IPv6Address(host)
        except ValueError:
            raise NotAllowed(f"{what} names an invalid IPv6 address") from None
        return address.compressed
    if _NUMERIC.fullmatch(host):
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise NotAllowed(
                f"{what} names a numeric host that is not a dotted IPv4 address"
            ) from None
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in host.split(".")):
        raise NotAllowed(f"{what} names a host that is not a valid DNS name")
    return host


def origin_of(url: str, *, allow_userinfo: bool = False) -> Origin:
    """The (scheme, host, port) a URL connects to; NotAllowed when it is malformed or ambiguous.

    `allow_userinfo` is for proxy URLs only (a proxy's own credentials)."""
    what = "the upstream URL"
    if len(url) > MAX_URL:
        raise NotAllowed(f"{what} is longer than {MAX_URL} characters")
    if _BAD_CHARACTERS.search(url):
        raise NotAllowed(f"{what} contains spaces, control characters or '\\'")
    parts = urlsplit(url)
    if _BAD_IN_HOST.search(parts.netloc):
        raise NotAllowed(f"{what} has percent-escapes in its host")
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise NotAllowed(f"{what} must be http or https")
    if "@" in parts.netloc and not allow_userinfo:
        raise NotAllowed(f"{what} carries user information (user@host), which is never allowed")
    try:
        port = parts.port
        theirs = parse_url(url)
    except ValueError:
        raise NotAllowed(f"{what} has an invalid port or host") from None
    host = _canonical_host(parts.hostname or "", what)
    port = port if port is not None else DEFAULT_PORTS[scheme]
    # requests connects where urllib3 reads the host: both readings must agree.
    their_host = (theirs.host or "").strip("[]")
    their_port = theirs.port if theirs.port is not None else DEFAULT_PORTS[scheme]
    try:
        same = _canonical_host(their_host, what) == host and their_port == port
    except NotAllowed:
        same = False
    if not same:
        raise NotAllowed(
            f"{what} is ambiguous (its host or port reads differently to HTTP libraries)"
        )
    return Origin(scheme, host, port)


def parse_entry(entry: str, source: str = ALLOW_FLAG) -> Rule:
    """An operator entry `HOST`, `HOST:PORT`, `*.HOST[:PORT]`, `[IPV6][:PORT]`; OSError if bad."""
    text = entry.strip().lower()
    wildcard = text.startswith("*.")
    body = text[2:] if wildcard else text
    if not body or any(c in body for c in "/@%?#") or _BAD_CHARACTERS.search(body):
        raise OSError(f"{source} must be HOST[:PORT] or *.HOST[:PORT], got {entry!r}")
    try:
        parts = urlsplit(f"//{body}")
        port = parts.port
        host = _canonical_host(parts.hostname or "", f"{source} {entry!r}")
    except (ValueError, NotAllowed) as error:
        raise OSError(
            f"{source} must be HOST[:PORT] or *.HOST[:PORT], got {entry!r}: {error}"
        ) from None
    if wildcard and (":" in host or _NUMERIC.fullmatch(host)):
        raise OSError(f"{source} {entry!r}: '*.' applies to DNS names, not IP addresses")
    return Rule(f"*.{host}" if wildcard else host, port, frozenset(DEFAULT_PORTS), source)


def parse_entries(values: Iterable[str], source: str = ALLOW_FLAG) -> list[Rule]:
    """Entries from repeated flags, each possibly comma-separated."""
    return [
        parse_entry(item, source)
        for value in values
        for item in (v.strip() for v in value.split(","))
        if item
    ]


def origin_rule(url: str, source: str) -> Rule:
    """Exactly the origin of `url` (the local runtime, IAM_URL, ...)."""
    try:
        origin = origin_of(url)
    except NotAllowed as error:
        raise OSError(f"{source} {url!r} cannot be allowed: {error}") from None
    return Rule(origin.host, origin.port, frozenset({origin.scheme}), source)


def ibm_rules() -> list[Rule]:
    return [Rule(host, 443, frozenset({"https"}), "IBM") for host in IBM_HOSTS]


@dataclass
class UpstreamAllowList:
    """The origins the gateway may contact. Build it with `for_gateway`."""

    rules: list[Rule] = field(default_factory=ibm_rules)

    @classmethod
    def for_gateway(
        cls,
        entries: Iterable[str] = (),
        *,
        local_url: str | None = None,
        environ: dict[str, str] | None = None,
    ) -> UpstreamAllowList:
        """IBM's hosts, the local runtime, the operator's env endpoints and entries.

        Raises OSError for a malformed entry (the command line reports it)."""
        env = os.environ if environ is None else environ
        rules = ibm_rules()
        if local_url:
            rules.append(origin_rule(local_url, "local runtime"))
        for name in ENDPOINT_ENV:
            if env.get(name):
                rules.append(origin_rule(env[name], name))
        rules += parse_entries(entries)
        return cls(rules)

    def __post_init__(self) -> None:
        # Decisions per "scheme://authority" (the rules never change): a check is then one
        # regex match and a dict lookup, not a parse. Bounded: cleared when full.
        self._decided: dict[tuple[str, bool], Origin | NotAllowed] = {}

    def check(self, url: str, *, proxy: bool = False) -> Origin:
        """The URL's origin when it may be contacted; NotAllowed (a readable message) if not."""
        head = _AUTHORITY.match(url)
        if head is None or len(url) > MAX_URL or _BAD_CHARACTERS.search(url):
            return self._decide(url, proxy)  # raises with the precise reason
        # Both urllib.parse and urllib3 end the authority at the first '/', '?' or '#', so
        # the decision for "scheme://authority/" holds for every URL starting that way.
        key = (head.group(0), proxy)
        decided = self._decided.get(key)
        if decided is None:
            try:
                decided = self._decide(head.group(0) + "/", proxy)
            except NotAllowed as refused:
                decided = refused
            if len(self._decided) >= 4096:
                self._decided.clear()
            self._decided[key] = decided
        if isinstance(decided, NotAllowed):
            raise NotAllowed(str(decided), decided.origin)
        return decided

    def _decide(self, url: str, proxy: bool) -> Origin:
        origin = origin_of(url, allow_userinfo=proxy)
        if any(rule.matches(origin) for rule in self.rules):
            return origin
        if origin.scheme == "http" and any(
            rule.source == "IBM" and rule.matches(Origin("https", origin.host, 443))
            for rule in self.rules
        ):
            raise NotAllowed(
                f"the upstream {origin} is one of IBM's hosts, which are reached over https "
                "(port 443) only",
                origin.netloc,
            )
        raise NotAllowed(
            f"the upstream {origin.netloc} is not on the gateway's allow-list (IBM's hosts, the "
            f"local runtime, and the operator's entries); the operator can allow it with "
            f"`serve {ALLOW_FLAG} {origin.netloc}` (env {ALLOW_ENV})",
            origin.netloc,
        )

    def allows(self, url: str) -> bool:
        try:
            self.check(url)
        except NotAllowed:
            return False
        return True
