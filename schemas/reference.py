"""Reference data from compacted topics: creator profiles and campaign contracts."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

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

    def key(self) -> bytes:
        return f"{self.campaign_id}:{self.creator_id}".encode()
