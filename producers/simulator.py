"""A deterministic simulator of TikTok influencer campaigns: the pipeline's test input.

It stands in for the real sources (an API poller reading lifetime totals per post, or a
click stream of deltas) so the pipeline can be demonstrated, tested and benchmarked
without a platform account. Everything here is pure: no I/O, no sleeping and no wall
clock (time is passed in), and the same seed gives the same records byte for byte,
whatever the tick size.

The figures follow the domain (docs/design.md): follower counts by tier, views driven by
followers with a curve that decays after posting, engagement-rate bands by tier (nano
~8-12%, micro 5-10%, macro 2-4%, mega below 2%), watch time, completion and replay
rates, click-through, conversion and attributed revenue. A few creators per campaign
clearly outperform their cohort so the alerts feature has something to find.

On request the stream also carries what the contract says the pipeline must survive:
duplicates (same ``event_id``), late events (older than the grace period), stale or
repeated snapshots, and invalid records. Each record says which it is (``label``), so
tests can build their own oracle; the simulator never computes pipeline results.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Iterator
from dataclasses import FrozenInstanceError, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, cast

import orjson

from schemas.events import EVENT_ADAPTER, PostStatEvent
from schemas.metrics import METRICS
from schemas.reference import CampaignContract, CreatorProfile, Tier

Mode = Literal["poller", "clickstream"]
#: What a record is, for tests and statistics. Only ``ok`` records carry new truth.
RecordLabel = Literal["ok", "duplicate", "late", "stale", "invalid"]

TIERS: Final[tuple[Tier, ...]] = ("nano", "micro", "macro", "mega")

#: Default creator mix: mostly micro, some nano, a few macro, rare mega.
DEFAULT_TIER_MIX: Final[tuple[tuple[Tier, float], ...]] = (
    ("nano", 0.20),
    ("micro", 0.65),
    ("macro", 0.12),
    ("mega", 0.03),
)


@dataclass(frozen=True, slots=True)
class TierSpec:
    """The ranges a tier's creators are drawn from."""

    followers: tuple[int, int]  # [low, high): the contract's tier bounds
    engagement_rate: tuple[float, float]  # (likes+comments+shares+saves) / views
    reach: tuple[float, float]  # lifetime views of a post / followers
    fee: tuple[float, float]  # campaign fee, in the currency's major unit


#: Sources: docs/design.md benchmarks (micro 5-10% ER, large creators below 1.5-2%). Smaller
#: accounts get proportionally more For You reach, hence the falling reach ranges.
TIER_SPECS: Final[dict[Tier, TierSpec]] = {
    "nano": TierSpec((1_000, 10_000), (0.08, 0.12), (0.4, 1.2), (100.0, 500.0)),
    "micro": TierSpec((10_000, 100_000), (0.05, 0.10), (0.2, 0.7), (500.0, 5_000.0)),
    "macro": TierSpec((100_000, 1_000_000), (0.02, 0.04), (0.1, 0.35), (5_000.0, 25_000.0)),
    "mega": TierSpec((1_000_000, 10_000_000), (0.008, 0.018), (0.05, 0.2), (25_000.0, 150_000.0)),
}

_BRANDS: Final = (
    "glowlab",
    "fitfuel",
    "snackbox",
    "trailkit",
    "pixelpal",
    "brewbuddy",
    "petpals",
    "homenest",
    "cashcraft",
    "wanderly",
)
_NICHES: Final = ("beauty", "fitness", "food", "outdoors", "tech", "coffee", "pets", "home")
_NAMES: Final = (
    "maya",
    "leo",
    "zoe",
    "kai",
    "ines",
    "omar",
    "lina",
    "theo",
    "ava",
    "noah",
    "mila",
    "ezra",
    "yuki",
    "sam",
    "nora",
    "jude",
)
_BAD_KINDS: Final = ("bad_json", "negative", "missing", "wrong_type", "naive_ts")
_REQUIRED: Final = ("event_id", "ts", "campaign_id", "creator_id", "post_id")

# First posts go live within this long after the simulation starts.
_LAUNCH_SPREAD_MS: Final = 10_000.0
# A poller stops following a post after a week: its views have long flattened out.
_TRACK_POST_MS: Final = 7 * 24 * 3600 * 1000
# Recent valid records a duplicate may repeat: a redelivery comes soon after the original.
_RECENT_RECORDS: Final = 256
# Variants per slot of the benchmark generator: enough that counts do not look constant.
_BENCH_VARIANTS: Final = 8
_BENCH_SLOTS: Final = 1024
_TS_FIELD: Final = b'","kind":"delta","ts":'


