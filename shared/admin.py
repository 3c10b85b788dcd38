"""Operator commands: `parkdesk-admin provision-topics | issue-credential | revoke-credential`."""

import argparse
import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError
from pydantic import ValidationError
from pymongo import AsyncMongoClient

from shared.auth import Role
from shared.credentials import (
    CredentialEvent,
    CredentialIssued,
    CredentialRevoked,
    issue,
    record,
)
from shared.mongo import Document
from shared.settings import CommonSettings, ServiceSettings
from shared.topics import TopicSpec

log = logging.getLogger("parkdesk.admin")


SERVICES = ("intake", "routing", "sla", "notify")


async def remove_namespace(settings: CommonSettings) -> None:
    """Deletes a namespace's topics and its services' databases (a test run's, a benchmark's).

    Databases are dropped by name: listing every database of a long-used local FerretDB can
    take minutes."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        await admin.delete_topics([spec.name for spec in settings.topics.specs()])
    finally:
        await admin.close()
    client: AsyncMongoClient[Document] = AsyncMongoClient(settings.mongodb_url.get_secret_value())
    try:
        for service in SERVICES:
            await client.drop_database(settings.database_name(service))
    finally:
        await client.close()


@asynccontextmanager
async def provisioned(settings: CommonSettings) -> AsyncIterator[CommonSettings]:
    """A namespace with its topics for the length of the block, removed afterwards."""
    await provision_topics(settings)
    try:
        yield settings
    finally:
        await remove_namespace(settings)


async def provision_topics(settings: CommonSettings, wait_seconds: float = 60) -> list[str]:
    """Create every topic of the namespace that does not exist yet; returns those created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    deadline = asyncio.get_running_loop().time() + wait_seconds
    while True:
        try:
            await admin.start()
            break
        except KafkaConnectionError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)
    try:
        existing = set(await admin.list_topics())
        await _grow_partitions(admin, [s for s in settings.topics.specs() if s.name in existing])
        missing = [spec for spec in settings.topics.specs() if spec.name not in existing]
        created = []
        for spec in missing:
            try:
                await admin.create_topics(
                    [
                        NewTopic(
                            spec.name,
                            num_partitions=spec.partitions,
                            replication_factor=settings.topic_replication_factor,
                            topic_configs={
                                "retention.ms": str(spec.retention_ms),
                                "cleanup.policy": "compact" if spec.compacted else "delete",
                                # With three replicas an acknowledged write survives one loss.
                                "min.insync.replicas": str(
                                    min(2, settings.topic_replication_factor)
                                ),
                            },
                        )
                    ]
                )
                created.append(spec.name)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        await admin.close()


async def _grow_partitions(admin: AIOKafkaAdminClient, specs: list[TopicSpec]) -> None:
    """Adds partitions where the layout asks for more than a topic has (never fewer: Kafka
    cannot shrink a topic, and keys would move)."""
    if not specs:
        return
    described = await admin.describe_topics([spec.name for spec in specs])
    current = {topic["topic"]: len(topic["partitions"]) for topic in described}
    grow = {
        spec.name: NewPartitions(spec.partitions)
        for spec in specs
        if current.get(spec.name, spec.partitions) < spec.partitions
    }
    if grow:
        log.info("adding partitions: %s", {name: p.total_count for name, p in grow.items()})
        await admin.create_partitions(grow)


def main(argv: list[str] | None = None) -> None:
    try:
        _main(argv)
    except ValidationError as invalid:
        names = ", ".join(f"PARKDESK_{str(e['loc'][0]).upper()}" for e in invalid.errors())
        sys.exit(f"parkdesk-admin: missing or invalid setting: {names}")
    except KafkaConnectionError as unreachable:
        sys.exit(f"parkdesk-admin: Kafka unreachable: {unreachable}")


def _main(argv: list[str] | None) -> None:
    parser = argparse.ArgumentParser(prog="parkdesk-admin", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("provision-topics", help="create the namespace's topics")
    issuing = commands.add_parser("issue-credential", help="print a new bearer credential")
    issuing.add_argument("--role", required=True, choices=[role.value for role in Role])
    issuing.add_argument("--subject", required=True, help="enterprise id, department code or name")
    issuing.add_argument("--days", type=float, default=30, help="validity in days (default 30)")
    revoke = commands.add_parser("revoke-credential", help="revoke a credential by its id")
    revoke.add_argument("credential_id")
    revoke.add_argument("--reason", default="revoked by an operator")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "provision-topics":
        settings = CommonSettings()
        created = asyncio.run(provision_topics(settings))
        total = len(settings.topics.specs())
        print(f"topics of namespace {settings.namespace!r}: {len(created)} created, {total} in all")
    elif args.command == "issue-credential":
        token, issued = asyncio.run(
            issue_recorded(
                ServiceSettings(), Role(args.role), args.subject, timedelta(days=args.days)
            )
        )
        log.info(
            "credential %s for %s %s, valid until %s",
            issued.credential_id,
            issued.role.value,
            issued.subject,
            f"{issued.expires_at:%Y-%m-%d %H:%M} UTC",
        )
        sys.stdout.write(token + "\n")
    else:
        settings = CommonSettings()
        asyncio.run(
            record_credential(
                settings, CredentialRevoked(credential_id=args.credential_id, reason=args.reason)
            )
        )
        log.info("credential %s revoked", args.credential_id)


async def issue_recorded(
    settings: ServiceSettings, role: Role, subject: str, valid_for: timedelta
) -> tuple[str, CredentialIssued]:
    """A new credential, recorded on the credentials topic before its token is handed out."""
    token, issued = issue(settings.auth_secret.get_secret_value(), role, subject, valid_for)
    await record_credential(settings, issued)
    return token, issued


async def record_credential(settings: CommonSettings, event: CredentialEvent) -> None:
    """Puts an issue or a revocation on the credentials topic, confirmed by the brokers."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        await record(producer, settings.topics.credentials, event)
    finally:
        await producer.stop()


if __name__ == "__main__":
    main()
