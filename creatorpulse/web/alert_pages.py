"""The worker's alert pages, for a store only the worker can open (embedded chDB):

- ``GET /alerts?limit=&campaign=``: the most recent alerts as JSON, newest first;
- ``POST /alerts/silences``: a silence (JSON, as ``schemas.alerts.Silence``) written to
  ``alert_silences``.

``creatorpulse alerts`` and ``alerts silence`` go through them when the store is held
by a running ``creatorpulse run`` or worker. The token middleware of the port (pages.py)
guards them like every other page.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from creatorpulse.web.dashboard import BadParameter, bounded_int
from schemas.alerts import silence_from_json
from sinks.clickhouse import ClickHouseSink
from sinks.clickhouse.alerts import ClickHouseAlertStore

MAX_ALERTS = 1000


def recent_alerts_json(store: ClickHouseAlertStore, query: Mapping[str, str]) -> list[Any]:
    """What ``GET /alerts`` answers; BadParameter for a query it cannot use."""
    limit = bounded_int(query, "limit", 20, MAX_ALERTS)
    alerts = store.recent_alerts(limit, query.get("campaign") or None)
    return [msgspec.to_builtins(a) for a in alerts]


def add_alert_pages(sink: ClickHouseSink) -> Callable[[Any, Any], None]:
    store = ClickHouseAlertStore(sink)

    def install(app: Any, processor: Any) -> None:
        from faust.web import Request, Response, View

        @app.page("/alerts")
        class Alerts(View):
            async def get(self, request: Request) -> Response:
                try:
                    body = await asyncio.to_thread(recent_alerts_json, store, request.query)
                except BadParameter as exc:
                    return self.json({"error": str(exc), "parameter": exc.name}, status=400)
                return self.json(body)

        @app.page("/alerts/silences")
        class Silences(View):
            async def post(self, request: Request) -> Response:
                try:
                    silence = silence_from_json(await request.read())
                except ValueError as exc:
                    return self.json({"error": f"not a silence: {exc}"}, status=400)
                await asyncio.to_thread(store.write_silence, silence)
                return self.json(msgspec.to_builtins(silence), status=201)

    return install
