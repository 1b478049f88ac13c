"""Reference data files for `creatorpulse load`: profiles and contracts, checked whole."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from creatorpulse.cli import main
from producers.reference_file import parse_lines, read_reference_file

SAMPLES = Path(__file__).resolve().parents[3] / "samples"


def test_lines_are_profiles_or_contracts() -> None:
    parsed = parse_lines(
        [
            "# a comment",
            "",
            '{"creator_id": "a", "handle": "@a", "follower_count": 12000, "niche": "food"}',
            '{"campaign_id": "c", "creator_id": "a", "fee": 500, "currency": "EUR",'
            ' "flight_start": "2026-11-30T00:00:00Z", "flight_end": "2026-12-07T00:00:00Z"}',
        ]
    )
    assert parsed.errors == []
    (profile,) = parsed.profiles
    (contract,) = parsed.contracts
    assert (profile.creator_id, profile.tier) == ("a", "micro")
    assert (contract.fee, contract.currency, contract.key()) == (500.0, "EUR", b"c:a")
    start, end = datetime(2026, 11, 30, tzinfo=UTC), datetime(2026, 12, 7, tzinfo=UTC)
    assert contract.flight_s() == (int(start.timestamp()), int(end.timestamp()))


def test_bad_lines_are_named_by_number() -> None:
    parsed = parse_lines(
        [
            '{"creator_id": "a", "follower_count": 10}',
            "not json",
            '{"campaign_id": "c", "creator_id": "a", "fee": -1}',
            '{"campaign_id": "c", "creator_id": "a", "fee": 1,'
            ' "flight_start": "2026-11-30T00:00:00Z"}',
            "[1, 2]",
        ]
    )
    assert [n for n, _ in parsed.errors] == [2, 3, 4, 5]
    assert parsed.errors[1][1].startswith("contract: fee:")
    assert "flight_start and flight_end come together" in parsed.errors[2][1]
    assert len(parsed.profiles) == 1


def test_the_samples_parse() -> None:
    parsed = read_reference_file(SAMPLES / "reference.jsonl")
    assert parsed.errors == []
    assert len(parsed.profiles) == len(parsed.contracts) == 3


def test_load_refuses_a_bad_file_before_asking_for_a_broker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CREATORPULSE_KAFKA_BOOTSTRAP", raising=False)
    bad = tmp_path / "fees.jsonl"
    bad.write_text('{"campaign_id": "c", "creator_id": "a", "fee": "lots"}\n')
    assert main(["load", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "nothing published: line 1: contract: fee:" in err
    good = SAMPLES / "reference.jsonl"
    assert main(["load", str(good)]) == 2  # a good file still needs a broker
    assert "--kafka-bootstrap" in capsys.readouterr().err
