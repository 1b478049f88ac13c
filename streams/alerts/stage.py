"""The campaign-keyed alerting stage: window rows in, alert records out.

A cohort spans creators on every input partition, so the rule cannot run where the
counting does. It runs on the window-rows topic instead, which is keyed by campaign:
every row of a campaign arrives in one partition, in one order, whichever worker counted
it (docs/design.md §10).

:class:`CampaignStage` is the pure part, one per campaign: it keeps the newest row of
each creator's 60 s windows in the trailing window, the campaign's event-time clock (the
latest window start seen) and the state machine, and evaluates the rule at every minute
of that clock once the next minute has data (so the minute evaluated is complete but for
stragglers). Minutes are evaluated in order and each once: a late row that revises a
window already evaluated changes later evaluations only, and never re-fires. Everything
it decides is a function of the rows in partition order and the reference data, so a
replay of the topic decides the same, with the same alert ids. Its state is
:meth:`CampaignStage.to_bytes`, for a changelog.

:func:`add_alert_stage` wires it into the worker's Faust app (the same consumer group,
so several workers split the campaigns between them by partition).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import faust
import msgspec

from schemas.alerts import Alert, alert_to_json
from schemas.metrics import METRICS
from schemas.reference import CampaignContract, CreatorProfile
from schemas.rows import CreatorWindowRow, window_rows_from_json
from schemas.topics import Topics
from streams.alerts.evaluate import UNKNOWN_TIER, CreatorTotals, evaluate
from streams.alerts.machine import CampaignAlerts, Step
from streams.alerts.rules import Rules
from streams.observability import AlertStats

log = logging.getLogger("creatorpulse.alerts")

STATE_VERSION = 1
#: At most this many minutes are evaluated when the clock jumps (a backlog, a replay
#: after a long stop): the trailing window's worth; older minutes have no data left.
_MAX_CATCH_UP_EVALUATIONS = 120

_VIEWS = METRICS.index("views")
_ENGAGEMENTS = tuple(METRICS.index(m) for m in ("likes", "comments", "shares", "saves"))
_CLICKS = METRICS.index("clicks")
_CONVERSIONS = METRICS.index("conversions")
_REVENUE = METRICS.index("revenue_cents")

#: One 60 s window of a creator as the stage keeps it:
#: (views, engagements, clicks, conversions, revenue_cents, version).
Slot = tuple[int, int, int, int, int, int]


@dataclass(frozen=True, slots=True)
class Reference:
    """What the stage knows about a creator beyond its counts."""

    tier: str = UNKNOWN_TIER
    handle: str | None = None


class _Saved(msgspec.Struct, kw_only=True):
    version: int
    campaign_id: str
    latest_start_ms: int | None
    # creator -> [[window_start_ms, views, engagements, clicks, conversions, revenue, version]]
    windows: dict[str, list[tuple[int, int, int, int, int, int, int]]]
    machine: bytes


_DECODER = msgspec.json.Decoder(_Saved)


class CampaignStage:
    """One campaign: its creators' trailing windows, its clock and its state machine."""

    def __init__(self, campaign_id: str, rules: Rules) -> None:
        self.campaign_id = campaign_id
        self.rules = rules
        self.machine = CampaignAlerts(campaign_id, rules)
        self.latest_start_ms: int | None = None  # the campaign's event-time clock
        self.windows: dict[str, dict[int, Slot]] = {}

    @property
    def _step_ms(self) -> int:
        return self.rules.evaluation_step_s * 1000

    def add(self, rows: Iterable[CreatorWindowRow]) -> bool:
        """Take a campaign's window rows (other sizes are ignored); True if anything changed.

        Rows are whole totals whose version grows with them: an older row than the one
        kept (a replay, a reordered flush) changes nothing.
        """
        changed = False
        horizon = self._oldest_kept_ms()
        for row in rows:
            if row.campaign_id != self.campaign_id or row.window_size_s != 60:
                continue
            if horizon is not None and row.window_start_ms < horizon:
                continue  # behind the trailing window of every minute still to evaluate
            counts = row.counts
            slot: Slot = (
                counts[_VIEWS],
                sum(counts[i] for i in _ENGAGEMENTS),
                counts[_CLICKS],
                counts[_CONVERSIONS],
                counts[_REVENUE],
                row.version,
            )
            creator = self.windows.setdefault(row.creator_id, {})
            kept = creator.get(row.window_start_ms)
            if kept is None or kept[5] < slot[5]:
                creator[row.window_start_ms] = slot
                changed = True
            if self.latest_start_ms is None or row.window_start_ms > self.latest_start_ms:
                self.latest_start_ms = row.window_start_ms
                changed = True
        return changed

    def due_minutes(self) -> list[int]:
        """The evaluation times the clock has made due, oldest first.

        Minute ``M`` (the end of the trailing window) is due once a window starting at or
        after ``M`` has data: the minute before it is then complete in a live stream.
        """
        if self.latest_start_ms is None:
            return []
        step = self._step_ms
        last_due = self.latest_start_ms - self.latest_start_ms % step
        if self.machine.last_at_ms is not None:
            first = self.machine.last_at_ms + step
        else:
            earliest = min(min(w) for w in self.windows.values() if w)
            first = earliest - earliest % step + step
        first = max(first, last_due - (_MAX_CATCH_UP_EVALUATIONS - 1) * step)
        return list(range(first, last_due + 1, step))

    def totals(
        self,
        at_ms: int,
        references: Mapping[str, Reference],
        fees: Mapping[tuple[str, str], tuple[float, str]],
    ) -> list[CreatorTotals]:
        """Every creator's totals over the trailing window that ends at ``at_ms``."""
        start = at_ms - self.rules.trailing_window_s * 1000
        out = []
        for creator_id in sorted(self.windows):
            slots = [s for t, s in self.windows[creator_id].items() if start <= t < at_ms]
            if not slots:
                continue
            ref = references.get(creator_id, Reference())
            fee = fees.get((self.campaign_id, creator_id))
            out.append(
                CreatorTotals(
                    creator_id=creator_id,
                    views=sum(s[0] for s in slots),
                    engagements=sum(s[1] for s in slots),
                    clicks=sum(s[2] for s in slots),
                    conversions=sum(s[3] for s in slots),
                    revenue_cents=sum(s[4] for s in slots),
                    tier=ref.tier,
                    windows=len(slots),
                    fee=fee[0] if fee is not None else None,
                    currency=fee[1] if fee is not None else None,
                    handle=ref.handle,
                )
            )
        return out

    def advance(
        self,
        references: Mapping[str, Reference],
        fees: Mapping[tuple[str, str], tuple[float, str]] | None = None,
    ) -> list[Step]:
        """Evaluate every due minute, in order; the steps of the state machine."""
        steps = []
        for at_ms in self.due_minutes():
            totals = self.totals(at_ms, references, fees or {})
            steps.append(self.machine.step(evaluate(self.campaign_id, at_ms, totals, self.rules)))
        self._evict()
        return steps

    def _oldest_kept_ms(self) -> int | None:
        """Windows before this are in no trailing window still to be evaluated."""
        if self.machine.last_at_ms is None:
            return None
        return self.machine.last_at_ms + self._step_ms - self.rules.trailing_window_s * 1000

    def _evict(self) -> None:
        horizon = self._oldest_kept_ms()
        if horizon is None:
            return
        for creator_id in list(self.windows):
            kept = {t: s for t, s in self.windows[creator_id].items() if t >= horizon}
            if kept:
                self.windows[creator_id] = kept
            else:
                del self.windows[creator_id]

    def to_bytes(self) -> bytes:
        saved = _Saved(
            version=STATE_VERSION,
            campaign_id=self.campaign_id,
            latest_start_ms=self.latest_start_ms,
            windows={
                creator: [(t, *slot) for t, slot in sorted(slots.items())]
                for creator, slots in self.windows.items()
            },
            machine=self.machine.to_bytes(),
        )
        return msgspec.json.encode(saved)

    @classmethod
    def from_bytes(cls, data: bytes, rules: Rules) -> CampaignStage:
        saved = _DECODER.decode(data)
        if saved.version != STATE_VERSION:
            raise ValueError(f"alert stage version {saved.version}, expected {STATE_VERSION}")
        stage = cls(saved.campaign_id, rules)
        stage.machine = CampaignAlerts.from_bytes(saved.machine, rules)
        stage.latest_start_ms = saved.latest_start_ms
        stage.windows = {
            creator: {w[0]: (w[1], w[2], w[3], w[4], w[5], w[6]) for w in slots}
            for creator, slots in saved.windows.items()
        }
        return stage


