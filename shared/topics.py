"""Topic names and their layout: the public interface that departments and SREs read.

Partitions are set on purpose: a topic's partition count bounds how many instances of a consumer
group share its load, and every ticket event is keyed by ticket id so one ticket stays on one
partition, in order.
"""

from dataclasses import dataclass

from shared.departments import DEPARTMENTS

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    retention_ms: int
    compacted: bool = False
    """Keep the last record of each key for ever, instead of all records for a while."""


@dataclass(frozen=True, slots=True)
class Topics:
    """Every topic name of one namespace (`parkdesk` in production; a fresh one per test run)."""

    namespace: str

    @property
    def tickets(self) -> str:
        return f"{self.namespace}.tickets"

    @property
    def sla(self) -> str:
        return f"{self.namespace}.sla"

    @property
    def notifications(self) -> str:
        return f"{self.namespace}.notifications"

    @property
    def credentials(self) -> str:
        return f"{self.namespace}.credentials"

    @property
    def dead_letters(self) -> str:
        return f"{self.namespace}.deadletter"

    def department(self, code: str) -> str:
        return f"{self.namespace}.dept.{code}"

    def spec(self, name: str) -> TopicSpec:
        return next(spec for spec in self.specs() if spec.name == name)

    def specs(self) -> list[TopicSpec]:
        return [
            # Six partitions: up to six instances of each consumer group of ticket events.
            TopicSpec(self.tickets, partitions=6, retention_ms=30 * DAY_MS),
            # As many as the tickets topic: the same key lands on the same partition number, and
            # the range assignor gives both to the same consumer, so one instance owns all of a
            # ticket's state.
            TopicSpec(self.sla, partitions=6, retention_ms=30 * DAY_MS),
            TopicSpec(self.notifications, partitions=3, retention_ms=7 * DAY_MS),
            # Every credential's last word (issued, then perhaps revoked), kept for ever.
            TopicSpec(self.credentials, partitions=1, retention_ms=-1, compacted=True),
            # Dead letters wait for a person; keep them long and in one ordered log.
            TopicSpec(self.dead_letters, partitions=1, retention_ms=90 * DAY_MS),
            *(
                TopicSpec(self.department(code), partitions=3, retention_ms=30 * DAY_MS)
                for code in DEPARTMENTS
            ),
        ]
