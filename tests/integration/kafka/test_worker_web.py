"""The worker's HTTP port, as `creatorpulse worker` builds it: where it listens, and
how its leaderboard page answers bad parameters.

The worker is built the way the CLI builds it (``runtime.build`` from settings) and only
its Faust web server is started: the pages need no broker, and the socket it binds is
the one a running worker would bind.
"""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from creatorpulse import runtime
from creatorpulse.brokers.process import free_port
from creatorpulse.settings import Settings, SettingsError, load_settings
from schemas.metrics import METRICS
from schemas.rows import CreatorWindowRow
from sinks.clickhouse import ClickHouseSink

T0_MS = 1_795_338_000_000  # 2026-11-22T09:00:00Z
UNUSED_BOOTSTRAP = "127.0.0.1:1"  # the web server never talks to Kafka


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    return load_settings(data_dir=tmp_path / "data", web_port=free_port(), **overrides)


@asynccontextmanager
async def web_server(settings: Settings, sink: ClickHouseSink) -> AsyncIterator[int]:
    worker = runtime.build(settings, sink, UNUSED_BOOTSTRAP)
    await worker.app.web.start()
    try:
        yield settings.web_port
    finally:
        await worker.app.web.stop()


def listening_addresses(port: int) -> set[str]:
    """Local addresses of the sockets in LISTEN state on ``port``, from /proc/net/tcp[6]."""
    found = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state != "0A" or int(port_hex, 16) != port:  # 0A: TCP_LISTEN
                continue
            raw = bytes.fromhex(address)
            # The kernel prints each 32-bit word in host (little-endian) order.
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.add(socket.inet_ntop(family, words))
    return found


