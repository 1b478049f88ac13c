"""Which demo campaign `creatorpulse run` simulates, kept beside its store.

`run` continues the same campaign on the same store (the same ids, the same flight,
a new session of posts) so a second `make run` adds to the board instead of putting
the same creators there twice; `--new-campaign` starts a fresh one. The state is one
JSON file in the data directory: ``{"run_id", "flight_start_ms", "session"}``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

STATE_FILE: Final = "demo-campaign.json"


@dataclass(frozen=True, slots=True)
class DemoCampaign:
    #: The simulator's id prefix: its campaigns are ``<run_id>-c01-<brand>``, ...
    run_id: str
    #: When the campaign's flight began (epoch ms): its contracts are pro-rated from here.
    flight_start_ms: int
    #: 1 for the first run, then one more each time it is continued.
    session: int

    def owns(self, campaign_id: str) -> bool:
        """Whether ``campaign_id`` is one of this demo's campaigns."""
        return campaign_id.startswith(f"{self.run_id}-c")


def _fresh(now_ms: int) -> DemoCampaign:
    return DemoCampaign(run_id=f"demo{now_ms // 1000}", flight_start_ms=now_ms, session=1)


def next_campaign(data_dir: Path, *, new: bool = False, now_ms: int | None = None) -> DemoCampaign:
    """The campaign this run simulates, saved for the next run: the saved one continued
    (one session on), or a fresh one when ``new``, or when none is saved or the saved
    state cannot be read."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    path = data_dir / STATE_FILE
    campaign = _fresh(now_ms)
    if not new:
        try:
            saved = json.loads(path.read_text())
            campaign = DemoCampaign(
                run_id=str(saved["run_id"]),
                flight_start_ms=int(saved["flight_start_ms"]),
                session=int(saved["session"]) + 1,
            )
        except (OSError, ValueError, KeyError, TypeError):
            pass  # nothing saved yet (or unreadable): a fresh campaign
    data_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(campaign)) + "\n")
    return campaign
