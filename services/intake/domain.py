"""Accepting a ticket: ids, due times, idempotency fingerprints, and the ticket's view.

Pure: no Kafka, no MongoDB, no clock of its own (callers pass `now`).
"""

import hashlib
import json
import secrets
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, StringConstraints

from shared.departments import DEPARTMENTS, SUPERVISION
from shared.events import (
    ActorRole,
    Event,
    SlaBreached,
    SlaMet,
    SlaPaused,
    SlaResumed,
    SlaStarted,
    SlaWarning,
    Ticket,
    TicketAcknowledged,
    TicketAction,
    TicketClosed,
    TicketCommented,
    TicketContent,
    TicketInformationProvided,
    TicketInformationRequested,
    TicketReopened,
    TicketResolved,
    TicketRouted,
    TicketSubmitted,
    TicketTransferred,
    TicketTransferRefused,
)

IdempotencyKey = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,128}$", strip_whitespace=True)
]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class TicketAccepted(BaseModel):
    ticket_id: str
    status: str
    submitted_at: datetime
    resolution_due_at: datetime


def new_ticket_id(now: datetime) -> str:
    """`T-` and a ULID: 48 bits of milliseconds then 80 random bits, in Crockford base32."""
    value = (int(now.timestamp() * 1000) << 80) | secrets.randbits(80)
    chars = []
    for _ in range(26):
        value, digit = divmod(value, 32)
        chars.append(_CROCKFORD[digit])
    return "T-" + "".join(reversed(chars))


def at_store_precision(moment: datetime) -> datetime:
    """A time as the store gives it back (BSON dates hold milliseconds): a retried request
    answers with exactly the times of the first, and a view compares equal to its stored copy."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


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


# --- the lifecycle -----------------------------------------------------------------------

REOPEN_WINDOW = timedelta(days=7)
AT_RISK_THRESHOLD = 0.75
"""A ticket past this share of its target is at risk."""


class Status(StrEnum):
    SUBMITTED = "submitted"
    ROUTED = "routed"
    ACKNOWLEDGED = "acknowledged"
    IN_PROGRESS = "in_progress"
    AWAITING_ENTERPRISE = "awaiting_enterprise"
    RESOLVED = "resolved"
    CLOSED = "closed"


class Action(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    COMMENT = "comment"
    REQUEST_INFORMATION = "request-information"
    TRANSFER = "transfer"
    RESOLVE = "resolve"
    PROVIDE_INFORMATION = "provide-information"
    CLOSE = "close"
    REOPEN = "reopen"


DEPARTMENT_ACTIONS = frozenset(
    {
        Action.ACKNOWLEDGE,
        Action.COMMENT,
        Action.REQUEST_INFORMATION,
        Action.TRANSFER,
        Action.RESOLVE,
    }
)
ENTERPRISE_ACTIONS = frozenset(
    {Action.COMMENT, Action.PROVIDE_INFORMATION, Action.CLOSE, Action.REOPEN}
)

ALLOWED: dict[Status, frozenset[Action]] = {
    Status.SUBMITTED: frozenset({Action.COMMENT}),
    Status.ROUTED: frozenset({Action.ACKNOWLEDGE, Action.COMMENT, Action.TRANSFER}),
    Status.ACKNOWLEDGED: frozenset(
        {Action.COMMENT, Action.REQUEST_INFORMATION, Action.TRANSFER, Action.RESOLVE}
    ),
    Status.IN_PROGRESS: frozenset(
        {Action.COMMENT, Action.REQUEST_INFORMATION, Action.TRANSFER, Action.RESOLVE}
    ),
    Status.AWAITING_ENTERPRISE: frozenset(
        {Action.COMMENT, Action.PROVIDE_INFORMATION, Action.RESOLVE}
    ),
    Status.RESOLVED: frozenset({Action.COMMENT, Action.CLOSE, Action.REOPEN}),
    Status.CLOSED: frozenset(),
}


class IllegalAction(ValueError):
    """The action does not fit the ticket's state; the message says what would."""


