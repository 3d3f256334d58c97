"""Calls IBM (or the local runtime) for one account: endpoints, authentication, instances.

Endpoints follow the SDK (docs/ibm-runtime-rest.md, section 2):
- cloud channels: IAM at `IAM_URL` or `iam.<host>`, Global Search / Catalog at
  `GLOBAL_SEARCH_URL` / `GLOBAL_CATALOG_URL` or `api.global-search-tagging.<host>` /
  `globalcatalog.<host>`, runtime at `quantum.<host>/api/v1` (`<region>.quantum.` outside
  us-east), or `url` itself when it contains `experimental`; `Bearer <IAM JWT>` +
  `Service-CRN` + `IBM-API-Version`, refreshed at 80 % of the token's life;
- ibm_quantum: `loginWithToken`, the runtime URL from `/users/me`, projects from `/Network`,
  `X-Access-Token`;
- local: the embedded local runtime, as a cloud account on its loopback paths.
One 401 from the runtime triggers one re-authentication and one retry.

Every host an account leads to must be on the gateway's allow-list (`allowlist.py`): checked
when a client is made for the account (`check_account`) and, for URLs IBM returns
(`/users/me`), as soon as they are read; `HttpUpstream.request` checks every request again.
"""

from __future__ import annotations

import ipaddress
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import grpc
import jwt

from runtime_gateway_server.accounts import Account
from runtime_gateway_server.allowlist import ALLOW_ENV, ALLOW_FLAG, NotAllowed, UpstreamAllowList
from runtime_gateway_server.errors import GatewayError
from runtime_gateway_server.logs import SECRETS
from runtime_gateway_server.metrics import TOKEN_REFRESHES
from runtime_gateway_server.upstream import (
    Deadline,
    HttpUpstream,
    Reply,
    error_from_reply,
    not_allowed,
)

API_VERSION = "2026-04-15"
APIKEY_GRANT = "urn:ibm:params:oauth:grant-type:apikey"
PRICING_ORDER = ("free", "trial", "paygo", "paid", "subscription", "unknown")


@dataclass(frozen=True)
class Instance:
    id: str
    name: str = ""
    plan: str = ""
    pricing_type: str = ""
    tags: tuple[str, ...] = ()
    is_default: bool = False


@dataclass
class Endpoints:
    runtime: str = ""  # base of /backends, /jobs; empty until known (ibm_quantum: after login)
    iam: str = ""
    search: str = ""
    catalog: str = ""
    auth: str = ""  # ibm_quantum only


def cloud_endpoints(url: str, crn: str | None) -> Endpoints:
    parts = urlsplit(url)
    scheme, host = parts.scheme or "https", parts.hostname or "cloud.ibm.com"
    region = crn.split(":")[5] if crn and crn.count(":") == 9 else "us-east"
    if "experimental" in url:
        runtime = url.rstrip("/")
    elif region == "us-east":
        runtime = f"{scheme}://quantum.{host}/api/v1"
    else:
        runtime = f"{scheme}://{region}.quantum.{host}/api/v1"
    return Endpoints(
        runtime=runtime,
        iam=(os.environ.get("IAM_URL") or f"{scheme}://iam.{host}").rstrip("/"),
        search=(
            os.environ.get("GLOBAL_SEARCH_URL") or f"{scheme}://api.global-search-tagging.{host}"
        ).rstrip("/"),
        catalog=(
            os.environ.get("GLOBAL_CATALOG_URL") or f"{scheme}://globalcatalog.{host}/api/v1"
        ).rstrip("/"),
    )


def account_urls(account: Account, local_base: str | None = None) -> list[str]:
    """The URLs an account leads the gateway to before IBM names any (ibm_quantum's runtime
    comes later, from `/users/me`)."""
    if account.channel == "local":
        return [local_base] if local_base else []
    if account.channel == "ibm_quantum":
        return [account.url]
    found = cloud_endpoints(account.url, account.instance)
    return [found.runtime, found.iam, found.search, found.catalog]


