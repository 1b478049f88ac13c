"""The dashboard in a real browser: Debian's chromium, headless, driven by selenium through
the system chromedriver (never a downloaded browser; `make browser`, which `make test`
and .ci/run call, installs both with apt-get when missing).

1. Against a running ``creatorpulse run`` (its simulator, real Kafka, chDB): the page
   shows the simulated creators, sorting changes their order, the campaign and tier
   filters cut the board, the charts draw (their canvas holds the series' colour, not
   only axes), a creator's detail opens, and the freshness figure moves without a
   reload. A full-page screenshot is saved as ``test-artefacts/dashboard.png``
   (CREATORPULSE_ARTEFACTS_DIR overrides the folder).
2. Against the dashboard served over a chDB store the test holds (the sink process's
   case: no worker in it): an alert written to the alerts table appears in the feed and
   as the creator's badge without a reload. (``run``'s chDB store can be opened by no
   other process, so this is where a test can plant an alert.)
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from creatorpulse.brokers.process import free_port
from schemas.metrics import METRICS
from schemas.reference import CreatorProfile
from schemas.rows import CreatorWindowRow
from sinks.clickhouse import ClickHouseSink
from tests.support.processes import real_kafka, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: The simulator's defaults (`creatorpulse run`): campaigns x creators per campaign.
SIMULATED_CREATORS = 3 * 12

#: The first two series colours of app.js (#4fb3ff, #f5b642): pixels of them mean a
#: series was drawn (axes and grid are grey).
COUNT_SERIES_PIXELS = """
const canvas = document.querySelector(arguments[0] + ' canvas');
if (!canvas) return 0;
const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
let n = 0;
for (let i = 0; i < data.length; i += 4) {
  const [r, g, b, a] = [data[i], data[i + 1], data[i + 2], data[i + 3]];
  if (a > 0 && ((Math.abs(r - 79) < 40 && Math.abs(g - 179) < 40 && b > 200)
                || (r > 200 && Math.abs(g - 182) < 40 && Math.abs(b - 66) < 40))) n++;
}
return n;
"""

BOARD_ROWS = """
return [...document.querySelectorAll('#board-table tbody tr[data-creator]')].map(
  (tr) => [tr.dataset.campaign + '/' + tr.dataset.creator,
           Number(tr.querySelector('td[data-value]').dataset.value)]);
"""


TIERS_SHOWN = """
return [...document.querySelectorAll('#board-table tbody tr[data-creator] .badge[class*=tier-]')]
  .map((b) => b.textContent);
"""


LAYOUT = """
return {page: document.documentElement.scrollWidth, window: window.innerWidth,
        font: parseFloat(getComputedStyle(document.body).fontSize)};
"""


def artefacts_dir() -> Path:
    folder = Path(os.environ.get("CREATORPULSE_ARTEFACTS_DIR", ROOT / "test-artefacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def browser() -> Iterator[Any]:
    if os.environ.get("CI") != "true" and not (
        shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)
    ):
        pytest.skip("apt-get install -y chromium chromium-driver (CI installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1440,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def full_page_screenshot(driver: Any, path: Path) -> None:
    """The whole page, not just the window (Chrome's DevTools, beyond the viewport)."""
    import base64

    size = driver.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
    )
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1},
        },
    )
    path.write_bytes(base64.b64decode(shot["data"]))


def wait_for(driver: Any, condition: Any, timeout_s: float, what: str) -> Any:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout_s, poll_frequency=0.25).until(lambda d: condition(d))
    except TimeoutException:
        logs = driver.get_log("browser") if hasattr(driver, "get_log") else []
        full_page_screenshot(driver, artefacts_dir() / "dashboard-failed.png")
        pytest.fail(f"timed out waiting for {what}; browser console: {logs}")


