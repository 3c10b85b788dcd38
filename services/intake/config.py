from pydantic import Field

from shared.settings import ServiceSettings


class IntakeSettings(ServiceSettings):
    http_port: int = Field(default=8000, ge=1, le=65535)
    resolution_target_seconds: float = Field(
        default=24 * 3600, gt=0, description="The promise: resolved within this long of submission."
    )
    reopen_window_seconds: float = Field(
        default=7 * 24 * 3600,
        gt=0,
        description="How long after resolution an enterprise may reopen.",
    )
    relay_enabled: bool = Field(
        default=True,
        description="Run the outbox relay in this process. Exactly one intake instance per "
        "database should: extra API-only replicas set this to false.",
    )
    relay_batch_size: int = Field(default=500, ge=1)
    relay_idle_seconds: float = Field(
        default=1.0, gt=0, description="How often the outbox is swept when nothing woke the relay."
    )
