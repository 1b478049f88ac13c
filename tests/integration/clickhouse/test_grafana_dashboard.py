"""deploy/grafana: the dashboard parses, names only the provisioned data sources, its
Prometheus queries name metrics the processes export, and every ClickHouse query (the
panels' and the campaign variable's) runs on chDB after the plugin's time macros are
expanded as the plugin expands them, giving what the seeded store holds."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from schemas.metrics import METRICS
from schemas.reference import CreatorProfile
from schemas.rows import CreatorWindowRow
from sinks.clickhouse import ClickHouseSink

GRAFANA = Path(__file__).resolve().parents[3] / "deploy" / "grafana"
DASHBOARD = json.loads((GRAFANA / "dashboards" / "creatorpulse.json").read_text())
README = (Path(__file__).resolve().parents[3] / "README.md").read_text()

FROM_S = 1_796_000_000
TO_S = FROM_S + 3 * 3600
INTERVAL_S = 60


def expand(sql: str, campaigns: list[str] | None) -> str:
    """The grafana-clickhouse-datasource macros, expanded as its docs say, over
    [FROM_S, TO_S]; ``campaigns`` None is the variable's "All"."""

    def conditional_all(match: re.Match[str]) -> str:
        condition = match.group(1)
        return "1=1" if campaigns is None else condition

    sql = re.sub(r"\$__conditionalAll\((.*?), \$campaign\)", conditional_all, sql)
    if campaigns is not None:
        sql = sql.replace("${campaign:singlequote}", ", ".join(f"'{c}'" for c in campaigns))
    sql = re.sub(
        r"\$__timeFilter\(([\w.]+)\)",
        lambda m: f"{m[1]} >= toDateTime({FROM_S}) AND {m[1]} <= toDateTime({TO_S})",
        sql,
    )
    sql = re.sub(
        r"\$__timeInterval\(([\w.]+)\)",
        lambda m: f"toStartOfInterval(toDateTime({m[1]}), INTERVAL {INTERVAL_S} second)",
        sql,
    )
    sql = sql.replace("$__fromTime", f"toDateTime({FROM_S})").replace(
        "$__toTime", f"toDateTime({TO_S})"
    )
    assert "$" not in sql, f"a macro left unexpanded: {sql}"
    # The dashboard names the default database; the test's store has its own.
    return re.sub(r"\bcreatorpulse\.(\w+)", r"{database}.\1", sql)


def panels() -> list[dict[str, Any]]:
    return [p for p in DASHBOARD["panels"] if p["type"] != "row"]


def clickhouse_targets() -> list[tuple[str, str]]:
    return [
        (p["title"], t["rawSql"])
        for p in panels()
        for t in p["targets"]
        if t["datasource"]["type"] == "grafana-clickhouse-datasource"
    ]


def test_panels_use_the_provisioned_data_sources() -> None:
    provisioned = (GRAFANA / "provisioning" / "datasources" / "creatorpulse.yml").read_text()
    uids = set(re.findall(r"uid: (\S+)", provisioned))
    assert uids == {"creatorpulse-prometheus", "creatorpulse-clickhouse"}
    for panel in panels():
        assert panel["datasource"]["uid"] in uids, panel["title"]
        assert panel["description"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == panel["datasource"]["uid"], panel["title"]
    kinds = {p["datasource"]["uid"] for p in panels()}
    assert kinds == uids  # pipeline panels from Prometheus, business panels from ClickHouse


def test_prometheus_queries_name_exported_metrics() -> None:
    exported = set(re.findall(r"^\| `(creatorpulse_\w+)`", README, flags=re.MULTILINE))
    assert exported
    for panel in panels():
        for target in panel["targets"]:
            for name in re.findall(r"creatorpulse_\w+", target.get("expr", "")):
                assert re.sub(r"_bucket$", "", name) in exported, (panel["title"], name)


def seed(sink: ClickHouseSink) -> dict[str, int]:
    sink.write_profiles(
        [
            CreatorProfile(creator_id=f"k-{i}", handle=f"@k{i}", follower_count=5000)
            for i in range(3)
        ]
    )
    views: dict[str, int] = {}
    rows = []
    for c, campaign in enumerate(("alpha", "beta")):
        for i in range(3):
            for m in range(10):
                n = 100 * (c + 1) + 10 * i + m
                counts = dict.fromkeys(METRICS, 0) | {"views": n, "likes": n // 10, "clicks": 2}
                start_ms = (FROM_S + 3600 + 60 * m) * 1000
                rows.append(
                    CreatorWindowRow(campaign, f"k-{i}", 60, start_ms, tuple(counts.values()))
                )
                views[campaign] = views.get(campaign, 0) + n
    sink.write_creator_windows(rows)
    return views


@pytest.mark.parametrize("campaigns", [None, ["beta"]], ids=["all", "one campaign"])
def test_every_clickhouse_query_runs_after_macro_expansion(
    clickhouse_sink: ClickHouseSink, campaigns: list[str] | None
) -> None:
    views = seed(clickhouse_sink)
    targets = clickhouse_targets()
    assert len(targets) >= 5
    results = {}
    for title, sql in targets:
        results[title] = clickhouse_sink.query_rows(expand(sql, campaigns))
    shown = views if campaigns is None else {c: views[c] for c in campaigns}
    by_campaign: dict[str, int] = {}
    for _, campaign, n in results["Views per minute, by campaign"]:
        by_campaign[campaign] = by_campaign.get(campaign, 0) + int(n)
    assert by_campaign == shown
    top = results["Top creators in range"]
    assert {r[0] for r in top} == set(shown)
    assert sum(int(r[4]) for r in top) == sum(shown.values())
    assert results["Alerts"] == []  # none written


def test_the_campaign_variable_lists_the_campaigns(clickhouse_sink: ClickHouseSink) -> None:
    seed(clickhouse_sink)
    (variable,) = [v for v in DASHBOARD["templating"]["list"] if v["name"] == "campaign"]
    sql = re.sub(r"\bcreatorpulse\.(\w+)", r"{database}.\1", variable["query"])
    # The seed is in the past of the wall clock; the variable looks back 30 days from now.
    age_days = (datetime.now(UTC).timestamp() - FROM_S) / 86_400
    rows = clickhouse_sink.query_rows(sql.replace("30 DAY", f"{int(age_days) + 2} DAY"))
    assert [r[0] for r in rows] == ["alpha", "beta"]
