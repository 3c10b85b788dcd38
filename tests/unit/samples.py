"""Tickets and events for unit tests."""

from datetime import UTC, datetime, timedelta

from shared.events import (
    Category,
    Contact,
    Enterprise,
    Language,
    Origin,
    Priority,
    Ticket,
    TicketContent,
    TicketRouted,
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
