"""The rules file: shipped defaults, and one error naming the key for every kind of mistake."""

from __future__ import annotations

import tomllib
from dataclasses import fields
from importlib import resources
from pathlib import Path

import pytest

from streams.alerts.rules import Rules, RulesError, load_rules


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(body)
    return path


def test_the_shipped_file_holds_every_setting_at_its_documented_default() -> None:
    text = resources.files("streams.alerts").joinpath("default_rules.toml").read_text()
    table = tomllib.loads(text)["alerts"]
    assert set(table) == {f.name for f in fields(Rules)}
    assert load_rules(None) == Rules()
    # Each key has a comment right above it (or above its group): why that default.
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if "=" in line and not line.startswith("#"):
            above = [x for x in lines[max(0, i - 3) : i] if x.startswith("#")]
            assert above, f"no comment above {line!r}"


def test_the_defaults_are_the_issues_numbers() -> None:
    r = Rules()
    assert (r.trailing_window_s, r.evaluation_step_s) == (3600, 60)
    assert (r.z, r.lift, r.probability, r.recover_z) == (3.5, 1.5, 0.95, 2.0)
    assert (r.pending_evaluations, r.recover_evaluations, r.missing_evaluations) == (2, 2, 2)
    assert (r.min_views, r.min_clicks, r.min_cohort) == (1000, 50, 5)
    assert (r.replay_horizon_s, r.group_wait_s, r.repeat_interval_s) == (3600, 30, 14400)
    assert r.send_resolved is True


def test_a_partial_file_keeps_the_other_defaults(tmp_path: Path) -> None:
    rules = load_rules(write(tmp_path, '[alerts]\nz = 4\nmetrics = ["engagement_rate"]\n'))
    assert rules.z == 4.0
    assert isinstance(rules.z, float)
    assert rules.metrics == ("engagement_rate",)
    assert rules.min_views == 1000
    assert load_rules(write(tmp_path, "")) == Rules()


MISTAKES = [
    # (file body, the whole message or its start)
    ('z = "high"', "alerts.z: expected a number > 0, got 'high'"),
    ("z = 0", "alerts.z: expected a number > 0, got 0"),
    ("min_views = 1.5", "alerts.min_views: expected an integer >= 1, got 1.5"),
    ("min_views = true", "alerts.min_views: expected an integer >= 1, got True"),
    ("lift = true", "alerts.lift: expected a number >= 1, got True"),
    ("probability = 1.0", "alerts.probability: expected a number >= 0.5 and < 1, got 1.0"),
    ("min_cohort = 2", "alerts.min_cohort: expected an integer >= 3, got 2"),
    ("group_wait_s = -1", "alerts.group_wait_s: expected an integer >= 0 and <= 3600, got -1"),
    ('send_resolved = "yes"', "alerts.send_resolved: expected true or false, got 'yes'"),
    ("dashboard_url = 5", "alerts.dashboard_url: expected a string, got 5"),
    ("zz = 1", "alerts.zz: unknown key (known: trailing_window_s, "),
    ("recover_z = 4", "alerts.recover_z: expected a number below alerts.z (3.5), got 4.0"),
    ("trailing_window_s = 90", "alerts.trailing_window_s: expected a multiple of 60, got 90"),
    (
        "trailing_window_s = 60\nevaluation_step_s = 120",
        "alerts.trailing_window_s: expected at least alerts.evaluation_step_s (120), got 60",
    ),
    (
        "prior_strength_max = 5",
        "alerts.prior_strength_max: expected at least alerts.prior_strength_min (10), got 5.0",
    ),
    ('metrics = ["er"]', "alerts.metrics: expected a non-empty list of distinct names from "),
    ("metrics = []", "alerts.metrics: expected a non-empty list of distinct names from "),
    ("metrics = [1]", "alerts.metrics: expected a list of strings, got [1]"),
    (
        'dashboard_url = "http://board/{creator}"',
        "alerts.dashboard_url: expected a template using only {campaign_id}, {creator_id}, ",
    ),
    ('dashboard_url = "http://board/{"', "alerts.dashboard_url: expected a template using only"),
]


@pytest.mark.parametrize(("body", "message"), MISTAKES, ids=[m[1][:40] for m in MISTAKES])
def test_each_kind_of_mistake_is_one_error_naming_the_key(
    tmp_path: Path, body: str, message: str
) -> None:
    with pytest.raises(RulesError) as caught:
        load_rules(write(tmp_path, f"[alerts]\n{body}\n"))
    assert str(caught.value).startswith(message), str(caught.value)


def test_a_table_outside_alerts_is_named(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match=r"^alert: unknown table or key"):
        load_rules(write(tmp_path, "[alert]\nz = 4\n"))
    with pytest.raises(RulesError, match=r"^alerts: expected a table"):
        load_rules(write(tmp_path, "alerts = 3\n"))


def test_a_broken_or_missing_file_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[alerts]\nz = \n")
    with pytest.raises(RulesError, match=rf"^{path}: not valid TOML"):
        load_rules(path)
    with pytest.raises(RulesError, match=r"nope\.toml: cannot read the rules file"):
        load_rules(tmp_path / "nope.toml")


def test_constructing_rules_in_code_is_validated_the_same_way() -> None:
    with pytest.raises(RulesError, match=r"^alerts\.z: expected a number > 0, got 'high'$"):
        Rules(z="high")  # type: ignore[arg-type]
    assert Rules(z=4).z == 4.0
