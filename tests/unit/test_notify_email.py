"""The e-mail and the text message a notification becomes, and what failure reasons may say."""

from datetime import UTC, datetime
from email import message_from_bytes, policy

import pytest
from pydantic import ValidationError

from services.notify.config import NotifySettings
from services.notify.delivery import SMS_MAX_CHARACTERS, email_message, masked, sms_text
from services.notify.store import Notification
from shared.events import Channel, Language


def notification(language: Language, subject: str, body: str) -> Notification:
    return Notification(
        id="0f8fad5b-d9cb-469f-a165-70867728950e:enterprise:E-1:email",
        ticket_id="T-01M8M3WQ6WQ4ZQ3FGCHBD04QCM",
        correlation_id="c",
        recipient="enterprise:E-1",
        channel=Channel.EMAIL,
        language=language,
        subject=subject,
        body=body,
        trigger_event_id="0f8fad5b-d9cb-469f-a165-70867728950e",
        trigger_type="ticket.submitted",
        owner="parkdesk.tickets:0",
        created_at=datetime(2026, 11, 29, 23, 30, tzinfo=UTC),
    )


def test_a_chinese_email_survives_the_wire_encoding() -> None:
    sent = email_message(
        notification(Language.ZH, "工单 T-1 已受理", "我们承诺在 2026-12-01 07:30 前办结。"),
        "parkdesk@bzsp.example.cn",
        "li.na@example.com",
    )

    wire = sent.as_bytes()
    assert wire.isascii()  # encoded for any relay: RFC 2047 subject, base64 body
    received = message_from_bytes(wire, policy=policy.default)
    assert received["Subject"] == "工单 T-1 已受理"
    assert received["To"] == "li.na@example.com"
    assert received["Content-Language"] == "zh"
    assert received.get_content_charset() == "utf-8"
    assert received.get_content().strip() == "我们承诺在 2026-12-01 07:30 前办结。"
    assert received["Message-ID"].endswith("@bzsp.example.cn>")


def test_failure_reasons_never_carry_an_address() -> None:
    reason = masked("SMTP 550: <li.na@example.com>: mailbox unavailable")

    assert reason == "SMTP 550: <<address>>: mailbox unavailable"


def test_a_long_text_message_is_cut_to_one_gateway_message() -> None:
    short = notification(Language.EN, "Ticket T-1 received", "We promise to resolve it.")
    long = notification(Language.ZH, "工单 T-1 已办结，请评价", "长" * 1000)

    assert sms_text(short) == "Ticket T-1 received: We promise to resolve it."
    assert len(sms_text(long)) == SMS_MAX_CHARACTERS
    assert sms_text(long).endswith("长…")


def test_an_endpoint_without_its_secret_stops_notify_at_start() -> None:
    with pytest.raises(ValidationError, match="PARKDESK_SMS_API_KEY is required"):
        NotifySettings(auth_secret="x" * 32, sms_gateway_url="http://127.0.0.1:9/send")
    with pytest.raises(ValidationError, match="PARKDESK_WEBHOOK_SECRET is required"):
        NotifySettings(auth_secret="x" * 32, webhook_url="http://127.0.0.1:9/hook")


def test_muting_a_kind_of_message_that_does_not_exist_stops_notify_at_start() -> None:
    with pytest.raises(ValidationError, match="no such kind of message: \\['warnings'\\]"):
        NotifySettings(auth_secret="x" * 32, muted_messages=["warnings"])
    assert NotifySettings(auth_secret="x" * 32, muted_messages=["warning"]).muted_messages == {
        "warning"
    }
