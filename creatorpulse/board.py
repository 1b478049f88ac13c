"""The board: what `creatorpulse top`, the live `run` board and ``/leaderboard`` show.

Pure (no I/O): per-creator totals over a range of event time, plus the campaign
contracts, in; ranked creator rows and one summary per campaign out. The rate
definitions are :mod:`schemas.metrics`'s; this module only decides what is shown, in
which order, and what money a range of time cost.

Money. A contract's fee is what the creator is paid for the whole campaign. Charged in
full against a short range (the last hour) it makes CPA huge and ROAS tiny, so a contract
that knows its flight (``flight_start_s`` .. ``flight_end_s``) is charged pro rata: the
share of the flight that lies inside the board's range. A contract without a flight is
charged in full (``fee_basis`` says which). CPA = spend / conversions, ROAS = revenue /
spend, both ``None`` where there is no contract or nothing to divide by.

Ranking. A creator with fewer than :data:`MIN_SAMPLE_VIEWS` views in the range is
``below_min_sample``: its rates are shown but it gets no rank and sorts after every
ranked row (one view with one like is a 100% engagement rate that means nothing). A
row whose sort metric is ``None`` (no conversions for CPA, no contract for ROAS) is
unranked too. Unranked rows follow ranked ones by views, most first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final, Literal, Protocol, TypedDict, get_args

from schemas import metrics
from schemas.metrics import METRICS

SortKey = Literal["er", "ctr", "cvr", "cpa", "roas", "views", "revenue"]
#: The keys `--sort` accepts, in the order the live board cycles through them.
SORT_KEYS: Final[tuple[SortKey, ...]] = get_args(SortKey)
#: Every key ranks highest first except CPA, where the cheapest acquisition wins.
LOWER_IS_BETTER: Final[frozenset[SortKey]] = frozenset({"cpa"})
DEFAULT_SORT: Final[SortKey] = "er"

#: Views a creator needs in the board's range before its rates rank it. Below this an
#: engagement rate's sampling error is several points (at 7% ER and 500 views it is
#: about +-1.1 points), about the gap between an average and a strong micro-creator.
MIN_SAMPLE_VIEWS: Final = 500

FeeBasis = Literal["flight", "full"]


class Aggregate(Protocol):
    """One creator's totals over the board's range (``LeaderRow`` is one)."""

    @property
    def campaign_id(self) -> str: ...
    @property
    def creator_id(self) -> str: ...
    @property
    def handle(self) -> str | None: ...
    @property
    def tier(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Terms:
    """A creator's contract for one campaign: the fee (major currency unit) and, where
    known, the flight it pays for (epoch seconds, end exclusive)."""

    fee: float
    currency: str
    flight_start_s: int | None = None
    flight_end_s: int | None = None

    @property
    def has_flight(self) -> bool:
        return (
            self.flight_start_s is not None
            and self.flight_end_s is not None
            and self.flight_end_s > self.flight_start_s
        )

    def spend(self, from_s: int, to_s: int) -> tuple[float, FeeBasis]:
        """The part of the fee that the range ``[from_s, to_s)`` costs, and how it was found."""
        start, end = self.flight_start_s, self.flight_end_s
        if start is None or end is None or end <= start:
            return self.fee, "full"
        overlap = max(0, min(to_s, end) - max(from_s, start))
        return self.fee * overlap / (end - start), "flight"


@dataclass(frozen=True, slots=True)
class BoardRow:
    """One creator on the board. Money is in ``currency``'s major unit."""

    rank: int | None
    campaign_id: str
    creator_id: str
    handle: str | None
    tier: str | None
    views: int
    engagements: int
    clicks: int
    conversions: int
    revenue: float
    currency: str | None
    er: float | None
    ctr: float | None
    cvr: float | None
    avg_watch_s: float | None
    #: The contract's whole fee, and what this range of it costs (see the module doc).
    fee: float | None
    spend: float | None
    fee_basis: FeeBasis | None
    cpa: float | None
    roas: float | None
    below_min_sample: bool
    #: Set by the alerts stage when the creator has an open alert (e.g. ``outperforming``).
    alert: str | None = None
    #: The aggregate's own fields (a ``LeaderRow``'s: every counter, ``windows``, the
    #: stored rates), kept so a row's JSON is the earlier leaderboard item plus the board's
    #: keys: `top --json` and ``/leaderboard`` only ever gain keys.
    source: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        """This row as one item of the `top --json` / ``/leaderboard`` list."""
        own = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "source"}
        return {**own, **{k: v for k, v in self.source.items() if k not in own}}

    @property
    def label(self) -> str:
        """What a person recognises: the handle, else the id."""
        return self.handle or self.creator_id

    def value(self, key: SortKey) -> float | None:
        return {
            "er": self.er,
            "ctr": self.ctr,
            "cvr": self.cvr,
            "cpa": self.cpa,
            "roas": self.roas,
            "views": float(self.views),
            "revenue": self.revenue,
        }[key]