def check_account(
    account: Account, allow: UpstreamAllowList | None, local_base: str | None = None
) -> None:
    """PERMISSION_DENIED / UPSTREAM_NOT_ALLOWED unless every host the account leads to (and its
    proxies) is on the allow-list: refused before any connection."""
    if allow is None:
        return
    where = "x-runtime-url" if account.name is None else f"the url of account {account.name!r}"
    refusals: list[NotAllowed] = []
    for url in account_urls(account, local_base):
        try:
            allow.check(url)
        except NotAllowed as refused:
            refusals.append(refused)
    if len(refusals) == 1 or any(not r.origin for r in refusals):
        raise not_allowed(refusals[0], where)
    if refusals:  # name every host the account leads to at once, not one per attempt
        hosts = list(dict.fromkeys(r.origin for r in refusals))
        flags = " ".join(f"{ALLOW_FLAG} {h}" for h in hosts)
        advice = (
            f"the operator can allow them with `serve {flags}` (env {ALLOW_ENV}, comma-separated)"
        )
        if _is_ip(urlsplit(account.url).hostname or ""):
            # quantum.127.0.0.1 is no host: allowing it cannot help.
            advice = (
                "these hosts are derived from the URL as the SDK derives them, and an IP "
                "address has none: give a domain name (a local runtime is reached through "
                "HTTP_PROXY, as the README's proxy recipe shows)"
            )
        raise not_allowed(
            NotAllowed(
                f"the upstreams {', '.join(hosts)} are not on the gateway's allow-list; {advice}",
                hosts[0],
            ),
            where,
        )
    for proxy in ((account.proxies or {}).get("urls") or {}).values():
        try:
            allow.check(str(proxy), proxy=True)
        except NotAllowed as refused:
            raise not_allowed(refused, "the account's proxies") from None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def local_endpoints(base: str) -> Endpoints:
    return Endpoints(
        runtime=f"{base}/api/v1",
        iam=base,
        search=f"{base}/global-search",
        catalog=f"{base}/global-catalog/api/v1",
    )


@dataclass
class _Token:
    value: str = ""
    refresh_at: float = 0.0  # wall-clock time after which the token is renewed