@dataclass(frozen=True)
class TicketState:
    ticket: Ticket
    status: Status
    department: str | None
    sequence: int
    """How many of intake's own events the ticket has: the next one takes sequence + 1."""
    resolved_at: datetime | None = None
    rating: int | None = None
    status_before_transfer: Status | None = None
    due_at: datetime | None = None
    """The resolution due time, as sla last told it (it moves with pauses and reopens)."""
    paused: bool = False
    at_risk: bool = False
    breached: bool = False
    history: tuple[Event, ...] = field(default=())

    @property
    def own_events(self) -> list[Event]:
        """intake's own events of the ticket, in sequence order."""
        return [e for e in self.history if isinstance(e, TicketSubmitted | TicketAction)]

    @property
    def resolution_due_at(self) -> datetime:
        return self.due_at or self.ticket.resolution_due_at

    def allowed(self, side: frozenset[Action]) -> list[str]:
        return sorted(action.value for action in ALLOWED[self.status] & side)

    def check(
        self,
        action: Action,
        side: frozenset[Action],
        now: datetime,
        reopen_window: timedelta = REOPEN_WINDOW,
    ) -> None:
        """Raises IllegalAction naming the state and what is allowed in it."""
        if action not in ALLOWED[self.status] & side:
            allowed = ", ".join(self.allowed(side)) or "nothing more"
            raise IllegalAction(
                f"cannot {action.value} a ticket that is {self.status.value}; "
                f"allowed now: {allowed}"
            )
        resolved_at = self.resolved_at
        if action is Action.REOPEN and resolved_at and now - resolved_at > reopen_window:
            raise IllegalAction(
                f"cannot reopen: the ticket was resolved at {resolved_at:%Y-%m-%d %H:%M} UTC, "
                f"more than {_duration(reopen_window)} ago; open a new ticket instead"
            )

    def check_transfer(self, to_department: str) -> None:
        if to_department == SUPERVISION:
            raise IllegalAction(f"{SUPERVISION} receives escalations, never tickets")
        if to_department not in DEPARTMENTS:
            raise IllegalAction(f"unknown department {to_department!r}")
        if to_department == self.department:
            raise IllegalAction(f"the ticket is with {to_department} already")


def fold(events: list[Event]) -> TicketState | None:
    """The ticket as its events tell it, in the order they happened; None before submission."""
    ordered = sorted(
        {event.event_id: event for event in events}.values(), key=lambda e: e.occurred_at
    )
    state: TicketState | None = None
    own = 0  # intake's own events: the submission and every action
    for event in ordered:
        if isinstance(event, TicketSubmitted):
            own += 1
            state = TicketState(event.ticket, Status.SUBMITTED, None, 0)
        if state is None:
            continue
        elif isinstance(event, TicketAction):
            own += 1
        state = replace(apply(state, event), sequence=own, history=(*state.history, event))
    return state


def apply(state: TicketState, event: Event) -> TicketState:
    match event:
        case TicketRouted():
            return replace(state, status=Status.ROUTED, department=event.department)
        case TicketAcknowledged():
            return replace(state, status=Status.ACKNOWLEDGED)
        case TicketInformationRequested():
            return replace(state, status=Status.AWAITING_ENTERPRISE)
        case TicketInformationProvided() | TicketReopened():
            return replace(state, status=Status.IN_PROGRESS, resolved_at=None)
        case TicketCommented() if (
            state.status is Status.ACKNOWLEDGED and event.actor.role is ActorRole.DEPARTMENT
        ):
            return replace(state, status=Status.IN_PROGRESS)
        case TicketTransferred():
            return replace(
                state,
                status=Status.ROUTED,
                department=event.to_department,
                status_before_transfer=state.status,
            )
        case TicketTransferRefused():
            return replace(
                state,
                department=event.department,
                status=state.status_before_transfer or state.status,
            )
        case TicketResolved():
            return replace(state, status=Status.RESOLVED, resolved_at=event.occurred_at)
        case TicketClosed():
            return replace(state, status=Status.CLOSED, rating=event.rating)
        case SlaStarted():
            return replace(state, due_at=event.resolution_due_at, paused=False)
        case SlaResumed():
            return replace(state, due_at=event.resolution_due_at, paused=False)
        case SlaPaused():
            return replace(state, paused=True)
        case SlaWarning() if event.threshold >= AT_RISK_THRESHOLD:
            return replace(state, at_risk=True)
        case SlaBreached():
            return replace(state, breached=True)
        case SlaMet():
            return replace(state, at_risk=False)
    return state


def _duration(span: timedelta) -> str:
    if span.days and not span.seconds:
        return f"{span.days} days"
    return f"{span.total_seconds():g} seconds"


def remaining_seconds(due_at: datetime, now: datetime) -> float:
    return (due_at - now).total_seconds()