@dataclass(frozen=True, slots=True)
class CampaignSummary:
    """A campaign's totals over the range, over every creator (not only those shown)."""

    campaign_id: str
    creators: int
    ranked: int
    views: int
    engagements: int
    clicks: int
    conversions: int
    revenue: float
    #: ``None`` when no creator has a contract; ``"mixed"`` when contracts disagree
    #: (spend, CPA and ROAS are then ``None``: sums across currencies mean nothing).
    currency: str | None
    er: float | None
    ctr: float | None
    cvr: float | None
    #: The summed spend of the creators with a contract; CPA and ROAS over those only.
    spend: float | None
    cpa: float | None
    roas: float | None
    alerts: int = 0


@dataclass(frozen=True, slots=True)
class Board:
    """Ranked creator rows (at most ``limit``) and every campaign's summary."""

    sort: SortKey
    from_s: int
    to_s: int
    min_sample_views: int
    rows: tuple[BoardRow, ...]
    campaigns: tuple[CampaignSummary, ...]
    #: Creators in the range, before ``limit``.
    total_creators: int = 0
    notes: tuple[str, ...] = field(default=())

    def rows_json(self) -> list[dict[str, Any]]:
        """The creators as `top --json` and ``/leaderboard`` give them: a JSON list
        (docs/contract.md), ranked rows first."""
        return [r.to_json() for r in self.rows]

    def to_json(self) -> dict[str, Any]:
        """The whole board as `top --board-json` and ``/board`` give it: range, sort,
        every campaign's summary and the creators (each as in :meth:`rows_json`)."""
        return {
            "sort": self.sort,
            "from": _iso(self.from_s),
            "to": _iso(self.to_s),
            "min_sample_views": self.min_sample_views,
            "total_creators": self.total_creators,
            "campaigns": [asdict(c) for c in self.campaigns],
            "creators": self.rows_json(),
        }


def empty_board(sort: SortKey = DEFAULT_SORT) -> Board:
    """The board before the first window: nothing to rank."""
    return Board(
        sort=sort, from_s=0, to_s=0, min_sample_views=MIN_SAMPLE_VIEWS, rows=(), campaigns=()
    )


def parse_sort(value: str) -> SortKey:
    """A sort key from user input, or ValueError listing the keys."""
    key = value.strip().lower()
    for known in SORT_KEYS:
        if key == known:
            return known
    raise ValueError(f"unknown sort key {value!r}; use one of {'|'.join(SORT_KEYS)}")


def _totals(aggregate: Aggregate | Mapping[str, Any]) -> dict[str, int]:
    if isinstance(aggregate, Mapping):
        return {m: int(aggregate[m]) for m in METRICS}
    return {m: int(getattr(aggregate, m)) for m in METRICS}