class AccountClient:
    """Everything the gateway sends to IBM for one account (thread-safe)."""

    def __init__(self, account: Account, http: HttpUpstream, local_base: str | None = None) -> None:
        check_account(account, http.allow, local_base)
        self.account = account
        self.http = http
        self._lock = threading.Lock()
        self._token = _Token()
        self._instances: list[Instance] | None = None
        self._instance: str | None = account.instance
        self.proxies = (account.proxies or {}).get("urls") or None
        if account.channel == "local":
            assert local_base, "the local channel needs the embedded local runtime"
            self.endpoints = local_endpoints(local_base)
        elif account.channel == "ibm_quantum":
            self.endpoints = Endpoints(auth=account.url.rstrip("/"))
        else:
            self.endpoints = cloud_endpoints(account.url, account.instance)
        SECRETS.add(account.token)

    @property
    def legacy(self) -> bool:
        return self.account.channel == "ibm_quantum"

    # --- authentication -------------------------------------------------------------------
    def _send(self, method: str, url: str, deadline: Deadline, **kwargs: Any) -> Reply:
        return self.http.request(
            method,
            url,
            deadline=deadline,
            proxies=self.proxies,
            verify=self.account.verify,
            **kwargs,
        )

    def _access_token(self, deadline: Deadline, force: bool = False) -> str:
        with self._lock:
            if not force and self._token.value and time.time() < self._token.refresh_at:
                return self._token.value
            TOKEN_REFRESHES.labels(
                "rejected" if force else ("expiring" if self._token.value else "first")
            ).inc()
            if self.legacy:
                self._token = self._login(deadline)
            else:
                self._token = self._iam_token(deadline)
            SECRETS.add(self._token.value)
            return self._token.value

    def _iam_token(self, deadline: Deadline) -> _Token:
        reply = self._send(
            "POST",
            f"{self.endpoints.iam}/identity/token",
            deadline,
            data={
                "grant_type": APIKEY_GRANT,
                "apikey": self.account.token,
                "response_type": "cloud_iam",
            },
            headers={"Accept": "application/json"},
            retry=True,  # a token exchange creates nothing: safe to retry
        )
        _raise_for_login(reply, "IBM Cloud IAM rejected the API key")
        token = str(reply.json().get("access_token", ""))
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
            issued, expires = float(claims["iat"]), float(claims["exp"])
        except (jwt.InvalidTokenError, KeyError, TypeError, ValueError):
            raise GatewayError(
                grpc.StatusCode.UNAVAILABLE,
                "UPSTREAM_ERROR",
                "IAM answered with a token that is not a JWT",
            ) from None
        return _Token(token, issued + 0.8 * (expires - issued))

    def _login(self, deadline: Deadline) -> _Token:
        auth = self.endpoints.auth
        reply = self._send(
            "POST",
            f"{auth}/users/loginWithToken",
            deadline,
            json_body={"apiToken": self.account.token},
            retry=True,
        )
        _raise_for_login(reply, "IBM Quantum rejected the API token")
        access = str(reply.json().get("id", ""))
        SECRETS.add(access)
        me = self._send("GET", f"{auth}/users/me", deadline, headers={"X-Access-Token": access})
        if not me.ok:
            raise error_from_reply(me)
        urls = me.json().get("urls") or {}
        if not isinstance(urls, dict):
            urls = {}
        services = urls.get("services")
        services = services if isinstance(services, dict) else {}
        runtime = str(services.get("runtime") or "").rstrip("/")
        if not runtime:
            raise GatewayError(
                grpc.StatusCode.PERMISSION_DENIED,
                "UPSTREAM_PERMISSION_DENIED",
                "this account is not authorized to use the ibm_quantum runtime service",
            )
        legacy_api = str(urls.get("http") or auth).rstrip("/")
        # IBM's answer names hosts: they must be allowed before the token goes there.
        for named in (runtime, legacy_api):
            if self.http.allow is not None:
                try:
                    self.http.allow.check(named)
                except NotAllowed as refused:
                    raise not_allowed(refused, "a URL in /users/me's answer") from None
        self.endpoints.runtime = runtime
        network = self._send(
            "GET",
            f"{legacy_api}/Network",
            deadline,
            headers={"X-Access-Token": access},
        )
        if not network.ok:
            raise error_from_reply(network)
        self._instances = _hub_group_projects(network.json())
        # IBM Quantum tokens carry no expiry the SDK reads: renew hourly, or on a 401.
        return _Token(access, time.time() + 3600)

    def headers(self, deadline: Deadline, force_refresh: bool = False) -> dict[str, str]:
        token = self._access_token(deadline, force_refresh)
        # Keep this client's secrets the most recent in the scrubber's bounded registry, so a
        # flood of other tokens never evicts one still in use.
        SECRETS.add(token)
        SECRETS.add(self.account.token)
        if self.legacy:
            return {"X-Access-Token": token}
        return {
            "Authorization": f"Bearer {token}",
            "Service-CRN": self.instance(deadline),
            "IBM-API-Version": API_VERSION,
        }

    # --- instances ------------------------------------------------------------------------
    def instances(self, deadline: Deadline) -> list[Instance]:
        if self._instances is None:
            if self.legacy:
                self._access_token(deadline)
            else:
                self._instances = self._cloud_instances(deadline)
        instances = list(self._instances or [])
        chosen = self.account.instance
        if self.legacy and chosen:
            if chosen not in [i.id for i in instances]:
                raise GatewayError(
                    grpc.StatusCode.PERMISSION_DENIED,
                    "UPSTREAM_PERMISSION_DENIED",
                    f"hub/group/project {chosen} could not be found for this account",
                )
        default = chosen or (instances[0].id if instances else None)
        return [Instance(**{**i.__dict__, "is_default": i.id == default}) for i in instances]

    def instance(self, deadline: Deadline) -> str:
        """The instance calls go to: the account's, else the first the account can use."""
        if self._instance:
            return self._instance
        instances = self.instances(deadline)
        if not instances:
            raise GatewayError(
                grpc.StatusCode.FAILED_PRECONDITION,
                "INVALID_ACCOUNT",
                "no instance that supports Qiskit Runtime could be found for this account",
            )
        self._instance = instances[0].id
        return self._instance

    def _cloud_instances(self, deadline: Deadline) -> list[Instance]:
        token = self._access_token(deadline)
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(50):  # bounded paging
            body: dict[str, Any] = {
                "query": "service_name:quantum-computing",
                "fields": ["crn", "service_plan_unique_id", "name", "doc", "tags"],
            }
            if cursor:
                body["search_cursor"] = cursor
            reply = self._send(
                "POST",
                f"{self.endpoints.search}/v3/resources/search",
                deadline,
                params={"limit": 100},
                json_body=body,
                headers={"Authorization": f"Bearer {token}"},
                retry=True,  # a search creates nothing
            )
            if not reply.ok:
                raise error_from_reply(reply)
            page = reply.json()
            items += [i for i in page.get("items", []) if (i.get("doc") or {}).get("extensions")]
            cursor = page.get("search_cursor")
            if not cursor or not page.get("items"):
                break
        found = []
        plans: dict[str, tuple[str, str]] = {}
        for item in items:
            plan_id = str(item.get("service_plan_unique_id", ""))
            if plan_id not in plans:
                entry = self._send(
                    "GET",
                    f"{self.endpoints.catalog}/{plan_id}",
                    deadline,
                    headers={"Authorization": f"Bearer {token}"},
                )
                if entry.ok:
                    data = entry.json()
                    plans[plan_id] = (
                        str(
                            ((data.get("overview_ui") or {}).get("en") or {}).get(
                                "display_name", "unknown"
                            )
                        ).lower(),
                        str(
                            ((data.get("metadata") or {}).get("pricing") or {}).get(
                                "type", "unknown"
                            )
                        ).lower(),
                    )
                else:
                    plans[plan_id] = ("unknown", "unknown")
            plan, pricing = plans[plan_id]
            found.append(
                Instance(
                    id=str(item["crn"]),
                    name=str(item.get("name", "")),
                    plan=plan,
                    pricing_type=pricing,
                    tags=tuple(item.get("tags") or ()),
                )
            )
        rank = {p: i for i, p in enumerate(PRICING_ORDER)}
        found.sort(key=lambda i: rank.get(i.pricing_type, len(PRICING_ORDER)))
        if self.account.instance:  # the chosen one first
            found.sort(key=lambda i: i.id != self.account.instance)
        return found

    # --- runtime calls --------------------------------------------------------------------
    def runtime(
        self,
        method: str,
        path: str,
        deadline: Deadline,
        *,
        params: Any = None,
        json_body: Any = None,
        data: bytes | None = None,
        retry: bool | None = None,
    ) -> Reply:
        """A runtime API call; re-authenticates once on 401. Returns the reply, errors included.

        `data` is a JSON body sent as it is (job inputs must reach IBM byte-exact).
        """
        extra = {"Content-Type": "application/json"} if data is not None else {}
        headers = {**self.headers(deadline), **extra}
        base = self.endpoints.runtime
        reply = self._send(
            method,
            f"{base}{path}",
            deadline,
            headers=headers,
            params=params,
            json_body=json_body,
            data=data,
            retry=retry,
        )
        if reply.status == 401:
            headers = {**self.headers(deadline, force_refresh=True), **extra}
            reply = self._send(
                method,
                f"{base}{path}",
                deadline,
                headers=headers,
                params=params,
                json_body=json_body,
                data=data,
                retry=retry,
            )
        return reply


