"""Settings of the alerting stage, read from the environment at the entry point only.

Kept apart from :class:`creatorpulse.settings.Settings` so that the shared flags stay
as they are; every field is an environment variable ``CREATORPULSE_<NAME>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from creatorpulse.settings import SettingsError
from schemas.topics import ALERTS
from streams.alerts.rules import Rules, RulesError, load_rules

if TYPE_CHECKING:  # delivery pulls in aiohttp: only the processes that deliver load it
    from sinks.webhooks import HookConfig


class AlertSettings(BaseSettings):
    """Where alerts go and by which rules they fire."""

    model_config = SettingsConfigDict(env_prefix="CREATORPULSE_", frozen=True, extra="ignore")

    alerts: bool = Field(
        default=True,
        description=(
            "Run the alerting stage in workers and the alert sink where the store is written."
        ),
    )
    alert_rules: Path | None = Field(
        default=None, description="TOML rules file; unset: the shipped defaults."
    )
    alerts_topic: str = Field(default=ALERTS, description="Topic of alert records.")
    hooks: str = Field(default="log", description="Alert hooks: [NAME=]KIND[:URL] ...")
    hook_secret: str | None = Field(default=None, description="Secret of webhook hooks.")
    hook_timeout_s: float = Field(default=5.0, gt=0, le=60)

    def rules(self) -> Rules:
        """The rules; a SettingsError naming the key of a bad file (exit 2)."""
        try:
            return load_rules(self.alert_rules)
        except (RulesError, OSError) as exc:
            where = self.alert_rules or "the shipped rules"
            raise SettingsError(f"CREATORPULSE_ALERT_RULES ({where}): {exc}") from None

    def hook_configs(self) -> tuple[HookConfig, ...]:
        """The hooks; a SettingsError naming the setting of a bad one (exit 2)."""
        from sinks.webhooks import HookConfigError, parse_hooks, parse_secret

        try:
            secret = parse_secret(self.hook_secret) if self.hook_secret else None
        except ValueError as exc:
            raise SettingsError(f"CREATORPULSE_HOOK_SECRET: {exc}") from None
        try:
            return parse_hooks(
                self.hooks,
                secret=secret,
                timeout_s=self.hook_timeout_s,
                prefix="CREATORPULSE_HOOKS",
            )
        except HookConfigError as exc:
            raise SettingsError(str(exc)) from None


def alert_settings() -> AlertSettings:
    return AlertSettings()
