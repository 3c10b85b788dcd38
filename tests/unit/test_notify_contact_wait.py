"""notify's wait for an enterprise's contact, with an injected clock: an SLA event that overtakes
the ticket's submission is put back until the contact is known, goes out without the
enterprise's copy only after the wait, and a rebalance hands the wait to the partition's next
owner instead of leaving it behind."""

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from aiokafka import TopicPartition

from services.notify.domain import Message
from services.notify.handlers import DeliveryOwnership, EventHandlers
from services.notify.templates import Templates
from shared.events import Event
from shared.kafka import NotYet, Source
from tests.unit.samples import sample_breached

START = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
SOURCE = Source("parkdesk.sla", 2, 40)
WAIT_SECONDS = 60


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


class StoreWithoutContacts:
    def __init__(self) -> None:
        self.recorded: list[Message] = []

    async def contact(self, _: str) -> None:
        return None

    async def subscription(self, _: str) -> None:
        return None

    async def record_all(
        self, _: Event, messages: list[Message], __: str, ___: datetime
    ) -> list[Any]:
        self.recorded += messages
        return []


def handlers(clock: Clock, store: StoreWithoutContacts) -> EventHandlers:
    return EventHandlers(
        cast(Any, store), cast(Any, None), (), Templates.load(), (), WAIT_SECONDS, clock
    )


async def test_an_event_waits_for_the_contact_then_goes_without_it() -> None:
    clock, store = Clock(), StoreWithoutContacts()
    notify = handlers(clock, store)
    event = sample_breached(START, 1.0)

    with pytest.raises(NotYet):
        await notify.on_event(event, SOURCE)
    clock.now += timedelta(seconds=WAIT_SECONDS - 1)
    with pytest.raises(NotYet):
        await notify.on_event(event, SOURCE)
    clock.now += timedelta(seconds=2)
    await notify.on_event(event, SOURCE)

    recipients = {message.recipient for message in store.recorded}
    assert recipients  # departments and supervision are told
    assert not any(r.startswith("enterprise:") for r in recipients)


async def test_a_wait_cut_by_a_rebalance_starts_afresh_when_the_partition_comes_back() -> None:
    clock, store = Clock(), StoreWithoutContacts()
    notify = handlers(clock, store)
    ownership = DeliveryOwnership(cast(Any, None), notify)
    event = sample_breached(START, 1.0)
    with pytest.raises(NotYet):
        await notify.on_event(event, SOURCE)

    await ownership.on_partitions_revoked({TopicPartition(SOURCE.topic, SOURCE.partition)})
    clock.now += timedelta(seconds=WAIT_SECONDS + 1)

    # Back here much later: the wait it had begun was handed over, not kept running.
    with pytest.raises(NotYet):
        await notify.on_event(event, SOURCE)
    assert store.recorded == []
