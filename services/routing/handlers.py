"""routing's event and request handlers."""

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from faststream.kafka import KafkaBroker
from pydantic import BaseModel

from services.routing.domain import decide
from services.routing.store import RoutingStore
from shared.auth import Authenticator, Principal, Role
from shared.events import Event, TicketAssigned, TicketContent, TicketRouted, TicketSubmitted
from shared.kafka import Source, publish
from shared.topics import Topics


class EventHandlers:
    def __init__(self, store: RoutingStore, broker: KafkaBroker, topics: Topics) -> None:
        self._store = store
        self._broker = broker
        self._topics = topics

    async def on_ticket_submitted(self, event: TicketSubmitted, _: Source) -> None:
        decision = await self._store.decide_once(
            event.ticket_id, decide(event.ticket), datetime.now(UTC)
        )
        # Same ids on a redelivery, so the republished events are recognisably the same ones.
        routed = TicketRouted(
            event_id=Event.derived_id(event.ticket_id, "routed", decision.department),
            ticket_id=event.ticket_id,
            correlation_id=event.correlation_id,
            department=decision.department,
            reason=decision.reason,
            rule_id=decision.rule_id,
            matched_terms=decision.matched_terms,
            submitted_at=event.ticket.submitted_at,
            resolution_due_at=event.ticket.resolution_due_at,
        )
        assigned = TicketAssigned(
            event_id=Event.derived_id(event.ticket_id, "assigned", decision.department),
            ticket_id=event.ticket_id,
            correlation_id=event.correlation_id,
            department=decision.department,
            reason=decision.reason,
            ticket=event.ticket,
        )
        await publish(self._broker, self._topics.department(decision.department), assigned)
        await publish(self._broker, self._topics.tickets, routed)


class DryRunAnswer(BaseModel):
    department: str
    reason: str
    rule_id: str | None
    matched_terms: tuple[str, ...]


def routes(auth: Authenticator) -> APIRouter:
    router = APIRouter(prefix="/v1/routing", tags=["routing"])
    Asker = Annotated[Principal, Depends(auth.require(Role.FRONTEND, Role.SUPERVISOR, Role.ADMIN))]

    @router.post("/dry-run", summary="Where would this ticket go, and why (creates nothing)")
    async def post_dry_run(body: TicketContent, _: Asker) -> DryRunAnswer:
        decision = decide(body)
        return DryRunAnswer(
            department=decision.department,
            reason=decision.reason,
            rule_id=decision.rule_id,
            matched_terms=decision.matched_terms,
        )

    return router
