"""sla's event and request handlers, and what a milestone does when it fires."""

from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from aiokafka import TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from fastapi import APIRouter, Depends, HTTPException, Path, status
from faststream.kafka import KafkaBroker
from pydantic import BaseModel

from services.sla.domain import (
    Clock,
    Milestone,
    SlaPolicy,
    milestone_event,
    start_clock,
    started_event,
)
from services.sla.store import SlaStore
from services.sla.timers import ClockScheduler
from shared.auth import Authenticator, Principal, Role
from shared.events import TicketId, TicketRouted
from shared.kafka import Source, publish
from shared.topics import Topics


class EventHandlers:
    def __init__(
        self,
        store: SlaStore,
        broker: KafkaBroker,
        topics: Topics,
        policy: SlaPolicy,
        now: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._broker = broker
        self._topics = topics
        self._policy = policy
        self._now = now
        self.scheduler = ClockScheduler(self.on_milestone_due, now)

    async def on_ticket_routed(self, event: TicketRouted, source: Source) -> None:
        clock = await self._store.start_once(start_clock(event, self._policy, source.partition))
        await publish(self._broker, self._topics.sla, started_event(clock))
        self.scheduler.add(clock)

    async def on_milestone_due(self, clock: Clock, milestone: Milestone) -> None:
        # Published before it is marked fired: a crash in between fires it again, under the
        # same event id, rather than never.
        await publish(
            self._broker, self._topics.sla, milestone_event(clock, milestone, self._now())
        )
        await self._store.mark_fired(clock.with_fired(milestone.name))


class ClockOwnership(ConsumerRebalanceListener):  # type: ignore[misc]
    """Holds in memory exactly the clocks of the ticket partitions this instance is assigned."""

    def __init__(self, store: SlaStore, scheduler: ClockScheduler, tickets_topic: str) -> None:
        self._store = store
        self._scheduler = scheduler
        self._topic = tickets_topic

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._scheduler.drop_partitions(tp.partition for tp in revoked if tp.topic == self._topic)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        partitions = [tp.partition for tp in assigned if tp.topic == self._topic]
        for clock in await self._store.pending_clocks(partitions):
            self._scheduler.add(clock)


class ClockView(BaseModel):
    ticket_id: str
    department: str
    started_at: datetime
    resolution_due_at: datetime
    first_response_due_at: datetime
    fired: list[str]


def routes(store: SlaStore, auth: Authenticator) -> APIRouter:
    router = APIRouter(prefix="/v1/clocks", tags=["sla"])
    Reader = Annotated[Principal, Depends(auth.require(Role.DEPARTMENT, Role.SUPERVISOR))]

    @router.get("/{ticket_id}", summary="A ticket's SLA clock")
    async def get_clock(ticket_id: Annotated[TicketId, Path()], principal: Reader) -> ClockView:
        clock = await store.clock(ticket_id)
        visible = clock is not None and (
            principal.role is Role.SUPERVISOR or principal.subject == clock.department
        )
        if clock is None or not visible:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such clock")
        return ClockView(
            ticket_id=clock.ticket_id,
            department=clock.department,
            started_at=clock.started_at,
            resolution_due_at=clock.resolution_due_at,
            first_response_due_at=clock.first_response_due_at,
            fired=sorted(clock.fired),
        )

    return router
