"""Reference data from compacted topics: creator profiles and campaign contracts."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from schemas.metrics import Id

Tier = Literal["nano", "micro", "macro", "mega"]

#: Lower follower bound of each tier (contract: nano < 10k, micro 10k-100k, ...).
TIER_FLOORS: tuple[tuple[Tier, int], ...] = (
    ("mega", 1_000_000),
    ("macro", 100_000),
    ("micro", 10_000),
    ("nano", 0),
)


def tier_for(follower_count: int) -> Tier:
    """The creator tier for a follower count."""
    for tier, floor in TIER_FLOORS:
        if follower_count >= floor:
            return tier
    return "nano"


class CreatorProfile(BaseModel):
    """Topic ``creator-profiles``, key ``creator_id``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    creator_id: Id
    handle: str = Field(default="", max_length=128)
    follower_count: int = Field(ge=0, strict=True)
    niche: str = Field(default="", max_length=64)

    @property
    def tier(self) -> Tier:
        return tier_for(self.follower_count)


class CampaignContract(BaseModel):
    """Topic ``campaign-contracts``, key ``campaign_id:creator_id``: what the creator is paid."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    campaign_id: Id
    creator_id: Id
    fee: float = Field(ge=0)
    currency: str = Field(default="USD", min_length=3, max_length=3)
    #: The flight the fee pays for (optional, both or neither): a board over part of it
    #: charges the fee pro rata; without it the whole fee is charged.
    flight_start: AwareDatetime | None = None
    flight_end: AwareDatetime | None = None

    @model_validator(mode="after")
    def _flight(self) -> Self:
        if (self.flight_start is None) != (self.flight_end is None):
            raise ValueError("flight_start and flight_end come together")
        start, end = self.flight_start, self.flight_end
        if start is not None and end is not None and end <= start:
            raise ValueError("flight_end must be after flight_start")
        return self

    def flight_s(self) -> tuple[int, int] | None:
        """The flight as epoch seconds ``(start, end)``, or ``None``."""
        if self.flight_start is None or self.flight_end is None:
            return None
        return int(self.flight_start.timestamp()), int(self.flight_end.timestamp())

    def key(self) -> bytes:
        return f"{self.campaign_id}:{self.creator_id}".encode()
