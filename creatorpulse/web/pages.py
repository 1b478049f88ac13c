"""The HTTP pages the worker serves on its web port (127.0.0.1:6066 by default).

- ``/leaderboard``: the creator board from ClickHouse (only when the worker writes
  ClickHouse: other processes cannot open a chDB store it owns), parameters checked;
- ``/stats``: the worker's counters (``StreamProcessor.snapshot``);
- ``/healthz``: liveness.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any

from creatorpulse.settings import LEADERBOARD_MAX_LAST_S, LEADERBOARD_MAX_LIMIT
from sinks.clickhouse import ClickHouseSink


class BadParameter(ValueError):
    """A query parameter a page cannot use; ``name`` is the parameter."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


def _bounded_int(query: Mapping[str, str], name: str, default: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadParameter(name, f"expected an integer from 1 to {high}, got {raw!r}") from None
    if not 1 <= value <= high:
        raise BadParameter(name, f"expected an integer from 1 to {high}, got {value}")
    return value


def leaderboard_query(query: Mapping[str, str]) -> tuple[str | None, int, int]:
    """``(campaign, last_s, limit)`` from the leaderboard page's query, or BadParameter."""
    return (
        query.get("campaign") or None,
        _bounded_int(query, "last_s", 3600, LEADERBOARD_MAX_LAST_S),
        _bounded_int(query, "limit", 20, LEADERBOARD_MAX_LIMIT),
    )


def add_query_pages(sink: ClickHouseSink | None) -> Callable[[Any, Any], None]:
    """HTTP pages served by the worker: the leaderboard (other processes cannot open a
    chDB store it owns; only when the worker writes ClickHouse), its counters and a
    health check."""

    def install(app: Any, processor: Any) -> None:
        from faust.web import Request, Response, View

        if sink is not None:
            store = sink

            @app.page("/leaderboard")
            class Leaderboard(View):
                async def get(self, request: Request) -> Response:
                    try:
                        campaign, last_s, limit = leaderboard_query(request.query)
                    except BadParameter as exc:
                        return self.json({"error": str(exc), "parameter": exc.name}, status=400)
                    rows = await asyncio.to_thread(store.leaderboard, campaign, last_s, limit)
                    return self.json([row_to_json(r) for r in rows])

        @app.page("/stats")
        class Stats(View):
            async def get(self, request: Request) -> Response:
                return self.json(processor.snapshot())

        @app.page("/healthz")
        class Health(View):
            async def get(self, request: Request) -> Response:
                return self.json({"ok": True})

    return install


def row_to_json(row: Any) -> dict[str, Any]:
    return asdict(row)
