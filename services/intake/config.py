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
    relay_batch_size: int = Field(
        default=500, ge=1, description="At most this many events per publish to Kafka."
    )
    outbox_sweep_seconds: float = Field(default=10.0, gt=0, description="How often to sweep.")
    outbox_sweep_grace_seconds: float = Field(
        default=60.0,
        gt=0,
        description="How old an unpublished event must be before the sweep publishes it: "
        "longer than a request takes, plus the clock difference between instances.",
    )
