"""Tickets and events for unit tests."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import get_args

from services.intake.domain import new_ticket_id
from shared.events import (
    Actor,
    ActorRole,
    AnyEvent,
    Category,
    Channel,
    Contact,
    Enterprise,
    Event,
    Language,
    Origin,
    Priority,
    SlaBreached,
    Ticket,
    TicketContent,
    TicketRouted,
    TicketSubmitted,
)


def sample_content(
    subject: str = "孩子学籍",
    description: str = "北京学籍如何保留？",
    language: Language = Language.ZH,
) -> TicketContent:
    return TicketContent(
        enterprise=Enterprise(
            id="E-1", name="Acme", origin=Origin.BEIJING, zhongguancun_certified=True
        ),
        contact=Contact(
            name="李娜", phone="+86 138 0000 0000", email="li.na@example.com", language=language
        ),
        category=Category.DAILY_LIFE,
        subject=subject,
        description=description,
    )


def sample_ticket(submitted_at: datetime | None = None, **content: object) -> Ticket:
    submitted_at = submitted_at or datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
    return Ticket(
        ticket_id="T-01M8M3WQ6WQ4ZQ3FGCHBD04QCM",
        submitted_at=submitted_at,
        resolution_due_at=submitted_at + timedelta(hours=24),
        **sample_content(**content).model_dump(),  # type: ignore[arg-type]
    )


def sample_submitted(at: datetime, correlation_id: str = "c") -> TicketSubmitted:
    """The submission of a ticket of its own: a fresh ticket id."""
    ticket_id = new_ticket_id(at)
    return TicketSubmitted(
        ticket_id=ticket_id,
        ticket=sample_ticket(at).model_copy(update={"ticket_id": ticket_id}),
        correlation_id=correlation_id,
        occurred_at=at,
    )


def sample_breached(
    resolution_due_at: datetime,
    overdue_seconds: float,
    ticket: str = "T-01M8M3WQ6WQ4ZQ3FGCHBD04QCM",
) -> SlaBreached:
    return SlaBreached(
        ticket_id=ticket,
        correlation_id="c",
        department="tj-tax",
        escalated_to="park-supervision",
        resolution_due_at=resolution_due_at,
        overdue_seconds=overdue_seconds,
        occurred_at=resolution_due_at + timedelta(seconds=overdue_seconds),
    )


def sample_routed(submitted_at: datetime, ticket: str) -> TicketRouted:
    return TicketRouted(
        category=Category.DAILY_LIFE,
        priority=Priority.NORMAL,
        ticket_id=ticket,
        correlation_id="c",
        department="tj-tax",
        reason="r",
        occurred_at=submitted_at + timedelta(minutes=3),
        submitted_at=submitted_at,
        resolution_due_at=submitted_at + timedelta(hours=24),
    )


def sample_events() -> list[Event]:
    """One valid event of every type, its required fields filled by their names."""
    at = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
    by_name: dict[str, object] = {
        "ticket": sample_ticket(at),
        "actor": Actor(role=ActorRole.DEPARTMENT, id="tj-tax"),
        "category": Category.DAILY_LIFE,
        "priority": Priority.NORMAL,
        "rating": 5,
        "threshold": 0.5,
        "in_time": True,
        "remaining_seconds": 60.0,
        "overdue_seconds": 60.0,
        "channel": Channel.WEBHOOK,
        "notification_id": "n-1",
        "recipient": "tj-tax",
        "trigger_type": "sla.breached",
    }
    events = []
    for model in get_args(AnyEvent):
        fields: dict[str, object] = {
            "ticket_id": sample_ticket(at).ticket_id,
            "correlation_id": "c",
        }
        for name, field in model.model_fields.items():
            if not field.is_required() or name in fields:
                continue
            if name in by_name:
                fields[name] = by_name[name]
            elif name.endswith("department") or name == "escalated_to":
                fields[name] = "tj-tax"
            elif name.endswith("_at"):
                fields[name] = at
            elif name.endswith("_event_id"):
                fields[name] = uuid.UUID(int=1)
            else:
                fields[name] = "a note"
        events.append(model(**fields))
    return events
