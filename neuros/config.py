"""Runtime configuration: one Settings object, read from ``NEUROS_*`` variables.

Tracing is configured by the standard ``OTEL_*`` variables, read where they are used
(``neuros.trace_config``, ``neuros.otlp_export``), so they are not duplicated here.
"""

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from neuros.ingest import GroupLimits
from neuros.postgres_url import check_scheme

DEFAULT_PORT = 8000
# The port docker-compose.yml gives NEUROS_METRICS_PORT (exposed on the compose network,
# never published) and Prometheus scrapes: tests/support/compose_model.py checks both against
# this. 9464 is the port OpenTelemetry's Prometheus exporters use.
METRICS_PORT = 9464
# Relative to the working directory: the repository root in development, where
# scripts/setup.sh creates it. Compose sets the path inside the container.
DEFAULT_API_TOKENS_FILE = "secrets/neuros/tokens.yml"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NEUROS_", extra="ignore", frozen=True)

    host: str = "0.0.0.0"  # noqa: S104 - a container must listen beyond loopback
    port: Annotated[int, Field(ge=1, le=65535)] = DEFAULT_PORT
    db_path: Path = Path("./data/neuros.db")
    sleep_need_hours: Annotated[float, Field(gt=0, le=24)] = 8.0
    metrics_enabled: bool = True
    max_body_bytes: Annotated[int, Field(ge=1024)] = 8 * 1024 * 1024
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    # Group commit (neuros.ingest): bounds of one transaction of pending batches.
    group_commit_max_batches: Annotated[int, Field(ge=1, le=10_000)] = 256
    group_commit_max_wait_ms: Annotated[float, Field(ge=0, le=100)] = 0.0
    group_commit_max_pending: Annotated[int, Field(ge=1)] = 10_000
    # Bearer tokens (neuros.auth): required; a missing file stops the start.
    api_tokens_file: Path = Path(DEFAULT_API_TOKENS_FILE)
    api_tokens_reload_seconds: Annotated[float, Field(gt=0, le=3600)] = 2.0
    # When set, /metrics is served on this port only, not beside the API: the API's
    # port can then be published without publishing the metrics.
    metrics_port: Annotated[int | None, Field(ge=1, le=65535)] = None
    # Unset: SQLite at db_path. postgresql://user:password@host:port/db: PostgreSQL
    # (neuros.postgres), shared by every replica. Secret: never printed.
    database_url: SecretStr | None = None
    database_pool_min: Annotated[int, Field(ge=1, le=1000)] = 2
    database_pool_max: Annotated[int, Field(ge=1, le=1000)] = 10
    # Users per readiness band are read from the database this often (and soon after
    # this replica moved a user between bands).
    population_refresh_seconds: Annotated[float, Field(gt=0, le=300)] = 5.0

    @field_validator("database_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, url: object) -> object:
        # Compose passes ${NEUROS_DATABASE_URL:-} through as "": that means SQLite.
        return None if url == "" else url

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, url: SecretStr | None) -> SecretStr | None:
        if url is not None:
            check_scheme(url.get_secret_value())
        return url

    @model_validator(mode="after")
    def _pool_bounds(self) -> "Settings":
        if self.database_pool_min > self.database_pool_max:
            raise ValueError("NEUROS_DATABASE_POOL_MIN exceeds NEUROS_DATABASE_POOL_MAX")
        return self

    def group_limits(self) -> GroupLimits:
        return GroupLimits(
            max_batches=self.group_commit_max_batches,
            max_wait_seconds=self.group_commit_max_wait_ms / 1000,
            max_pending=self.group_commit_max_pending,
        )


@lru_cache
def get_settings() -> Settings:
    return Settings()
