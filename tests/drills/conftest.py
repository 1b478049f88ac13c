"""The drills' table: one line per drill run, printed at the end and kept in bench-results/."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.drills.harness import RESULTS, SCALE

ROOT = Path(__file__).resolve().parent.parent.parent
HEADER = (
    f"{'drill':<34} {'events sent':>11} {'counted':>9} {'dead planted/found':>19} "
    f"{'mismatches':>10} {'duration':>9} {'peak RSS':>9}"
)


def table() -> list[str]:
    lines = [HEADER, "-" * len(HEADER)]
    for r in RESULTS:
        dead = f"{r.dead_planted}/{r.dead_found}"
        lines.append(
            f"{r.drill:<34} {r.events_sent:>11,} {r.counted:>9,} {dead:>19} "
            f"{r.mismatches:>10} {r.duration_s:>8.1f}s {r.peak_rss_mb:>6.0f} MB"
        )
        if r.note:
            lines.append(f"  {r.note}")
    return lines


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    lines = table()
    terminalreporter.section(f"creatorpulse drills (scale {SCALE})")
    for line in lines:
        terminalreporter.write_line(line)
    out = ROOT / "bench-results" / f"drills-{time.strftime('%Y%m%dT%H%M%S')}-scale{SCALE}.txt"
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join([f"creatorpulse drills, scale {SCALE}", *lines]) + "\n")
    terminalreporter.write_line(f"written to {out.relative_to(ROOT)}")
