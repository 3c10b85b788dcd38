from pydantic import Field

from shared.settings import ServiceSettings


class RoutingSettings(ServiceSettings):
    http_port: int = Field(default=8001, ge=1, le=65535)
