"""The settings of rule ``creator.outperforming`` and of its notification policy.

Every number the detection and the policy use is a field of :class:`Rules`, with the
default the issue and the README document. A deployment changes them in a TOML file (the
``[alerts]`` table, read with stdlib ``tomllib``); ``load_rules`` checks it whole before
anything starts, and a mistake is one :class:`RulesError` that names the key, so a CLI can
print it and exit 2. The shipped ``default_rules.toml`` says why each default was chosen.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

#: The figures the rule scores, in the order a tie between them is broken.
METRICS: tuple[str, ...] = (
    "engagement_rate",
    "ctr",
    "conversion_rate",
    "views_per_minute",
    "cpa",
)
#: The placeholders a dashboard URL template may use.
URL_FIELDS: tuple[str, ...] = ("campaign_id", "creator_id", "alert_id")
#: The TOML table the settings live in.
TABLE = "alerts"
DEFAULT_RULES_FILE = "default_rules.toml"


class RulesError(ValueError):
    """A rules file or value is wrong; the message starts with the key (``alerts.z: ...``)."""


@dataclass(frozen=True, slots=True)
class _Bound:
    """The type and range one setting accepts, and how an error describes it."""

    kind: type  # int, float, bool or str
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # the value must be strictly above ``low``
    high_open: bool = False

    def describe(self) -> str:
        noun = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
        text = noun[self.kind]
        if self.low is not None:
            text += f" {'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None:
            text += f" and {'<' if self.high_open else '<='} {self.high:g}"
        return text

    def accepts(self, value: Any) -> bool:
        if self.kind is float:
            if isinstance(value, bool) or not isinstance(value, int | float):
                return False
        elif self.kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                return False
        elif not isinstance(value, self.kind):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)


_DAY_S = 86_400
_BOUNDS: dict[str, _Bound] = {
    "trailing_window_s": _Bound(int, 60, _DAY_S),
    "evaluation_step_s": _Bound(int, 60, 3600),
    "z": _Bound(float, 0, low_open=True),
    "lift": _Bound(float, 1),
    "probability": _Bound(float, 0.5, 1, high_open=True),
    "recover_z": _Bound(float),
    "pending_evaluations": _Bound(int, 1, 1440),
    "recover_evaluations": _Bound(int, 1, 1440),
    "missing_evaluations": _Bound(int, 1, 1440),
    "min_views": _Bound(int, 1),
    "min_clicks": _Bound(int, 1),
    "min_cohort": _Bound(int, 3),
    "prior_strength_min": _Bound(float, 0, low_open=True),
    "prior_strength_max": _Bound(float, 0, low_open=True),
    "replay_horizon_s": _Bound(int, 0),
    "group_wait_s": _Bound(int, 0, 3600),
    "repeat_interval_s": _Bound(int, 60),
    "send_resolved": _Bound(bool),
    "dashboard_url": _Bound(str),
}


@dataclass(frozen=True, slots=True)
class Rules:
    """The rule's settings. Construction validates them (same messages as a file)."""

    # Detection: what is compared, and when it counts as outperforming.
    trailing_window_s: int = 3600
    evaluation_step_s: int = 60
    z: float = 3.5
    lift: float = 1.5
    probability: float = 0.95
    recover_z: float = 2.0
    pending_evaluations: int = 2
    recover_evaluations: int = 2
    missing_evaluations: int = 2
    min_views: int = 1000
    min_clicks: int = 50
    min_cohort: int = 5
    prior_strength_min: float = 10.0
    prior_strength_max: float = 1000.0
    metrics: tuple[str, ...] = METRICS
    # Notification policy.
    replay_horizon_s: int = 3600
    group_wait_s: int = 30
    repeat_interval_s: int = 4 * 3600
    send_resolved: bool = True
    dashboard_url: str = (
        "http://127.0.0.1:6066/leaderboard?campaign={campaign_id}"
        "&creator={creator_id}&alert={alert_id}"
    )

    def __post_init__(self) -> None:
        for name, bound in _BOUNDS.items():
            value = getattr(self, name)
            if not bound.accepts(value):
                raise RulesError(f"{TABLE}.{name}: expected {bound.describe()}, got {value!r}")
            if bound.kind is float:
                object.__setattr__(self, name, float(value))
        self._check_together()

    def _check_together(self) -> None:
        """The rules that tie several settings together."""
        for name in ("trailing_window_s", "evaluation_step_s"):
            if getattr(self, name) % 60:
                # Totals are built from the 60 s windows, so nothing finer exists.
                raise RulesError(
                    f"{TABLE}.{name}: expected a multiple of 60, got {getattr(self, name)!r}"
                )
        if self.trailing_window_s < self.evaluation_step_s:
            raise RulesError(
                f"{TABLE}.trailing_window_s: expected at least {TABLE}.evaluation_step_s "
                f"({self.evaluation_step_s}), got {self.trailing_window_s}"
            )
        if self.recover_z >= self.z:
            # Without the gap an alert would flap between firing and resolved.
            raise RulesError(
                f"{TABLE}.recover_z: expected a number below {TABLE}.z ({self.z:g}), "
                f"got {self.recover_z!r}"
            )
        if self.prior_strength_max < self.prior_strength_min:
            raise RulesError(
                f"{TABLE}.prior_strength_max: expected at least {TABLE}.prior_strength_min "
                f"({self.prior_strength_min:g}), got {self.prior_strength_max!r}"
            )
        metrics = self.metrics
        if (
            not isinstance(metrics, tuple)
            or not metrics
            or any(m not in METRICS for m in metrics)
            or len(set(metrics)) != len(metrics)
        ):
            shown = list(metrics) if isinstance(metrics, tuple) else metrics
            raise RulesError(
                f"{TABLE}.metrics: expected a non-empty list of distinct names from "
                f"{', '.join(METRICS)}, got {shown!r}"
            )
        if self.dashboard_url:
            try:
                self.dashboard_url.format(**{f: "x" for f in URL_FIELDS})
            except (KeyError, IndexError, ValueError) as exc:
                raise RulesError(
                    f"{TABLE}.dashboard_url: expected a template using only "
                    f"{', '.join('{' + f + '}' for f in URL_FIELDS)}, got "
                    f"{self.dashboard_url!r} ({type(exc).__name__}: {exc})"
                ) from None


