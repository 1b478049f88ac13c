"""A store in memory with the sink contract (:class:`sinks.base.StoreSink`): for tests and demos.

Shipped in the package, as quix-streams ships its ``ListSink``, so that the tests of every
writer use one double instead of each writing its own. Not for production: it keeps
everything in memory, and nothing survives the process.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import TypeVar

from schemas.reference import CampaignContract, CreatorProfile
from schemas.rows import CreatorWindowRow, DeadLetter, WindowKey
from sinks.base import (
    CONTRACTS_TABLE,
    CREATOR_METRICS_TABLE,
    PROFILES_TABLE,
    Refused,
    keep_newest,
)

__all__ = ["DEAD_LETTERS_TABLE", "MemoryRowSink"]

DEAD_LETTERS_TABLE = "dead_letters"

T = TypeVar("T")
#: Says why the store refuses a row (its own words), or None when it takes the row.
Refusal = Callable[[T], str | None]


class MemoryRowSink:
    """Keeps rows as a ClickHouse store shows them through ``FINAL``. For tests and demos.

    - window rows: one per window (:attr:`CreatorWindowRow.key`), the highest version,
      the later write on a tie, as ``ReplacingMergeTree(version)`` does;
    - dead letters: one per identity ``(topic, partition, offset, idx)``, the later write;
    - profiles per creator, contracts per campaign and creator: the later write.

    Failures on demand, to test the writers:

    - ``refuse_windows``, ``refuse_dead_letters``, ``refuse_profiles``,
      ``refuse_contracts``: each says why the store refuses a row, or None. A call that
      holds a refused row raises :class:`~sinks.base.Refused` with that reason (for the
      first such row) and keeps nothing, as a store's insert fails whole;
    - ``outages``: the next ``outages`` calls, of any method, fail like an outage
      (``ConnectionError``) and keep nothing. A large number keeps the store down.

    ``calls`` counts the calls per table, refused and failed ones included.
    """

    __test__ = False  # pytest: a double, not a test, wherever a test module imports it

    def __init__(
        self,
        *,
        refuse_windows: Refusal[CreatorWindowRow] | None = None,
        refuse_dead_letters: Refusal[DeadLetter] | None = None,
        refuse_profiles: Refusal[CreatorProfile] | None = None,
        refuse_contracts: Refusal[CampaignContract] | None = None,
        outages: int = 0,
    ) -> None:
        self.refuse_windows = refuse_windows
        self.refuse_dead_letters = refuse_dead_letters
        self.refuse_profiles = refuse_profiles
        self.refuse_contracts = refuse_contracts
        self.outages = outages
        self.calls: Counter[str] = Counter()
        self.windows: dict[WindowKey, CreatorWindowRow] = {}
        self._dead_letters: dict[tuple[str, int, int, int], DeadLetter] = {}
        self._profiles: dict[str, CreatorProfile] = {}
        self._contracts: dict[tuple[str, str], CampaignContract] = {}

    # -- what it keeps ---------------------------------------------------------------

    def rows(self) -> list[CreatorWindowRow]:
        """The kept row of each window, in the order the windows were first written."""
        return list(self.windows.values())

    @property
    def dead_letters(self) -> list[DeadLetter]:
        return list(self._dead_letters.values())

    @property
    def profiles(self) -> list[CreatorProfile]:
        return list(self._profiles.values())

    @property
    def contracts(self) -> list[CampaignContract]:
        return list(self._contracts.values())

    # -- the contract ----------------------------------------------------------------

    def write_creator_windows(self, rows: Sequence[CreatorWindowRow]) -> None:
        self._accept(CREATOR_METRICS_TABLE, rows, self.refuse_windows)
        keep_newest(self.windows, rows)

    def write_dead_letters(self, rows: Sequence[DeadLetter]) -> None:
        self._accept(DEAD_LETTERS_TABLE, rows, self.refuse_dead_letters)
        for dead in rows:
            self._dead_letters[(dead.topic, dead.partition, dead.offset, dead.idx)] = dead

    def write_profiles(self, rows: Sequence[CreatorProfile]) -> None:
        self._accept(PROFILES_TABLE, rows, self.refuse_profiles)
        for profile in rows:
            self._profiles[profile.creator_id] = profile

    def write_contracts(self, rows: Sequence[CampaignContract]) -> None:
        self._accept(CONTRACTS_TABLE, rows, self.refuse_contracts)
        for contract in rows:
            self._contracts[(contract.campaign_id, contract.creator_id)] = contract

    def _accept(self, table: str, rows: Sequence[T], refusal: Refusal[T] | None) -> None:
        """Count the call; raise for an outage or a refused row, before anything is kept."""
        self.calls[table] += 1
        if self.outages > 0:
            self.outages -= 1
            raise ConnectionError(f"{table}: connection refused (a simulated outage)")
        if refusal is None:
            return
        for row in rows:
            reason = refusal(row)
            if reason is not None:
                raise Refused(table, reason)
