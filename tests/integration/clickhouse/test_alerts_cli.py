"""``creatorpulse alerts`` on chDB and a real receiver on 127.0.0.1: the list (table and
JSON), a silence the outbox then applies, a redelivery recorded after the earlier
attempts, and test-hook's signed sample verified by independent code."""

from __future__ import annotations

import asyncio
import json
import time

import msgspec
import pytest

from creatorpulse.alerts.outbox import AlertOutbox
from creatorpulse.cli import main
from sinks.clickhouse import ClickHouseSink
from sinks.clickhouse.alerts import ClickHouseAlertStore
from sinks.webhooks import HookConfig, new_secret, parse_secret
from streams.alerts.rules import Rules
from tests.support.receiver import Receiver, serve
from tests.support.webhook_samples import alert
from tests.unit.sinks.webhooks.test_delivery import Clock

RULES = Rules()


def cli(url: str, *args: str) -> int:
    return main(["--clickhouse-url", url, "alerts", *args])


def test_list_silence_and_redeliver(
    clickhouse_sink: ClickHouseSink,
    clickhouse_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # the whole table on one line per alert
    store = ClickHouseAlertStore(clickhouse_sink)
    now = int(time.time()) * 1000
    maya = msgspec.structs.replace(
        alert("maya"), starts_at_ms=now, window_start_ms=now - 3_600_000, window_end_ms=now
    )
    ben = msgspec.structs.replace(maya, creator_id="ben", alert_id="ben-1", handle="@ben")
    store.write_alerts([maya, ben])

    assert cli(clickhouse_url, "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert sorted(a["creator_id"] for a in listed) == ["ben", "maya"]
    assert listed[0]["figures"]["views"] == 12_000
    assert cli(clickhouse_url) == 0
    assert "@maya.eats" in capsys.readouterr().out

    assert cli(clickhouse_url, "silence", "--creator", "ben", "--for", "2h") == 0
    assert "creator=ben" in capsys.readouterr().out
    (held,) = store.silences(now)
    assert held.creator_id == "ben"
    assert 7_190_000 < held.expires_at_ms - now < 7_300_000

    secret = new_secret()
    with serve(Receiver(secret, lambda n: 503 if n == 1 else 200)) as receiver:
        hook = HookConfig(name="ops", kind="webhook", url=receiver.url, secret=parse_secret(secret))
        clock = Clock(now + 5_000)
        box = AlertOutbox(RULES, store, [hook], clock=clock, rand=lambda: 0.5)
        box.take([maya, ben])
        clock.now_ms += RULES.group_wait_s * 1000
        records = {r.delivery: r for r in box.tick()}
        assert set(records) == {"pending", "silenced"}  # ben is silenced by the CLI's silence

        async def first_attempt() -> None:
            async with box.deliverer:
                await box.deliverer.run_due()

        asyncio.run(first_attempt())
        box.tick()
        nid = records["pending"].notification.notification_id
        monkeypatch.setenv("CREATORPULSE_HOOKS", f"ops=webhook:{receiver.url}")
        monkeypatch.setenv("CREATORPULSE_HOOK_SECRET", secret)
        assert cli(clickhouse_url, "redeliver", maya.alert_id) == 0
        assert f"{nid} -> ops: delivered (attempt 2" in capsys.readouterr().out
    assert [(d.attempt, d.status) for d in store.deliveries_of(nid)] == [
        (1, "retry"),
        (2, "delivered"),
    ]
    assert receiver.rejected == []
    assert receiver.processed == [nid]
    assert cli(clickhouse_url, "redeliver", "no-such-id") == 2


def test_test_hook_sends_a_signed_sample(capsys: pytest.CaptureFixture[str]) -> None:
    secret = new_secret()
    with serve(Receiver(secret)) as receiver:
        assert main(["alerts", "test-hook", receiver.url, "--secret", secret]) == 0
    assert "answer: HTTP 200" in capsys.readouterr().out
    assert receiver.rejected == []
    (request,) = receiver.requests
    assert request.body["alerts"][0]["creator_id"] == "test-creator"
    with serve(Receiver(new_secret())) as other:  # signed with another secret: refused
        assert main(["alerts", "test-hook", other.url, "--secret", secret]) == 1
    assert "HTTP 400" in capsys.readouterr().out
    assert len(other.rejected) == 1
