"""Accepting a ticket: ids, due times, idempotency fingerprints, and the ticket's view.

Pure: no Kafka, no MongoDB, no clock of its own (callers pass `now`).
"""

import hashlib
import json
import secrets
from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, StringConstraints

from shared.events import Event, Ticket, TicketContent, TicketRouted, TicketSubmitted

IdempotencyKey = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,128}$", strip_whitespace=True)
]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class TicketAccepted(BaseModel):
    ticket_id: str
    status: str
    submitted_at: datetime
    resolution_due_at: datetime


class HistoryEntry(BaseModel):
    event_id: str
    type: str
    occurred_at: datetime
    details: dict[str, Any]


class TicketView(BaseModel):
    ticket: Ticket
    status: str
    department: str | None
    history: list[HistoryEntry]


def new_ticket_id(now: datetime) -> str:
    """`T-` and a ULID: 48 bits of milliseconds then 80 random bits, in Crockford base32."""
    value = (int(now.timestamp() * 1000) << 80) | secrets.randbits(80)
    chars = []
    for _ in range(26):
        value, digit = divmod(value, 32)
        chars.append(_CROCKFORD[digit])
    return "T-" + "".join(reversed(chars))


def submission_time(now: datetime) -> datetime:
    """`now` at the store's precision (BSON dates hold milliseconds), so that a retried request
    answers with exactly the times of the first."""
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def fingerprint(request: TicketContent) -> str:
    """Same body, same fingerprint: tells a retry from a different request under one key."""
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def accept(
    request: TicketContent,
    ticket_id: str,
    submitted_at: datetime,
    resolution_target: timedelta,
    correlation_id: str,
) -> TicketSubmitted:
    ticket = Ticket(
        ticket_id=ticket_id,
        submitted_at=submitted_at,
        resolution_due_at=submitted_at + resolution_target,
        **request.model_dump(),
    )
    return TicketSubmitted(
        event_id=Event.derived_id(ticket_id, "submitted"),
        occurred_at=submitted_at,
        ticket_id=ticket_id,
        correlation_id=correlation_id,
        ticket=ticket,
    )


def view(events: list[Event]) -> TicketView | None:
    """The ticket as its events tell it, oldest first; None before it was submitted."""
    ordered = sorted(
        {event.event_id: event for event in events}.values(), key=lambda event: event.occurred_at
    )
    submitted = next((e for e in ordered if isinstance(e, TicketSubmitted)), None)
    if submitted is None:
        return None
    status, department = "submitted", None
    history = []
    for event in ordered:
        if isinstance(event, TicketRouted):
            status, department = "routed", event.department
        history.append(
            HistoryEntry(
                event_id=str(event.event_id),
                type=event.type,
                occurred_at=event.occurred_at,
                details=_details(event),
            )
        )
    return TicketView(
        ticket=submitted.ticket, status=status, department=department, history=history
    )


def _details(event: Event) -> dict[str, Any]:
    if isinstance(event, TicketRouted):
        return {"department": event.department, "reason": event.reason}
    return {}
