"""The terminal board: rows in, a rich renderable out (no I/O here)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

#: Micro-creators on TikTok typically reach 5-10% engagement (docs/design.md); above the
#: band is worth a look, well below it is a weak post.
ER_GOOD = 0.10
ER_WEAK = 0.03


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _num(value: int) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:.2f}M"
    if value >= 10_000:
        return f"{value / 1000:.1f}k"
    return f"{value:,}"


def _er_style(value: float | None) -> str:
    if value is None:
        return "dim"
    if value >= ER_GOOD:
        return "bold green"
    if value < ER_WEAK:
        return "yellow"
    return ""


def leaderboard_table(rows: Sequence[Any], *, title: str) -> Table:
    """One line per creator: the figures ops teams scan first."""
    table = Table(title=title, title_justify="left", expand=False, header_style="bold")
    table.add_column("#", justify="right", style="dim")
    table.add_column("campaign")
    table.add_column("creator")
    table.add_column("tier")
    table.add_column("views", justify="right")
    table.add_column("ER", justify="right")
    table.add_column("avg watch", justify="right")
    table.add_column("CTR", justify="right")
    table.add_column("conv", justify="right")
    table.add_column("revenue", justify="right")
    for rank, row in enumerate(rows, start=1):
        get: Any = row.get if isinstance(row, Mapping) else lambda name, r=row: getattr(r, name)
        er = get("engagement_rate")
        watch = get("avg_watch_time_s")
        table.add_row(
            str(rank),
            str(get("campaign_id")),
            str(get("handle") or get("creator_id")),
            str(get("tier") or "-"),
            _num(int(get("views"))),
            Text(_pct(er), style=_er_style(er)),
            "-" if watch is None else f"{watch:.1f}s",
            _pct(get("ctr")),
            _num(int(get("conversions"))),
            f"{int(get('revenue_cents')) / 100:,.2f}",
        )
    if not rows:
        table.add_row("", "waiting for the first windows...", "", "", "", "", "", "", "", "")
    return table


def status_line(stats: Mapping[str, Any]) -> Text:
    parts = [f"{name.replace('_', ' ')} {value:,}" for name, value in stats.items()]
    return Text("  ".join(parts), style="dim")


def screen(rows: Sequence[Any], *, title: str, stats: Mapping[str, Any] | None = None) -> Group:
    items: list[Any] = [leaderboard_table(rows, title=title)]
    if stats:
        items.append(status_line(stats))
    items.append(Text("ER = (likes+comments+shares+saves)/views; Ctrl-C stops.", style="dim"))
    return Group(*items)
