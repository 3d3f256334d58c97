"""Backends: listing, filtering as the SDK filters, least busy, with a shared cache.

Backend lists are cached per account and instance; configurations and calibrations per
upstream and backend (they are the same for every account that may see the backend);
status for a few seconds only. Every caller of the same account shares the entries.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import grpc

from runtime_gateway_server.cache import TTLCache
from runtime_gateway_server.errors import GatewayError, invalid_argument
from runtime_gateway_server.ibm import AccountClient
from runtime_gateway_server.limits import (
    MAX_FILTER_ENTRIES,
    MAX_FILTER_VALUE,
    QUOTED_PREFIX,
    check_length,
    check_name,
    excerpt,
    json_depth_ok,
    path_segment,
)
from runtime_gateway_server.upstream import Deadline, error_from_reply

STATUS_FIELDS = ("backend_name", "backend_version", "operational", "pending_jobs", "status_msg")


@dataclass(frozen=True)
class BackendFilter:
    name: str = ""
    min_num_qubits: int = 0
    instance: str = ""
    dynamic_circuits: bool | None = None
    simulator: bool | None = None
    operational: bool | None = None
    attributes: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Status:
    backend_name: str
    backend_version: str
    operational: bool
    pending_jobs: int
    status_msg: str
    raw_json: str

    @classmethod
    def from_upstream(cls, name: str, data: dict[str, Any], raw: str) -> Status:
        return cls(
            backend_name=str(data.get("backend_name") or name),
            backend_version=str(data.get("backend_version") or "0.0.0"),
            operational=bool(data.get("state", False)),
            pending_jobs=max(0, int(data.get("length_queue") or 0)),
            status_msg=str(data.get("status") or ""),
            raw_json=raw,
        )

    def get(self, key: str) -> Any:
        return getattr(self, key)


@dataclass(frozen=True)
class Backend:
    name: str
    configuration: dict[str, Any]
    configuration_json: str
    status: Status

    @property
    def num_qubits(self) -> int:
        return int(self.configuration.get("n_qubits") or 0)

    @property
    def simulator(self) -> bool:
        return bool(self.configuration.get("simulator"))

    @property
    def dynamic_circuits(self) -> bool:
        features = self.configuration.get("supported_features") or []
        return "dynamic_circuits" in features or "qasm3" in features


class BackendDirectory:
    def __init__(self, list_ttl: float = 60.0, config_ttl: float = 300.0, status_ttl: float = 2.0):
        self._lists: TTLCache[list[str]] = TTLCache(list_ttl)
        self._configs: TTLCache[tuple[dict[str, Any], str]] = TTLCache(config_ttl)
        self._properties: TTLCache[tuple[dict[str, Any], str]] = TTLCache(config_ttl)
        self._statuses: TTLCache[Status] = TTLCache(status_ttl)

    # --- upstream reads, cached -------------------------------------------------------------
    def names(
        self,
        client: AccountClient,
        deadline: Deadline,
        instance: str = "",
        field: str = "filter.instance",
    ) -> list[str]:
        """Backend names the account (or one of its ibm_quantum projects) may use; `field` is
        the request field that named `instance`, for errors."""
        if instance and instance != (client.account.instance or ""):
            if not client.legacy:
                raise invalid_argument(field, "is only supported for the ibm_quantum channel")
            if instance not in [i.id for i in client.instances(deadline)]:
                # As ListJobs and RunJob answer for a project the account cannot use.
                raise GatewayError(
                    grpc.StatusCode.PERMISSION_DENIED,
                    "UPSTREAM_PERMISSION_DENIED",
                    f"{field}: hub/group/project {excerpt(instance)} is not one of this account's",
                )

        def load() -> list[str]:
            params: dict[str, str] = {}
            if client.legacy:
                params["provider"] = instance or client.instance(deadline)
            else:
                params["include_mocks"] = "True"
            reply = client.runtime("GET", "/backends", deadline, params=params)
            if not reply.ok:
                raise error_from_reply(reply)
            devices = reply.json().get("devices", [])
            return sorted(d if isinstance(d, str) else str(d["name"]) for d in devices)

        key = (client.account.key, instance or client.instance(deadline))
        return self._lists.get_or_load(key, load)

    def configuration(
        self, client: AccountClient, name: str, deadline: Deadline
    ) -> tuple[dict[str, Any], str]:
        def load() -> tuple[dict[str, Any], str]:
            reply = client.runtime("GET", f"/backends/{path_segment(name)}/configuration", deadline)
            if reply.status == 404:
                raise backend_not_found(name)
            if not reply.ok:
                raise error_from_reply(reply)
            return reply.json(), reply.text

        return self._configs.get_or_load((client.endpoints.runtime, name), load)

    def status(self, client: AccountClient, name: str, deadline: Deadline) -> Status:
        def load() -> Status:
            reply = client.runtime("GET", f"/backends/{path_segment(name)}/status", deadline)
            if reply.status == 404:
                raise backend_not_found(name)
            if not reply.ok:
                raise error_from_reply(reply)
            return Status.from_upstream(name, reply.json(), reply.text)

        return self._statuses.get_or_load((client.endpoints.runtime, name), load)

    def properties(
        self, client: AccountClient, name: str, deadline: Deadline, updated_before: str | None
    ) -> tuple[dict[str, Any], str] | None:
        check_name("name", name, required=True)
        self._check_visible(client, name, deadline)
        if self.configuration(client, name, deadline)[0].get("simulator"):
            return None  # simulators have no calibration (the SDK does not ask either)

        def load() -> tuple[dict[str, Any], str]:
            params = {"updated_before": updated_before} if updated_before else None
            reply = client.runtime(
                "GET", f"/backends/{path_segment(name)}/properties", deadline, params=params
            )
            if reply.status == 404:
                raise backend_not_found(name)
            if not reply.ok:
                raise error_from_reply(reply)
            return reply.json(), reply.text

        if updated_before:
            return load()
        result = self._properties.get_or_load((client.endpoints.runtime, name), load)
        return result if result[0] else None

    # --- the API --------------------------------------------------------------------------
    def backend(self, client: AccountClient, name: str, deadline: Deadline) -> Backend:
        config, raw = self.configuration(client, name, deadline)
        return Backend(name, config, raw, self.status(client, name, deadline))

    def get(
        self, client: AccountClient, name: str, deadline: Deadline, instance: str = ""
    ) -> Backend:
        check_name("name", name, required=True)
        self._check_visible(client, name, deadline, instance)
        return self.backend(client, name, deadline)

    def get_status(self, client: AccountClient, name: str, deadline: Deadline) -> Status:
        check_name("name", name, required=True)
        self._check_visible(client, name, deadline)
        return self.status(client, name, deadline)

    def list(
        self, client: AccountClient, where: BackendFilter, deadline: Deadline
    ) -> list[Backend]:
        if where.min_num_qubits < 0:
            raise invalid_argument("filter.min_num_qubits", "must not be negative")
        names = self.names(client, deadline, where.instance)
        if where.name:
            names = [n for n in names if n == where.name]
        backends = [self.backend(client, n, deadline) for n in names]
        for key, _ in where.attributes:
            if key not in STATUS_FIELDS and not any(key in b.configuration for b in backends):
                if backends:
                    raise invalid_argument(
                        f"filter.attributes[{key[:QUOTED_PREFIX]}]",
                        "is neither a configuration nor a status attribute of these backends",
                    )
        return [b for b in backends if _matches(b, where)]

    def least_busy(
        self, client: AccountClient, where: BackendFilter, deadline: Deadline
    ) -> Backend:
        candidates = [
            b
            for b in self.list(client, where, deadline)
            if b.status.operational and b.status.status_msg == "active"
        ]
        if not candidates:
            raise GatewayError(
                grpc.StatusCode.NOT_FOUND, "BACKEND_NOT_FOUND", "No backend matches the criteria."
            )
        return min(candidates, key=lambda b: (b.status.pending_jobs, b.name))

    def _check_visible(
        self, client: AccountClient, name: str, deadline: Deadline, instance: str = ""
    ) -> None:
        if name not in self.names(client, deadline, instance, field="instance"):
            raise backend_not_found(name)


def _matches(backend: Backend, where: BackendFilter) -> bool:
    if where.min_num_qubits and backend.num_qubits < where.min_num_qubits:
        return False
    if where.dynamic_circuits is not None and backend.dynamic_circuits != where.dynamic_circuits:
        return False
    if where.simulator is not None and backend.simulator != where.simulator:
        return False
    if where.operational is not None and backend.status.operational != where.operational:
        return False
    for key, value in where.attributes:
        if key in backend.configuration:  # the SDK's rule: configuration first, then status
            if backend.configuration[key] != value:
                return False
        elif key in STATUS_FIELDS:
            if backend.status.get(key) != value:
                return False
        else:
            return False
    return True


def backend_not_found(name: str) -> GatewayError:
    return GatewayError(
        grpc.StatusCode.NOT_FOUND,
        "BACKEND_NOT_FOUND",
        f"No backend matches the criteria: no backend named {excerpt(name)} for this account.",
    )


def parse_attributes(raw: dict[str, str]) -> tuple[tuple[str, Any], ...]:
    """`filter.attributes` values are JSON text; sizes are bounded by `limits.check_message`."""
    if len(raw) > MAX_FILTER_ENTRIES:
        raise invalid_argument(
            "filter.attributes", f"has {len(raw)} entries; at most {MAX_FILTER_ENTRIES} are allowed"
        )
    parsed = []
    for key, text in sorted(raw.items()):
        field = f"filter.attributes[{key[:QUOTED_PREFIX]}]"
        check_length(field, text, MAX_FILTER_VALUE)
        try:
            if not json_depth_ok(text):
                raise ValueError("nested too deeply")
            parsed.append((key, json.loads(text)))
        except (ValueError, RecursionError):
            raise invalid_argument(
                field, f'must be JSON text (e.g. 127, true, "active"), got {excerpt(text)}'
            ) from None
    return tuple(parsed)
