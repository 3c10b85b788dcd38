from datetime import timedelta
from pathlib import Path

from pydantic import Field

from services.sla.domain import SlaPolicy, Targets, load_sla_policy
from shared.settings import ServiceSettings


class SlaSettings(ServiceSettings):
    http_port: int = Field(default=8002, ge=1, le=65535)
    resolution_target_seconds: float = Field(default=24 * 3600, gt=0)
    first_response_target_seconds: float = Field(default=2 * 3600, gt=0)
    warning_thresholds: tuple[float, ...] = Field(
        default=(0.5, 0.75, 0.9), description="Shares of the resolution target that warn."
    )

    policy_file: Path | None = Field(
        default=None,
        description="A TOML SLA policy (targets per category and priority, business calendars);"
        " without one, the targets above apply to every ticket on the wall clock.",
    )

    def policy(self) -> SlaPolicy:
        if self.policy_file is not None:
            return load_sla_policy(self.policy_file)
        return SlaPolicy(
            default=Targets(
                resolution=timedelta(seconds=self.resolution_target_seconds),
                first_response=timedelta(seconds=self.first_response_target_seconds),
            ),
            warning_thresholds=self.warning_thresholds,
        )