_KEYS = tuple(f.name for f in fields(Rules))


def rules_from_mapping(data: dict[str, Any]) -> Rules:
    """Rules from a parsed TOML document: only an ``[alerts]`` table of known keys."""
    for key in data:
        if key != TABLE:
            raise RulesError(f"{key}: unknown table or key (the settings live in [{TABLE}])")
    table = data.get(TABLE, {})
    if not isinstance(table, dict):
        raise RulesError(f"{TABLE}: expected a table, got {table!r}")
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in _KEYS:
            raise RulesError(f"{TABLE}.{key}: unknown key (known: {', '.join(_KEYS)})")
        if key == "metrics":
            if not isinstance(value, list) or not all(isinstance(m, str) for m in value):
                raise RulesError(f"{TABLE}.metrics: expected a list of strings, got {value!r}")
            value = tuple(value)
        values[key] = value
    return Rules(**values)


def load_rules(path: str | Path | None = None) -> Rules:
    """The rules in ``path``, or the shipped defaults; raises :class:`RulesError`."""
    if path is None:
        text = resources.files("streams.alerts").joinpath(DEFAULT_RULES_FILE).read_text("utf-8")
        name = DEFAULT_RULES_FILE
    else:
        name = str(path)
        try:
            text = Path(path).read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RulesError(f"{name}: cannot read the rules file: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{name}: not valid TOML: {exc}") from None
    return rules_from_mapping(data)
