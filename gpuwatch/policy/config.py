"""Policy settings: guards, slots, prediction, aggregation and Retry-After, validated; retired ones named."""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gpuwatch.policy.decision import PriorityClass

# XIDs that take a GPU out of service (NVIDIA's XID catalogue; "reset" = the documented action):
#   48 double-bit ECC error (reset)              61, 62 internal micro-controller halt (reset)
#   64 ECC page retirement / row-remap failure   74 NVLink error (reset as a rule)
#   79 fallen off the bus (reset or reboot)      95 uncontained ECC error (reset)
#   119, 120 GSP RPC timeout / GSP error (reset) 140 unrecovered ECC error (reset)
# Left out on purpose: 63 (row remap *recorded*: works until the next reset), 92 (high single-bit
# rate: a warning), 94 (contained ECC error: only the faulting process dies, the GPU carries on),
# and application XIDs (13, 31, 43, 45), which say nothing about the GPU's health.
DEFAULT_CRITICAL_XIDS: tuple[int, ...] = (48, 61, 62, 64, 74, 79, 95, 119, 120, 140)


_BY_SLOTS = (
    "states follow the slots now (DESIGN §2): set critical_guard_c, default_guard_c and "
    "sheddable_guard_c (the margins each class keeps over horizon_s)"
)
_BY_HOLD = "no dwells now: the shown state steps down after state_hold_s, and admission never waits"
# Settings of the state ladder the slots replaced: named, so a file that still has them is refused
# with what to use instead rather than silently ignored.
RETIRED: Mapping[str, str] = {
    "elevated_enter_margin_c": _BY_SLOTS,
    "elevated_enter_predicted_margin_c": _BY_SLOTS,
    "elevated_leave_margin_c": _BY_SLOTS,
    "elevated_leave_predicted_margin_c": _BY_SLOTS,
    "hot_enter_margin_c": _BY_SLOTS,
    "hot_enter_time_to_slowdown_s": _BY_SLOTS,
    "hot_leave_margin_c": _BY_SLOTS,
    "critical_enter_margin_c": "CRITICAL is margin <= 0 (DESIGN §2); no setting",
    "critical_enter_memory_margin_c": "CRITICAL is memory margin <= 0 (DESIGN §2); no setting",
    "critical_leave_margin_c": _BY_SLOTS,
    "elevated_dwell_s": _BY_HOLD,
    "hot_dwell_s": _BY_HOLD,
    "critical_dwell_s": _BY_HOLD,
}


