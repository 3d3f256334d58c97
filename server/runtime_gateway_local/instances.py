"""Instances the local runtime serves: IBM Cloud CRNs and IBM Quantum hub/group/project.

Each cloud instance carries what IBM Cloud's Global Search returns for it (name, plan id,
tags, the `doc.extensions.quantum` allocation) and what the Global Catalog answers for its
plan (display name, pricing type): the SDK filters instances on these (`plans_preference`,
`tags`, `region`, free/trial first). One instance per plan kind the SDK filters on:
Open (free), Premium (paygo) and Internal (subscription, with a usage allocation, the only
one that sees the test devices).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runtime_gateway_local.backends import TEST_DEVICES

_ACCOUNT = "a/0123456789abcdef0123456789abcdef"
_ACCOUNT_ID = _ACCOUNT.split("/", 1)[1]


@dataclass(frozen=True)
class CloudInstance:
    crn: str
    name: str
    plan: str  # catalog display name, e.g. "Open"
    plan_id: str
    pricing_type: str
    tags: tuple[str, ...] = ()  # lower-case, as IBM Cloud stores user tags
    usage_limit_seconds: int | None = None  # None: unlimited
    usage_allocation_seconds: int | None = None  # the plan's allocation per period, if any
    # Backends this instance may use; None: all but the test devices (IBM allocates devices
    # per instance; its test devices are allocated to internal instances only).
    backends: tuple[str, ...] | None = None
    test_devices: bool = False  # sees the `test_eagle*` devices (backends.TEST_DEVICES)
    created_at: str = "2024-01-01T00:00:00.000Z"

    @property
    def region(self) -> str:
        return self.crn.split(":")[5]

    @property
    def guid(self) -> str:
        return self.crn.split(":")[7]

    def sees(self, backend: str) -> bool:
        """Whether this instance may list, read and run on `backend`."""
        if backend in TEST_DEVICES:
            return self.test_devices
        return self.backends is None or backend in self.backends

    def allocation(self) -> dict[str, Any]:
        """`doc.extensions.quantum` as Global Search returns it: the SDK ignores instances
        without it (no backend allocation)."""
        quantum: dict[str, Any] = {"backend_allocation": True, "plan": self.plan.lower()}
        if self.backends is not None:
            quantum["backends"] = list(self.backends)
        if self.test_devices:
            quantum["test_devices"] = sorted(TEST_DEVICES)
        if self.usage_allocation_seconds is not None:
            quantum["usage_allocation_seconds"] = self.usage_allocation_seconds
        return {"quantum": quantum}

    def search_item(self) -> dict[str, Any]:
        """The instance as Global Search's `POST /v3/resources/search` lists it."""
        return {
            "crn": self.crn,
            "name": self.name,
            "service_plan_unique_id": self.plan_id,
            "tags": list(self.tags),
            "region": self.region,
            "type": "resource-instance",
            "family": "resource_controller",
            "doc": {
                "name": self.name,
                "region_id": self.region,
                "resource_plan_id": self.plan_id,
                "extensions": self.allocation(),
            },
        }

    def resource_instance(self) -> dict[str, Any]:
        """The instance as the Resource Controller's `GET /v2/resource_instances/{id}` answers."""
        return {
            "id": self.crn,
            "guid": self.guid,
            "crn": self.crn,
            "url": f"/v2/resource_instances/{self.guid}",
            "name": self.name,
            "region_id": self.region,
            "account_id": _ACCOUNT_ID,
            "resource_plan_id": self.plan_id,
            "resource_id": "quantum-computing",
            "state": "active",
            "type": "service_instance",
            "created_at": self.created_at,
            "extensions": self.allocation(),
        }


@dataclass(frozen=True)
class Instances:
    cloud: tuple[CloudInstance, ...]
    hgps: tuple[str, ...]  # the first is the account's default (open) project
    by_crn: dict[str, CloudInstance] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_crn", {i.crn: i for i in self.cloud})

    def lookup(self, key: str) -> CloudInstance | None:
        """By CRN or by GUID (the Resource Controller accepts either as the instance id)."""
        found = self.by_crn.get(key)
        return found or next((i for i in self.cloud if i.guid == key), None)


INTERNAL_USAGE_LIMIT_SECONDS = 36_000  # a 10 h allocation per period


def default_instances(usage_limit_seconds: int | None = None) -> Instances:
    return Instances(
        cloud=(
            CloudInstance(
                crn=f"crn:v1:bluemix:public:quantum-computing:us-east:{_ACCOUNT}:local-runtime-open::",
                name="local-runtime-open",
                plan="Open",
                plan_id="local-plan-open",
                pricing_type="free",
                tags=("local", "open"),
                usage_limit_seconds=usage_limit_seconds,
            ),
            CloudInstance(
                crn=f"crn:v1:bluemix:public:quantum-computing:eu-de:{_ACCOUNT}:local-runtime-premium::",
                name="local-runtime-premium",
                plan="Premium",
                plan_id="local-plan-premium",
                pricing_type="paygo",
                tags=("local", "premium"),
            ),
            CloudInstance(
                crn=f"crn:v1:bluemix:public:quantum-computing:us-east:{_ACCOUNT}:local-runtime-internal::",
                name="local-runtime-internal",
                plan="Internal",
                plan_id="local-plan-internal",
                pricing_type="subscription",
                tags=("local", "internal"),
                usage_limit_seconds=INTERNAL_USAGE_LIMIT_SECONDS,
                usage_allocation_seconds=INTERNAL_USAGE_LIMIT_SECONDS,
                test_devices=True,
            ),
        ),
        hgps=("ibm-q/open/main", "local-hub/local-group/local-project"),
    )