def test_the_dashboard_of_a_running_pipeline(
    browser: Any, kafka_broker: Any, unique_name: Any, tmp_path: Path, spawn: Any
) -> None:
    from selenium.webdriver.common.by import By

    bootstrap = real_kafka(kafka_broker)
    port = free_port()
    run = spawn(
        bootstrap,
        f"chdb://{tmp_path / 'store'}",
        unique_name("post-stats"),
        unique_name("dash"),
        tmp_path,
        command="run",
        web_port=str(port),
    )
    run.start()
    base = f"http://127.0.0.1:{port}"

    def board() -> dict[str, Any]:
        try:
            with urllib.request.urlopen(f"{base}/api/board", timeout=5) as response:
                return dict(json.loads(response.read()))
        except OSError:
            return {}

    wait_until(
        lambda: board().get("total_creators") == SIMULATED_CREATORS,
        120,
        run,
        "every simulated creator on /api/board",
        lambda: board(),
    )
    expected = {f"{r['campaign_id']}/{r['creator_id']}" for r in board()["creators"]}
    assert f"dashboard http://127.0.0.1:{port}/dashboard" in run.logs()  # `run` says where

    browser.get(f"{base}/")  # redirects to /dashboard
    assert browser.current_url.endswith("/dashboard")
    browser.execute_script("window.__loaded = true")
    rows = wait_for(
        browser,
        lambda d: (r := d.execute_script(BOARD_ROWS)) and len(r) == SIMULATED_CREATORS and r,
        30,
        "the board's rows",
    )
    assert {key for key, _ in rows} == expected

    # Sorting: views, most first, then fewest first; the order changes and follows views.
    browser.find_element(By.CSS_SELECTOR, "#board-table th[data-key=views]").click()
    down = browser.execute_script(BOARD_ROWS)
    browser.find_element(By.CSS_SELECTOR, "#board-table th[data-key=views]").click()
    up = browser.execute_script(BOARD_ROWS)
    assert [v for _, v in down] == sorted((v for _, v in down), reverse=True)
    assert [v for _, v in up] == sorted(v for _, v in up)
    assert [k for k, _ in down] != [k for k, _ in up]
    assert len({v for _, v in down}) > 1  # else no order could change

    # The filters: one campaign, then one tier of it; then all again.
    from selenium.webdriver.support.ui import Select

    campaign = sorted({key.split("/")[0] for key in expected})[1]
    Select(browser.find_element(By.ID, "campaign-filter")).select_by_value(campaign)
    wait_for(
        browser,
        lambda d: {k.split("/")[0] for k, _ in d.execute_script(BOARD_ROWS)} == {campaign},
        20,
        "the board cut to one campaign",
    )
    Select(browser.find_element(By.ID, "tier-filter")).select_by_value("micro")
    wait_for(
        browser,
        lambda d: (tiers := d.execute_script(TIERS_SHOWN)) and set(tiers) == {"micro"},
        20,
        "the board cut to one tier",
    )
    Select(browser.find_element(By.ID, "campaign-filter")).select_by_value("")
    Select(browser.find_element(By.ID, "tier-filter")).select_by_value("")
    wait_for(
        browser, lambda d: len(d.execute_script(BOARD_ROWS)) == SIMULATED_CREATORS, 20, "all again"
    )

    # The campaign chart draws its series.
    wait_for(
        browser,
        lambda d: d.execute_script(COUNT_SERIES_PIXELS, "#campaign-chart") > 20,
        30,
        "the campaign chart's series",
    )

    # A creator's detail opens, with its curve drawn: the one with most views (most
    # windows too, as the run has just begun), first once sorted most first again.
    browser.find_element(By.CSS_SELECTOR, "#board-table th[data-key=views]").click()
    first = browser.find_element(By.CSS_SELECTOR, "#board-table tbody tr[data-creator]")
    creator = first.get_attribute("data-creator")
    first.click()
    wait_for(browser, lambda d: d.find_element(By.ID, "detail").is_displayed(), 10, "the detail")
    wait_for(
        browser,
        lambda d: d.execute_script(COUNT_SERIES_PIXELS, "#chart-views") > 20,
        30,
        "the creator's views chart",
    )
    assert browser.find_element(By.ID, "detail-title").text
    assert browser.find_element(
        By.CSS_SELECTOR, f"#board-table tr.selected[data-creator='{creator}']"
    )

    # Freshness: a figure at once, and a different one a snapshot later, same page.
    freshness = wait_for(
        browser,
        lambda d: (t := d.find_element(By.ID, "freshness").text) != "-" and t,
        30,
        "a freshness figure",
    )
    wait_for(
        browser,
        lambda d: d.find_element(By.ID, "freshness").text not in ("-", freshness),
        20,
        "the freshness figure to move",
    )
    assert browser.execute_script("return window.__loaded === true")  # never reloaded
    assert "live" in browser.find_element(By.ID, "live").text

    browser.execute_script("window.scrollTo(0, 0)")  # the sticky header at the top
    full_page_screenshot(browser, artefacts_dir() / "dashboard.png")
    assert (artefacts_dir() / "dashboard.png").stat().st_size > 10_000


# -- an alert appears without a reload --------------------------------------------------------


