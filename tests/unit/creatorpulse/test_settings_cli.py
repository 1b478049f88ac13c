"""Settings and the CLI surface: bad configuration stops at start with a fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from creatorpulse.cli import main
from creatorpulse.settings import SettingsError, load_settings


def test_defaults_are_the_embedded_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KAFKA_BOOTSTRAP", "CLICKHOUSE_URL", "GRACE_S", "WINDOWS"):
        monkeypatch.delenv(f"CREATORPULSE_{name}", raising=False)
    settings = load_settings()
    assert settings.embedded_broker
    assert settings.resolved_clickhouse_url().startswith("chdb:///")
    assert settings.window_sizes_s == (60, 3600)
    assert settings.grace_s == 600
    assert settings.future_skew_s == 300
    assert settings.web_host == "127.0.0.1"


def test_flags_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREATORPULSE_GRACE_S", "30")
    monkeypatch.setenv("CREATORPULSE_KAFKA_BOOTSTRAP", "k1:9092, k2:9093")
    assert load_settings().grace_s == 30
    assert load_settings(grace_s=90).grace_s == 90
    assert load_settings().kafka_bootstrap == "k1:9092, k2:9093"


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({"grace_s": -1}, "CREATORPULSE_GRACE_S"),
        ({"windows": "60,zero"}, "CREATORPULSE_WINDOWS"),
        ({"windows": "0"}, "CREATORPULSE_WINDOWS"),
        ({"windows": "60,2678401"}, "CREATORPULSE_WINDOWS"),  # past 31 days
        ({"future_skew_s": -1}, "CREATORPULSE_FUTURE_SKEW_S"),
        ({"kafka_bootstrap": "localhost"}, "CREATORPULSE_KAFKA_BOOTSTRAP"),
        ({"partitions": 0}, "CREATORPULSE_PARTITIONS"),
        ({"flush_interval_s": 0}, "CREATORPULSE_FLUSH_INTERVAL_S"),
        ({"web_host": ""}, "CREATORPULSE_WEB_HOST"),
        ({"web_host": "0.0.0.0,10.0.0.1"}, "CREATORPULSE_WEB_HOST"),
        ({"clickhouse_connect_timeout_s": 0}, "CREATORPULSE_CLICKHOUSE_CONNECT_TIMEOUT_S"),
        ({"clickhouse_timeout_s": "never"}, "CREATORPULSE_CLICKHOUSE_TIMEOUT_S"),
        ({"shutdown_timeout_s": -1}, "CREATORPULSE_SHUTDOWN_TIMEOUT_S"),
        ({"kafka_send_timeout_s": 0}, "CREATORPULSE_KAFKA_SEND_TIMEOUT_S"),
        ({"kafka_send_timeout_s": 1201}, "CREATORPULSE_KAFKA_SEND_TIMEOUT_S"),
    ],
)
def test_bad_settings_name_what_to_fix(overrides: dict[str, object], names: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(**overrides)
    assert names in str(raised.value)


def test_the_cli_exits_2_with_the_fix_for_bad_env(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CREATORPULSE_GRACE_S", "soon")
    assert main(["migrate"]) == 2
    assert "CREATORPULSE_GRACE_S" in capsys.readouterr().err


def test_timeouts_have_the_sinks_defaults_and_reach_sink_and_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from creatorpulse.runtime import worker_config
    from sinks.clickhouse import DEFAULT_CONNECT_TIMEOUT_S, DEFAULT_TIMEOUT_S

    names = ("CLICKHOUSE_CONNECT_TIMEOUT_S", "CLICKHOUSE_TIMEOUT_S", "SHUTDOWN_TIMEOUT_S")
    for name in (*names, "KAFKA_SEND_TIMEOUT_S"):
        monkeypatch.delenv(f"CREATORPULSE_{name}", raising=False)
    settings = load_settings()
    assert settings.clickhouse_connect_timeout_s == DEFAULT_CONNECT_TIMEOUT_S == 5
    assert settings.clickhouse_timeout_s == DEFAULT_TIMEOUT_S == 30
    assert settings.shutdown_timeout_s == 10
    assert settings.kafka_send_timeout_s == 30
    monkeypatch.setenv("CREATORPULSE_SHUTDOWN_TIMEOUT_S", "2.5")
    monkeypatch.setenv("CREATORPULSE_KAFKA_SEND_TIMEOUT_S", "4")
    config = worker_config(load_settings(), "k:1")
    assert config.shutdown_timeout_s == 2.5
    assert config.kafka_send_timeout_s == 4


def test_a_bad_clickhouse_url_fails_at_start(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--clickhouse-url", "mysql://x", "migrate"]) == 2
    assert "CREATORPULSE_CLICKHOUSE_URL" in capsys.readouterr().err


def test_producing_without_a_broker_says_how_to_point_at_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CREATORPULSE_KAFKA_BOOTSTRAP", raising=False)
    assert main(["produce", "--duration-s", "1"]) == 2
    assert "--kafka-bootstrap" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "fix"),
    [
        (["sink"], "--kafka-bootstrap"),
        (["--sink", "topic", "worker"], "--kafka-bootstrap"),
        (["--sink", "topic", "run"], "creatorpulse sink"),
        (["--sink", "kafka", "worker"], "'clickhouse' or 'topic'"),
    ],
)
def test_a_separate_sink_needs_kafka_and_says_so(
    argv: list[str],
    fix: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("CREATORPULSE_KAFKA_BOOTSTRAP", raising=False)
    assert main(argv) == 2
    assert fix in " ".join(capsys.readouterr().err.split())


def test_help_documents_every_setting_with_env_and_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for env in (
        "KAFKA_BOOTSTRAP",
        "CLICKHOUSE_URL",
        "INPUT_TOPIC",
        "GRACE_S",
        "WINDOWS",
        "SINK",
        "WEB_HOST",
    ):
        assert f"CREATORPULSE_{env}" in text
    assert "[default: 600]" in text


def test_migrate_then_top_on_a_fresh_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"chdb://{tmp_path / 'store'}"
    assert main(["--clickhouse-url", url, "migrate"]) == 0
    assert "applied 0001" in capsys.readouterr().err
    assert main(["--clickhouse-url", url, "migrate"]) == 0
    assert "up to date" in capsys.readouterr().err
    assert main(["--clickhouse-url", url, "top", "--json"]) == 0
    assert capsys.readouterr().out.strip() == "[]"


@pytest.mark.parametrize("argv", [["--limit", "0"], ["--limit", "501"], ["--last-s", "-5"]])
def test_top_refuses_parameters_out_of_the_leaderboard_bounds(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"chdb://{tmp_path / 'store'}"
    assert main(["--clickhouse-url", url, "top", "--json", *argv]) == 2
    assert argv[0] in capsys.readouterr().err


# -- settings on the subcommands --------------------------------------------------------


def test_subcommand_help_lists_the_settings_it_reads(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker", "--help"]) == 0
    worker_help = capsys.readouterr().out
    for flag in ("--kafka-bootstrap", "--clickhouse-url", "--grace-s", "--web-port", "Settings"):
        assert flag in worker_help, flag
    assert main(["top", "--help"]) == 0
    top_help = capsys.readouterr().out
    for flag in ("--clickhouse-url", "--web-port", "--data-dir", "--sort", "--board-json"):
        assert flag in top_help, flag
    assert "--grace-s" not in top_help  # top never reads it
    assert main(["run", "--help"]) == 0
    run_help = capsys.readouterr().out
    for flag in ("--new-campaign", "--sort", "--json", "--progress-s", "--kafka-bootstrap"):
        assert flag in run_help, flag


def test_a_setting_after_the_subcommand_counts_and_wins(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CREATORPULSE_KAFKA_BOOTSTRAP", raising=False)
    # After the subcommand, before it, and both (the subcommand's wins).
    for argv in (
        ["worker", "--grace-s", "-1"],
        ["--grace-s", "-1", "worker"],
        ["--grace-s", "30", "worker", "--grace-s", "-1"],
    ):
        assert main(argv) == 2, argv
        assert "CREATORPULSE_GRACE_S" in capsys.readouterr().err, argv
    # A flag wins over the environment: with the env's bad value, produce would stop on
    # it; with the flag's good one it gets as far as asking for a broker.
    monkeypatch.setenv("CREATORPULSE_GRACE_S", "-5")
    assert main(["produce", "--grace-s", "30"]) == 2
    err = capsys.readouterr().err
    assert "GRACE_S" not in err
    assert "publishes to a running Kafka" in err


def test_typos_get_a_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["wroker"]) == 2
    assert "Did you mean 'worker'" in capsys.readouterr().err
    assert main(["worker", "--kafka-bootsrap", "k:9092"]) == 2
    assert "--kafka-bootstrap" in capsys.readouterr().err
    assert main(["top", "--srot", "cpa"]) == 2
    assert "--sort" in capsys.readouterr().err


def test_the_alerts_commands_take_the_store_settings(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["alerts", "--help"], ["alerts", "silence", "--help"]):
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert "--clickhouse-url" in out, argv
        assert "--web-port" in out, argv
    assert main(["alerts", "redeliver", "--help"]) == 0
    assert "--data-dir" in capsys.readouterr().out
