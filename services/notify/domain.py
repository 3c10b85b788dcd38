"""Who hears what about a ticket, in which language and on which channel.

Pure: the caller passes what notify knows of the ticket's enterprise contact.
"""

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from services.notify.subscriptions import Subscription
from services.notify.templates import Templates
from shared.departments import SUPERVISION
from shared.events import (
    Channel,
    Event,
    Language,
    SlaBreached,
    SlaFirstResponseMissed,
    SlaWarning,
    TicketInformationRequested,
    TicketReopened,
    TicketResolved,
    TicketRouted,
    TicketSubmitted,
    TicketTransferred,
)

DEPARTMENT_LANGUAGE = Language.ZH
"""Departments are the park's and the cities' offices: they read Chinese."""


@dataclass(frozen=True, slots=True)
class EnterpriseContact:
    enterprise_id: str
    language: Language
    email: str | None = None
    phone: str | None = None
    """Personal data, both: kept in notify's store for delivery, never logged."""


@dataclass(frozen=True, slots=True)
class Message:
    recipient: str
    """`enterprise:<id>` or `department:<code>`."""
    channel: Channel
    language: Language
    subject: str
    body: str

    def notification_id(self, event: Event) -> str:
        """One notification per (event, recipient, channel): the store's unique key."""
        return f"{event.event_id}:{self.recipient}:{self.channel.value}"


def enterprise_recipient(enterprise_id: str) -> str:
    return f"enterprise:{enterprise_id}"


def department_recipient(code: str) -> str:
    return f"department:{code}"


Draft = tuple[str, Language, str, dict[str, Any]]
"""recipient, language, message kind, the values its template gets"""


def messages_for(
    event: Event,
    contact: EnterpriseContact | None,
    outbound: Collection[Channel],
    templates: Templates,
    muted: Collection[str] = frozenset(),
    subscriptions: Mapping[str, Subscription] = MappingProxyType({}),
) -> list[Message]:
    """The messages an event causes, each in the recipient's inbox. Of the outbound channels
    configured, departments get a webhook copy and enterprises an e-mail and a text message
    (to the ticket's contact); each is worded in the recipient's language. A recipient's
    subscription chooses its channels and may bring its own webhook. Kinds of message in
    `muted` are not sent at all."""
    contact = _contact_for(event, contact)
    messages = []
    for recipient, language, kind, values in _drafts(event, contact):
        if kind in muted:
            continue
        subject, body = templates.render(kind, language, {"ticket_id": event.ticket_id, **values})
        copies = [Channel.INBOX]
        if recipient.startswith("department:"):
            copies.append(Channel.WEBHOOK)
        elif contact is not None:
            copies += [Channel.EMAIL] if contact.email else []
            copies += [Channel.SMS] if contact.phone else []
        for channel in copies:
            if sends_on(channel, outbound, subscriptions.get(recipient)):
                messages.append(Message(recipient, channel, language, subject, body))
    return messages


def audience(event: Event, contact: EnterpriseContact | None) -> set[str]:
    """Who hears of the event: the recipients whose subscriptions count for it."""
    return {recipient for recipient, *_ in _drafts(event, _contact_for(event, contact))}


def sends_on(
    channel: Channel, outbound: Collection[Channel], subscription: Subscription | None
) -> bool:
    """Whether a copy goes out on the channel: one that can carry it (configured for everyone,
    or the recipient's own webhook) and that the recipient wants (its subscription; without
    one, every channel). The inbox always."""
    if channel is Channel.INBOX:
        return True
    own_webhook = subscription is not None and subscription.webhook_url is not None
    available = channel in outbound or (channel is Channel.WEBHOOK and own_webhook)
    return available and (subscription is None or subscription.wants(channel))


def _contact_for(event: Event, contact: EnterpriseContact | None) -> EnterpriseContact | None:
    """A submission carries its own contact; other events come with the one notify learned."""
    return contact_of(event) if isinstance(event, TicketSubmitted) else contact


def _drafts(event: Event, contact: EnterpriseContact | None) -> list[Draft]:
    """Who hears of the event, and what kind of message each gets."""
    to_enterprise: list[Draft] = []
    to_departments: list[Draft] = []

    def tell_enterprise(kind: str, **values: Any) -> None:
        if contact is not None:
            to_enterprise.append(
                (enterprise_recipient(contact.enterprise_id), contact.language, kind, values)
            )

    def tell_department(code: str, kind: str, **values: Any) -> None:
        to_departments.append((department_recipient(code), DEPARTMENT_LANGUAGE, kind, values))

    match event:
        case TicketSubmitted():
            tell_enterprise("receipt", due=event.ticket.resolution_due_at)
        case TicketRouted():
            tell_enterprise("routed", department=event.department)
            tell_department(event.department, "new_ticket", due=event.resolution_due_at)
        case TicketInformationRequested():
            tell_enterprise("information_requested", question=event.question)
        case TicketResolved():
            tell_enterprise("resolved", resolution=event.resolution)
        case TicketTransferred():
            tell_department(
                event.to_department,
                "transferred_in",
                from_department=event.from_department,
                reason=event.reason,
            )
        case TicketReopened():
            tell_department(event.department, "reopened", reason=event.reason)
        case SlaFirstResponseMissed():
            tell_department(
                event.department, "first_response_missed", due=event.first_response_due_at
            )
        case SlaWarning():
            tell_department(
                event.department,
                "warning",
                percent=round(event.threshold * 100),
                hours_left=event.remaining_seconds / 3600,
                due=event.resolution_due_at,
            )
        case SlaBreached():
            due = event.resolution_due_at
            tell_department(event.department, "breached", due=due)
            tell_department(SUPERVISION, "escalated", department=event.department, due=due)
            tell_enterprise("apology")
    return to_enterprise + to_departments


TEMPLATE_SAMPLES: dict[str, dict[str, Any]] = {
    "receipt": {"due": datetime(2026, 11, 30, 8, tzinfo=UTC)},
    "routed": {"department": "tj-tax"},
    "information_requested": {"question": "?"},
    "resolved": {"resolution": "."},
    "apology": {},
    "new_ticket": {"due": datetime(2026, 11, 30, 8, tzinfo=UTC)},
    "transferred_in": {"from_department": "tj-tax", "reason": "."},
    "reopened": {"reason": "."},
    "first_response_missed": {"due": datetime(2026, 11, 30, 8, tzinfo=UTC)},
    "warning": {"percent": 50, "hours_left": 12.0, "due": datetime(2026, 11, 30, 8, tzinfo=UTC)},
    "breached": {"due": datetime(2026, 11, 30, 8, tzinfo=UTC)},
    "escalated": {"department": "tj-tax", "due": datetime(2026, 11, 30, 8, tzinfo=UTC)},
}
"""Every kind of message the domain sends, with the values it passes (and the ticket id): what
the templates are checked against at start-up."""


def check_templates(templates: Templates) -> None:
    templates.check({kind: {"ticket_id": "T-0", **v} for kind, v in TEMPLATE_SAMPLES.items()})


def needs_contact(event: Event) -> bool:
    return isinstance(
        event, TicketRouted | SlaBreached | TicketInformationRequested | TicketResolved
    )


def contact_of(event: TicketSubmitted) -> EnterpriseContact:
    ticket = event.ticket
    contact = ticket.contact
    return EnterpriseContact(ticket.enterprise.id, contact.language, contact.email, contact.phone)
