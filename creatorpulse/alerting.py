"""Settings of the alerting stage, read from the environment at the entry point only.

Kept apart from :class:`creatorpulse.settings.Settings` so that the shared flags stay
as they are; every field is an environment variable ``CREATORPULSE_<NAME>``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.topics import ALERTS
from streams.alerts.rules import Rules, load_rules


class AlertSettings(BaseSettings):
    """Where alerts go and by which rules they fire."""

    model_config = SettingsConfigDict(env_prefix="CREATORPULSE_", frozen=True, extra="ignore")

    alerts: bool = Field(
        default=False,
        description="Run the alerting stage in the worker (off until its sink and e2e land).",
    )
    alert_rules: Path | None = Field(
        default=None, description="TOML rules file; unset: the shipped defaults."
    )
    alerts_topic: str = Field(default=ALERTS, description="Topic of alert records.")
    hooks: str = Field(default="log", description="Alert hooks: [NAME=]KIND[:URL] ...")
    hook_secret: str | None = Field(default=None, description="Secret of webhook hooks.")
    hook_timeout_s: float = Field(default=5.0, gt=0, le=60)

    def rules(self) -> Rules:
        return load_rules(self.alert_rules)


def alert_settings() -> AlertSettings:
    return AlertSettings()
