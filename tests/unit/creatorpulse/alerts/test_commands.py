"""``creatorpulse alerts`` without I/O: rules files, durations, refusals at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from creatorpulse.alerts.commands import parse_duration_s, sample_notification
from creatorpulse.cli import main


def test_a_good_rules_file_checks_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "rules.toml"
    path.write_text("[alerts]\nz = 4.0\nmin_views = 2000\n")
    assert main(["alerts", "rules", "--check", str(path)]) == 0
    assert f"{path}: ok" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[alerts]\nz = 'high'\n", "alerts.z"),
        ("[alerts]\nmin_views = -1\n", "alerts.min_views"),
        ("[alerts]\nno_such_key = 1\n", "alerts.no_such_key"),
        ("[alerts\nz = 1\n", ""),  # not TOML at all
    ],
)
def test_a_bad_rules_file_exits_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, key: str
) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(text)
    assert main(["alerts", "rules", "--check", str(path)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert str(path.name) in err
    assert key in err


def test_a_missing_rules_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["alerts", "rules", "--check", str(tmp_path / "none.toml")]) == 2
    assert "none.toml" in capsys.readouterr().err


def test_rules_prints_the_defaults(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CREATORPULSE_ALERT_RULES", raising=False)
    assert main(["alerts", "rules"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("[alerts]\n")
    assert "z = 3.5\n" in text
    assert "group_wait_s = 30\n" in text


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("2h", 7200), ("1d", 86400), ("1h30m", 5400), ("1.5h", 5400)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize("text", ["", "2", "h", "2x", "-1h", "0s", "2h 3m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|more than 0"):
        parse_duration_s(text)


def test_silence_refuses_a_bad_duration_and_an_empty_matcher(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["alerts", "silence", "--creator", "maya", "--for", "soon"]) == 2
    assert "--for" in capsys.readouterr().err
    assert main(["alerts", "silence", "--for", "2h"]) == 2
    assert "at least one" in capsys.readouterr().err


def test_test_hook_refuses_a_bad_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["alerts", "test-hook", "ftp://example.com/x"]) == 2
    assert "url" in capsys.readouterr().err


def test_test_hook_sends_a_marked_sample_of_realistic_numbers() -> None:
    notification = sample_notification(1_795_338_060_000)
    assert notification.notification_id.startswith("test-")
    assert (notification.type, notification.kind, notification.campaign_id) == (
        "creator.outperforming",
        "firing",
        "test-campaign",
    )
    (alert,) = notification.alerts
    assert (alert.campaign_id, alert.creator_id, alert.handle) == (
        "test-campaign",
        "test-creator",
        "@test.creator",
    )
    assert alert.explanation == "a test notification from `creatorpulse alerts test-hook`"
    assert (alert.value, alert.baseline, alert.z, alert.lift) == (0.152, 0.071, 4.2, 2.14)
    assert (alert.window_start_ms, alert.window_end_ms) == (1_795_334_460_000, 1_795_338_060_000)
    assert alert.cohort.campaign_id == "test-campaign"
