import hashlib
import hmac
from collections import Counter
from datetime import UTC, datetime, timedelta

from services.notify.delivery import sign
from services.notify.domain import EnterpriseContact, audience, messages_for
from services.notify.subscriptions import Subscription
from services.notify.templates import Templates
from shared.events import (
    Category,
    Channel,
    Language,
    Priority,
    SlaBreached,
    SlaWarning,
    TicketRouted,
    TicketSubmitted,
)
from tests.unit.samples import sample_breached, sample_ticket

SUBMITTED = datetime(2026, 11, 29, 23, 30, tzinfo=UTC)
ZH = EnterpriseContact("E-1", Language.ZH)
EN = EnterpriseContact("E-1", Language.EN)

TEMPLATES = Templates.load()


def routed() -> TicketRouted:
    return TicketRouted(
        category=Category.DAILY_LIFE,
        priority=Priority.NORMAL,
        ticket_id="T-01M8M3WQ6WQ4ZQ3FGCHBD04QCM",
        correlation_id="c",
        department="tj-tax",
        reason="r",
        submitted_at=SUBMITTED,
        resolution_due_at=SUBMITTED + timedelta(hours=24),
    )


def breached() -> SlaBreached:
    return sample_breached(SUBMITTED + timedelta(hours=24), 3.0)


def test_the_receipt_is_in_the_contacts_language_with_park_time() -> None:
    ticket = sample_ticket(submitted_at=SUBMITTED)
    event = TicketSubmitted(ticket_id=ticket.ticket_id, correlation_id="c", ticket=ticket)

    [receipt] = messages_for(event, None, {Channel.WEBHOOK}, TEMPLATES)

    assert receipt.recipient == "enterprise:E-1"
    assert receipt.channel is Channel.INBOX
    assert "已受理" in receipt.subject
    # 23:30 UTC + 24 h is 07:30 the day after next in Asia/Shanghai.
    assert "2026-12-01 07:30" in receipt.body


def test_routing_tells_the_enterprise_in_english_and_the_department() -> None:
    messages = messages_for(routed(), EN, set(), TEMPLATES)

    assert [(m.recipient, m.channel) for m in messages] == [
        ("enterprise:E-1", Channel.INBOX),
        ("department:tj-tax", Channel.INBOX),
    ]
    assert "Binhai New Area Tax Bureau" in messages[0].body


def test_departments_get_a_webhook_copy_when_webhooks_are_on() -> None:
    messages = messages_for(routed(), ZH, {Channel.WEBHOOK}, TEMPLATES)

    assert Counter((m.recipient, m.channel) for m in messages) == Counter(
        {
            ("enterprise:E-1", Channel.INBOX): 1,
            ("department:tj-tax", Channel.INBOX): 1,
            ("department:tj-tax", Channel.WEBHOOK): 1,
        }
    )


def test_a_breach_reaches_department_supervision_and_enterprise() -> None:
    recipients = {m.recipient for m in messages_for(breached(), ZH, set(), TEMPLATES)}

    assert recipients == {"department:tj-tax", "department:park-supervision", "enterprise:E-1"}


def test_without_a_known_contact_the_department_still_hears() -> None:
    recipients = {m.recipient for m in messages_for(breached(), None, set(), TEMPLATES)}

    assert recipients == {"department:tj-tax", "department:park-supervision"}


def warned(threshold: float) -> SlaWarning:
    return SlaWarning(
        ticket_id="T-01M8M3WQ6WQ4ZQ3FGCHBD04QCM",
        correlation_id="c",
        department="tj-tax",
        threshold=threshold,
        resolution_due_at=SUBMITTED + timedelta(hours=24),
        remaining_seconds=(1 - threshold) * 24 * 3600,
    )


def test_warnings_go_to_the_department_only() -> None:
    [message] = messages_for(warned(0.75), ZH, set(), TEMPLATES)

    assert message.recipient == "department:tj-tax"
    assert "75%" in message.subject
    assert "6.0" in message.body


def test_notification_ids_are_one_per_event_recipient_and_channel() -> None:
    event = routed()
    ids = [m.notification_id(event) for m in messages_for(event, ZH, {Channel.WEBHOOK}, TEMPLATES)]

    assert len(set(ids)) == len(ids) == 3
    assert all(i.startswith(str(event.event_id)) for i in ids)


def test_webhook_signature_is_hmac_sha256_of_timestamp_and_body() -> None:
    body = '{"subject": "工单"}'.encode()

    signature = sign("k" * 16, "1700000000", body)

    expected = hmac.new(b"k" * 16, b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signature == f"sha256={expected}"
    assert sign("k" * 16, "1700000001", body) != signature


def test_enterprises_get_an_email_copy_when_email_is_on_and_they_gave_an_address() -> None:
    with_address = EnterpriseContact("E-1", Language.ZH, "li.na@example.com")

    on = messages_for(routed(), with_address, {Channel.EMAIL, Channel.WEBHOOK}, TEMPLATES)
    off = messages_for(routed(), with_address, {Channel.WEBHOOK}, TEMPLATES)
    no_address = messages_for(routed(), ZH, {Channel.EMAIL}, TEMPLATES)

    assert sorted((m.recipient, m.channel.value) for m in on) == [
        ("department:tj-tax", "inbox"),
        ("department:tj-tax", "webhook"),
        ("enterprise:E-1", "email"),
        ("enterprise:E-1", "inbox"),
    ]
    assert Channel.EMAIL not in {m.channel for m in off + no_address}


def test_the_receipt_email_goes_to_the_address_the_ticket_gave() -> None:
    ticket = sample_ticket(submitted_at=SUBMITTED)
    event = TicketSubmitted(ticket_id=ticket.ticket_id, correlation_id="c", ticket=ticket)

    email = [m.channel for m in messages_for(event, None, {Channel.EMAIL}, TEMPLATES)]
    every = [m.channel for m in messages_for(event, None, set(Channel), TEMPLATES)]

    assert email == [Channel.INBOX, Channel.EMAIL]
    assert every == [Channel.INBOX, Channel.EMAIL, Channel.SMS]


def test_a_muted_kind_of_message_is_not_sent_to_anyone() -> None:
    assert messages_for(warned(0.5), ZH, {Channel.WEBHOOK}, TEMPLATES, muted={"warning"}) == []
    assert len(messages_for(breached(), ZH, set(), TEMPLATES, muted={"warning"})) == 3


def test_a_subscription_chooses_the_recipients_channels_and_may_bring_its_webhook() -> None:
    with_address = EnterpriseContact("E-1", Language.ZH, "li.na@example.com", "+86 1")
    subscriptions = {
        # Its own webhook, though none is configured for everyone.
        "department:tj-tax": Subscription(
            "department:tj-tax", frozenset({Channel.WEBHOOK}), "https://tax.example/hook", "s"
        ),
        # Texts only, though e-mail is configured.
        "enterprise:E-1": Subscription("enterprise:E-1", frozenset({Channel.SMS})),
    }

    messages = messages_for(
        routed(), with_address, {Channel.EMAIL, Channel.SMS}, TEMPLATES, (), subscriptions
    )

    assert sorted((m.recipient, m.channel.value) for m in messages) == [
        ("department:tj-tax", "inbox"),
        ("department:tj-tax", "webhook"),
        ("enterprise:E-1", "inbox"),
        ("enterprise:E-1", "sms"),
    ]
    assert audience(routed(), with_address) == {"department:tj-tax", "enterprise:E-1"}
