"""intake's request and event handlers."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Request, status

from services.intake.domain import (
    IdempotencyKey,
    TicketAccepted,
    TicketView,
    accept,
    fingerprint,
    new_ticket_id,
    submission_time,
    view,
)
from services.intake.relay import OutboxRelay
from services.intake.store import IntakeStore
from shared.auth import Authenticator, Principal, Role
from shared.events import TicketContent, TicketId, TicketRouted
from shared.kafka import Source


def routes(
    store: IntakeStore, relay: OutboxRelay, auth: Authenticator, resolution_target: timedelta
) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["tickets"])
    Submitter = Annotated[Principal, Depends(auth.require(Role.ENTERPRISE, Role.FRONTEND))]
    Reader = Annotated[
        Principal, Depends(auth.require(Role.ENTERPRISE, Role.FRONTEND, Role.SUPERVISOR))
    ]

    @router.post(
        "/tickets",
        status_code=status.HTTP_202_ACCEPTED,
        summary="Open a ticket",
        responses={409: {"description": "Idempotency-Key used before with a different body"}},
    )
    async def post_ticket(
        body: TicketContent,
        request: Request,
        idempotency_key: Annotated[IdempotencyKey, Header()],
        principal: Submitter,
    ) -> TicketAccepted:
        if not principal.may_act_for_enterprise(body.enterprise.id):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, "may not open tickets for this enterprise"
            )
        now = submission_time(datetime.now(UTC))
        body_fingerprint = fingerprint(body)
        claimed = await store.claim_idempotency_key(
            f"{principal.role.value}:{principal.subject}:{idempotency_key}",
            body_fingerprint,
            new_ticket_id(now),
            now,
        )
        if claimed["fingerprint"] != body_fingerprint:
            raise HTTPException(
                status.HTTP_409_CONFLICT, "Idempotency-Key was used before with a different body"
            )
        submitted = accept(
            body,
            ticket_id=claimed["ticket_id"],
            submitted_at=claimed["submitted_at"],
            resolution_target=resolution_target,
            correlation_id=request.headers.get("x-correlation-id") or uuid.uuid4().hex,
        )
        # For a retry this finds the event stored already, or completes a first request that
        # died between claiming its key and storing its event.
        await store.record(submitted, recorded_at=now)
        relay.wake()
        return TicketAccepted(
            ticket_id=submitted.ticket_id,
            status="submitted",
            submitted_at=submitted.ticket.submitted_at,
            resolution_due_at=submitted.ticket.resolution_due_at,
        )

    @router.get("/tickets/{ticket_id}", summary="A ticket with its status and history")
    async def get_ticket(ticket_id: Annotated[TicketId, Path()], principal: Reader) -> TicketView:
        found = view(await store.ticket_events(ticket_id))
        # 404 also for a ticket the caller may not see: it must not learn that it exists.
        if found is None or not principal.may_read_enterprise(found.ticket.enterprise.id):
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such ticket")
        return found

    return router


class EventHandlers:
    def __init__(self, store: IntakeStore) -> None:
        self._store = store

    async def on_ticket_routed(self, event: TicketRouted, _: Source) -> None:
        await self._store.learn(event)
