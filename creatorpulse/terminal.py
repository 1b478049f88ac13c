"""The terminal board: a :class:`~creatorpulse.board.Board` in, rich renderables out.

No I/O here. The board fits the width it is drawn at (rich asks at every refresh, so a
resized terminal redraws to fit): columns leave in priority order (the first to go are
the least decisive, e.g. average watch time), the creator column is never cut to
nothing (a long handle wraps onto a second line instead), and the sort column always
stays. Plain-text lines for logs and pipes are in :func:`progress_line`.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.table import Table
from rich.text import Text

from creatorpulse.board import (
    LOWER_IS_BETTER,
    Board,
    BoardRow,
    CampaignSummary,
    SortKey,
)

#: Micro-creators on TikTok typically reach 5-10% engagement (docs/design.md); above the
#: band is worth a look, well below it is a weak post.
ER_GOOD = 0.10
ER_WEAK = 0.03

#: The creator column keeps at least this many characters (more lines rather than less
#: text): an id cut to a few characters is no id.
MIN_CREATOR_WIDTH: Final = 14
#: The rank cell of a creator below the minimum sample: shown, not ranked.
BELOW_SAMPLE_MARK: Final = "·"

#: Keys of the live board: each selects a sort; "s" cycles through them.
SORT_KEYS_BY_KEY: Final[dict[str, SortKey]] = {
    "e": "er",
    "c": "ctr",
    "v": "cvr",
    "a": "cpa",
    "r": "roas",
    "w": "views",
    "$": "revenue",
}

_HEADERS: Final[dict[SortKey, str]] = {
    "er": "ER",
    "ctr": "CTR",
    "cvr": "CVR",
    "cpa": "CPA",
    "roas": "ROAS",
    "views": "views",
    "revenue": "revenue",
}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _num(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:.2f}M"
    if value >= 10_000:
        return f"{value / 1000:.1f}k"
    return f"{int(value):,}"


def _money(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100_000:
        return f"{value / 1000:,.0f}k"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:,.2f}"


def _roas(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _er_style(value: float | None) -> str:
    if value is None:
        return "dim"
    if value >= ER_GOOD:
        return "bold green"
    if value < ER_WEAK:
        return "yellow"
    return ""


@dataclass(frozen=True, slots=True)
class _Column:
    """A board column: ``priority`` 0 never leaves; higher numbers leave first."""

    header: str
    cell: Callable[[Any], str | Text]
    priority: int
    justify: str = "right"
    key: SortKey | None = None


#: A creator row or a campaign summary: what a money cell is drawn from.
Priced = TypeVar("Priced", BoardRow, CampaignSummary)


def _currency_of(items: Iterable[BoardRow | CampaignSummary]) -> str | None:
    found = {i.currency for i in items if i.currency}
    return found.pop() if len(found) == 1 else None


def _money_cells(
    items: Iterable[Priced],
) -> tuple[str, Callable[[Callable[[Priced], float | None]], Callable[[Priced], str]]]:
    """The unit for a money column's header, and a maker of its cells. With one currency
    across ``items`` the header names it; otherwise each amount carries its own."""
    currency = _currency_of(items)

    def money(get: Callable[[Priced], float | None]) -> Callable[[Priced], str]:
        def cell(item: Priced) -> str:
            text = _money(get(item))
            if not currency and item.currency and text != "-":
                text = f"{text} {item.currency}"
            return text

        return cell

    return (f" {currency}" if currency else ""), money


def _creator_columns(board: Board) -> list[_Column]:
    rows = board.rows
    unit, money = _money_cells(rows)
    columns = [
        _Column(
            "#",
            lambda r: BELOW_SAMPLE_MARK if r.below_min_sample else str(r.rank or "-"),
            0,
        ),
        _Column("creator", lambda r: r.label, 0, "left"),
        _Column("views", lambda r: _num(r.views), 1, key="views"),
        _Column("ER", lambda r: Text(_pct(r.er), style=_er_style(r.er)), 1, key="er"),
        _Column("CPA" + unit, money(lambda r: r.cpa), 2, key="cpa"),
        _Column("ROAS", lambda r: _roas(r.roas), 2, key="roas"),
        _Column("CTR", lambda r: _pct(r.ctr), 3, key="ctr"),
        _Column("revenue" + unit, money(lambda r: r.revenue), 3, key="revenue"),
        _Column("CVR", lambda r: _pct(r.cvr), 4, key="cvr"),
        _Column("conv", lambda r: _num(r.conversions), 5),
        _Column("spend" + unit, money(lambda r: r.spend), 6),
        _Column("tier", lambda r: r.tier or "-", 7, "left"),
        _Column(
            "watch",
            lambda r: "-" if r.avg_watch_s is None else f"{r.avg_watch_s:.1f}s",
            8,
        ),
    ]
    if len({r.campaign_id for r in rows}) > 1:
        columns.insert(2, _Column("campaign", lambda r: r.campaign_id, 4, "left"))
    if any(r.alert for r in rows):
        columns.insert(2, _Column("alert", lambda r: r.alert or "", 1, "left"))
    return columns


def _campaign_columns(board: Board) -> list[_Column]:
    unit, money = _money_cells(board.campaigns)
    columns = [
        _Column("campaign", lambda c: c.campaign_id, 0, "left"),
        _Column("creators", lambda c: f"{c.ranked}/{c.creators}", 3),
        _Column("views", lambda c: _num(c.views), 1, key="views"),
        _Column("ER", lambda c: _pct(c.er), 1, key="er"),
        _Column("spend" + unit, money(lambda c: c.spend), 2),
        _Column("CPA" + unit, money(lambda c: c.cpa), 2, key="cpa"),
        _Column("ROAS", lambda c: _roas(c.roas), 2, key="roas"),
        _Column("revenue" + unit, money(lambda c: c.revenue), 3, key="revenue"),
        _Column("CTR", lambda c: _pct(c.ctr), 4, key="ctr"),
        _Column("CVR", lambda c: _pct(c.cvr), 5, key="cvr"),
    ]
    if any(c.alerts for c in board.campaigns):
        columns.insert(2, _Column("alerts", lambda c: str(c.alerts) if c.alerts else "", 1))
    return columns


def _text(cell: str | Text) -> str:
    return cell.plain if isinstance(cell, Text) else cell


def _fit(
    columns: list[_Column], items: Sequence[Any], width: int, sort: SortKey, first: str
) -> tuple[list[_Column], dict[str, int]]:
    """The columns that fit ``width`` and each one's width. ``first`` names the column
    that shrinks (down to :data:`MIN_CREATOR_WIDTH`) before anything is dropped."""

    def natural(column: _Column) -> int:
        header = column.header + (" ^" if column.key == sort else "")
        return max([len(header)] + [len(_text(column.cell(item))) for item in items])

    widths = {c.header: natural(c) for c in columns}
    kept = list(columns)

    def total() -> int:
        # SIMPLE_HEAD: one space of padding each side of every cell, and a blank
        # divider between neighbouring columns (no edges).
        return sum(widths[c.header] + 2 for c in kept) + max(0, len(kept) - 1)

    while total() > width:
        droppable = [c for c in kept if c.priority > 0 and c.key != sort]
        if not droppable:
            break
        kept.remove(max(droppable, key=lambda c: (c.priority, kept.index(c))))
    if total() > width:
        # Only the decisive columns are left: the long column wraps, never vanishes.
        excess = total() - width
        widths[first] = max(MIN_CREATOR_WIDTH, widths[first] - excess)
    return kept, widths


def _table(
    columns: list[_Column],
    items: Sequence[Any],
    width: int,
    sort: SortKey,
    first: str,
    *,
    title: str | None = None,
    dim: Callable[[Any], bool] = lambda _: False,
) -> Table:
    kept, widths = _fit(columns, items, width, sort, first)
    table = Table(
        title=title,
        title_justify="left",
        expand=False,
        header_style="bold",
        box=box.SIMPLE_HEAD,
        pad_edge=True,
        padding=(0, 1),
        show_edge=False,
    )
    for column in kept:
        arrow = ""
        if column.key == sort:
            arrow = " v" if sort not in LOWER_IS_BETTER else " ^"
        table.add_column(
            column.header + arrow,
            justify=column.justify,  # type: ignore[arg-type]
            width=widths[column.header],
            no_wrap=column.header != first,
            overflow="fold",
            style="bold" if column.key == sort else None,
        )
    for item in items:
        table.add_row(*(column.cell(item) for column in kept), style="dim" if dim(item) else None)
    return table


class BoardView:
    """The board as a rich renderable that fits the width it is drawn at."""

    def __init__(
        self,
        board: Board,
        *,
        title: str,
        stats: Mapping[str, Any] | None = None,
        notes: Sequence[str] = (),
        keys: bool = False,
    ) -> None:
        self.board = board
        self.title = title
        self.stats = stats
        self.notes = notes
        self.keys = keys

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield from self.renderables(options.max_width)

    def renderables(self, width: int) -> list[Any]:
        board = self.board
        items: list[Any] = []
        if not board.rows:
            items.append(Text(self.title, style="bold"))
            items.append(Text("waiting for the first windows...", style="dim"))
        else:
            shown = f"{len(board.rows)} of {board.total_creators} creators"
            items.append(
                _table(
                    _creator_columns(board),
                    board.rows,
                    width,
                    board.sort,
                    "creator",
                    title=f"{self.title} ({shown}, sorted by {_HEADERS[board.sort]})",
                    dim=lambda r: r.below_min_sample,
                )
            )
        if board.campaigns:
            items.append(
                _table(_campaign_columns(board), board.campaigns, width, board.sort, "campaign")
            )
        if self.stats:
            items.append(status_line(self.stats))
        footer = [
            f"{BELOW_SAMPLE_MARK} = fewer than {board.min_sample_views:,} views in range: "
            "shown, not ranked. ER = (likes+comments+shares+saves)/views; CPA and ROAS "
            "charge the fee pro rata over the contract's flight.",
            *self.notes,
        ]
        if self.keys:
            footer.append(keys_line(board.sort))
        items.extend(Text(line, style="dim") for line in footer)
        return items


def keys_line(sort: SortKey) -> str:
    names = "  ".join(f"{key} {_HEADERS[value]}" for key, value in SORT_KEYS_BY_KEY.items())
    return f"sort by {_HEADERS[sort]}; keys: {names}  s next  q quit (or Ctrl-C)"


def status_line(stats: Mapping[str, Any]) -> Text:
    parts = [f"{name.replace('_', ' ')} {value:,}" for name, value in stats.items()]
    return Text("  ".join(parts), style="dim")


def screen(
    board: Board,
    *,
    title: str,
    stats: Mapping[str, Any] | None = None,
    notes: Sequence[str] = (),
    keys: bool = False,
) -> BoardView:
    """The whole board screen: creators, campaign lines, counters, footnotes."""
    return BoardView(board, title=title, stats=stats, notes=notes, keys=keys)


def render_text(view: BoardView | Group, width: int) -> str:
    """``view`` as plain text at ``width`` columns (tests, and `top` into a pipe)."""
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(view)
    return console.export_text()


def progress_line(board: Board, stats: Mapping[str, Any] | None = None, top: int = 3) -> str:
    """One plain line for logs and pipes: counters, campaign totals, the leaders."""
    parts: list[str] = []
    if stats:
        parts.append(" ".join(f"{k.replace(' ', '_')}={v}" for k, v in stats.items()))
    for c in board.campaigns:
        money = ""
        if c.spend is not None and c.currency:
            money = f" spend={c.spend:.2f} {c.currency} cpa={_money(c.cpa)} roas={_roas(c.roas)}"
        alerts = f" alerts={c.alerts}" if c.alerts else ""
        parts.append(
            f"[{c.campaign_id}] creators={c.creators} views={c.views} er={_pct(c.er)}"
            f"{money}{alerts}"
        )
    leaders = [r for r in board.rows if r.rank is not None][:top]
    if leaders:
        ranked = ", ".join(f"{r.label} {_value(r, board.sort)}" for r in leaders)
        parts.append(f"top by {_HEADERS[board.sort]}: {ranked}")
    if not board.rows:
        parts.append("waiting for the first windows")
    return " | ".join(parts)


def _value(row: BoardRow, key: SortKey) -> str:
    value = row.value(key)
    if key in ("er", "ctr", "cvr"):
        return _pct(value)
    if key == "roas":
        return _roas(value)
    if key == "views":
        return _num(value or 0)
    return _money(value)