class PolicyConfigError(ValueError):
    """A policy setting is unknown or out of range; the message names the key and the value."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"policy.{key}: {problem}")
        self.key = key


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """Every knob of the thermal policy (DESIGN §2), with its defaults; margins in °C, times in s.

    Admission reads slots: per GPU and class, how many more jobs may start now so that the
    forecast margin stays at or above the class's guard over `horizon_s`. States are views of
    the slots; the shown state steps down only after the lower one held for `state_hold_s`.
    """

    # Guards, °C of margin each class keeps over the horizon: free work is shed first, paid work
    # keeps the last degrees. critical <= default <= sheddable. The forecast's own errors are
    # counted apart, per GPU, by the allowance they earn (model/calibration.py, below): the guards are
    # what is kept beyond them. Tuned in `gpuwatch simulate` (bench/targets.py, every shipped
    # scenario and four plants that are not shipped, seeds 1-3, boards within 3 % and 30 % of
    # their profiles; docs/simulation.md): before the allowance, guards of 0.8, 1.2 and 1.5 °C
    # stood in for the errors, and still let two failing fans under two-minute jobs into slowdown.
    critical_guard_c: float = 0.3
    default_guard_c: float = 0.6
    sheddable_guard_c: float = 0.9
    # A GPU so cool that even its power limit keeps it safe is offered at most this many slots.
    max_slots: int = 32
    # The shown state (logs, alerts, sd_notify, the agent, `check`) steps down only after the
    # lower state has held this long; admission never waits on it.
    state_hold_s: float = 10.0
    # FAILED: GPU out. A critical XID holds it out this long after the last one, because a driver
    # without recovery-action reporting never says when the GPU is whole again.
    critical_xids: tuple[int, ...] = DEFAULT_CRITICAL_XIDS
    failed_xid_hold_s: float = 300.0
    # UNKNOWN: a reading older than this many sampling intervals is stale.
    stale_after_intervals: float = 3.0
    fail_open: bool = False  # True: an UNKNOWN GPU admits every class instead of none
    # Prediction.
    horizon_s: float = 60.0
    job_power_w: float | None = None  # None: learned from observed power steps
    job_power_default_ratio: float = 0.25  # until a step is seen: this share of the power limit
    tau_prior_s: float = 120.0  # the slow node's (heat sink's) time constant
    resistance_prior_c_per_w: float = 0.05  # die to inlet at steady state
    die_share_prior: float = 0.4  # the share of that resistance that shows within seconds
    model_memory_s: float = 120.0  # the fit forgets old samples with this time constant
    # The forecast's own errors (model/calibration.py): slots are planned with the path lowered by this
    # quantile of its recent errors at each check horizon, and each new job's cost raised by the
    # same quantile of how much more than forecast recent starts cost. A board whose forecast has
    # not been checked yet keeps the priors: this many °C at the horizon (in proportion before
    # it), and this ratio. The quantile is low for a safety margin on purpose: the scores come in
    # runs (one surprise fails a minute of forecasts), the guards stay on top, and 0.9 and 0.8
    # cost 1-4 % of the jobs the oracle completes for no slowdown avoided (docs/simulation.md).
    forecast_error_quantile: float = 0.7
    forecast_error_prior_c: float = 2.0
    start_error_prior_ratio: float = 0.5
    slope_min_samples: int = 10
    slope_max_samples: int = 30
    # Pressure is 1 where a GPU has no `default` slot and falls to 0 as its margin over the
    # horizon, one more job included, rises this far above the `default` guard.
    pressure_cool_margin_c: float = 40.0
    # Node state: the worst state held by at least `node_k` in-service GPUs (1 = worst-of).
    node_k: int = 1
    # Retry-After, s: clamped to [min, max], jittered by ±ratio.
    retry_after_min_s: float = 1.0
    retry_after_max_s: float = 120.0
    retry_after_jitter_ratio: float = 0.2
    # Jobs end (DESIGN §2). The duration each class's jobs are planned with when no request says
    # and too few leases of the class have been released to learn it, s (`[policy.job_seconds]`,
    # a table by class name); a class left out is unknown until learned: its jobs are planned as
    # lasting the whole horizon.
    job_seconds: tuple[tuple[PriorityClass, float], ...] = ()
    # A class's duration is learned as this quantile of how long its recently released leases
    # were held (durations.py says why 0.9).
    job_seconds_quantile: float = 0.9
    # The longest duration a request or the learning may plan a job with, s: a client's
    # `expected_s` above it is capped, so no lease outlives it by more than its grace.
    max_job_s: float = 600.0
    # A lease not released ends at its expected end plus this grace: the larger of the ratio of
    # its expected duration and the minimum, s (durations.deadline_s says why twice the plan).
    # Until then an overdue job counts as running.
    lease_grace_ratio: float = 1.0
    lease_grace_min_s: float = 5.0

    def job_seconds_for(self, priority: PriorityClass) -> float | None:
        """The configured duration of `priority`'s jobs, s (None: not configured)."""
        return next((seconds for cls, seconds in self.job_seconds if cls is priority), None)

    def guard_c(self, priority: PriorityClass) -> float:
        """The margin `priority` keeps over the horizon, °C (the `<class>_guard_c` setting)."""
        guard_c: float = getattr(self, f"{priority.value}_guard_c")
        return guard_c

    def __post_init__(self) -> None:
        if isinstance(self.job_seconds, Mapping):
            # Given as a table by class name (as TOML has it): kept as a tuple, so it hashes.
            object.__setattr__(self, "job_seconds", _by_class("job_seconds", self.job_seconds))
        _validate(self)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> PolicyConfig:
        """A config from plain values (a TOML table); missing keys keep their defaults.

        Raises PolicyConfigError naming the first unknown key or bad value.
        """
        known = {f.name: f for f in dataclasses.fields(cls)}
        converted: dict[str, Any] = {}
        for key, value in values.items():
            if key in RETIRED:
                raise PolicyConfigError(key, f"retired: {RETIRED[key]}")
            if key not in known:
                raise PolicyConfigError(key, _unknown_key(key, known))
            converted[key] = _convert(key, str(known[key].type), value)
        return cls(**converted)

    def stale_after_s(self, interval_s: float) -> float:
        """Age, s, past which a reading is stale at sampling interval `interval_s`."""
        return self.stale_after_intervals * interval_s


def _unknown_key(key: str, known: Mapping[str, object]) -> str:
    """The message for an unknown key: the nearest valid name, or all of them."""
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(sorted(known))}"
    return f"unknown key; {hint}"


def _convert(key: str, kind: str, value: Any) -> Any:  # noqa: ANN401 - TOML values are untyped
    """`value` as the field's type, or PolicyConfigError naming what was expected."""
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise PolicyConfigError(key, f"must be true or false, got {value!r}")
    if kind == "tuple[int, ...]":
        if isinstance(value, list | tuple) and all(_is_int(item) for item in value):
            return tuple(value)
        raise PolicyConfigError(key, f"must be a list of whole numbers, got {value!r}")
    if kind == "tuple[tuple[PriorityClass, float], ...]":
        return _by_class(key, value)
    if kind == "int":
        if _is_int(value):
            return value
        raise PolicyConfigError(key, f"must be a whole number, got {value!r}")
    if _is_number(value):
        return float(value)
    raise PolicyConfigError(key, f"must be a number, got {value!r}")


