"""notify's event and request handlers."""

import asyncio
from collections.abc import Callable, Collection
from datetime import datetime
from typing import Annotated, Any

from aiokafka import TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from fastapi import APIRouter, Depends, HTTPException, Path, Query, status

from services.notify.delivery import Dispatcher
from services.notify.domain import (
    EnterpriseContact,
    contact_of,
    department_recipient,
    enterprise_recipient,
    messages_for,
    needs_contact,
)
from services.notify.store import NotifyStore
from services.notify.templates import Templates
from shared.auth import Authenticator, Principal, Role
from shared.events import Channel, Event, TicketSubmitted
from shared.kafka import Source


def owner_of(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


class EventHandlers:
    def __init__(
        self,
        store: NotifyStore,
        dispatcher: Dispatcher,
        outbound: Collection[Channel],
        templates: Templates,
        contact_wait_seconds: float,
        now: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._dispatcher = dispatcher
        self._outbound = outbound
        self._templates = templates
        self._contact_wait_seconds = contact_wait_seconds
        self._now = now

    async def on_ticket_submitted(self, event: TicketSubmitted, source: Source) -> None:
        contact = contact_of(event)
        await self._store.remember_contact(event.ticket_id, contact)
        await self._notify(event, contact, source)

    async def on_event(self, event: Event, source: Source) -> None:
        """Every other event notify tells someone about; the domain says whom."""
        await self._notify(event, await self._contact(event), source)

    async def _contact(self, event: Event) -> EnterpriseContact | None:
        """SLA events come on another topic than the ticket's submission and may overtake it;
        wait a little for the contact before sending without the enterprise's copy."""
        deadline = asyncio.get_running_loop().time() + self._contact_wait_seconds
        while True:
            contact = await self._store.contact(event.ticket_id)
            if contact is not None or not needs_contact(event):
                return contact
            if asyncio.get_running_loop().time() >= deadline:
                return None
            await asyncio.sleep(0.25)

    async def _notify(
        self, event: Event, contact: EnterpriseContact | None, source: Source
    ) -> None:
        owner = owner_of(source.topic, source.partition)
        for message in messages_for(event, contact, self._outbound, self._templates):
            notification = await self._store.record(event, message, owner, self._now())
            if notification is not None:
                self._dispatcher.submit(notification)


class DeliveryOwnership(ConsumerRebalanceListener):  # type: ignore[misc]
    """Delivers what is pending for the partitions this instance is assigned, and only those."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Deliveries under way finish; the next owner skips what they mark delivered."""

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._dispatcher.recover(owner_of(tp.topic, tp.partition) for tp in assigned)


def routes(store: NotifyStore, auth: Authenticator) -> APIRouter:
    router = APIRouter(prefix="/v1/inbox", tags=["inbox"])
    Reader = Annotated[
        Principal,
        Depends(auth.require(Role.ENTERPRISE, Role.DEPARTMENT, Role.SUPERVISOR)),
    ]

    def inbox_of(principal: Principal, recipient: str | None) -> str:
        """The inbox the caller asks for: its own, or, for a supervisor, any."""
        own = {
            Role.ENTERPRISE: enterprise_recipient(principal.subject),
            Role.DEPARTMENT: department_recipient(principal.subject),
        }.get(principal.role)
        if recipient is None:
            recipient = own
        if recipient is None or (principal.role is not Role.SUPERVISOR and recipient != own):
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such inbox")
        return recipient

    @router.get("", summary="The caller's in-app inbox, newest first, with the unread count")
    async def get_inbox(
        principal: Reader,
        recipient: Annotated[str | None, Query(max_length=100)] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> dict[str, Any]:
        recipient = inbox_of(principal, recipient)
        items = await store.inbox(recipient, limit)
        return {
            "recipient": recipient,
            "unread": await store.unread_count(recipient),
            "items": [item.as_dict() for item in items],
        }

    @router.post(
        "/{notification_id}/read",
        summary="Mark an item of the caller's inbox read",
        status_code=status.HTTP_204_NO_CONTENT,
    )
    async def post_read(
        principal: Reader,
        notification_id: Annotated[str, Path(max_length=200)],
        recipient: Annotated[str | None, Query(max_length=100)] = None,
    ) -> None:
        if not await store.mark_read(inbox_of(principal, recipient), notification_id):
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such item in this inbox")

    return router