def outward_address() -> str | None:
    """An address of this machine other than loopback, if it has one (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: only picks the outgoing interface
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def connects(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's /proc/net/tcp")
def test_the_http_port_listens_on_loopback_only_by_default(
    tmp_path: Path, clickhouse_sink: ClickHouseSink
) -> None:
    settings = settings_for(tmp_path)
    assert settings.web_host == "127.0.0.1"

    async def scenario() -> tuple[set[str], bool, bool]:
        async with web_server(settings, clickhouse_sink) as port:
            other = outward_address()
            return (
                listening_addresses(port),
                connects("127.0.0.1", port),
                other is not None and connects(other, port),
            )

    listening, on_loopback, on_other = asyncio.run(scenario())
    assert listening == {"127.0.0.1"}
    assert on_loopback
    assert not on_other


def test_another_address_without_a_token_refuses_to_start(
    tmp_path: Path, clickhouse_sink: ClickHouseSink
) -> None:
    settings = settings_for(tmp_path, web_host="0.0.0.0")
    with pytest.raises(SettingsError) as refused:
        runtime.build(settings, clickhouse_sink, UNUSED_BOOTSTRAP)
    assert "CREATORPULSE_WEB_TOKEN" in str(refused.value)
    assert "CREATORPULSE_WEB_HOST=0.0.0.0" in str(refused.value)


def fetch(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's /proc/net/tcp")
@pytest.mark.parametrize("source", ["env", "file"])
def test_another_address_with_a_token_answers_401_without_it(
    tmp_path: Path, clickhouse_sink: ClickHouseSink, source: str
) -> None:
    token = "s3cret-token-for-tests"
    if source == "env":
        settings = settings_for(tmp_path, web_host="0.0.0.0", web_token=token)
    else:
        (tmp_path / "token").write_text(token + "\n")
        settings = settings_for(tmp_path, web_host="0.0.0.0", web_token_file=tmp_path / "token")
    paths = ["/stats", "/metrics", "/leaderboard", "/healthz"]
    paths += ["/dashboard", "/static/dashboard/app.js", "/api/board", "/api/health"]
    paths += ["/api/overview", "/api/alerts", "/api/creator?campaign=c&creator=k"]

    async def scenario() -> tuple[set[str], dict[str, int], dict[str, int], dict[str, int]]:
        async with web_server(settings, clickhouse_sink) as port:
            bearer = {"Authorization": f"Bearer {token}"}
            wrong = {"Authorization": "Bearer not-the-token"}
            without = {p: (await asyncio.to_thread(fetch, port, p))[0] for p in paths}
            bad = {p: (await asyncio.to_thread(fetch, port, p, wrong))[0] for p in paths}
            good = {p: (await asyncio.to_thread(fetch, port, p, bearer))[0] for p in paths}
            return listening_addresses(port), without, bad, good

    listening, without, bad, good = asyncio.run(scenario())
    assert listening == {"0.0.0.0"}
    assert without == dict.fromkeys(paths, 401)
    assert bad == dict.fromkeys(paths, 401)
    assert good == dict.fromkeys(paths, 200)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.0.1.1", True), ("::1", True), ("localhost", True),
     ("0.0.0.0", False), ("::", False), ("10.0.0.5", False), ("worker-1.internal", False)],
)  # fmt: skip
def test_which_hosts_count_as_loopback(host: str, loopback: bool) -> None:
    assert runtime.is_loopback(host) is loopback


def get(port: int, query: str) -> tuple[int, Any]:
    url = f"http://127.0.0.1:{port}/leaderboard{query}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def window(creator: str, start_ms: int, views: int) -> CreatorWindowRow:
    counts = tuple(views if name == "views" else 0 for name in METRICS)
    return CreatorWindowRow("camp1", creator, 60, start_ms, counts)


BAD_QUERIES = [
    ("?last_s=-5", "last_s"),
    ("?last_s=0", "last_s"),
    ("?last_s=abc", "last_s"),
    ("?last_s=", "last_s"),
    (f"?last_s={30 * 86_400 + 1}", "last_s"),
    ("?limit=0", "limit"),
    ("?limit=501", "limit"),
    ("?limit=2.5", "limit"),
    ("?campaign=camp1&limit=-1&last_s=60", "limit"),
]


def test_bad_leaderboard_parameters_answer_400_naming_the_parameter(
    tmp_path: Path, clickhouse_sink: ClickHouseSink
) -> None:
    clickhouse_sink.write_creator_windows(
        [window("alice", T0_MS, 10), window("bob", T0_MS, 30), window("carol", T0_MS, 20)]
    )
    settings = settings_for(tmp_path)

    async def scenario() -> dict[str, tuple[int, Any]]:
        async with web_server(settings, clickhouse_sink) as port:
            queries = [query for query, _ in BAD_QUERIES] + ["", "?limit=2", "?limit=500"]
            return {q: await asyncio.to_thread(get, port, q) for q in queries}

    answers = asyncio.run(scenario())
    for query, parameter in BAD_QUERIES:
        status, body = answers[query]
        assert status == 400, (query, body)
        assert body["parameter"] == parameter, (query, body)
        assert body["error"].startswith(f"{parameter}: expected an integer from 1 to "), body
    assert [row["creator_id"] for row in answers[""][1]] == ["bob", "carol", "alice"]
    assert [row["creator_id"] for row in answers["?limit=2"][1]] == ["bob", "carol"]
    assert answers["?limit=500"][0] == 200


def get_path(port: int, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_leaderboard_stays_a_list_and_board_adds_the_campaign_summary(
    tmp_path: Path, clickhouse_sink: ClickHouseSink
) -> None:
    # 600 and 900 views rank (>= 500), 20 views does not.
    clickhouse_sink.write_creator_windows(
        [window("alice", T0_MS, 600), window("bob", T0_MS, 900), window("carol", T0_MS, 20)]
    )
    settings = settings_for(tmp_path)
    paths = [
        "/leaderboard?sort=views",
        "/board?sort=views&limit=1",
        "/leaderboard?sort=likes",
        "/leaderboard?campaign=nope",
        "/board?campaign=nope",
    ]

    async def scenario() -> dict[str, tuple[int, Any]]:
        async with web_server(settings, clickhouse_sink) as port:
            return {p: await asyncio.to_thread(get_path, port, p) for p in paths}

    answers = asyncio.run(scenario())
    status, items = answers["/leaderboard?sort=views"]
    assert status == 200
    assert isinstance(items, list)
    assert [(i["creator_id"], i["rank"], i["below_min_sample"]) for i in items] == [
        ("bob", 1, False),
        ("alice", 2, False),
        ("carol", None, True),
    ]
    assert items[0]["windows"] == 1  # the earlier item's keys stay
    status, board = answers["/board?sort=views&limit=1"]
    assert status == 200
    assert [c["creator_id"] for c in board["creators"]] == ["bob"]
    (summary,) = board["campaigns"]
    assert (summary["campaign_id"], summary["creators"], summary["views"]) == ("camp1", 3, 1520)
    status, body = answers["/leaderboard?sort=likes"]
    assert status == 400
    assert body["parameter"] == "sort"
    for path in ("/leaderboard?campaign=nope", "/board?campaign=nope"):
        status, body = answers[path]
        assert status == 404, path
        assert body == {"error": "no such campaign: 'nope'", "parameter": "campaign"}


def test_the_worker_serves_the_dashboard_and_a_browser_keeps_the_token_in_a_cookie(
    tmp_path: Path, clickhouse_sink: ClickHouseSink
) -> None:
    import http.cookiejar

    token = "another-s3cret"
    settings = settings_for(tmp_path, web_host="0.0.0.0", web_token=token)

    def browse(port: int) -> tuple[int, str, int, str]:
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        # The link with the token once: redirected to the page without it, cookie set.
        with opener.open(f"http://127.0.0.1:{port}/dashboard?token={token}", timeout=10) as page:
            status, url, body = page.status, page.url, page.read().decode()
        assert "/static/dashboard/app.js" in body
        # The event stream, as EventSource opens it: no header, the cookie only.
        with opener.open(f"http://127.0.0.1:{port}/api/stream", timeout=10) as stream:
            first = stream.readline().decode()
            return status, url, stream.status, first

    async def scenario() -> tuple[int, str, int, str]:
        async with web_server(settings, clickhouse_sink) as port:
            return await asyncio.to_thread(browse, port)

    status, url, stream_status, first_line = asyncio.run(scenario())
    assert status == 200
    assert url.endswith("/dashboard")  # the token left the address bar
    assert stream_status == 200
    assert first_line.startswith("id: ")


@pytest.mark.parametrize("alerts", [True, False], ids=["alert stage", "no alert stage"])
def test_the_dashboard_reads_the_alert_stages_pending_view(
    tmp_path: Path, clickhouse_sink: ClickHouseSink, monkeypatch: pytest.MonkeyPatch, alerts: bool
) -> None:
    from creatorpulse.web import routes

    monkeypatch.setenv("CREATORPULSE_ALERTS", "1" if alerts else "0")
    given: list[Any] = []
    add = routes.add_dashboard

    def spy(app: Any, dashboard: Any, **options: Any) -> None:
        given.append(dashboard)
        add(app, dashboard, **options)

    monkeypatch.setattr(routes, "add_dashboard", spy)
    settings = settings_for(tmp_path)
    worker = runtime.build(settings, clickhouse_sink, UNUSED_BOOTSTRAP)
    (dashboard,) = given
    if alerts:
        assert dashboard.pending is not None
        assert dashboard.pending() == {}  # no campaign held yet
        # What the stage's view says is what the page reads.
        from streams.alerts.stage import PendingView

        monkeypatch.setattr(PendingView, "pending", lambda self: {("c", "k"): "pending"})
        assert dashboard.pending() == {("c", "k"): "pending"}
    else:
        assert dashboard.pending is None

    async def scenario() -> tuple[int, Any]:
        await worker.app.web.start()
        try:
            status, body = await asyncio.to_thread(fetch, settings.web_port, "/api/board")
            return status, json.loads(body)
        finally:
            await worker.app.web.stop()

    status, board = asyncio.run(scenario())
    assert status == 200
    assert board["alerts"] == ({"c/k": "pending"} if alerts else {})


@pytest.mark.parametrize("alerts", [True, False], ids=["alert stage", "no alert stage"])
def test_the_workers_metrics_read_its_alert_stages_counters(
    tmp_path: Path, clickhouse_sink: ClickHouseSink, monkeypatch: pytest.MonkeyPatch, alerts: bool
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    monkeypatch.setenv("CREATORPULSE_ALERTS", "1" if alerts else "0")
    settings = settings_for(tmp_path)
    worker = runtime.build(settings, clickhouse_sink, UNUSED_BOOTSTRAP)
    if alerts:
        # What the stage counts (in its agent, which needs Kafka) is what /metrics shows.
        assert worker.alerts is not None
        worker.alerts.evaluations = 7
        worker.alerts.fired_by_rule["creator.outperforming"] = 2
        worker.alerts.firing_by_rule = {"creator.outperforming": 1}
    else:
        assert worker.alerts is None

    async def scenario() -> tuple[int, bytes]:
        await worker.app.web.start()
        try:
            return await asyncio.to_thread(fetch, settings.web_port, "/metrics")
        finally:
            await worker.app.web.stop()

    status, body = asyncio.run(scenario())
    assert status == 200
    m = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }
    rule = (("rule", "creator.outperforming"),)
    assert m[("creatorpulse_alert_evaluations_total", ())] == (7 if alerts else 0)
    assert m.get(("creatorpulse_alerts_fired_total", rule)) == (2 if alerts else None)
    assert m.get(("creatorpulse_alerts_firing", rule)) == (1 if alerts else None)
