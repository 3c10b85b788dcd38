from pydantic import Field, SecretStr

from shared.settings import ServiceSettings


class NotifySettings(ServiceSettings):
    http_port: int = Field(default=8003, ge=1, le=65535)
    webhook_url: str | None = Field(
        default=None, description="Where department and supervision notifications are POSTed."
    )
    webhook_secret: SecretStr | None = Field(default=None, min_length=16)
    webhook_attempts: int = Field(default=5, ge=1)
    webhook_timeout_seconds: float = Field(default=5.0, gt=0)
    webhook_backoff_base_seconds: float = Field(default=0.5, gt=0)
    smtp_host: str | None = Field(
        default=None, description="The SMTP relay that e-mails enterprises; none: no e-mail."
    )
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_starttls: bool = Field(default=True, description="Upgrade to TLS before sending.")
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_sender: str = Field(
        default="parkdesk@bzsp.example.cn", description="The From address of every e-mail."
    )
    smtp_attempts: int = Field(default=5, ge=1)
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)
    smtp_backoff_base_seconds: float = Field(default=1.0, gt=0)
    contact_wait_seconds: float = Field(
        default=10.0,
        ge=0,
        description="How long an SLA event waits for its ticket's contact to be learned.",
    )