# SimRecord._event of a record known to hold one valid event, not decoded yet.
_UNDECODED: Final[Any] = object()


class SimRecord:
    """One record to publish.

    ``event`` is the decoded event when ``value`` is exactly one valid event, else
    ``None`` (a deliberately invalid record; in a replayed file, also a batch line).
    Valid records are keyed by ``creator_id`` and their ``timestamp_ms`` is the event
    time. ``label`` says what the record is meant to exercise (see :data:`RecordLabel`).

    Immutable and compared by value, like the frozen dataclass it replaced. A source
    that knows a value is one valid event without decoding it (because it built the
    value from validated parts) creates the record with :meth:`known_valid`: ``event``
    is then decoded on first use. A publisher needs only :attr:`has_event`, and
    decoding an event costs more than everything else it does with a record.
    """

    __slots__ = ("_event", "key", "label", "timestamp_ms", "value")
    __match_args__ = ("key", "value", "timestamp_ms", "event", "label")

    key: bytes | None
    value: bytes
    timestamp_ms: int
    label: RecordLabel
    _event: Any  # PostStatEvent | None, or _UNDECODED

    def __init__(
        self,
        key: bytes | None,
        value: bytes,
        timestamp_ms: int,
        event: PostStatEvent | None,
        label: RecordLabel = "ok",
    ) -> None:
        # Frozen: our own __setattr__ refuses, so the fields are set past it.
        setattr_ = object.__setattr__
        setattr_(self, "key", key)
        setattr_(self, "value", value)
        setattr_(self, "timestamp_ms", timestamp_ms)
        setattr_(self, "_event", event)
        setattr_(self, "label", label)

    @classmethod
    def known_valid(
        cls, key: bytes | None, value: bytes, timestamp_ms: int, label: RecordLabel = "ok"
    ) -> SimRecord:
        """A record whose ``value`` the caller knows to be exactly one valid event.

        ``event`` is decoded from ``value`` on first access; if the caller was wrong,
        that access raises :class:`pydantic.ValidationError`.
        """
        return cls(key, value, timestamp_ms, _UNDECODED, label)

    @property
    def event(self) -> PostStatEvent | None:
        event = self._event
        if event is _UNDECODED:
            event = EVENT_ADAPTER.validate_json(self.value)
            object.__setattr__(self, "_event", event)
        return cast("PostStatEvent | None", event)

    @property
    def has_event(self) -> bool:
        """Whether ``event`` is not ``None``, without decoding it."""
        return self._event is not None

    def _fields(self) -> tuple[Any, ...]:
        return (self.key, self.value, self.timestamp_ms, self.event, self.label)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, SimRecord)
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return (
            f"SimRecord(key={self.key!r}, value={self.value!r}, "
            f"timestamp_ms={self.timestamp_ms!r}, event={self.event!r}, label={self.label!r})"
        )

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (SimRecord, self._fields())


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate. Rates are probabilities per emitted valid event."""

    seed: int = 0
    campaigns: int = 3
    creators_per_campaign: int = 12
    tier_mix: tuple[tuple[Tier, float], ...] = DEFAULT_TIER_MIX
    mode: Mode = "poller"
    posts_per_creator: int = 3
    #: Poller mode: one snapshot per post this often (at ``rate_scale`` 1).
    poll_interval_s: float = 60.0
    #: Click-stream mode: one delta per post this often, when something happened.
    delta_interval_s: float = 5.0
    #: Time between a creator's posts; the first goes live in the first 10 s.
    post_interval_s: float = 6 * 3600.0
    outperformers_per_campaign: int = 2
    #: Creators per campaign that are hot on a tiny sample: a very high engagement rate
    #: on a few hundred views an hour. The alerts must never fire on them (the demo
    #: plants one per campaign to show that).
    tiny_hot_per_campaign: int = 0
    duplicate_rate: float = 0.0
    late_rate: float = 0.0
    bad_rate: float = 0.0
    #: Poller mode: a repeated or lower snapshot after a fresh one (a stale API cache).
    stale_rate: float = 0.0
    grace_s: float = 600.0
    #: Prefix of every id; defaults to ``sim<seed>`` so two seeds never share ids.
    run_id: str | None = None
    #: A later session of the same campaigns (`creatorpulse run` again on the same
    #: store): the creators publish new posts (new post and event ids), so lifetime
    #: snapshots start from zero instead of re-counting the earlier session's posts.
    session: int = 1
    #: The campaign's flight (epoch ms start, days): with a start, every contract names
    #: it, so a board over part of it charges the fee pro rata (creatorpulse/board.py).
    #: Three days by default: a creator's posts go live over the first day (at the
    #: default ``post_interval_s``) and most of a post's views come in its first day, so
    #: the fee is spread over about the time the views arrive in.
    flight_start_ms: int | None = None
    flight_days: float = 3.0

    def __post_init__(self) -> None:
        if self.campaigns < 1 or self.creators_per_campaign < 1 or self.posts_per_creator < 1:
            raise ValueError("campaigns, creators_per_campaign and posts_per_creator must be >= 1")
        if self.mode not in ("poller", "clickstream"):
            raise ValueError(f"mode must be 'poller' or 'clickstream', not {self.mode!r}")
        for name in ("duplicate_rate", "late_rate", "bad_rate", "stale_rate"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], not {rate}")
        for name in ("poll_interval_s", "delta_interval_s", "post_interval_s", "grace_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")
        if self.outperformers_per_campaign < 0:
            raise ValueError("outperformers_per_campaign must be >= 0")
        if self.tiny_hot_per_campaign < 0:
            raise ValueError("tiny_hot_per_campaign must be >= 0")
        if not self.tier_mix:
            raise ValueError("tier_mix must name at least one tier")
        for tier, weight in self.tier_mix:
            if tier not in TIER_SPECS:
                raise ValueError(f"unknown tier {tier!r} in tier_mix")
            if weight < 0:
                raise ValueError(f"tier weight for {tier!r} must be >= 0")
        if sum(weight for _, weight in self.tier_mix) <= 0:
            raise ValueError("tier_mix weights must not all be 0")
        if self.run_id is not None and not 1 <= len(self.run_id) <= 40:
            raise ValueError("run_id must be 1..40 characters")
        if self.session < 1:
            raise ValueError("session must be >= 1")
        if not self.flight_days > 0:
            raise ValueError("flight_days must be > 0")

    @property
    def prefix(self) -> str:
        return self.run_id if self.run_id is not None else f"sim{self.seed}"


@dataclass(frozen=True, slots=True)
class CreatorTraits:
    """A creator's hidden performance: the simulator's inputs, not pipeline results."""

    campaign_id: str
    creator_id: str
    tier: Tier
    followers: int
    outperformer: bool
    engagement_rate: float
    reach: float
    like_rate: float  # per view; with the three below sums to engagement_rate
    comment_rate: float
    share_rate: float
    save_rate: float
    watch_ms_per_view: float
    completion_rate: float
    replay_rate: float
    ctr: float  # clicks per view
    conversion_rate: float  # conversions per click
    revenue_per_conversion: float  # cents
    tiny_hot: bool = False  # a tiny sample that looks hot (see SimulationConfig)


@dataclass(slots=True)
class _Post:
    """Mutable state of one post: its audience curve and what has been emitted."""

    index: int
    traits: CreatorTraits
    post_id: str
    key: bytes
    live_offset_ms: int
    lifetime_views: float
    tau_ms: float
    live_at_ms: int = 0
    last_age_ms: int = 0
    seq: int = 0
    totals: list[int] = field(default_factory=lambda: [0] * len(METRICS))
    previous: list[int] = field(default_factory=lambda: [0] * len(METRICS))


class CampaignSimulator:
    """Creators, their contracts and a stream of post-stat records, from a seed."""

    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        self._prefix = config.prefix
        # Separate generators: building the cast must not depend on how the stream is
        # consumed, and the benchmark generator must not disturb the tick() stream.
        cast_rng = random.Random(f"{config.seed}:cast")
        session = "" if config.session == 1 else f":s{config.session}"
        self._rng = random.Random(f"{config.seed}:stream{session}")
        self._bench_rng = random.Random(f"{config.seed}:bench")
        self._profiles: list[CreatorProfile] = []
        self._contracts: list[CampaignContract] = []
        self._traits: list[CreatorTraits] = []
        self._posts: list[_Post] = []
        self._build_cast(cast_rng)
        self._start_ms: int | None = None
        self._heap: list[tuple[int, int]] = []
        self._recent: deque[SimRecord] = deque(maxlen=_RECENT_RECORDS)
        self._creator_max_ts: dict[str, int] = {}
        self._bench_calls = 0
        self._bench_slots: list[tuple[bytes, list[bytes]]] | None = None

    # -- the cast ------------------------------------------------------------------

    def _build_cast(self, rng: random.Random) -> None:
        cfg = self.config
        tiers = [tier for tier, _ in cfg.tier_mix]
        weights = [weight for _, weight in cfg.tier_mix]
        creator_no = 0
        for c in range(cfg.campaigns):
            brand = _BRANDS[c % len(_BRANDS)]
            campaign_id = f"{self._prefix}-c{c + 1:02d}-{brand}"
            cast_tiers: list[Tier] = rng.choices(tiers, weights, k=cfg.creators_per_campaign)
            outperformers = self._pick_outperformers(rng, cast_tiers)
            tiny_hot = self._pick_tiny_hot(c, cast_tiers, outperformers)
            for i, tier in enumerate(cast_tiers):
                creator_no += 1
                creator_id = f"{self._prefix}-cr{creator_no:04d}"
                traits = self._draw_traits(rng, campaign_id, creator_id, tier, i in outperformers)
                if i in tiny_hot:
                    traits = _tiny_and_hot(traits)
                name = _NAMES[(creator_no - 1) % len(_NAMES)]
                niche = rng.choice(_NICHES)
                self._traits.append(traits)
                self._profiles.append(
                    CreatorProfile(
                        creator_id=creator_id,
                        handle=f"@{name}.{niche}{creator_no}",
                        follower_count=traits.followers,
                        niche=niche,
                    )
                )
                low, high = TIER_SPECS[tier].fee
                # Fees scale with reach inside a tier too: a 90k micro costs more than a 12k.
                position = math.log(traits.followers / TIER_SPECS[tier].followers[0]) / math.log(
                    TIER_SPECS[tier].followers[1] / TIER_SPECS[tier].followers[0]
                )
                fee = round(low + (high - low) * position * rng.uniform(0.8, 1.0), 2)
                self._contracts.append(
                    CampaignContract(
                        campaign_id=campaign_id,
                        creator_id=creator_id,
                        fee=fee,
                        currency="USD",
                        **self._flight(),
                    )
                )
                self._add_posts(rng, traits)

    def _flight(self) -> dict[str, datetime]:
        start_ms = self.config.flight_start_ms
        if start_ms is None:
            return {}
        start = datetime.fromtimestamp(start_ms / 1000, UTC)
        return {
            "flight_start": start,
            "flight_end": start + timedelta(days=self.config.flight_days),
        }

    def _pick_outperformers(self, rng: random.Random, tiers: list[Tier]) -> set[int]:
        """Prefer creators with tier peers in the campaign: alerts compare against a cohort."""
        wanted = min(self.config.outperformers_per_campaign, len(tiers))
        counts = {tier: tiers.count(tier) for tier in set(tiers)}
        with_peers = [i for i, tier in enumerate(tiers) if counts[tier] >= 3]
        others = [i for i in range(len(tiers)) if i not in with_peers]
        rng.shuffle(with_peers)
        rng.shuffle(others)
        return set((with_peers + others)[:wanted])

    def _pick_tiny_hot(self, campaign: int, tiers: list[Tier], taken: set[int]) -> set[int]:
        """Among the others, prefer the campaign's most common tier: the tiny sample then
        sits in a real cohort, where only the minimum sample keeps it from firing. Its own
        generator, so that the rest of the cast is the same with or without it."""
        wanted = self.config.tiny_hot_per_campaign
        if not wanted:
            return set()
        rng = random.Random(f"{self.config.seed}:tiny:{campaign}")
        common = max(set(tiers), key=lambda t: (tiers.count(t), t))
        others = [i for i in range(len(tiers)) if i not in taken]
        rng.shuffle(others)
        others.sort(key=lambda i: tiers[i] != common)
        return set(others[:wanted])

    @staticmethod
    def _draw_traits(
        rng: random.Random, campaign_id: str, creator_id: str, tier: Tier, outperformer: bool
    ) -> CreatorTraits:
        spec = TIER_SPECS[tier]
        low, high = spec.followers
        # Log-uniform: within a tier, small accounts are more common than big ones.
        followers = min(high - 1, int(math.exp(rng.uniform(math.log(low), math.log(high)))))
        er = rng.uniform(*spec.engagement_rate)
        reach = rng.uniform(*spec.reach)
        ctr = rng.uniform(0.005, 0.02)
        conversion_rate = rng.uniform(0.02, 0.06)
        watch_s = rng.uniform(6.0, 25.0)
        completion = rng.uniform(0.15, 0.45)
        if outperformer:
            # Clearly above the cohort on every signal the alerts may look at.
            er = rng.uniform(spec.engagement_rate[1] * 1.35, spec.engagement_rate[1] * 1.7)
            reach = rng.uniform(spec.reach[1] * 1.5, spec.reach[1] * 3.0)
            ctr *= 1.8
            conversion_rate *= 1.4
            watch_s *= 1.25
            completion = min(0.9, completion * 1.3)
        # Saves and shares as fractions of likes (saves are the strongest intent signal).
        comments = rng.uniform(0.01, 0.05)
        shares = rng.uniform(0.04, 0.12)
        saves = rng.uniform(0.05, 0.20)
        like_rate = er / (1.0 + comments + shares + saves)
        return CreatorTraits(
            campaign_id=campaign_id,
            creator_id=creator_id,
            tier=tier,
            followers=followers,
            outperformer=outperformer,
            engagement_rate=er,
            reach=reach,
            like_rate=like_rate,
            comment_rate=like_rate * comments,
            share_rate=like_rate * shares,
            save_rate=like_rate * saves,
            watch_ms_per_view=watch_s * 1000.0,
            completion_rate=completion,
            replay_rate=rng.uniform(0.05, 0.20),
            ctr=ctr,
            conversion_rate=conversion_rate,
            revenue_per_conversion=rng.uniform(1500.0, 6000.0),
        )

    def tiny_hot(self) -> frozenset[str]:
        """The creator ids built to be hot on a tiny sample (never an alert)."""
        return frozenset(t.creator_id for t in self._traits if t.tiny_hot)

    def _add_posts(self, rng: random.Random, traits: CreatorTraits) -> None:
        cfg = self.config
        session = "" if cfg.session == 1 else f"s{cfg.session}"
        # The campaign launches at the start: first posts go live within seconds, so a
        # demo shows data at once (a poller still sees them at its next poll).
        offset_ms = rng.uniform(0.0, _LAUNCH_SPREAD_MS)
        for j in range(cfg.posts_per_creator):
            # Posts vary around the creator's reach; clipped so that one flop cannot
            # hide an outperformer (nor one hit make an average creator a star).
            spread = min(1.8, max(0.6, rng.lognormvariate(0, 0.35)))
            # Most of a post's views come in its first day; a post that takes off does
            # so fast (the For You page amplifies early engagement).
            tau_h = rng.uniform(2.0, 6.0) if traits.outperformer else rng.uniform(3.0, 12.0)
            self._posts.append(
                _Post(
                    index=len(self._posts),
                    traits=traits,
                    post_id=f"{traits.creator_id}-{session}p{j + 1}",
                    key=traits.creator_id.encode(),
                    live_offset_ms=int(offset_ms),
                    lifetime_views=traits.followers * traits.reach * spread,
                    tau_ms=tau_h * 3600_000.0,
                )
            )
            offset_ms += cfg.post_interval_s * 1000.0 * rng.uniform(0.5, 1.5)

    # -- public views of the cast ----------------------------------------------------

    def profiles(self) -> list[CreatorProfile]:
        """One profile per creator (topic ``creator-profiles``)."""
        return list(self._profiles)

    def contracts(self) -> list[CampaignContract]:
        """One contract per (campaign, creator) (topic ``campaign-contracts``)."""
        return list(self._contracts)

    def traits(self) -> list[CreatorTraits]:
        """The hidden performance parameters each creator was drawn with."""
        return list(self._traits)

    def outperformers(self) -> frozenset[str]:
        """The creator ids built to outperform their cohort."""
        return frozenset(t.creator_id for t in self._traits if t.outperformer)

    # -- the stream ------------------------------------------------------------------

    @property
    def start_ms(self) -> int | None:
        """Simulated time zero: the start of the first tick's slice."""
        return self._start_ms

    def tick(self, now_ms: int, dt_s: float, *, rate_scale: float = 1.0) -> list[SimRecord]:
        """The records for the slice of simulated time ``(now_ms - dt_s, now_ms]``.

        Records come in publish order (by emission time). ``rate_scale`` multiplies how
        often posts emit (polls, or deltas) without changing the audience, so totals
        stay realistic while the event rate grows. Slices should be contiguous; after a
        gap the missed polls are skipped (their counts show up in the next one).
        """
        if dt_s < 0:
            raise ValueError("dt_s must be >= 0")
        if rate_scale <= 0:
            raise ValueError("rate_scale must be > 0")
        slice_start = now_ms - round(dt_s * 1000)
        if self._start_ms is None:
            self._begin(slice_start)
        interval_ms = self._interval_ms(rate_scale)
        out: list[SimRecord] = []
        heap = self._heap
        while heap and heap[0][0] <= now_ms:
            due, index = heapq.heappop(heap)
            post = self._posts[index]
            if due < slice_start:
                # A gap between ticks: resume at the first slot inside this slice.
                missed = math.ceil((slice_start - due) / interval_ms)
                due += math.ceil(missed * interval_ms)
                if due > now_ms:
                    heapq.heappush(heap, (due, index))
                    continue
            self._emit(post, due, out)
            jitter = self._rng.uniform(0.95, 1.05)
            next_due = due + max(1, int(interval_ms * jitter))
            if next_due - post.live_at_ms <= _TRACK_POST_MS:
                heapq.heappush(heap, (next_due, index))
        return out

    def _interval_ms(self, rate_scale: float) -> float:
        cfg = self.config
        base = cfg.poll_interval_s if cfg.mode == "poller" else cfg.delta_interval_s
        return base * 1000.0 / rate_scale

    def _begin(self, start_ms: int) -> None:
        self._start_ms = start_ms
        base = self._interval_ms(1.0)
        for post in self._posts:
            post.live_at_ms = start_ms + post.live_offset_ms
            # Spread the first poll over an interval so posts do not emit in lockstep.
            first = post.live_at_ms + int(self._rng.uniform(0.05, 1.0) * base)
            self._heap.append((first, post.index))
        heapq.heapify(self._heap)

    def _emit(self, post: _Post, ts_ms: int, out: list[SimRecord]) -> None:
        cfg = self.config
        rng = self._rng
        increments = self._increments(post, ts_ms)
        post.previous = post.totals.copy()
        for i, value in enumerate(increments):
            post.totals[i] += value
        creator_id = post.traits.creator_id
        last = self._creator_max_ts.get(creator_id)
        if last is None or ts_ms > last:
            self._creator_max_ts[creator_id] = ts_ms
        if cfg.mode == "poller":
            record = self._record(post, ts_ms, "snapshot", post.totals, "ok")
        elif any(increments):
            record = self._record(post, ts_ms, "delta", increments, "ok")
        else:
            return  # a click stream has nothing to say when nothing happened
        out.append(record)
        self._recent.append(record)
        # The anomalies follow the record they hang on, in a fixed order: determinism.
        if cfg.mode == "poller" and cfg.stale_rate and rng.random() < cfg.stale_rate:
            out.append(self._stale(post, ts_ms))
        if cfg.duplicate_rate and rng.random() < cfg.duplicate_rate:
            duplicate = self._duplicate(ts_ms)
            if duplicate is not None:
                out.append(duplicate)
        if cfg.late_rate and rng.random() < cfg.late_rate:
            late = self._late(post, ts_ms)
            if late is not None:
                out.append(late)
        if cfg.bad_rate and rng.random() < cfg.bad_rate:
            out.append(self._bad(post, ts_ms))

    def _increments(self, post: _Post, ts_ms: int) -> list[int]:
        """What the post's audience did since its last emission, as integer counts."""
        rng = self._rng
        traits = post.traits
        age = max(0, ts_ms - post.live_at_ms)
        previous_age = post.last_age_ms
        post.last_age_ms = age
        expected = post.lifetime_views * (
            math.exp(-previous_age / post.tau_ms) - math.exp(-age / post.tau_ms)
        )
        # Mean-one noise: audiences come in bursts, but the curve's total is kept.
        views = _round(expected * rng.lognormvariate(-0.045, 0.3), rng)
        likes = _round(views * traits.like_rate, rng)
        comments = _round(views * traits.comment_rate, rng)
        shares = _round(views * traits.share_rate, rng)
        saves = _round(views * traits.save_rate, rng)
        watch_ms = _round(views * traits.watch_ms_per_view * rng.uniform(0.9, 1.1), rng)
        completions = min(views, _round(views * traits.completion_rate, rng))
        replays = _round(views * traits.replay_rate, rng)
        clicks = _round(views * traits.ctr, rng)
        conversions = min(clicks, _round(clicks * traits.conversion_rate, rng))
        revenue = _round(
            conversions * traits.revenue_per_conversion * rng.lognormvariate(-0.045, 0.3), rng
        )
        # METRICS order.
        return [
            views,
            likes,
            comments,
            shares,
            saves,
            watch_ms,
            completions,
            replays,
            clicks,
            conversions,
            revenue,
        ]

    def _fields(
        self, post: _Post, event_id: str, ts: int | str, kind: str, counts: list[int]
    ) -> dict[str, Any]:
        data: dict[str, Any] = {
            "event_id": event_id,
            "kind": kind,
            "ts": ts,
            "campaign_id": post.traits.campaign_id,
            "creator_id": post.traits.creator_id,
            "post_id": post.post_id,
        }
        data.update(zip(METRICS, counts, strict=True))
        return data

    def _next_event_id(self, post: _Post) -> str:
        post.seq += 1
        return f"{post.post_id}-{post.seq}"

    def _record(
        self, post: _Post, ts_ms: int, kind: str, counts: list[int], label: RecordLabel
    ) -> SimRecord:
        # Pollers read ISO-8601 from the platform API; click streams carry epoch ms.
        # Both forms are in the contract, so the simulated stream exercises both.
        ts: int | str = _iso(ts_ms) if kind == "snapshot" else ts_ms
        data = self._fields(post, self._next_event_id(post), ts, kind, counts)
        # Validating what we build costs microseconds and proves every "ok" is valid.
        event = EVENT_ADAPTER.validate_python(data)
        return SimRecord(post.key, orjson.dumps(data), ts_ms, event, label)

    def _stale(self, post: _Post, ts_ms: int) -> SimRecord:
        """A repeated or lower reading: a poller hitting a stale cache."""
        counts = post.previous if self._rng.random() < 0.5 else post.totals
        return self._record(post, ts_ms, "snapshot", counts, "stale")

    def _duplicate(self, ts_ms: int) -> SimRecord | None:
        """An earlier record again (same event_id): an at-least-once redelivery.

        Only recent ones are repeated, so the duplicate is on time and tests dedup, not
        the late rule.
        """
        horizon = ts_ms - int(self.config.grace_s * 500)
        recent = [r for r in self._recent if r.timestamp_ms >= horizon and r.label == "ok"]
        if not recent:
            return None
        original = self._rng.choice(recent)
        return SimRecord(
            original.key, original.value, original.timestamp_ms, original.event, "duplicate"
        )

    def _late(self, post: _Post, ts_ms: int) -> SimRecord | None:
        """An event older than the grace period relative to its creator's newest event.

        Relative to the creator (whose records share a partition and come first), so it
        is late whether the pipeline keeps its watermark per partition or globally.
        """
        assert self._start_ms is not None
        grace_ms = int(self.config.grace_s * 1000)
        newest = self._creator_max_ts[post.traits.creator_id]
        late_ts = newest - grace_ms - int(self._rng.uniform(1000.0, max(2000.0, grace_ms)))
        if late_ts < self._start_ms:
            return None  # too early in the run for anything to be late
        if self.config.mode == "poller":
            return self._record(post, late_ts, "snapshot", post.totals, "late")
        counts = self._increments_detached(post)
        return self._record(post, late_ts, "delta", counts, "late")

    def _increments_detached(self, post: _Post) -> list[int]:
        """A plausible delta that is not part of the post's totals (it must not count)."""
        rng = self._rng
        views = 1 + _round(post.lifetime_views / 5000.0, rng)
        likes = _round(views * post.traits.like_rate, rng)
        counts = [0] * len(METRICS)
        counts[0], counts[1] = views, likes
        counts[5] = _round(views * post.traits.watch_ms_per_view, rng)
        return counts

    def _bad(self, post: _Post, ts_ms: int) -> SimRecord:
        """A record the contract forbids; the pipeline must dead-letter it."""
        rng = self._rng
        kind = rng.choice(_BAD_KINDS)
        data = self._fields(post, self._next_event_id(post), ts_ms, "delta", [1] * len(METRICS))
        if kind == "bad_json":
            value = orjson.dumps(data)[: rng.randint(5, 60)]  # a truncated write
        else:
            if kind == "negative":
                data[rng.choice(METRICS)] = -rng.randint(1, 100)
            elif kind == "missing":
                del data[rng.choice(_REQUIRED)]
            elif kind == "wrong_type":
                name = rng.choice(("views", "likes", "creator_id", "ts"))
                data[name] = {"views": "12", "likes": 1.5, "creator_id": 42, "ts": [ts_ms]}[name]
            else:  # naive_ts: a local time without its offset is ambiguous
                data["ts"] = datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            value = orjson.dumps(data)
        return SimRecord(post.key, value, ts_ms, None, "invalid")

    # -- benchmark generator ------------------------------------------------------------

    def events_at_rate(self, start_ms: int, rate_per_s: float, count: int) -> Iterator[SimRecord]:
        """``count`` valid delta records spread over creators at an event-time rate.

        Event times run from ``start_ms`` at ``rate_per_s`` events per simulated second;
        creators are picked in proportion to their audience. Built for benchmarks: the
        JSON after ``ts`` is precomputed per slot, so a record costs a byte splice, and
        ``event`` is decoded only when it is used (see below). Independent of
        :meth:`tick`'s stream; each call uses fresh event ids.
        """
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be > 0")
        if count < 0:
            raise ValueError("count must be >= 0")
        slots = self._benchmark_slots()
        self._bench_calls += 1
        prefix = f'{{"event_id":"{self._prefix}-b{self._bench_calls}-'.encode()
        if count:
            # Every tail was validated when the slots were built, and the event's fields
            # are checked independently (the model has no cross-field rule). What varies
            # here is the id (longest for the last i) and ts (smallest first, never
            # falling): one event with both proves every value of this call valid, which
            # lets records skip a validation each (it was most of a record's cost).
            tail = slots[0][1][0]
            EVENT_ADAPTER.validate_json(
                b"".join((prefix, str(count - 1).encode(), _TS_FIELD, str(start_ms).encode(), tail))
            )
        step_ms = 1000.0 / rate_per_s
        n_slots = len(slots)
        valid = SimRecord.known_valid
        for i in range(count):
            key, variants = slots[i % n_slots]
            ts = start_ms + int(i * step_ms)
            # Splicing precomputed JSON is ~4x cheaper than dumping a dict per event.
            value = b"".join(
                (
                    prefix,
                    str(i).encode(),
                    _TS_FIELD,
                    str(ts).encode(),
                    variants[(i // n_slots) % _BENCH_VARIANTS],
                )
            )
            yield valid(key, value, ts)

    def _benchmark_slots(self) -> list[tuple[bytes, list[bytes]]]:
        """Per slot: the record key and a few JSON tails (everything after ``ts``)."""
        if self._bench_slots is not None:
            return self._bench_slots
        rng = self._bench_rng
        posts = self._posts
        # sqrt: big accounts emit more, without one mega creator drowning the rest.
        weights = [math.sqrt(p.traits.followers * p.traits.reach) for p in posts]
        slots: list[tuple[bytes, list[bytes]]] = []
        for post in rng.choices(posts, weights, k=_BENCH_SLOTS):
            traits = post.traits
            tails = []
            for _ in range(_BENCH_VARIANTS):
                views = rng.randint(1, 40)
                clicks = _round(views * traits.ctr, rng)
                conversions = _round(clicks * traits.conversion_rate, rng)
                counts = (
                    views,
                    _round(views * traits.like_rate, rng),
                    _round(views * traits.comment_rate, rng),
                    _round(views * traits.share_rate, rng),
                    _round(views * traits.save_rate, rng),
                    _round(views * traits.watch_ms_per_view, rng),
                    _round(views * traits.completion_rate, rng),
                    _round(views * traits.replay_rate, rng),
                    clicks,
                    conversions,
                    _round(conversions * traits.revenue_per_conversion, rng),
                )
                rest = {
                    "campaign_id": traits.campaign_id,
                    "creator_id": traits.creator_id,
                    "post_id": post.post_id,
                    **dict(zip(METRICS, counts, strict=True)),
                }
                # orjson.dumps(rest) is '{...}': drop its '{' to append after the ts.
                tail = b"," + orjson.dumps(rest)[1:]
                # Checked once here, so events_at_rate need not check every event.
                EVENT_ADAPTER.validate_json(b'{"event_id":"probe' + _TS_FIELD + b"0" + tail)
                tails.append(tail)
            slots.append((post.key, tails))
        self._bench_slots = slots
        return slots


def _round(x: float, rng: random.Random) -> int:
    """Stochastic rounding: unbiased integers, so small increments add up to the rate."""
    whole = math.floor(x)
    return int(whole) + (1 if rng.random() < x - whole else 0)


def _iso(ts_ms: int) -> str:
    """ISO-8601 in UTC with milliseconds and a ``Z``, as platform APIs return it."""
    seconds, millis = divmod(ts_ms, 1000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis:03d}Z"


#: Lifetime views of a tiny-sample creator's post: a few hundred in its first hour, far
#: below the alerts' minimum sample, whatever the follower count.
TINY_LIFETIME_VIEWS: Final = 1500.0


def _tiny_and_hot(traits: CreatorTraits) -> CreatorTraits:
    """The creator with a very high engagement rate and CTR on a tiny audience."""
    from dataclasses import replace

    er = 0.30
    scale = er / traits.engagement_rate
    return replace(
        traits,
        engagement_rate=er,
        reach=TINY_LIFETIME_VIEWS / traits.followers,
        like_rate=traits.like_rate * scale,
        comment_rate=traits.comment_rate * scale,
        share_rate=traits.share_rate * scale,
        save_rate=traits.save_rate * scale,
        ctr=0.06,
        tiny_hot=True,
    )
