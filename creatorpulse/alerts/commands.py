"""``creatorpulse alerts``: recent alerts, test a hook, redeliver, silence, check rules.

A typer group of its own, added to the main command in ``creatorpulse.cli``; it reads
the shared settings (ClickHouse URL, ...) from there and the alert settings
(``CREATORPULSE_HOOKS``, ``_HOOK_SECRET``, ``_ALERT_RULES``) from the environment.

The commands that read or write the alert tables open the store themselves: with the
embedded chDB store of a running ``creatorpulse run`` they stop with a message saying
so (one process per chDB store); a ClickHouse server has no such limit.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
import uuid
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

import typer
from rich.console import Console
from rich.table import Table

from creatorpulse.settings import SettingsError

if TYPE_CHECKING:
    from schemas.alerts import Alert, Notification
    from sinks.clickhouse import ClickHouseSink

alerts_app = typer.Typer(
    help="Alerts: list recent ones, test a hook, redeliver, silence, check a rules file.",
    invoke_without_command=True,
    no_args_is_help=False,
)


def _out() -> Console:
    return Console()  # per command: the width of the terminal it runs in


_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration_s(text: str) -> float:
    """``90s``, ``30m``, ``2h``, ``1d``, or combined (``1h30m``) to seconds; ValueError."""
    value = text.strip().lower()
    parts = _DURATION.findall(value)
    if not value or "".join(n + u for n, u in parts) != value:
        raise ValueError(f"{text!r}: a duration like 90s, 30m, 2h, 1d or 1h30m")
    seconds = sum(float(n) * _UNIT_S[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"{text!r}: must be more than 0")
    return seconds


def _settings() -> Any:
    from creatorpulse.cli import _State  # the shared options of the main command

    return _State.settings()


def _open_store() -> tuple[ClickHouseSink, Any]:
    from creatorpulse import runtime
    from sinks.clickhouse.alerts import ClickHouseAlertStore

    sink = runtime.open_sink(_settings())
    return sink, ClickHouseAlertStore(sink)


def _held(exc: SettingsError) -> bool:
    from creatorpulse.settings import StoreHeld

    return isinstance(exc, StoreHeld)  # the store's type, not its message's wording


def _through_worker(path: str, body: bytes | None = None) -> Any:
    """Ask the worker that holds the embedded store (its web port) for ``path``."""
    import urllib.request

    settings = _settings()
    if not settings.web_port:
        raise SettingsError(
            "the store is held by a running creatorpulse process and --web-port / "
            "CREATORPULSE_WEB_PORT is 0: set it to that process's port"
        )
    host = "127.0.0.1" if settings.web_host in ("0.0.0.0", "::") else settings.web_host
    host = f"[{host}]" if ":" in host else host
    url = f"http://{host}:{settings.web_port}{path}"
    headers = {"Content-Type": "application/json"}
    token = settings.resolved_web_token()
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())
    except OSError as err:
        raise SettingsError(
            f"the store is held by a process that does not answer on {url} ({err}); "
            "set --web-port to its port"
        ) from None


def alert_json(alert: Alert) -> dict[str, Any]:
    import msgspec

    data: dict[str, Any] = msgspec.to_builtins(alert)
    return data


@alerts_app.callback(invoke_without_command=True)
def alerts(
    ctx: typer.Context,
    campaign: Annotated[str | None, typer.Option(help="Only this campaign.")] = None,
    limit: Annotated[int, typer.Option(help="Alerts to show.", min=1, max=1000)] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """The most recent alerts (newest first), from the alerts table."""
    if ctx.invoked_subcommand is not None:
        return
    import msgspec

    from schemas.alerts import Alert

    try:
        sink, store = _open_store()
    except SettingsError as exc:
        if not _held(exc):
            raise
        query = f"?limit={limit}" + (f"&campaign={quote(campaign)}" if campaign else "")
        recent = msgspec.convert(_through_worker("/alerts" + query), list[Alert])
    else:
        try:
            recent = store.recent_alerts(limit, campaign)
        finally:
            sink.close()
    if as_json:
        print(json.dumps([alert_json(a) for a in recent], indent=2))
        return
    table = Table(title="recent alerts", title_justify="left")
    for column in ("fired (UTC)", "status", "campaign", "creator", "metric", "value", "median"):
        table.add_column(column)
    for column in ("z", "lift", "views"):
        table.add_column(column, justify="right")
    table.add_column("alert id")
    for a in recent:
        fired = time.strftime("%Y-%m-%d %H:%M", time.gmtime(a.starts_at_ms / 1000))
        status = a.status if a.resolved_reason is None else f"{a.status} ({a.resolved_reason})"
        table.add_row(
            fired,
            status,
            a.campaign_id,
            a.handle or a.creator_id,
            a.metric,
            f"{a.value:.4g}",
            f"{a.baseline:.4g}",
            f"{a.z:.1f}",
            f"{a.lift:.2f}x",
            f"{a.figures.views:,}",
            a.alert_id,
        )
    if not recent:
        _out().print("no alerts yet")
        return
    _out().print(table)


def sample_notification(now_ms: int) -> Notification:
    """A realistic notification for ``test-hook``, marked as a test in its explanation."""
    from schemas.alerts import OUTPERFORMING, Notification, sample_alert

    alert = sample_alert(
        "test-campaign",
        "test-creator",
        now_ms,
        handle="@test.creator",
        explanation="a test notification from `creatorpulse alerts test-hook`",
    )
    return Notification(
        notification_id=f"test-{uuid.uuid4().hex[:16]}",
        type=OUTPERFORMING,
        kind="firing",
        campaign_id="test-campaign",
        rule=OUTPERFORMING,
        alerts=[alert],
        created_at_ms=now_ms,
    )


@alerts_app.command("test-hook")
def send_test_hook(
    url: Annotated[str, typer.Argument(help="The receiver's http:// or https:// URL.")],
    kind: Annotated[str, typer.Option(help="'webhook' or 'slack'.")] = "webhook",
    secret: Annotated[
        str | None,
        typer.Option(
            envvar="CREATORPULSE_HOOK_SECRET",
            show_envvar=True,
            help="Signing secret (whsec_...); default the hooks' secret.",
        ),
    ] = None,
    timeout_s: Annotated[float, typer.Option(help="Seconds to wait for the answer.")] = 5.0,
) -> None:
    """Send one signed sample notification to URL and print the answer (exit 1 unless 2xx)."""
    from schemas.alerts import notification_to_json
    from sinks.webhooks import HookConfig, HookConfigError, parse_secret, slack_payload
    from sinks.webhooks.delivery import HttpTransport
    from sinks.webhooks.signing import webhook_headers

    try:
        key = parse_secret(secret) if secret and kind == "webhook" else None
    except ValueError as exc:
        raise SettingsError(f"--secret / CREATORPULSE_HOOK_SECRET: {exc}") from None
    try:
        hook = HookConfig(
            name="test",
            kind=kind,  # type: ignore[arg-type]  # HookConfig checks it
            url=url,
            secret=key,
            timeout_s=timeout_s,
            connect_timeout_s=min(timeout_s, 2.0),
        )
    except HookConfigError as exc:
        raise SettingsError(f"{exc.key.removeprefix('hooks.test.')}: {exc.problem}") from None
    now_ms = time.time_ns() // 1_000_000
    notification = sample_notification(now_ms)
    if kind == "slack":
        body = json.dumps(slack_payload(notification), ensure_ascii=False).encode()
        headers: dict[str, str] = {}
    else:
        body = notification_to_json(notification)
        headers = webhook_headers(
            body, message_id=notification.notification_id, timestamp_s=now_ms // 1000, key=key
        )

    async def post() -> Any:
        transport = HttpTransport()
        await transport.start()
        try:
            return await transport.post(hook, body, headers)
        finally:
            await transport.close()

    result = asyncio.run(post())
    shown = {k: v for k, v in headers.items() if k != "X-Creatorpulse-Signature"}
    _out().print(f"sent {notification.notification_id} ({len(body)} bytes), headers {shown}")
    if result.http_status is None:
        _out().print(f"[red]no answer:[/] {result.error}", soft_wrap=True)
        raise typer.Exit(1)
    ok = 200 <= result.http_status < 300
    _out().print(
        f"answer: HTTP {result.http_status}" + (f" {result.error}" if result.error else "")
    )
    raise typer.Exit(0 if ok else 1)


@alerts_app.command()
def redeliver(
    ident: Annotated[str, typer.Argument(metavar="ID", help="A notification id or an alert id.")],
) -> None:
    """Send a recorded notification again, now, to every configured hook it was for.

    ID is a notification id (its webhook-id) or an alert id (then each notification of
    that alert). The attempt is recorded in alert_deliveries, numbered after the earlier
    ones; the webhook-id stays the same, so a receiver that has it drops it.
    """
    from creatorpulse.alerts.outbox import delivery_row
    from creatorpulse.alerts.settings import alert_settings
    from sinks.webhooks import Deliverer, Delivery

    hooks = alert_settings().hook_configs()
    sink, store = _open_store()
    try:
        records = store.notifications_of(ident)
        if not records:
            raise SettingsError(f"no notification with id or alert id {ident!r}")
        delivered = 0
        for record in records:
            n = record.notification
            earlier = store.deliveries_of(n.notification_id)
            names = [h.name for h in hooks if h.name in record.hooks] or [h.name for h in hooks]
            chosen = [h for h in hooks if h.name in names]
            made: list[Delivery] = []
            for hook in chosen:
                attempts = max((d.attempt for d in earlier if d.hook == hook.name), default=0)
                deliverer = Deliverer([hook], on_delivery=made.append)

                asyncio.run(_attempt_once(deliverer, n, attempts))
            store.write_deliveries([delivery_row(r) for r in made])
            for r in made:
                delivered += r.status == "delivered"
                status = f"HTTP {r.http_status}" if r.http_status else (r.error or r.status)
                _out().print(
                    f"{n.notification_id} -> {r.hook}: {r.status} (attempt {r.attempt}, {status})"
                )
    finally:
        sink.close()
    raise typer.Exit(0 if delivered else 1)


async def _attempt_once(deliverer: Any, notification: Notification, attempts: int) -> None:
    async with deliverer:
        deliverer.submit(notification, attempts=attempts)
        await deliverer.run_due()


@alerts_app.command()
def silence(
    for_: Annotated[
        str, typer.Option("--for", help="How long: 90s, 30m, 2h, 1d.", show_default=False)
    ],
    campaign: Annotated[str, typer.Option(help="Campaign id or glob.")] = "*",
    creator: Annotated[str, typer.Option(help="Creator id or glob.")] = "*",
    rule: Annotated[str, typer.Option(help="Rule or glob.")] = "*",
    comment: Annotated[str, typer.Option(help="Why (shown with the silence).")] = "",
) -> None:
    """Mute alerts matching campaign, creator and rule for a while (recorded, not sent)."""
    from schemas.alerts import Silence

    try:
        seconds = parse_duration_s(for_)
    except ValueError as exc:
        raise SettingsError(f"--for: {exc}") from None
    if (campaign, creator, rule) == ("*", "*", "*"):
        raise SettingsError("--campaign, --creator, --rule: give at least one (or a glob)")
    now_ms = time.time_ns() // 1_000_000
    entry = Silence(
        silence_id=uuid.uuid4().hex[:16],
        expires_at_ms=now_ms + round(seconds * 1000),
        campaign_id=campaign,
        creator_id=creator,
        rule=rule,
        created_at_ms=now_ms,
        comment=comment,
    )
    try:
        sink, store = _open_store()
    except SettingsError as exc:
        if not _held(exc):
            raise
        from schemas.alerts import silence_to_json

        _through_worker("/alerts/silences", silence_to_json(entry))
    else:
        try:
            store.write_silence(entry)
        finally:
            sink.close()
    until = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(entry.expires_at_ms / 1000))
    _out().print(
        f"silence {entry.silence_id}: campaign={campaign} creator={creator} rule={rule} "
        f"until {until}"
    )


@alerts_app.command()
def rules(
    check: Annotated[
        str | None,
        typer.Option(help="Check this rules file and exit (2, naming the key, if it is bad)."),
    ] = None,
) -> None:
    """Print the rules in effect (CREATORPULSE_ALERT_RULES or the defaults), or --check FILE."""
    from dataclasses import asdict

    from streams.alerts.rules import RulesError, load_rules

    path = check
    if path is None:
        from creatorpulse.alerts.settings import alert_settings

        configured = alert_settings().alert_rules
        path = str(configured) if configured is not None else None
    try:
        loaded = load_rules(path)
    except (RulesError, OSError) as exc:
        raise SettingsError(f"{path}: {exc}") from None
    if check is not None:
        _out().print(f"{check}: ok")
        return
    values = asdict(loaded)
    lines = ["[alerts]"]
    for name, value in values.items():
        if isinstance(value, tuple | list):
            value = list(value)
        lines.append(f"{name} = {json.dumps(value)}")
    sys.stdout.write("\n".join(lines) + "\n")
