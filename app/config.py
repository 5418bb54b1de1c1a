"""Service settings, read from the environment (names as in the REST contract's "Settings")."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AwareDatetime, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

SUPPORTED_DRIVERS = {"sqlite+aiosqlite", "postgresql+asyncpg"}
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./var/pbx-entra.db"


class ConfigError(Exception):
    """A setting is missing or malformed: reported as one clear line at start-up."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    database_url: str = DEFAULT_DATABASE_URL
    public_base_url: str = "http://127.0.0.1:8000"
    login_base_url: str = "https://login.microsoftonline.com"
    graph_base_url: str = "https://graph.microsoft.com/v1.0"
    ca_bundle: Path | None = None
    secret_key: SecretStr | None = None
    admin_api_key: SecretStr | None = None
    pbx_api_key: SecretStr | None = None
    smtp_url: SecretStr | None = None
    mail_from: str | None = None
    change_batch_size: int = Field(default=10, ge=1)
    change_delay_seconds: float = Field(default=600, ge=0)
    # The in-process sync worker (off: runs wait for another replica's worker).
    worker_enabled: bool = True
    worker_poll_seconds: float = Field(default=2.0, gt=0)
    worker_lease_seconds: float = Field(default=60.0, gt=0)
    # Scheduled syncs: each process re-reads the schedules this often.
    scheduler_enabled: bool = True
    schedule_poll_seconds: float = Field(default=5.0, gt=0)
    # The schedule timers' clock starts at this instant and runs on from there: a rehearsal of a
    # schedule fire without waiting for its hour (unset in production).
    schedule_clock_start: AwareDatetime | None = None
    # How often each process checks that the Graph subscriptions exist and renews them.
    subscription_check_seconds: float = Field(default=60.0, gt=0)
    # Graph's 5xx, timeouts and dropped connections are retried with exponential backoff from
    # this many seconds (with jitter; at most 6 attempts).
    graph_backoff_seconds: float = Field(default=0.5, gt=0, le=60)
    # Sync runs executed at once by one process (never two for one PBX).
    worker_concurrency: int = Field(default=8, ge=1, le=256)
    # A welcome email that could not be sent is retried with backoff for this long.
    welcome_email_give_up_seconds: float = Field(default=24 * 3600, gt=0)
    # Teams presence: notifications are picked up this often and gathered this long before one
    # bulk read; each PBX is visited every tick; users beyond the subscription are polled.
    presence_enabled: bool = True
    presence_notify_seconds: float = Field(default=0.1, gt=0)
    presence_gather_seconds: float = Field(default=0.2, ge=0)
    presence_tick_seconds: float = Field(default=2.0, gt=0)
    presence_poll_seconds: float = Field(default=30.0, gt=0)
    # Demo mode (make run): a fixed development SECRET_KEY is allowed.
    demo: bool = False
    log_level: str = "INFO"

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        try:
            url = make_url(value)
        except ArgumentError as exc:
            raise ValueError(f"not a database URL ({exc})") from None
        if url.drivername not in SUPPORTED_DRIVERS:
            raise ValueError(
                f"driver {url.drivername!r} is not supported; "
                "use sqlite+aiosqlite:///path.db or postgresql+asyncpg://user@host/db"
            )
        return value

    @field_validator("public_base_url", "login_base_url", "graph_base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _require_secret_key(self) -> Settings:
        if self.secret_key is None and not self.demo:
            raise ValueError(
                "SECRET_KEY is required (it encrypts secrets at rest); set DEMO=1 only for a demo"
            )
        return self

    @property
    def effective_secret_key(self) -> str:
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        return "pbx-entra-demo-secret-key-not-for-production"


def load_settings() -> Settings:
    """Read the settings, turning validation errors into one readable ConfigError."""
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]).upper() or "settings"
            msg = str(err["msg"]).removeprefix("Value error, ")
            problems.append(f"{name}: {msg}" if name != "settings" else msg)
        raise ConfigError("; ".join(problems)) from None


@lru_cache
def get_settings() -> Settings:
    return load_settings()
