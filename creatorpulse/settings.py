"""Configuration: one pydantic-settings class, read at the entry point only.

Every field is an environment variable ``CREATORPULSE_<NAME>`` and a CLI flag
``--<name>``; the CLI passes flags in, pydantic-settings fills the rest from the
environment and defaults, and a bad value stops the program at start with a message
that names the variable to fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streams.windows import DEFAULT_FUTURE_SKEW_S, DEFAULT_GRACE_S

#: The longest window size accepted (31 days).
MAX_WINDOW_S = 31 * 86_400

#: Bounds of the leaderboard's parameters (the worker's /leaderboard page and
#: `creatorpulse top`), so one request has a bounded answer and query cost.
LEADERBOARD_MAX_LIMIT = 500
LEADERBOARD_MAX_LAST_S = 30 * 86_400


class Settings(BaseSettings):
    """Runtime settings of every creatorpulse command."""

    model_config = SettingsConfigDict(env_prefix="CREATORPULSE_", frozen=True, extra="ignore")

    kafka_bootstrap: str | None = Field(
        default=None,
        description="Kafka host:port list (comma separated). Unset: start the embedded broker.",
    )
    clickhouse_url: str | None = Field(
        default=None,
        description="http(s)://user:pass@host:port/db or chdb:///path. Unset: chDB in DATA_DIR.",
    )
    # The same defaults as sinks.clickhouse (not imported here: every command reads these).
    clickhouse_connect_timeout_s: float = Field(
        default=5.0,
        gt=0,
        le=600,
        description=(
            "Seconds to connect to a ClickHouse server, and for its first answer at start "
            "(chDB: unused)."
        ),
    )
    clickhouse_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Seconds ClickHouse may take to take or answer any query or insert.",
    )
    input_topic: str = Field(default="post-stats", description="Topic of post-stat events.")
    grace_s: int = Field(
        default=DEFAULT_GRACE_S, ge=0, description="Grace period for late events, seconds."
    )
    future_skew_s: int = Field(
        default=DEFAULT_FUTURE_SKEW_S,
        ge=0,
        le=366 * 86_400,
        description=(
            "How far ahead of the worker's clock an event time may be, seconds; an event "
            "further ahead is a dead letter."
        ),
    )
    windows: str = Field(default="60,3600", description="Tumbling window sizes in seconds.")
    partitions: int = Field(
        default=4, ge=1, le=1024, description="Partitions of the input topic (created if missing)."
    )
    data_dir: Path = Field(
        default=Path(".creatorpulse"), description="Local state: chDB store, logs, worker data."
    )
    app_id: str = Field(
        default="creatorpulse", description="Consumer group and prefix of internal topics."
    )
    flush_interval_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="Longest time between two flushes (state made durable, rows written).",
    )
    flush_max_age_s: float = Field(
        default=0.25,
        gt=0,
        le=60,
        description=(
            "A flush starts once the oldest record applied since the last one is this old "
            "(bounds how soon counts are queryable)."
        ),
    )
    kafka_send_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=1200,
        description=(
            "How long the worker waits for Kafka to acknowledge what a flush sends before "
            "it counts the send as failed and sends it again at the next flush."
        ),
    )
    shutdown_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description=(
            "On SIGINT/SIGTERM, how long to keep writing rows before giving up (they stay "
            "in the changelog and are written on restart)."
        ),
    )
    sink: Literal["clickhouse", "topic"] = Field(
        default="clickhouse",
        description=(
            "Where a worker's window rows go: 'clickhouse' (it writes them) or 'topic' "
            "(to <app-id>-window-rows; `creatorpulse sink` writes them)."
        ),
    )
    web_port: int = Field(
        default=6066, ge=0, le=65535, description="Worker HTTP port on WEB_HOST (0: off)."
    )
    web_host: str = Field(
        default="127.0.0.1",
        description=(
            "Address the worker's HTTP port binds to and advertises. Any address but "
            "loopback needs a bearer token (WEB_TOKEN or --web-token-file)."
        ),
    )
    web_token: SecretStr | None = Field(
        default=None,
        description=(
            "Bearer token every request to the HTTP port must carry (Authorization: Bearer "
            "...); required when WEB_HOST is not loopback. Environment only: a flag would "
            "show in the process list."
        ),
    )
    web_token_file: Path | None = Field(
        default=None, description="File whose first line is the bearer token (see WEB_TOKEN)."
    )
    sink_metrics_port: int = Field(
        default=6067,
        ge=0,
        le=65535,
        description="Port of `creatorpulse sink`'s /metrics on WEB_HOST (0: off).",
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="Log lines as text, or as one JSON object per line."
    )

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        for host in value.split(","):
            name, _, port = host.strip().rpartition(":")
            if not name or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port...], got {host.strip()!r}")
        return value.strip()

    @field_validator("web_host")
    @classmethod
    def _web_host(cls, value: str) -> str:
        host = value.strip()
        if not host or any(c.isspace() or c in ",/" for c in host):
            raise ValueError(f"expected one address or host name like 127.0.0.1, got {value!r}")
        return host

    @field_validator("windows")
    @classmethod
    def _windows(cls, value: str) -> str:
        try:
            sizes = [int(part) for part in value.split(",") if part.strip()]
        except ValueError as exc:
            raise ValueError(f"expected seconds like 60,3600, got {value!r}") from exc
        if not sizes or min(sizes) <= 0:
            raise ValueError(f"expected positive seconds like 60,3600, got {value!r}")
        if max(sizes) > MAX_WINDOW_S:
            # Every window of an event time before 2100 then ends inside ClickHouse's
            # DateTime range (2106).
            raise ValueError(f"window sizes are at most {MAX_WINDOW_S} s (31 days), got {value!r}")
        return value

    @property
    def window_sizes_s(self) -> tuple[int, ...]:
        return tuple(sorted({int(part) for part in self.windows.split(",") if part.strip()}))

    @property
    def embedded_broker(self) -> bool:
        return self.kafka_bootstrap is None

    def resolved_web_token(self) -> str | None:
        """The bearer token from WEB_TOKEN or the first line of WEB_TOKEN_FILE, if any."""
        if self.web_token is not None and self.web_token.get_secret_value().strip():
            return self.web_token.get_secret_value().strip()
        if self.web_token_file is not None:
            try:
                lines = self.web_token_file.read_text().splitlines()
            except OSError as exc:
                raise SettingsError(
                    f"--web-token-file / CREATORPULSE_WEB_TOKEN_FILE: cannot read "
                    f"{self.web_token_file}: {exc.strerror or exc}"
                ) from None
            token = lines[0].strip() if lines else ""
            if not token:
                raise SettingsError(
                    "--web-token-file / CREATORPULSE_WEB_TOKEN_FILE: "
                    f"{self.web_token_file} is empty"
                )
            return token
        return None

    def resolved_clickhouse_url(self) -> str:
        if self.clickhouse_url:
            return self.clickhouse_url
        return f"chdb://{(self.data_dir / 'chdb').resolve()}"


class SettingsError(Exception):
    """Configuration that cannot work, with a message that says what to fix."""


class StoreHeld(SettingsError):
    """The chDB store is open in another process (chDB allows one per directory)."""


def load_settings(**overrides: object) -> Settings:
    """Settings from flags (``overrides``, ``None`` = not given), env and defaults."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for error in exc.errors(include_url=False):
            name = str(error["loc"][0]) if error["loc"] else "?"
            lines.append(
                f"  --{name.replace('_', '-')} / CREATORPULSE_{name.upper()}: {error['msg']}"
            )
        raise SettingsError("invalid configuration:\n" + "\n".join(lines)) from None
