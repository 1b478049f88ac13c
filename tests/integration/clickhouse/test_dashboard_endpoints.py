"""The dashboard's JSON endpoints and its event stream over a real chDB store, served
by aiohttp on 127.0.0.1 (creatorpulse/web/routes.py), as the page calls them."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web

from creatorpulse.brokers.process import free_port
from creatorpulse.web.dashboard import Dashboard
from creatorpulse.web.routes import Snapshots, StreamClients, add_dashboard
from schemas.metrics import METRICS
from schemas.reference import CampaignContract, CreatorProfile
from schemas.rows import CreatorWindowRow, DeadLetter
from sinks.clickhouse import ClickHouseSink

NOW_S = (int(time.time()) // 60) * 60
MINUTES = 6
# creator -> (followers: tier, views per minute); c-3 is the only macro creator.
CAST = {"c-0": (20_000, 600), "c-1": (30_000, 900), "c-2": (40_000, 700), "c-3": (200_000, 2000)}


def counts(views: int, likes: int, clicks: int) -> tuple[int, ...]:
    return tuple(
        {**dict.fromkeys(METRICS, 0), "views": views, "likes": likes, "clicks": clicks}.values()
    )


def seed(sink: ClickHouseSink) -> list[CreatorWindowRow]:
    sink.write_profiles(
        [
            CreatorProfile(creator_id=c, handle=f"@{c}", follower_count=f)
            for c, (f, _) in CAST.items()
        ]
    )
    sink.write_contracts([CampaignContract(campaign_id="launch", creator_id="c-1", fee=500.0)])
    rows = [
        CreatorWindowRow(
            "launch",
            c,
            60,
            (NOW_S - 60 * (MINUTES - m)) * 1000,
            counts(v + m, (v + m) // (i + 5), i + m),
        )
        for i, (c, (_, v)) in enumerate(CAST.items())
        for m in range(MINUTES)
    ]
    sink.write_creator_windows(rows)
    return rows


async def serve(sink: ClickHouseSink, **options: Any) -> tuple[web.AppRunner, str, Dashboard]:
    dashboard = Dashboard(sink)
    app = web.Application()
    add_dashboard(app, dashboard, **options)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}", dashboard


def run(
    sink: ClickHouseSink,
    body: Callable[[str, aiohttp.ClientSession], Awaitable[None]],
    **options: Any,
) -> None:
    async def main() -> None:
        runner, base, _ = await serve(sink, **options)
        try:
            async with aiohttp.ClientSession() as session:
                await body(base, session)
        finally:
            await runner.cleanup()

    asyncio.run(main())


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with session.get(url) as response:
        return response.status, await response.json()


def test_board_sorts_filters_and_refuses_what_is_not_whitelisted(
    clickhouse_sink: ClickHouseSink,
) -> None:
    rows = seed(clickhouse_sink)
    views = {c: sum(r.counts[0] for r in rows if r.creator_id == c) for c in CAST}

    async def body(base: str, s: aiohttp.ClientSession) -> None:
        status, board = await get(s, f"{base}/api/board?sort=views")
        assert status == 200
        assert [r["creator_id"] for r in board["creators"]] == sorted(
            views, key=views.__getitem__, reverse=True
        )
        assert [r["views"] for r in board["creators"]] == sorted(views.values(), reverse=True)
        assert {r["creator_id"]: r["tier"] for r in board["creators"]} == {
            "c-0": "micro",
            "c-1": "micro",
            "c-2": "micro",
            "c-3": "macro",
        }
        # The fee is charged in full (no flight): CPA needs conversions, ROAS revenue.
        c1 = next(r for r in board["creators"] if r["creator_id"] == "c-1")
        assert c1["fee"] == 500.0
        assert c1["spend"] == 500.0
        assert c1["roas"] == 0.0
        assert board["campaigns"][0]["views"] == sum(views.values())

        status, micro = await get(s, f"{base}/api/board?sort=views&tier=micro")
        assert status == 200
        assert {r["creator_id"] for r in micro["creators"]} == {"c-0", "c-1", "c-2"}
        status, cut = await get(s, f"{base}/api/board?sort=views&limit=2")
        assert [r["creator_id"] for r in cut["creators"]] == [
            r["creator_id"] for r in board["creators"][:2]
        ]

        status, bad = await get(s, f"{base}/api/board?sort=views%20DESC;%20DROP%20TABLE%20alerts")
        assert status == 400
        assert bad["parameter"] == "sort"
        status, bad = await get(s, f"{base}/api/board?limit=0")
        assert status == 400
        assert bad["parameter"] == "limit"
        # A campaign is a value, never SQL: an injection attempt is just an unknown campaign.
        status, unknown = await get(s, f"{base}/api/board?campaign=launch'%20OR%201=1%20--")
        assert status == 404
        assert unknown["parameter"] == "campaign"

    run(clickhouse_sink, body)


def test_overview_has_each_campaigns_totals_tiers_and_curve(
    clickhouse_sink: ClickHouseSink,
) -> None:
    rows = seed(clickhouse_sink)

    async def body(base: str, s: aiohttp.ClientSession) -> None:
        status, overview = await get(s, f"{base}/api/overview")
        assert status == 200
        (launch,) = overview["campaigns"]
        assert launch["views"] == sum(r.counts[0] for r in rows)
        assert overview["tiers"] == {"launch": {"macro": 1, "micro": 3}}
        curve = overview["series"]["campaigns"]["launch"]
        starts = sorted({r.window_start_ms // 1000 for r in rows})
        assert curve["t"] == starts
        assert curve["views"] == [
            sum(r.counts[0] for r in rows if r.window_start_ms // 1000 == t) for t in starts
        ]

    run(clickhouse_sink, body)


def test_creator_detail_has_its_windows_and_its_cohort_median(
    clickhouse_sink: ClickHouseSink,
) -> None:
    rows = seed(clickhouse_sink)

    async def body(base: str, s: aiohttp.ClientSession) -> None:
        status, detail = await get(s, f"{base}/api/creator?campaign=launch&creator=c-1&hours=1")
        assert status == 200
        own = [r for r in rows if r.creator_id == "c-1"]
        assert detail["series"]["t"] == [r.window_start_ms // 1000 for r in own]
        assert detail["series"]["views"] == [r.counts[0] for r in own]
        assert detail["series"]["er"] == [r.counts[1] / r.counts[0] for r in own]
        cohort = detail["cohort"]
        assert cohort["tier"] == "micro"
        micro = ["c-0", "c-1", "c-2"]
        for t, median in zip(cohort["t"], cohort["views"], strict=True):
            assert median == statistics.median(
                r.counts[0]
                for r in rows
                if r.creator_id in micro and r.window_start_ms // 1000 == t
            )
        assert cohort["creators"] == [3] * MINUTES

        # c-3 is the only macro creator: no cohort of its own, so its campaign is.
        status, alone = await get(s, f"{base}/api/creator?campaign=launch&creator=c-3&hours=1")
        assert alone["cohort"]["scope"] == "campaign"
        assert alone["cohort"]["creators"] == [len(CAST)] * MINUTES
        t0 = alone["cohort"]["t"][0]
        assert alone["cohort"]["views"][0] == statistics.median(
            r.counts[0] for r in rows if r.window_start_ms // 1000 == t0
        )
        assert detail["cohort"]["scope"] == "tier"

        status, bad = await get(s, f"{base}/api/creator?campaign=launch")
        assert status == 400
        assert bad["parameter"] == "creator"
        status, bad = await get(s, f"{base}/api/creator?campaign=launch&creator=c-1&hours=25")
        assert status == 400
        assert bad["parameter"] == "hours"

    run(clickhouse_sink, body)


ALERT_COLUMNS = [
    "alert_id", "fired_at", "rule", "campaign_id", "creator_id", "window_size_s", "window_start",
    "metric", "value", "baseline", "payload", "fingerprint", "status", "window_end",
    "resolved_at", "resolved_reason", "z", "lift", "probability", "tier", "cohort_size",
    "views", "handle", "explanation", "version", "updated_at",
]  # fmt: skip


def alert(
    alert_id: str, creator: str, status: str, version: int, updated: datetime, payload: str = "{}"
) -> list[Any]:
    at = datetime.fromtimestamp(NOW_S - 120, UTC)
    return [
        alert_id, at, "er_outlier", "launch", creator, 600, at, "engagement_rate", 0.3, 0.1,
        payload, f"fp-{alert_id}", status, at, at if status == "resolved" else None,
        "recovered" if status == "resolved" else "", 4.0, 3.0, None, "micro", 3, 4000,
        f"@{creator}", f"{creator} is {status}", version, updated,
    ]  # fmt: skip


# As schemas.alerts.alert_to_json writes it (the parts the dashboard reads).
PAYLOAD = json.dumps(
    {
        "cohort": {"campaign_id": "launch", "tier": "micro", "scope": "tier", "size": 3,
                   "median": 0.1, "mad": 0.01},
        "figures": {"views": 4000, "engagement_rate": 0.31, "engagement_rate_shrunk": 0.27,
                    "ctr": 0.02, "ctr_shrunk": None, "conversion_rate": None,
                    "conversion_rate_shrunk": None},
    }
)  # fmt: skip


def test_alerts_carry_state_silences_and_deliveries_and_badge_the_board(
    clickhouse_sink: ClickHouseSink,
) -> None:
    seed(clickhouse_sink)
    t = datetime.now(UTC)
    clickhouse_sink.insert_rows(
        "alerts",
        ALERT_COLUMNS,
        [
            alert("a-0", "c-0", "firing", 1, t),
            alert("a-0", "c-0", "resolved", 2, t),  # the newer state of the same alert wins
            alert("a-1", "c-1", "firing", 1, t, PAYLOAD),
            alert("a-2", "c-2", "firing", 1, t),
        ],
    )
    clickhouse_sink.insert_rows(
        "alert_silences",
        ["silence_id", "campaign_id", "creator_id", "rule", "comment", "created_at", "expires_at"],
        [
            [
                "s-1",
                "laun*",
                "c-2",
                "*",
                "known",
                t,
                datetime.fromtimestamp(time.time() + 3600, UTC),
            ],
            # Expired, and for c-1: c-1's alert stays firing.
            ["s-2", "*", "c-1", "*", "old", t, datetime.fromtimestamp(time.time() - 60, UTC)],
        ],
    )
    clickhouse_sink.insert_rows(
        "alert_notifications",
        ["notification_id", "kind", "type", "campaign_id", "rule", "alert_ids", "alert_keys",
         "delivery", "hooks", "body", "created_at"],
        [["n-1", "firing", "alert", "launch", "er_outlier", ["a-1"], ["a-1:firing"], "pending",
          ["ops"], "{}", t]],
    )  # fmt: skip
    clickhouse_sink.insert_rows(
        "alert_deliveries",
        ["notification_id", "hook", "attempt", "status", "http_status", "error", "attempted_at",
         "next_attempt_at"],
        [["n-1", "ops", 1, "retry", 503, "busy", t, None],
         ["n-1", "ops", 2, "delivered", 200, "", t, None]],
    )  # fmt: skip

    async def body(base: str, s: aiohttp.ClientSession) -> None:
        status, alerts = await get(s, f"{base}/api/alerts")
        assert status == 200
        by_id = {a["alert_id"]: a for a in alerts}
        assert len(alerts) == 3
        assert by_id["a-0"]["state"] == "resolved"
        assert by_id["a-1"]["state"] == "firing"
        assert by_id["a-2"]["state"] == "silenced"
        assert by_id["a-2"]["status"] == "firing"
        assert by_id["a-1"]["deliveries"] == [
            {"kind": "firing", "decision": "pending", "hook": "ops", "status": "delivered"}
        ]
        assert by_id["a-1"]["explanation"] == "c-1 is firing"
        assert by_id["a-1"]["rates"] == {"er": {"raw": 0.31, "shrunk": 0.27}}
        assert by_id["a-1"]["cohort"] == {
            "tier": "micro",
            "scope": "tier",
            "size": 3,
            "median": 0.1,
        }
        assert by_id["a-0"]["rates"] == {}
        status, board = await get(s, f"{base}/api/board")
        assert board["alerts"] == {
            "launch/c-0": "resolved",
            "launch/c-1": "firing",
            "launch/c-2": "silenced",
        }
        assert board["shrunk"] == {"launch/c-1": {"er": {"raw": 0.31, "shrunk": 0.27}}}
        badges = {r["creator_id"]: r["alert"] for r in board["creators"]}
        assert badges == {"c-0": "resolved", "c-1": "firing", "c-2": "silenced", "c-3": None}
        status, overview = await get(s, f"{base}/api/overview")
        assert overview["campaigns"][0]["alerts"] == 3  # creators with an alert badge
        status, mine = await get(s, f"{base}/api/alerts?creator=c-1")
        assert [a["alert_id"] for a in mine] == ["a-1"]

    run(clickhouse_sink, body)


def test_health_counts_dead_letters_per_minute_by_reason(clickhouse_sink: ClickHouseSink) -> None:
    now = datetime.now(UTC)
    reasons = ["late: 3h behind", "late: 2h behind", "invalid: views < 0", "too_large: 2 MiB"]
    clickhouse_sink.write_dead_letters(
        [DeadLetter(now, "post-stats", 0, i, 0, reason, b"{}") for i, reason in enumerate(reasons)]
    )

    async def body(base: str, s: aiohttp.ClientSession) -> None:
        status, health = await get(s, f"{base}/api/health")
        assert status == 200
        minute = int(now.timestamp()) // 60 * 60
        assert health["dead_letters_per_minute"] == [
            {"minute_s": minute, "reason": "invalid", "count": 1},
            {"minute_s": minute, "reason": "late", "count": 2},
            {"minute_s": minute, "reason": "too_large", "count": 1},
        ]
        assert health["freshness_s"] is None  # no worker in this process to say

    run(clickhouse_sink, body)


async def first_event(response: aiohttp.ClientResponse) -> dict[str, str]:
    fields: dict[str, str] = {}
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if not line:
            return fields
        name, _, value = line.partition(": ")
        fields[name] = value
    raise AssertionError("the stream ended before an event")


def test_the_stream_sends_snapshots_bounds_its_clients_and_resumes(
    clickhouse_sink: ClickHouseSink,
) -> None:
    seed(clickhouse_sink)

    async def body(base: str, s: aiohttp.ClientSession) -> None:
        first = await s.get(f"{base}/api/stream")
        assert first.status == 200
        assert first.headers["Content-Type"].startswith("text/event-stream")
        event = await first_event(first)
        assert event["event"] == "snapshot"
        snapshot = json.loads(event["data"])
        assert snapshot["board"]["total_creators"] == len(CAST)
        assert {"overview", "alerts", "health"} <= snapshot.keys()
        second = await s.get(f"{base}/api/stream")
        assert second.status == 200
        third = await s.get(f"{base}/api/stream")
        assert third.status == 503  # beyond the bound
        assert third.headers["Retry-After"] == "15"
        third.release()
        # The next snapshot, on the same stream, a later id.
        later = await first_event(first)
        assert int(later["id"]) > int(event["id"])

        # A dropped client reconnects with Last-Event-ID and gets a whole snapshot at once.
        first.close()
        for _ in range(50):  # the server notices the closed connection at its next write
            resumed = await s.get(f"{base}/api/stream", headers={"Last-Event-ID": later["id"]})
            if resumed.status == 200:
                break
            resumed.release()
            await asyncio.sleep(0.1)
        assert resumed.status == 200
        again = await first_event(resumed)
        assert json.loads(again["data"])["board"]["total_creators"] == len(CAST)
        resumed.close()
        second.close()

    run(clickhouse_sink, body, clients=StreamClients(limit=2), interval_s=0.5)


def test_snapshots_are_shared_between_streams(clickhouse_sink: ClickHouseSink) -> None:
    seed(clickhouse_sink)
    clock = [0.0]
    snapshots = Snapshots(Dashboard(clickhouse_sink), interval_s=5, clock=lambda: clock[0])

    async def main() -> None:
        a = await snapshots.get()
        b = await snapshots.get()
        assert a[0] == b[0] == 1
        assert a[1] is b[1]
        clock[0] = 5.0
        c = await snapshots.get()
        assert c[0] == 2

    asyncio.run(main())