def _source(aggregate: Aggregate | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(aggregate, Mapping):
        return dict(aggregate)
    if is_dataclass(aggregate) and not isinstance(aggregate, type):
        return asdict(aggregate)
    return {}


def _field(aggregate: Aggregate | Mapping[str, Any], name: str) -> Any:
    if isinstance(aggregate, Mapping):
        return aggregate.get(name)
    return getattr(aggregate, name)


class _Figures(TypedDict):
    views: int
    engagements: int
    clicks: int
    conversions: int
    revenue: float
    er: float | None
    ctr: float | None
    cvr: float | None


def _figures(totals: Mapping[str, int]) -> _Figures:
    """The counts and rates a creator row and a campaign summary both show, from totals."""
    return {
        "views": totals["views"],
        "engagements": metrics.engagements(totals),
        "clicks": totals["clicks"],
        "conversions": totals["conversions"],
        "revenue": totals["revenue_cents"] / 100,
        "er": metrics.engagement_rate(totals),
        "ctr": metrics.ctr(totals),
        "cvr": metrics.conversion_rate(totals),
    }


def _row(
    aggregate: Aggregate | Mapping[str, Any],
    terms: Terms | None,
    campaign_currency: str | None,
    from_s: int,
    to_s: int,
    min_sample_views: int,
    alert: str | None,
) -> tuple[BoardRow, dict[str, int]]:
    totals = _totals(aggregate)
    spend: float | None = None
    basis: FeeBasis | None = None
    if terms is not None:
        spend, basis = terms.spend(from_s, to_s)
    row = BoardRow(
        rank=None,
        campaign_id=str(_field(aggregate, "campaign_id")),
        creator_id=str(_field(aggregate, "creator_id")),
        handle=_field(aggregate, "handle") or None,
        tier=_field(aggregate, "tier") or None,
        **_figures(totals),
        currency=terms.currency if terms is not None else campaign_currency,
        avg_watch_s=metrics.avg_watch_time_s(totals),
        fee=terms.fee if terms is not None else None,
        spend=spend,
        fee_basis=basis,
        cpa=metrics.cost_per_acquisition(spend, totals),
        roas=metrics.return_on_spend(spend, totals),
        below_min_sample=totals["views"] < min_sample_views,
        alert=alert,
        source=_source(aggregate),
    )
    return row, totals


def _order(rows: list[BoardRow], sort: SortKey) -> list[BoardRow]:
    ranked = [r for r in rows if not r.below_min_sample and r.value(sort) is not None]
    sign = 1.0 if sort in LOWER_IS_BETTER else -1.0
    # Ties: more views first, then ids, so the order is stable between refreshes.
    ranked.sort(
        key=lambda r: (sign * (r.value(sort) or 0.0), -r.views, r.campaign_id, r.creator_id)
    )
    unranked = [r for r in rows if r.below_min_sample or r.value(sort) is None]
    unranked.sort(key=lambda r: (r.below_min_sample, -r.views, r.campaign_id, r.creator_id))
    out = [_with_rank(r, i) for i, r in enumerate(ranked, start=1)]
    return out + unranked


def _with_rank(row: BoardRow, rank: int) -> BoardRow:
    return replace(row, rank=rank)


def _campaign_currency(terms: Iterable[Terms]) -> str | None:
    currencies = {t.currency for t in terms}
    if not currencies:
        return None
    return currencies.pop() if len(currencies) == 1 else "mixed"


def build_board(
    aggregates: Iterable[Aggregate | Mapping[str, Any]],
    contracts: Mapping[tuple[str, str], Terms],
    *,
    from_s: int,
    to_s: int,
    sort: SortKey = DEFAULT_SORT,
    limit: int | None = None,
    min_sample_views: int = MIN_SAMPLE_VIEWS,
    alerts: Mapping[tuple[str, str], str] | None = None,
    notes: Iterable[str] = (),
) -> Board:
    """The board for creators' totals over ``[from_s, to_s)`` (epoch seconds).

    ``contracts`` maps ``(campaign_id, creator_id)`` to the creator's terms; ``alerts``
    maps the same key to an alert badge. ``limit`` cuts the creator rows after sorting;
    the campaign summaries always cover every creator given.
    """
    if sort not in SORT_KEYS:
        raise ValueError(f"unknown sort key {sort!r}; use one of {'|'.join(SORT_KEYS)}")
    if min_sample_views < 0:
        raise ValueError("min_sample_views must be >= 0")
    alerts = alerts or {}
    items = list(aggregates)
    by_campaign_terms: dict[str, list[Terms]] = {}
    for (campaign_id, _), terms in contracts.items():
        by_campaign_terms.setdefault(campaign_id, []).append(terms)
    campaign_currency = {c: _campaign_currency(t) for c, t in by_campaign_terms.items()}

    rows: list[BoardRow] = []
    sums: dict[str, dict[str, int]] = {}
    for aggregate in items:
        campaign_id = str(_field(aggregate, "campaign_id"))
        creator_id = str(_field(aggregate, "creator_id"))
        key = (campaign_id, creator_id)
        currency = campaign_currency.get(campaign_id)
        row, totals = _row(
            aggregate,
            contracts.get(key),
            None if currency == "mixed" else currency,
            from_s,
            to_s,
            min_sample_views,
            alerts.get(key),
        )
        rows.append(row)
        campaign_sums = sums.setdefault(campaign_id, dict.fromkeys(METRICS, 0))
        for name in METRICS:
            campaign_sums[name] += totals[name]

    ordered = _order(rows, sort)
    summaries = tuple(
        _summary(
            campaign_id, [r for r in ordered if r.campaign_id == campaign_id], sums[campaign_id]
        )
        for campaign_id in sorted(sums)
    )
    shown = ordered if limit is None else ordered[:limit]
    return Board(
        sort=sort,
        from_s=from_s,
        to_s=to_s,
        min_sample_views=min_sample_views,
        rows=tuple(shown),
        campaigns=summaries,
        total_creators=len(ordered),
        notes=tuple(notes),
    )


def _summary(campaign_id: str, rows: list[BoardRow], totals: dict[str, int]) -> CampaignSummary:
    contracted = [r for r in rows if r.spend is not None]
    currencies = {r.currency for r in contracted}
    currency: str | None
    spend: float | None = None
    cpa = roas = None
    if not contracted:
        currency = next((r.currency for r in rows if r.currency), None)
    elif len(currencies) > 1:
        currency = "mixed"
    else:
        currency = currencies.pop()
        spend = sum(r.spend or 0.0 for r in contracted)
        cpa = metrics.ratio(spend, sum(r.conversions for r in contracted))
        roas = metrics.ratio(sum(r.revenue for r in contracted), spend)
    return CampaignSummary(
        campaign_id=campaign_id,
        creators=len(rows),
        ranked=sum(1 for r in rows if r.rank is not None),
        **_figures(totals),
        currency=currency,
        spend=spend,
        cpa=cpa,
        roas=roas,
        alerts=sum(1 for r in rows if r.alert),
    )


# -- alert badges ------------------------------------------------------------------------

#: The badge of a firing alert names the figure that decided it.
_METRIC_BADGES: Final = {
    "engagement_rate": "ER",
    "ctr": "CTR",
    "conversion_rate": "CVR",
    "views_per_minute": "views/min",
    "cpa": "CPA",
}
BADGE_MARK: Final = "▲"


def alert_badges(alerts: Iterable[Any]) -> dict[tuple[str, str], str]:
    """``(campaign_id, creator_id)`` -> badge (``"▲ ER"``) of each alert still firing
    (``schemas.alerts.Alert``s, e.g. from the alert store's ``open_alerts``)."""
    badges: dict[tuple[str, str], str] = {}
    for alert in alerts:
        if alert.status != "firing":
            continue
        key = (alert.campaign_id, alert.creator_id)
        label = f"{BADGE_MARK} {_METRIC_BADGES.get(alert.metric, alert.metric)}"
        badges[key] = label if key not in badges else f"{badges[key]},{label[2:]}"
    return badges


def read_alert_badges(sink: Any, now_ms: int) -> dict[tuple[str, str], str]:
    """The badges of the alerts firing in ``sink``'s alert table (a ``ClickHouseSink``)."""
    from sinks.clickhouse.alerts import ClickHouseAlertStore

    return alert_badges(ClickHouseAlertStore(sink).open_alerts(resolved_since_ms=now_ms))


# -- reading a board from a store ---------------------------------------------------------


class NoSuchCampaign(LookupError):
    """A board was asked for a campaign the store has never seen."""

    def __init__(self, campaign_id: str) -> None:
        super().__init__(f"no such campaign: {campaign_id!r}")
        self.campaign_id = campaign_id


class BoardStore(Protocol):
    """What :func:`read_board` needs of a store (``ClickHouseSink`` is one)."""

    def newest_window_end_s(self, campaign_id: str | None = None) -> int | None: ...
    def campaign_known(self, campaign_id: str) -> bool: ...
    def contracts(self, campaign_id: str | None = None) -> Iterable[Any]: ...
    def leaderboard(
        self, campaign_id: str | None, last_s: int, limit: int, now_ms: int | None
    ) -> Iterable[Any]: ...


#: Creators a board reads at most: every creator of the range is summed into its
#: campaign's line, then sorted, and only then cut to the rows shown.
BOARD_MAX_CREATORS: Final = 100_000


def read_board(
    store: BoardStore,
    *,
    campaign: str | None = None,
    last_s: int = 3600,
    sort: SortKey = DEFAULT_SORT,
    limit: int | None = None,
    alerts: Mapping[tuple[str, str], str] | None = None,
    only: Callable[[str], bool] | None = None,
) -> Board:
    """The board over the ``last_s`` seconds of event time up to the newest window.

    Raises :class:`NoSuchCampaign` for a ``campaign`` the store has no trace of; a known
    campaign without windows yet gives an empty board. ``only``: keep the campaigns it
    accepts (the `run` board shows its own demo campaigns, not earlier runs').
    """
    newest = store.newest_window_end_s(campaign)
    if newest is None:
        if campaign is not None and not store.campaign_known(campaign):
            raise NoSuchCampaign(campaign)
        return empty_board(sort)
    from_s = max(0, newest - last_s)
    aggregates = [
        a
        for a in store.leaderboard(campaign, last_s, BOARD_MAX_CREATORS, newest * 1000)
        if only is None or only(str(_field(a, "campaign_id")))
    ]
    contracts = {
        (c.campaign_id, c.creator_id): Terms(
            fee=c.fee,
            currency=c.currency,
            flight_start_s=c.flight_start_s,
            flight_end_s=c.flight_end_s,
        )
        for c in store.contracts(campaign)
    }
    return build_board(
        aggregates, contracts, from_s=from_s, to_s=newest, sort=sort, limit=limit, alerts=alerts
    )


def read_live_board(
    sink: Any,
    *,
    campaign: str | None = None,
    last_s: int = 3600,
    sort: SortKey = DEFAULT_SORT,
    limit: int | None = None,
    only: Callable[[str], bool] | None = None,
) -> Board:
    """:func:`read_board` of a ClickHouse sink, with the badges of its firing alerts."""
    import time

    badges = read_alert_badges(sink, int(time.time() * 1000))
    return read_board(
        sink, campaign=campaign, last_s=last_s, sort=sort, limit=limit, alerts=badges, only=only
    )


def board_from_json(data: Mapping[str, Any]) -> Board:
    """A board from :meth:`Board.to_json` (what `top` reads through a running worker)."""
    return Board(
        sort=parse_sort(str(data["sort"])),
        from_s=_epoch(str(data["from"])),
        to_s=_epoch(str(data["to"])),
        min_sample_views=int(data["min_sample_views"]),
        rows=tuple(_row_from_json(row) for row in data["creators"]),
        campaigns=tuple(CampaignSummary(**c) for c in data["campaigns"]),
        total_creators=int(data.get("total_creators", 0)),
    )


_ROW_FIELDS: Final = frozenset(f.name for f in fields(BoardRow)) - {"source"}


def _row_from_json(item: Mapping[str, Any]) -> BoardRow:
    own = {k: v for k, v in item.items() if k in _ROW_FIELDS}
    source = {k: v for k, v in item.items() if k not in _ROW_FIELDS}
    return BoardRow(**own, source=source)


def _epoch(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())


def _iso(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat().replace("+00:00", "Z")
