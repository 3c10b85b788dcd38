"""Which credentials exist and which are revoked: events on the compacted credentials topic.

A credential is a signed token (shared.auth) that any service verifies on its own. Issuing and
revoking one are events keyed by its id; the topic keeps the SHA-256 of each token, never the
token. Every service instance reads the topic from the start, is caught up before it serves
requests, and refuses the credentials revoked since.
"""

import asyncio
import hashlib
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, ClassVar, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import AwareDatetime, Field, StringConstraints, TypeAdapter, ValidationError

from shared.auth import Role, issue_credential
from shared.events import Contract
from shared.topics import TopicSpec

log = logging.getLogger("parkdesk.credentials")


class CredentialEvent(Contract):
    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: str
    schema_version: int
    occurred_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    credential_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]

    event_type: ClassVar[str]


class CredentialIssued(CredentialEvent):
    event_type: ClassVar[str] = "credential.issued"
    type: Literal["credential.issued"] = "credential.issued"
    schema_version: Literal[1] = 1
    role: Role
    subject: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    expires_at: AwareDatetime
    token_sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class CredentialRevoked(CredentialEvent):
    event_type: ClassVar[str] = "credential.revoked"
    type: Literal["credential.revoked"] = "credential.revoked"
    schema_version: Literal[1] = 1
    reason: Annotated[str, StringConstraints(max_length=500)] = ""


AnyCredentialEvent = Annotated[CredentialIssued | CredentialRevoked, Field(discriminator="type")]
_decoder: TypeAdapter[CredentialIssued | CredentialRevoked] = TypeAdapter(AnyCredentialEvent)


def issue(
    secret: str, role: Role, subject: str, valid_for: timedelta
) -> tuple[str, CredentialIssued]:
    """A new credential and the event that records it (by its hash)."""
    credential_id, now = uuid.uuid4().hex, datetime.now(UTC)
    token = issue_credential(secret, role, subject, valid_for, credential_id, now)
    return token, CredentialIssued(
        credential_id=credential_id,
        role=role,
        subject=subject,
        expires_at=now + valid_for,
        token_sha256=hashlib.sha256(token.encode()).hexdigest(),
    )


async def record(producer: AIOKafkaProducer, topic: str, event: CredentialEvent) -> None:
    await producer.send_and_wait(
        topic, event.model_dump_json().encode(), key=event.credential_id.encode()
    )


class CredentialRegistry:
    """What this instance knows of every credential, kept current from the topic."""

    def __init__(self, bootstrap_servers: str, topic: TopicSpec) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._topic = topic.name
        self._partitions = topic.partitions
        self.issued: dict[str, CredentialIssued] = {}
        self.revoked: dict[str, CredentialRevoked] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._following: asyncio.Task[None] | None = None

    def is_revoked(self, credential_id: str) -> bool:
        return credential_id in self.revoked

    def apply(self, raw: bytes) -> None:
        try:
            event = _decoder.validate_json(raw)
        except ValidationError as exc:
            log.error("unreadable credential event skipped: %s", exc.errors()[:1])
            return
        if isinstance(event, CredentialIssued):
            self.issued[event.credential_id] = event
        else:
            self.revoked[event.credential_id] = event

    async def start(self) -> None:
        """Reads the topic to its end, so that no revoked credential passes, then follows it."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap_servers, enable_auto_commit=False
        )
        await consumer.start()
        partitions = [TopicPartition(self._topic, p) for p in range(self._partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)

        async def behind() -> bool:
            for partition, end in ends.items():
                if await consumer.position(partition) < end:
                    return True
            return False

        while await behind():
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    self.apply(record.value or b"")
        self._consumer = consumer
        self._following = asyncio.create_task(self._follow())
        log.info("credentials: %d issued, %d revoked", len(self.issued), len(self.revoked))

    async def _follow(self) -> None:
        assert self._consumer is not None
        async for record in self._consumer:
            self.apply(record.value or b"")

    async def stop(self) -> None:
        if self._following is not None:
            self._following.cancel()
            await asyncio.gather(self._following, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()
