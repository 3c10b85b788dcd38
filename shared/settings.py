"""Configuration every service shares, read from PARKDESK_* environment variables."""

from typing import Annotated

from pydantic import Field, SecretStr, StringConstraints
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.auth import Limit, Role
from shared.topics import Topics

Namespace = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,30}$")]


class CommonSettings(BaseSettings):
    """Where the broker and the store are, and which namespace of topics and databases to use."""

    # An empty variable means "not set": deployments pass optional settings through as
    # ${VAR:-} and an unset one keeps its default.
    model_config = SettingsConfigDict(env_prefix="PARKDESK_", extra="ignore", env_ignore_empty=True)

    kafka_bootstrap_servers: str = "127.0.0.1:19092"
    mongodb_url: SecretStr = SecretStr("mongodb://127.0.0.1:27027/")
    namespace: Namespace = Field(
        default="parkdesk",
        description="Prefix of every topic and database, so that test runs never share state.",
    )
    topic_replication_factor: int = Field(default=1, ge=1)

    @property
    def topics(self) -> Topics:
        return Topics(self.namespace)

    def database_name(self, service: str) -> str:
        return f"{self.namespace}_{service}"


class ServiceSettings(CommonSettings):
    """What a running service needs besides: its HTTP listener and the credential key."""

    auth_secret: SecretStr = Field(
        description="HMAC key that signs and verifies API credentials.", min_length=32
    )
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=1, le=65535)
    log_level: str = "INFO"
    rate_limits: dict[Role, Limit] = Field(
        default_factory=dict,
        description="Requests per second and burst per credential, by role, over the defaults, "
        'e.g. {"enterprise": {"per_second": 2, "burst": 10}}.',
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        min_length=16,
        description="Bearer token the Prometheus scraper sends; none: /metrics is open.",
    )