def step_records(steps: Iterable[Step]) -> list[Alert]:
    """What a step publishes: alerts that fired or resolved, and every firing alert with
    its fresh numbers (the notification policy's reminders use them)."""
    out: list[Alert] = []
    for step in steps:
        out.extend(step.alerts)
    return out


class ReferenceData:
    """Tiers, handles and fees of every creator, as the reference topics last said.

    Every worker keeps all of it (the topics are small and compacted): a campaign's
    creators come from every partition.
    """

    def __init__(self) -> None:
        self.references: dict[str, Reference] = {}
        self.fees: dict[tuple[str, str], tuple[float, str]] = {}

    def add_profile(self, value: bytes) -> None:
        profile = CreatorProfile.model_validate_json(value)
        self.references[profile.creator_id] = Reference(
            tier=profile.tier, handle=profile.handle or None
        )

    def add_contract(self, value: bytes) -> None:
        contract = CampaignContract.model_validate_json(value)
        self.fees[(contract.campaign_id, contract.creator_id)] = (contract.fee, contract.currency)


async def read_reference(
    bootstrap: str, topics: Topics, data: ReferenceData, ready: asyncio.Event
) -> None:
    """Follow the reference topics from their start, outside any consumer group (each
    worker needs every creator's tier). ``ready`` is set once the first read caught up."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.errors import KafkaError

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        wanted = (topics.profiles, topics.contracts)

        async def partitions() -> list[Any]:
            # A fresh consumer knows no topic's partitions (its metadata is filled by
            # subscriptions, and this one has none); without asking, every creator would
            # be 'unknown' for as long as the worker runs. A producer's partitions_for is
            # the public call that waits for the metadata.
            producer = AIOKafkaProducer(bootstrap_servers=bootstrap.split(","))
            await producer.start()
            try:
                found = []
                for topic in wanted:
                    try:
                        ids = await asyncio.wait_for(producer.partitions_for(topic), 10)
                    except (TimeoutError, KafkaError):
                        ids = set()
                    found += [TopicPartition(topic, p) for p in sorted(ids)]
                return found
            finally:
                await producer.stop()

        parts = await partitions()
        while not parts:
            ready.set()  # nothing to wait for; tiers come once the topics exist
            await asyncio.sleep(5)
            parts = await partitions()
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        while True:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for tp, records in batch.items():
                for record in records:
                    if record.value is None:
                        continue
                    try:
                        if tp.topic == topics.profiles:
                            data.add_profile(record.value)
                        else:
                            data.add_contract(record.value)
                    except ValueError:
                        log.warning("alerts: ignoring an invalid %s record", tp.topic)
            if not ready.is_set():
                positions = [await consumer.position(tp) for tp in parts]
                if all(pos >= ends[tp] for pos, tp in zip(positions, parts)):
                    ready.set()
    finally:
        await consumer.stop()


def count_steps(stats: AlertStats, steps: Iterable[Step]) -> None:
    """Add a campaign's evaluations and the alerts they fired to ``stats``."""
    for step in steps:
        if step.ignored:
            continue
        stats.evaluations += 1
        for alert in step.fired:
            stats.fired_by_rule[alert.rule] = stats.fired_by_rule.get(alert.rule, 0) + 1