def _by_class(key: str, value: Any) -> tuple[tuple[PriorityClass, float], ...]:  # noqa: ANN401 - TOML
    """A table of positive seconds by class name, in class order."""
    if not isinstance(value, Mapping):
        raise PolicyConfigError(
            key, f"must be a table of seconds by class, e.g. {{default = 10}}, got {value!r}"
        )
    names = {cls.value: cls for cls in PriorityClass}
    for name, seconds in value.items():
        if name not in names:
            raise PolicyConfigError(f"{key}.{name}", f"unknown class; valid classes: {', '.join(names)}")
        if not _is_number(seconds) or seconds <= 0:
            raise PolicyConfigError(f"{key}.{name}", f"must be a number of seconds > 0, got {seconds!r}")
    return tuple((cls, float(value[cls.value])) for cls in PriorityClass if cls.value in value)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


_POSITIVE = (
    "horizon_s",
    "tau_prior_s",
    "resistance_prior_c_per_w",
    "model_memory_s",
    "stale_after_intervals",
    "retry_after_min_s",
    "pressure_cool_margin_c",
    "max_job_s",
)
_NON_NEGATIVE = (
    "state_hold_s",
    "failed_xid_hold_s",
    "critical_guard_c",
    "lease_grace_ratio",
    "lease_grace_min_s",
    "forecast_error_prior_c",
    "start_error_prior_ratio",
)
# (key, the key it must be at least): `critical` keeps at least the slots of `default`, and
# `default` at least those of `sheddable`.
_AT_LEAST = (
    ("default_guard_c", "critical_guard_c"),
    ("sheddable_guard_c", "default_guard_c"),
)


def _validate(config: PolicyConfig) -> None:
    """Raise PolicyConfigError for the first value out of range or out of order."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise PolicyConfigError(field.name, f"must be a finite number, got {value!r}")
    for key, ok, problem in _rules(config):
        if not ok:
            raise PolicyConfigError(key, f"{problem}, got {getattr(config, key)!r}")


def _rules(c: PolicyConfig) -> list[tuple[str, bool, str]]:
    """Every check as (key, holds, what is required)."""
    rules = [(key, getattr(c, key) > 0, "must be > 0") for key in _POSITIVE]
    rules += [(key, getattr(c, key) >= 0, "must be >= 0") for key in _NON_NEGATIVE]
    rules += [_order_rule(c, key, below) for key, below in _AT_LEAST]
    return [
        *rules,
        ("max_slots", c.max_slots >= 1, "must be >= 1"),
        ("job_power_w", c.job_power_w is None or c.job_power_w > 0, "must be > 0 W, or left out to learn it"),
        ("job_power_default_ratio", 0 < c.job_power_default_ratio <= 1, "must be in (0, 1]"),
        ("job_seconds_quantile", 0 < c.job_seconds_quantile <= 1, "must be in (0, 1]"),
        ("forecast_error_quantile", 0 < c.forecast_error_quantile <= 1, "must be in (0, 1]"),
        ("die_share_prior", 0 <= c.die_share_prior < 1, "must be in [0, 1)"),
        (
            "slope_min_samples",
            c.slope_min_samples >= 10,
            "must be >= 10: temperatures are whole degrees, so a slope from fewer samples is noise",
        ),
        ("slope_max_samples", c.slope_max_samples >= c.slope_min_samples, "must be >= slope_min_samples"),
        ("node_k", c.node_k >= 1, "must be >= 1"),
        ("retry_after_max_s", c.retry_after_max_s >= c.retry_after_min_s, "must be >= retry_after_min_s"),
        ("retry_after_jitter_ratio", 0 <= c.retry_after_jitter_ratio < 1, "must be in [0, 1)"),
        ("critical_xids", all(xid > 0 for xid in c.critical_xids), "must list positive XID codes"),
    ]


def _order_rule(c: PolicyConfig, key: str, below: str) -> tuple[str, bool, str]:
    """`key` must be at least `below`; blame whichever of the two was changed from its default."""
    ok = getattr(c, key) >= getattr(c, below)
    if getattr(c, key) == _DEFAULTS[key] and getattr(c, below) != _DEFAULTS[below]:
        return below, ok, f"must be at most {key} ({getattr(c, key):g})"
    return key, ok, f"must be at least {below} ({getattr(c, below):g})"


_DEFAULTS: Mapping[str, object] = {f.name: f.default for f in dataclasses.fields(PolicyConfig)}
