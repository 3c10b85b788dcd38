from datetime import timedelta

from pydantic import Field

from services.sla.domain import SlaPolicy
from shared.settings import ServiceSettings


class SlaSettings(ServiceSettings):
    http_port: int = Field(default=8002, ge=1, le=65535)
    resolution_target_seconds: float = Field(default=24 * 3600, gt=0)
    first_response_target_seconds: float = Field(default=2 * 3600, gt=0)
    warning_thresholds: tuple[float, ...] = Field(
        default=(0.5, 0.75, 0.9), description="Shares of the resolution target that warn."
    )

    def policy(self) -> SlaPolicy:
        return SlaPolicy(
            resolution_target=timedelta(seconds=self.resolution_target_seconds),
            first_response_target=timedelta(seconds=self.first_response_target_seconds),
            warning_thresholds=self.warning_thresholds,
        )
