from pathlib import Path

from pydantic import Field

from services.routing.domain import POLICY_FILE
from shared.settings import ServiceSettings


class RoutingSettings(ServiceSettings):
    http_port: int = Field(default=8001, ge=1, le=65535)
    policy_file: Path = Field(default=POLICY_FILE, description="The routing policy (TOML).")
    policy_check_seconds: float = Field(
        default=5.0, gt=0, description="How often the policy file is checked for changes."
    )
    consumer_workers: int = Field(
        default=3,
        ge=1,
        le=16,
        description="Consumers of the tickets topic in this process, each with its own "
        "partitions: routing waits on its store and the broker, not on the CPU.",
    )
