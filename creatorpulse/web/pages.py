"""The HTTP pages the worker serves on its web port (127.0.0.1:6066 by default).

- ``/leaderboard``: the ranked creators of the board (:mod:`creatorpulse.board`), a
  JSON list, the same as `top --json`, from ClickHouse (only when the worker writes
  ClickHouse: other processes cannot open a chDB store it owns), parameters checked
  (``campaign``, ``last_s``, ``limit``, ``sort``); an unknown campaign is a 404;
- ``/board``: the same board as one object: the range, the sort, every campaign's
  summary and the creators (what `top --board-json` prints and `top` reads);
- ``/stats``: the worker's counters (``StreamProcessor.snapshot``);
- ``/metrics``: the same counters and more for Prometheus (creatorpulse/web/metrics.py);
- ``/healthz``: liveness.

With a bearer token (required off loopback) every page, Faust's own included, answers
401 to a request without it (creatorpulse/web/access.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from creatorpulse.board import (
    DEFAULT_SORT,
    Board,
    NoSuchCampaign,
    SortKey,
    parse_sort,
    read_live_board,
)
from creatorpulse.settings import LEADERBOARD_MAX_LAST_S, LEADERBOARD_MAX_LIMIT
from creatorpulse.web.dashboard import BadParameter, bounded_int
from sinks.clickhouse import ClickHouseSink

if TYPE_CHECKING:
    from streams.observability import AlertStats


def leaderboard_query(query: Mapping[str, str]) -> tuple[str | None, int, int, SortKey]:
    """``(campaign, last_s, limit, sort)`` from the leaderboard page's query, or
    BadParameter."""
    try:
        sort = parse_sort(query["sort"]) if query.get("sort") else DEFAULT_SORT
    except ValueError as exc:
        raise BadParameter("sort", str(exc)) from None
    return (
        query.get("campaign") or None,
        bounded_int(query, "last_s", 3600, LEADERBOARD_MAX_LAST_S),
        bounded_int(query, "limit", 20, LEADERBOARD_MAX_LIMIT),
        sort,
    )


def add_query_pages(
    sink: ClickHouseSink | None,
    *,
    token: str | None = None,
    pending: Callable[[], Mapping[tuple[str, str], str]] | None = None,
    alert_stats: Callable[[], AlertStats | None] | None = None,
    delivery_stats: AlertStats | None = None,
) -> Callable[[Any, Any], None]:
    """HTTP pages served by the worker: the leaderboard (other processes cannot open a
    chDB store it owns; only when the worker writes ClickHouse), its counters, its
    Prometheus metrics and a health check. ``token``: the bearer token every request
    must carry (None: none needed, loopback only). ``pending``: the alert stage's
    pending creators, for the dashboard's badges. ``alert_stats``: the alert stage's
    counters for ``/metrics``, asked for when the pages are installed (the stage is
    built after the pages are declared). ``delivery_stats``: the alert sink's counters
    when it runs in this process (the worker that writes the store)."""

    def install(app: Any, processor: Any) -> None:
        from aiohttp import web
        from faust.web import Request, Response, View

        from creatorpulse.web.access import require_token
        from creatorpulse.web.dashboard import Dashboard
        from creatorpulse.web.metrics import CONTENT_TYPE_LATEST, render, worker_registry
        from creatorpulse.web.routes import add_dashboard

        if token is not None:
            app.web.web_app.middlewares.append(require_token(token))
        highwater = faust_highwater(app)
        # Open event streams end when the web server shuts down, not at its timeout.
        stop_streams = asyncio.Event()

        async def end_streams(_: Any) -> None:
            stop_streams.set()

        app.web.web_app.on_shutdown.append(end_streams)
        alerts = alert_stats() if alert_stats is not None else None
        registry = worker_registry(
            processor, highwater=highwater, alerts=alerts, deliveries=delivery_stats
        )
        add_dashboard(
            app.web.web_app,
            Dashboard(
                sink,
                processor,
                highwater=highwater,
                pending=pending,
            ),
            stop=stop_streams,
        )

        @app.page("/metrics")
        class Metrics(View):
            async def get(self, request: Request) -> Any:
                # aiohttp's own Response: Faust's refuses a content type with a charset.
                body = render(registry)
                return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

        if sink is not None:
            store = sink

            async def board_for(request: Request) -> Board | web.Response:
                try:
                    campaign, last_s, limit, sort = leaderboard_query(request.query)
                except BadParameter as exc:
                    return web.json_response({"error": str(exc), "parameter": exc.name}, status=400)
                try:
                    return await asyncio.to_thread(
                        read_live_board,
                        store,
                        campaign=campaign,
                        last_s=last_s,
                        sort=sort,
                        limit=limit,
                    )
                except NoSuchCampaign as exc:
                    return web.json_response(
                        {"error": str(exc), "parameter": "campaign"}, status=404
                    )

            @app.page("/leaderboard")
            class Leaderboard(View):
                async def get(self, request: Request) -> Any:
                    board = await board_for(request)
                    if not isinstance(board, Board):
                        return board
                    return self.json(board.rows_json())

            @app.page("/board")
            class BoardPage(View):
                async def get(self, request: Request) -> Any:
                    board = await board_for(request)
                    if not isinstance(board, Board):
                        return board
                    return self.json(board.to_json())

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


def faust_highwater(app: Any) -> Callable[[str, int], int | None]:
    """A partition's high watermark as the Faust consumer last fetched it (None while
    it has not fetched the partition, or before the consumer runs)."""
    from faust.types import TP

    def highwater(topic: str, partition: int) -> int | None:
        try:
            end = app.consumer.highwater(TP(topic, partition))
        except Exception:  # no consumer yet, or the partition is not assigned here
            return None
        return int(end) if end is not None else None

    return highwater
