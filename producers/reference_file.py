"""Reference data from a JSON-lines file: creator profiles and campaign contracts.

Each line is one object. A line with ``campaign_id`` is a contract
(``{campaign_id, creator_id, fee, currency, flight_start?, flight_end?}``), any other a
profile (``{creator_id, handle, follower_count, niche}``): the two shapes of
docs/contract.md's reference topics. Blank lines and lines starting with ``#`` are
skipped. The whole file is checked before anything is published, so a typo on line 40
does not leave half a file on the topics.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from pydantic import ValidationError

from schemas.reference import CampaignContract, CreatorProfile


@dataclass
class ReferenceFile:
    profiles: list[CreatorProfile] = field(default_factory=list)
    contracts: list[CampaignContract] = field(default_factory=list)
    #: ``(line number, why)`` of each line that is neither shape.
    errors: list[tuple[int, str]] = field(default_factory=list)


def parse_lines(lines: Iterable[str]) -> ReferenceFile:
    out = ReferenceFile()
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            out.errors.append((number, f"not JSON: {exc}"))
            continue
        if not isinstance(data, dict):
            out.errors.append((number, "not a JSON object"))
            continue
        try:
            if "campaign_id" in data:
                out.contracts.append(CampaignContract.model_validate(data))
            else:
                out.profiles.append(CreatorProfile.model_validate(data))
        except ValidationError as exc:
            kind = "contract" if "campaign_id" in data else "profile"
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or kind
            out.errors.append((number, f"{kind}: {where}: {first['msg']}"))
    return out


def read_reference_file(path: Path) -> ReferenceFile:
    with path.open(encoding="utf-8") as lines:
        return parse_lines(lines)
