"""Instances the local runtime serves: IBM Cloud CRNs and IBM Quantum hub/group/project."""

from __future__ import annotations

from dataclasses import dataclass, field

_ACCOUNT = "a/0123456789abcdef0123456789abcdef"


@dataclass(frozen=True)
class CloudInstance:
    crn: str
    name: str
    plan: str  # catalog display name, e.g. "Open"
    plan_id: str
    pricing_type: str
    tags: tuple[str, ...] = ()
    usage_limit_seconds: int | None = None  # None: unlimited

    @property
    def region(self) -> str:
        return self.crn.split(":")[5]


@dataclass(frozen=True)
class Instances:
    cloud: tuple[CloudInstance, ...]
    hgps: tuple[str, ...]  # the first is the account's default (open) project
    by_crn: dict[str, CloudInstance] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_crn", {i.crn: i for i in self.cloud})


def default_instances(usage_limit_seconds: int | None = None) -> Instances:
    return Instances(
        cloud=(
            CloudInstance(
                crn=f"crn:v1:bluemix:public:quantum-computing:us-east:{_ACCOUNT}:local-runtime-open::",
                name="local-runtime-open",
                plan="Open",
                plan_id="local-plan-open",
                pricing_type="free",
                tags=("local",),
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
        ),
        hgps=("ibm-q/open/main", "local-hub/local-group/local-project"),
    )
