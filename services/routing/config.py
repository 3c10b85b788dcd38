from shared.settings import ServiceSettings


class RoutingSettings(ServiceSettings):
    http_port: int = 8001
