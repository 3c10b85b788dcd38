"""Operator commands: `parkdesk-admin provision-topics` and `parkdesk-admin issue-credential`."""

import argparse
import asyncio
import logging
import sys
from datetime import timedelta

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from shared.auth import Role, issue_credential
from shared.settings import CommonSettings, ServiceSettings
from shared.topics import TopicSpec

log = logging.getLogger("parkdesk.admin")


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
    parser = argparse.ArgumentParser(prog="parkdesk-admin", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("provision-topics", help="create the namespace's topics")
    issue = commands.add_parser("issue-credential", help="print a new bearer credential")
    issue.add_argument("--role", required=True, choices=[role.value for role in Role])
    issue.add_argument("--subject", required=True, help="enterprise id, department code or name")
    issue.add_argument("--days", type=float, default=30, help="validity in days (default 30)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "provision-topics":
        settings = CommonSettings()
        created = asyncio.run(provision_topics(settings))
        total = len(settings.topics.specs())
        print(f"topics of namespace {settings.namespace!r}: {len(created)} created, {total} in all")
    else:
        secret = ServiceSettings().auth_secret
        token = issue_credential(
            secret.get_secret_value(),
            Role(args.role),
            args.subject,
            timedelta(days=args.days),
        )
        sys.stdout.write(token + "\n")


if __name__ == "__main__":
    main()