def _raise_for_login(reply: Reply, rejected: str) -> None:
    """A credential exchange's failure: 400/401/403 mean the credentials were refused."""
    if reply.status in (400, 401, 403):
        raise GatewayError(
            grpc.StatusCode.UNAUTHENTICATED,
            "UPSTREAM_UNAUTHENTICATED",
            f"{rejected}: {reply.upstream_message()}",
        )
    if reply.status in (404, 405):  # nothing answers logins there: the URL is not the service's
        raise GatewayError(
            grpc.StatusCode.FAILED_PRECONDITION,
            "INVALID_ACCOUNT",
            f"{rejected.split(' rejected')[0]} has no login endpoint at the account's URL "
            f"(HTTP {reply.status}): check x-runtime-url or the account's url",
        )
    if not reply.ok:
        raise error_from_reply(reply)


def _hub_group_projects(network: Any) -> list[Instance]:
    """Flattens `/Network` as the 0.21 SDK does: the default project last when there are several."""
    found: list[Instance] = []
    default: Instance | None = None
    for hub in network if isinstance(network, list) else []:
        for group_name, group in (hub.get("groups") or {}).items():
            for project_name, project in (group.get("projects") or {}).items():
                instance = Instance(id=f"{hub.get('name')}/{group_name}/{project_name}")
                if project.get("isDefault") and default is None:
                    default = instance
                else:
                    found.append(instance)
    if default is not None:
        found.append(default)
    return found


@dataclass
class ClientPool:
    """One AccountClient per set of credentials, so tokens and instances are reused."""

    http: HttpUpstream
    local_base: str | None = None
    max_clients: int = 1000
    _clients: dict[str, AccountClient] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self, account: Account) -> AccountClient:
        key = account.key
        with self._lock:
            found = self._clients.pop(key, None)
            if found is None:
                if account.channel == "local" and not self.local_base:
                    raise GatewayError(
                        grpc.StatusCode.FAILED_PRECONDITION,
                        "NOT_SUPPORTED",
                        "the local channel needs the embedded local runtime, "
                        "which this gateway does not run",
                    )
                found = AccountClient(account, self.http, self.local_base)
            self._clients[key] = found  # most recently used last
            while len(self._clients) > self.max_clients:
                self._clients.pop(next(iter(self._clients)))
            return found
