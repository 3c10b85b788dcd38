from pathlib import Path
from typing import Self

from pydantic import Field, SecretStr, model_validator

from services.notify.domain import TEMPLATE_SAMPLES
from services.notify.templates import SHIPPED
from shared.settings import ServiceSettings


class NotifySettings(ServiceSettings):
    http_port: int = Field(default=8003, ge=1, le=65535)
    consumer_workers: int = Field(
        default=1,
        ge=1,
        le=16,
        description="Consumers per topic in this process. More than one made notify 20-30 % "
        "faster end to end in the benchmark, but a restarted notify catching up with six "
        "consumers fell into a rebalance storm in the chaos run (28,000 failed commits, 156 "
        "assignments): one, until that is understood.",
    )
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
    sms_gateway_url: str | None = Field(
        default=None, description="The SMS gateway's send endpoint; none: no text messages."
    )
    sms_api_key: SecretStr | None = Field(default=None, min_length=8)
    sms_attempts: int = Field(default=5, ge=1)
    sms_timeout_seconds: float = Field(default=5.0, gt=0)
    sms_backoff_base_seconds: float = Field(default=1.0, gt=0)
    muted_messages: frozenset[str] = Field(
        default=frozenset(),
        description='Kinds of message not sent at all, e.g. ["warning"] (kinds: messages.toml).',
    )
    messages_file: Path = Field(
        default=SHIPPED, description="The wording of every message (see messages.toml)."
    )
    contact_wait_seconds: float = Field(
        default=900.0,
        ge=0,
        description="How long an event for the enterprise waits for its ticket's contact to "
        "be learned (the submission is read from another topic) before it is sent without the "
        "enterprise's copy.",
    )

    @model_validator(mode="after")
    def _secrets_come_with_their_endpoints(self) -> Self:
        """An endpoint without its secret is a configuration error at start-up, not a
        channel that silently never delivers."""
        pairs = [
            ("WEBHOOK_URL", self.webhook_url, "WEBHOOK_SECRET", self.webhook_secret),
            ("SMS_GATEWAY_URL", self.sms_gateway_url, "SMS_API_KEY", self.sms_api_key),
        ]
        for endpoint, url, secret, value in pairs:
            if url and value is None:
                raise ValueError(f"PARKDESK_{secret} is required with PARKDESK_{endpoint}")
        unknown = self.muted_messages - TEMPLATE_SAMPLES.keys()
        if unknown:
            raise ValueError(f"PARKDESK_MUTED_MESSAGES: no such kind of message: {sorted(unknown)}")
        return self
