"""Who hears what about a ticket, in which language and on which channel.

Pure: the caller passes what notify knows of the ticket's enterprise contact.
"""

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from shared.departments import SUPERVISION, department
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

PARK_TIME = ZoneInfo("Asia/Shanghai")


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


def messages_for(
    event: Event, contact: EnterpriseContact | None, outbound: Collection[Channel]
) -> list[Message]:
    """The messages an event causes, each in the recipient's inbox. Of the outbound channels
    configured, departments get a webhook copy and enterprises an e-mail and a text message
    (to the ticket's contact); enterprises are reached in their own language."""
    drafts: list[tuple[str, Language, str, str]] = []
    if isinstance(event, TicketSubmitted):
        contact = contact_of(event)
        due = _park_time(event.ticket.resolution_due_at)
        drafts.append(
            _to_enterprise(
                contact,
                (f"工单 {event.ticket_id} 已受理", f"我们承诺在 {due}（北京时间）前办结。"),
                (
                    f"Ticket {event.ticket_id} received",
                    f"We promise to resolve it by {due} (Beijing time).",
                ),
            )
        )
    elif isinstance(event, TicketRouted):
        owner = department(event.department)
        if contact is not None:
            drafts.append(
                _to_enterprise(
                    contact,
                    (f"工单 {event.ticket_id} 已转交", f"已转交{owner.name_zh}办理。"),
                    (f"Ticket {event.ticket_id} assigned", f"{owner.name_en} is handling it."),
                )
            )
        drafts.append(
            (
                department_recipient(event.department),
                Language.ZH,
                f"新工单 {event.ticket_id}",
                f"请于 {_park_time(event.resolution_due_at)} 前办结。",
            )
        )
    elif isinstance(event, TicketInformationRequested):
        if contact is not None:
            drafts.append(
                _to_enterprise(
                    contact,
                    (f"工单 {event.ticket_id} 需要您补充信息", event.question),
                    (f"Ticket {event.ticket_id}: information needed", event.question),
                )
            )
    elif isinstance(event, TicketResolved):
        if contact is not None:
            drafts.append(
                _to_enterprise(
                    contact,
                    (
                        f"工单 {event.ticket_id} 已办结，请评价",
                        f"{event.resolution}\n请确认并为本次服务评分（1–5 分）。",
                    ),
                    (
                        f"Ticket {event.ticket_id} resolved: please rate it",
                        f"{event.resolution}\nPlease confirm and rate our service from 1 to 5.",
                    ),
                )
            )
    elif isinstance(event, TicketTransferred):
        drafts.append(
            (
                department_recipient(event.to_department),
                Language.ZH,
                f"转入工单 {event.ticket_id}",
                f"由{department(event.from_department).name_zh}转入：{event.reason}",
            )
        )
    elif isinstance(event, TicketReopened):
        drafts.append(
            (
                department_recipient(event.department),
                Language.ZH,
                f"工单 {event.ticket_id} 被重新打开",
                event.reason,
            )
        )
    elif isinstance(event, SlaFirstResponseMissed):
        drafts.append(
            (
                department_recipient(event.department),
                Language.ZH,
                f"工单 {event.ticket_id} 未在时限内首次响应",
                f"首次响应截止 {_park_time(event.first_response_due_at)}，请尽快受理。",
            )
        )
    elif isinstance(event, SlaWarning):
        percent = round(event.threshold * 100)
        hours = event.remaining_seconds / 3600
        drafts.append(
            (
                department_recipient(event.department),
                Language.ZH,
                f"工单 {event.ticket_id} 已用去 {percent}% 时限",
                f"剩余 {hours:.1f} 小时，截止 {_park_time(event.resolution_due_at)}。",
            )
        )
    elif isinstance(event, SlaBreached):
        overdue = f"截止 {_park_time(event.resolution_due_at)}，已超时。"
        drafts.append(
            (
                department_recipient(event.department),
                Language.ZH,
                f"工单 {event.ticket_id} 已超时",
                overdue,
            )
        )
        drafts.append(
            (
                department_recipient(SUPERVISION),
                Language.ZH,
                f"超时督办：工单 {event.ticket_id}（{event.department}）",
                overdue,
            )
        )
        if contact is not None:
            drafts.append(
                _to_enterprise(
                    contact,
                    (
                        f"工单 {event.ticket_id} 未能按时办结，深表歉意",
                        "督查办已介入督办，我们将尽快办结并告知您结果。",
                    ),
                    (
                        f"We are sorry: ticket {event.ticket_id} is overdue",
                        "The park's supervision office is now on it; we will tell you "
                        "as soon as it is resolved.",
                    ),
                )
            )
    messages = []
    for recipient, language, subject, body in drafts:
        copies = [Channel.INBOX]
        if recipient.startswith("department:"):
            copies.append(Channel.WEBHOOK)
        elif contact is not None:
            copies += [Channel.EMAIL] if contact.email else []
            copies += [Channel.SMS] if contact.phone else []
        for channel in copies:
            if channel is Channel.INBOX or channel in outbound:
                messages.append(Message(recipient, channel, language, subject, body))
    return messages


def contact_of(event: TicketSubmitted) -> EnterpriseContact:
    ticket = event.ticket
    contact = ticket.contact
    return EnterpriseContact(ticket.enterprise.id, contact.language, contact.email, contact.phone)


def needs_contact(event: Event) -> bool:
    return isinstance(
        event, TicketRouted | SlaBreached | TicketInformationRequested | TicketResolved
    )


def _to_enterprise(
    contact: EnterpriseContact, zh: tuple[str, str], en: tuple[str, str]
) -> tuple[str, Language, str, str]:
    subject, body = zh if contact.language is Language.ZH else en
    return enterprise_recipient(contact.enterprise_id), contact.language, subject, body


def _park_time(moment: datetime) -> str:
    return moment.astimezone(PARK_TIME).strftime("%Y-%m-%d %H:%M")