def firing_by_rule(stages: Iterable[CampaignStage]) -> dict[str, int]:
    """Alerts firing now in the campaigns the stage holds, by rule."""
    out: dict[str, int] = {}
    for stage in stages:
        firing = len(stage.machine.firing())
        if firing:
            out[stage.machine.rule] = out.get(stage.machine.rule, 0) + firing
    return out


class PendingView:
    """What the stage in this process holds as pending (the fire condition held, not yet
    for ``pending_evaluations``): a state no table has, for the dashboard's badges.
    Read-only; campaigns of partitions assigned elsewhere are not here. ``stats`` are the
    stage's counters, for the worker's ``/metrics``."""

    def __init__(
        self, stages: Mapping[bytes, CampaignStage], stats: AlertStats | None = None
    ) -> None:
        self._stages = stages
        self.stats = stats if stats is not None else AlertStats()

    def pending(self) -> dict[tuple[str, str], str]:
        return {
            (stage.campaign_id, creator_id): "pending"
            for stage in list(self._stages.values())
            for creator_id in stage.machine.pending()
        }


def add_alert_stage(
    app: faust.App, bootstrap: str, topics: Topics, partitions: int, rules: Rules
) -> Any:
    """The stage as an agent of the worker's Faust app, with its state in a table.

    Same app, same consumer group: the window-rows partitions (and so the campaigns) are
    split between the workers, and a campaign's state moves with its partition (the
    table's changelog). Faust acknowledges each record after it is applied; a record
    applied again after a crash changes nothing (rows keep their highest version, and an
    evaluated minute is never evaluated again), and an alert published twice has the same
    id, which the alert sink writes and notifies once.
    """
    raw: dict[str, Any] = dict(
        key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    rows_topic = app.topic(topics.window_rows, **raw)
    alerts_topic = app.topic(topics.alerts, **raw)
    table = app.Table(
        "alert-stage", default=None, partitions=partitions, key_type=bytes, value_type=bytes
    )
    reference = ReferenceData()
    ready = asyncio.Event()
    stages: dict[bytes, CampaignStage] = {}
    stats = AlertStats()  # bumped here, read by /metrics; no Prometheus object per record

    @app.task  # type: ignore[untyped-decorator]  # mode types the task decorator loosely
    async def follow_reference() -> None:
        while True:
            try:
                await read_reference(bootstrap, topics, reference, ready)
                return
            except Exception:
                log.exception("alerts: reading the reference topics failed; retrying")
                await asyncio.sleep(5)

    @app.agent(rows_topic)
    async def alert_stage(stream: Any) -> None:
        async for event in stream.events():
            key = event.key
            if not key:
                continue
            try:
                rows = window_rows_from_json(event.value)
            except ValueError:
                log.warning("alerts: ignoring an invalid window-rows record")
                continue
            if not ready.is_set():
                # The first tiers must be known before the first evaluation, or a cohort
                # would be judged as 'unknown' only because the worker just started.
                try:
                    await asyncio.wait_for(ready.wait(), 30)
                except TimeoutError:
                    log.warning("alerts: reference topics not read within 30 s; going on")
                    ready.set()
            stage = stages.get(key)
            if stage is None:
                saved = table.get(key)
                stage = (
                    CampaignStage.from_bytes(saved, rules)
                    if saved
                    else CampaignStage(key.decode(), rules)
                )
                stages[key] = stage
            if not stage.add(rows):
                continue
            steps = stage.advance(reference.references, reference.fees)
            if steps:
                count_steps(stats, steps)
                stats.firing_by_rule = firing_by_rule(stages.values())
            for alert in step_records(steps):
                await alerts_topic.send(key=key, value=alert_to_json(alert))
            for step in steps:
                for fired in step.fired:
                    log.info("alert fired: %s", fired.explanation)
            table[key] = stage.to_bytes()

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # mode types miss async receivers
    async def forget_stages(sender: Any, *args: Any, **_: Any) -> None:
        # A revoked campaign's state may move on; the table holds what it was.
        stages.clear()
        stats.firing_by_rule = {}  # counted again as the campaigns come back

    return (follow_reference, alert_stage, forget_stages, PendingView(stages, stats))
