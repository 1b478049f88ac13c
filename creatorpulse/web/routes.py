"""The dashboard over HTTP: the page, its vendored assets, the JSON endpoints and the
server-sent event stream (README, "The dashboard").

- ``GET /dashboard``: the page (creatorpulse/web/static/index.html); ``/`` redirects;
- ``GET /static/dashboard/<file>``: its script, styles and vendored uPlot;
- ``GET /api/overview``, ``/api/board``, ``/api/creator``, ``/api/alerts``,
  ``/api/health``: JSON, parameters checked (400 names the bad one);
- ``GET /api/stream``: ``text/event-stream``; a ``snapshot`` event (overview, board,
  alerts, health) at once and every ``interval_s``. At most ``max_clients`` streams
  are open at a time: one more gets 503 with Retry-After. A client that reconnects
  (EventSource does by itself, sending Last-Event-ID) gets a full snapshot at once,
  so nothing it missed matters: every event is the whole state, not a change.

The reads run in a thread (the store client blocks) and are shared: one snapshot per
interval however many streams are open.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from creatorpulse.board import DEFAULT_SORT, NoSuchCampaign
from creatorpulse.settings import LEADERBOARD_MAX_LAST_S, LEADERBOARD_MAX_LIMIT
from creatorpulse.web.dashboard import (
    MAX_ALERTS,
    MAX_SERIES_HOURS,
    BadParameter,
    Dashboard,
    board_json,
    bounded_int,
    overview_json,
    required,
    snapshot_json,
)

log = logging.getLogger("creatorpulse.web")

STATIC = Path(__file__).with_name("static")

#: Streams open at once, at most: each holds a connection and a task.
MAX_STREAM_CLIENTS = 8
#: Seconds between two snapshots on the stream.
STREAM_INTERVAL_S = 2.0


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(data, default=str, allow_nan=False),
        status=status,
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def _bad(exc: BadParameter) -> web.Response:
    return _json({"error": str(exc), "parameter": exc.name}, status=400)


def _campaign(query: Mapping[str, str]) -> str | None:
    value = query.get("campaign", "").strip()
    if len(value) > 256:
        raise BadParameter("campaign", "longer than 256 characters")
    return value or None


def _tier(query: Mapping[str, str]) -> str | None:
    value = query.get("tier", "").strip()
    if len(value) > 64:
        raise BadParameter("tier", "longer than 64 characters")
    return value or None


def board_params(query: Mapping[str, str]) -> dict[str, Any]:
    return {
        "campaign": _campaign(query),
        "tier": _tier(query),
        "last_s": bounded_int(query, "last_s", 3600, LEADERBOARD_MAX_LAST_S),
        "sort": query.get("sort", DEFAULT_SORT),
        "limit": bounded_int(query, "limit", 100, LEADERBOARD_MAX_LIMIT),
    }


def overview_params(query: Mapping[str, str]) -> dict[str, Any]:
    return {
        "campaign": _campaign(query),
        "last_s": bounded_int(query, "last_s", 3600, LEADERBOARD_MAX_LAST_S),
        "hours": bounded_int(query, "hours", 2, MAX_SERIES_HOURS),
    }


class Snapshots:
    """One snapshot of everything the page shows, read at most once per ``interval_s``
    and shared by every stream; ``seq`` numbers them (the event id)."""

    def __init__(
        self,
        dashboard: Dashboard,
        interval_s: float = STREAM_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.dashboard = dashboard
        self.interval_s = interval_s
        self.clock = clock
        self.seq = 0
        self._at: float | None = None
        self._data: dict[str, Any] = {}
        self._lock = asyncio.Lock()

    def read(self) -> dict[str, Any]:
        """The whole state, with the default filters (blocking: the store reads)."""
        d = self.dashboard
        out: dict[str, Any] = {"health": d.health()}
        try:
            out |= snapshot_json(d)
        except Exception as exc:  # the health figures still go out
            log.warning("dashboard snapshot: store read failed: %s", exc)
            out["error"] = str(exc)
        return out

    async def get(self) -> tuple[int, dict[str, Any]]:
        async with self._lock:
            now = self.clock()
            if self._at is None or now - self._at >= self.interval_s:
                self._data = await asyncio.to_thread(self.read)
                self._at = now
                self.seq += 1
            return self.seq, self._data


class StreamClients:
    """A counter of open streams that refuses one beyond ``limit``."""

    def __init__(self, limit: int = MAX_STREAM_CLIENTS) -> None:
        self.limit = limit
        self.open = 0

    def try_enter(self) -> bool:
        if self.open >= self.limit:
            return False
        self.open += 1
        return True

    def leave(self) -> None:
        self.open -= 1


def sse_event(seq: int, data: Mapping[str, Any], event: str = "snapshot") -> bytes:
    body = json.dumps(data, default=str, allow_nan=False)
    return f"id: {seq}\nevent: {event}\nretry: 2000\ndata: {body}\n\n".encode()


def dashboard_routes(
    dashboard: Dashboard,
    *,
    snapshots: Snapshots | None = None,
    clients: StreamClients | None = None,
    stop: asyncio.Event | None = None,
    interval_s: float = STREAM_INTERVAL_S,
) -> list[web.AbstractRouteDef]:
    """The dashboard's routes, for an aiohttp application (the worker's Faust web app
    or the sink process's own server)."""
    snaps = snapshots or Snapshots(dashboard, interval_s)
    streams = clients or StreamClients()

    def guarded(
        read: Callable[[Mapping[str, str]], Any],
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            try:
                return _json(await asyncio.to_thread(read, request.query))
            except BadParameter as exc:
                return _bad(exc)
            except NoSuchCampaign as exc:
                return _json({"error": str(exc), "parameter": "campaign"}, status=404)

        return handler

    def board(query: Mapping[str, str]) -> Any:
        return board_json(dashboard, **board_params(query))

    def overview(query: Mapping[str, str]) -> Any:
        return overview_json(dashboard, **overview_params(query))

    def creator(query: Mapping[str, str]) -> Any:
        return dashboard.creator(
            required(query, "campaign"),
            required(query, "creator"),
            bounded_int(query, "hours", 3, MAX_SERIES_HOURS),
        )

    def alerts(query: Mapping[str, str]) -> Any:
        return dashboard.alerts(
            bounded_int(query, "limit", 50, MAX_ALERTS),
            campaign_id=_campaign(query),
            creator_id=_campaign({"campaign": query.get("creator", "")}),
        )

    def health(query: Mapping[str, str]) -> Any:
        return dashboard.health()

    async def page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def root(request: web.Request) -> web.Response:
        raise web.HTTPFound("/dashboard")

    async def stream(request: web.Request) -> web.StreamResponse:
        if not streams.try_enter():
            log.warning(
                "dashboard stream refused: %d open, the limit",
                streams.open,
                extra={"streams_open": streams.open},
            )
            refused = _json(
                {"error": f"too many open streams (at most {streams.limit}); retry later"},
                status=503,
            )
            refused.headers["Retry-After"] = "15"
            return refused
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        try:
            await response.prepare(request)
            log.info(
                "dashboard stream opened (%d of %d)",
                streams.open,
                streams.limit,
                extra={
                    "streams_open": streams.open,
                    "last_event_id": request.headers.get("Last-Event-ID"),
                },
            )
            last = -1
            while stop is None or not stop.is_set():
                seq, data = await snaps.get()
                if seq != last:
                    await response.write(sse_event(seq, data))
                    last = seq
                await asyncio.sleep(snaps.interval_s / 4)
            return response
        except ConnectionResetError:  # the client went away: the usual end of a stream
            return response
        finally:
            streams.leave()
            log.info(
                "dashboard stream closed (%d open)",
                streams.open,
                extra={"streams_open": streams.open},
            )

    return [
        web.get("/", root),
        web.get("/dashboard", page),
        web.static("/static/dashboard", STATIC, append_version=False),
        web.get("/api/overview", guarded(overview)),
        web.get("/api/board", guarded(board)),
        web.get("/api/creator", guarded(creator)),
        web.get("/api/alerts", guarded(alerts)),
        web.get("/api/health", guarded(health)),
        web.get("/api/stream", stream),
    ]


def add_dashboard(app: web.Application, dashboard: Dashboard, **options: Any) -> None:
    """Add the dashboard's routes to ``app`` (before it starts)."""
    app.router.add_routes(dashboard_routes(dashboard, **options))


def serve_in_thread(
    dashboard: Dashboard,
    host: str,
    port: int,
    *,
    token: str | None = None,
    metrics: Callable[[], bytes] | None = None,
    metrics_content_type: str = "text/plain",
) -> tuple[int, Callable[[], None]]:
    """The dashboard (and ``metrics`` on ``/metrics``) on ``http://host:port`` from an
    aiohttp server in a daemon thread with its own event loop: for the sink process,
    which has no Faust web server. Returns the port and a function that stops it."""
    import threading

    from creatorpulse.web.access import require_token

    loop = asyncio.new_event_loop()
    stop_streams = asyncio.Event()
    started: list[Any] = []
    ready = threading.Event()

    async def start() -> None:
        app = web.Application(middlewares=[require_token(token)] if token is not None else [])
        if metrics is not None:
            scrape = metrics

            async def exposition(request: web.Request) -> web.Response:
                body = await asyncio.to_thread(scrape)
                return web.Response(body=body, headers={"Content-Type": metrics_content_type})

            app.router.add_get("/metrics", exposition)
        add_dashboard(app, dashboard, stop=stop_streams)
        runner = web.AppRunner(app, shutdown_timeout=2, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1]  # the port taken, when asked for 0
        started.extend([runner, int(bound)])

    def main() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        except BaseException as exc:
            started.append(exc)
            ready.set()
            return
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=main, name="web", daemon=True)
    thread.start()
    ready.wait(30)
    if started and isinstance(started[-1], BaseException):
        thread.join(5)
        loop.close()
        raise started[-1]

    def stop() -> None:
        async def shutdown() -> None:
            stop_streams.set()
            await started[0].cleanup()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()

    return int(started[1]), stop
