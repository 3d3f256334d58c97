"""Shots as IBM Runtime counts them once twirling options apply.

IBM's TwirlingOptions (qiskit-ibm-runtime `options/twirling_options.py`): with twirling on,
a pub runs `num_randomizations` random twirls of `shots_per_randomization` shots each, so
the shots it runs and reports are their product, not the pub's requested shots:

* both set: `num_randomizations * shots_per_randomization` (16 x 100 = 1,600 for a pub that
  asked for 400);
* only `num_randomizations`: `shots_per_randomization = ceil(shots / num_randomizations)`;
* only `shots_per_randomization`: `num_randomizations = ceil(shots / shots_per_randomization)`;
* neither ("auto"): 32 randomizations of `ceil(shots / 32)` shots.

Twirling is on when `enable_gates` or `enable_measure` is true. Defaults: off for the
Sampler; for the Estimator, measurement twirling follows the resilience level (on from
level 1, IBM's default level, off at level 0), gate twirling is off unless level 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

AUTO_RANDOMIZATIONS = 32
DEFAULT_RESILIENCE_LEVEL = 1  # IBM's Estimator default


@dataclass(frozen=True)
class Twirl:
    """How one pub's shots are spread: `randomizations` x `shots_per_randomization`."""

    randomizations: int
    shots_per_randomization: int

    @property
    def shots(self) -> int:
        return self.randomizations * self.shots_per_randomization


def _count(value: Any) -> int | None:
    """A positive int option, or None for "auto"/unset."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None
    return value


def enabled(program_id: str, options: dict[str, Any]) -> bool:
    twirling = options.get("twirling")
    twirling = twirling if isinstance(twirling, dict) else {}
    if program_id == "estimator":
        level = options.get("resilience_level", DEFAULT_RESILIENCE_LEVEL)
        level = level if isinstance(level, int) else DEFAULT_RESILIENCE_LEVEL
        gates = twirling.get("enable_gates", level >= 2)
        measure = twirling.get("enable_measure", level >= 1)
    else:
        gates = twirling.get("enable_gates", False)
        measure = twirling.get("enable_measure", False)
    return bool(gates) or bool(measure)


def twirl(program_id: str, options: dict[str, Any], shots: int) -> Twirl | None:
    """The twirl a pub of `shots` requested shots runs with; None when twirling is off."""
    if not enabled(program_id, options) or shots <= 0:
        return None
    twirling = options.get("twirling")
    twirling = twirling if isinstance(twirling, dict) else {}
    randomizations = _count(twirling.get("num_randomizations"))
    per = _count(twirling.get("shots_per_randomization"))
    if randomizations is None and per is None:
        randomizations = AUTO_RANDOMIZATIONS
    if per is None:
        assert randomizations is not None
        per = math.ceil(shots / randomizations)
    if randomizations is None:
        randomizations = math.ceil(shots / per)
    return Twirl(randomizations, per)
