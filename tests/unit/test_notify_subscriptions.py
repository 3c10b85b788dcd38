"""Sealed webhook secrets, and which subscriptions make sense."""

import pytest
from cryptography.exceptions import InvalidTag

from services.notify.subscriptions import SecretBox, Subscription, check
from shared.events import Channel


def test_a_sealed_secret_opens_only_for_its_recipient_and_only_with_the_key() -> None:
    box = SecretBox("x" * 32)
    sealed = box.seal("department:tj-tax", "the-department-secret")

    assert "the-department-secret" not in sealed
    assert box.seal("department:tj-tax", "the-department-secret") != sealed  # fresh nonce
    assert box.open("department:tj-tax", sealed) == "the-department-secret"
    with pytest.raises(InvalidTag):
        box.open("department:bj-hrss", sealed)  # moved to another record
    with pytest.raises(InvalidTag):
        SecretBox("y" * 32).open("department:tj-tax", sealed)


@pytest.mark.parametrize(
    ("subscription", "error"),
    [
        (Subscription("department:tj-tax", frozenset({Channel.SMS})), "channels: inbox, webhook"),
        (Subscription("enterprise:E-1", frozenset({Channel.WEBHOOK})), "email, inbox, sms"),
        (Subscription("department:tj-tax", frozenset({Channel.WEBHOOK})), "webhook_url"),
        (
            Subscription("department:tj-tax", frozenset({Channel.WEBHOOK}), "http://h/x"),
            "needs its webhook_secret",
        ),
        (Subscription("team:x", frozenset()), "department:<code> or enterprise:<id>"),
    ],
)
def test_subscriptions_that_could_not_work_are_refused(
    subscription: Subscription, error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        check(subscription)


def test_the_inbox_cannot_be_turned_off() -> None:
    quiet = Subscription("enterprise:E-1", frozenset())

    check(quiet)
    assert quiet.wants(Channel.INBOX)
    assert not quiet.wants(Channel.EMAIL)