class Served:
    """The dashboard's routes on an aiohttp server in a thread (as the sink process runs
    them: a store and no worker)."""

    def __init__(self, sink: ClickHouseSink) -> None:
        self.sink = sink
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from aiohttp import web

        from creatorpulse.web.dashboard import Dashboard
        from creatorpulse.web.routes import Snapshots, add_dashboard

        asyncio.set_event_loop(self.loop)
        dashboard = Dashboard(self.sink)
        app = web.Application()
        add_dashboard(app, dashboard, snapshots=Snapshots(dashboard, interval_s=0.5))
        self.runner = web.AppRunner(app, shutdown_timeout=1)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        self.loop.run_until_complete(site.start())
        self.ready.set()
        self.loop.run_forever()

    def __enter__(self) -> Served:
        self.thread.start()
        assert self.ready.wait(10)
        return self

    def __exit__(self, *_: Any) -> None:
        async def stop() -> None:
            await self.runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


ALERT_COLUMNS = [
    "alert_id",
    "fired_at",
    "rule",
    "campaign_id",
    "creator_id",
    "window_size_s",
    "window_start",
    "metric",
    "value",
    "baseline",
    "payload",
    "fingerprint",
    "status",
    "window_end",
    "resolved_at",
    "resolved_reason",
    "z",
    "lift",
    "probability",
    "tier",
    "cohort_size",
    "views",
    "handle",
    "explanation",
    "version",
    "updated_at",
]


def test_a_new_alert_appears_without_a_reload(browser: Any, clickhouse_sink: Any) -> None:
    from selenium.webdriver.common.by import By

    now_s = int(time.time()) // 60 * 60
    creators = [f"creator-{i}" for i in range(4)]
    clickhouse_sink.write_profiles(
        [CreatorProfile(creator_id=c, handle=f"@{c}", follower_count=20_000) for c in creators]
    )
    rows = []
    for i, creator in enumerate(creators):
        for m in range(5):
            counts = {name: 0 for name in METRICS} | {"views": 100 * (i + 1) + m, "likes": 9}
            rows.append(
                CreatorWindowRow(
                    "launch", creator, 60, (now_s - 300 + 60 * m) * 1000, tuple(counts.values())
                )
            )
    clickhouse_sink.write_creator_windows(rows)
    with Served(clickhouse_sink) as served:
        browser.get(f"http://127.0.0.1:{served.port}/dashboard")
        browser.execute_script("window.__loaded = true")
        wait_for(
            browser,
            lambda d: len(d.execute_script(BOARD_ROWS)) == len(creators),
            30,
            "the board",
        )
        assert browser.find_element(By.CSS_SELECTOR, "#alert-feed li").text == "no alerts"

        fired = datetime.fromtimestamp(now_s - 60, UTC)
        explanation = "@creator-2 engagement rate 31% vs cohort median 9% (z 4.1)"
        clickhouse_sink.insert_rows(
            "alerts",
            ALERT_COLUMNS,
            [
                [
                    "a-1", fired, "er_outlier", "launch", "creator-2", 600,
                    datetime.fromtimestamp(now_s - 600, UTC), "engagement_rate", 0.31, 0.09,
                    "{}", "fp-1", "firing", datetime.fromtimestamp(now_s, UTC), None, "",
                    4.1, 3.4, 0.99, "micro", 4, 300, "@creator-2", explanation, 1,
                    datetime.now(UTC),
                ]
            ],
        )  # fmt: skip
        item = wait_for(
            browser,
            lambda d: d.find_elements(By.CSS_SELECTOR, "#alert-feed li[data-alert='a-1']"),
            20,
            "the alert in the feed",
        )[0]
        assert explanation in item.text
        assert "firing" in item.text
        badge = wait_for(
            browser,
            lambda d: d.find_elements(
                By.CSS_SELECTOR, "#board-table tr[data-creator='creator-2'] .state-firing"
            ),
            20,
            "the creator's alert badge",
        )
        assert badge[0].text == "firing"
        assert browser.execute_script("return window.__loaded === true")  # never reloaded

        # From a small laptop to a wall screen: nothing wider than the window (the board
        # scrolls inside its panel), and larger type on the wall.
        sizes = {}
        for width in (1024, 2560):
            browser.set_window_size(width, 1000)
            sizes[width] = wait_for(
                browser,
                lambda d: (m := d.execute_script(LAYOUT)) and m["page"] <= m["window"] and m,
                10,
                f"the page to fit {width} px",
            )
        assert sizes[2560]["font"] > sizes[1024]["font"]
