"""The dashboard in a real browser: Debian's chromium, headless, driven by selenium through
the system chromedriver (never a downloaded browser; `make browser`, which `make test`
and .ci/run call, installs both with apt-get when missing).

Against a running ``creatorpulse run`` (its simulator, real Kafka, chDB): the page
shows the simulated creators, sorting changes their order, the campaign and tier
filters cut the board, the charts draw (their canvas holds the series' colour, not
only axes), a creator's detail opens, and the freshness figure moves without a
reload. Then an alert record goes onto the run's alerts topic, as the alert stage
publishes it: the run's alert sink writes it to the alerts table and notifies the log
hook, and the page, open all along, shows it in the feed, delivered, and as the
creator's badge. A full-page screenshot is saved as ``test-artefacts/dashboard.png``
(CREATORPULSE_ARTEFACTS_DIR overrides the folder); last, the page fits a small laptop
and a wall screen.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import urllib.request
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from creatorpulse.brokers.process import free_port
from schemas.alerts import (
    OUTPERFORMING,
    Alert,
    Cohort,
    Figures,
    Thresholds,
    alert_to_json,
    episode_id,
    fingerprint,
)
from tests.support.processes import publish, real_kafka, wait_until

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


FEED_IDS = """
return [...document.querySelectorAll('#alert-feed li[data-alert]')].map((li) => li.dataset.alert);
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


def rules_with_short_group_wait(folder: Path) -> Path:
    """The shipped rules, but a notification is due a second after its alert rather than
    after Alertmanager's 30 s group wait, so the feed can show the delivery soon."""
    text = resources.files("streams.alerts").joinpath("default_rules.toml").read_text("utf-8")
    short, n = re.subn(r"(?m)^group_wait_s = \d+$", "group_wait_s = 1", text)
    assert n == 1, "the shipped rules no longer set group_wait_s"
    path = folder / "rules.toml"
    path.write_text(short, encoding="utf-8")
    return path


def outperforming(campaign_id: str, creator_id: str, now_ms: int) -> Alert:
    """A firing alert as the alert stage publishes it, with event times of now: an alert
    older than the replay horizon would be recorded as suppressed and sent to no hook."""
    fp = fingerprint(OUTPERFORMING, campaign_id, creator_id)
    return Alert(
        alert_id=episode_id(fp, now_ms),
        fingerprint=fp,
        rule=OUTPERFORMING,
        status="firing",
        campaign_id=campaign_id,
        creator_id=creator_id,
        metric="engagement_rate",
        value=0.31,
        baseline=0.09,
        z=4.1,
        lift=3.4,
        probability=0.99,
        cohort=Cohort(
            campaign_id=campaign_id, tier="all", scope="campaign", size=12, median=0.09, mad=0.02
        ),
        figures=Figures(
            views=3000,
            engagements=930,
            clicks=40,
            conversions=3,
            revenue_cents=9000,
            engagement_rate=0.31,
            engagement_rate_shrunk=0.31,
            ctr=0.013,
            ctr_shrunk=0.013,
            conversion_rate=0.075,
            conversion_rate_shrunk=0.07,
            views_per_minute=300.0,
        ),
        thresholds=Thresholds(z=3.5, lift=1.5, probability=0.95, recover_z=2.0),
        window_start_ms=now_ms - 600_000,
        window_end_ms=now_ms,
        starts_at_ms=now_ms,
        explanation=f"{creator_id} engagement rate 31% vs cohort median 9% (z 4.1), injected",
    )


def test_the_dashboard_of_a_running_pipeline(
    browser: Any, kafka_broker: Any, unique_name: Any, tmp_path: Path, spawn: Any
) -> None:
    from selenium.webdriver.common.by import By

    bootstrap = real_kafka(kafka_broker)
    port = free_port()
    alerts_topic = unique_name("alerts")
    run = spawn(
        bootstrap,
        f"chdb://{tmp_path / 'store'}",
        unique_name("post-stats"),
        unique_name("dash"),
        tmp_path,
        command="run",
        web_port=str(port),
        alerts_topic=alerts_topic,
        alert_rules=str(rules_with_short_group_wait(tmp_path)),
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
    # A tier this campaign's board shows. Its option comes with an overview that knows the
    # campaign's tiers, which may be a refresh after the campaign was chosen: wait for it.
    tier = sorted(browser.execute_script(TIERS_SHOWN))[0]
    wait_for(
        browser,
        lambda d: d.find_elements(By.CSS_SELECTOR, f"#tier-filter option[value='{tier}']"),
        20,
        f"the tier filter offering {tier}",
    )
    Select(browser.find_element(By.ID, "tier-filter")).select_by_value(tier)
    wait_for(
        browser,
        lambda d: (tiers := d.execute_script(TIERS_SHOWN)) and set(tiers) == {tier},
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
    # Read and clicked in one script: a live update may redraw the board between two
    # WebDriver calls, and the row found by the first would be stale in the next.
    creator, campaign_id = browser.execute_script(
        "const r = document.querySelector('#board-table tbody tr[data-creator]');"
        "r.click(); return [r.dataset.creator, r.dataset.campaign];"
    )
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

    # A new alert, through the pipeline into the open page: the record goes onto the run's
    # alerts topic as the alert stage sends it (keyed by campaign); the run's alert sink
    # writes it to the alerts table and the page's event stream brings it.
    shown = set(browser.execute_script(FEED_IDS))
    alert = outperforming(campaign_id, creator, int(time.time() * 1000))
    assert alert.alert_id not in shown
    publish(bootstrap, alerts_topic, [(campaign_id.encode(), alert_to_json(alert))])
    item = wait_for(
        browser,
        lambda d: d.find_elements(
            By.CSS_SELECTOR, f"#alert-feed li[data-alert='{alert.alert_id}']"
        ),
        30,
        "the published alert in the feed",
    )[0]
    assert alert.explanation in item.text
    assert "firing" in item.text
    badge = wait_for(
        browser,
        lambda d: d.find_elements(
            By.CSS_SELECTOR,
            f"#board-table tr[data-campaign='{campaign_id}'][data-creator='{creator}']"
            " .state-firing",
        ),
        20,
        "the creator's alert badge",
    )
    assert badge[0].text == "firing"
    # Notified, not suppressed: the sink took its event time as recent, and the log hook
    # delivered it (the policy's group wait, a second here, comes first).
    wait_for(
        browser,
        lambda d: re.search(
            r"delivery: firing \S+: delivered",
            d.find_element(By.CSS_SELECTOR, f"#alert-feed li[data-alert='{alert.alert_id}']").text,
        ),
        30,
        "the alert delivered to the log hook",
    )
    assert browser.execute_script("return window.__loaded === true")  # never reloaded

    browser.execute_script("window.scrollTo(0, 0)")  # the sticky header at the top
    full_page_screenshot(browser, artefacts_dir() / "dashboard.png")
    assert (artefacts_dir() / "dashboard.png").stat().st_size > 10_000

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
