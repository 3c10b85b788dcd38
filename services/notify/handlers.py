"""notify's event and request handlers."""

import asyncio
import logging
import uuid
from collections.abc import Callable, Collection
from datetime import datetime, timedelta
from typing import Annotated, Any

from aiokafka import TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from fastapi import APIRouter, Depends, HTTPException, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr

from services.notify.delivery import Dispatcher
from services.notify.domain import (
    EnterpriseContact,
    audience,
    contact_of,
    department_recipient,
    enterprise_recipient,
    messages_for,
    needs_contact,
)
from services.notify.store import NotifyStore
from services.notify.subscriptions import SecretBox, Subscription, check
from services.notify.templates import Templates
from shared.auth import Authenticator, Principal, Role
from shared.departments import DEPARTMENTS
from shared.events import Channel, Event, TicketSubmitted
from shared.kafka import NotYet, Source


def owner_of(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


log = logging.getLogger("parkdesk.notify")


class EventHandlers:
    def __init__(
        self,
        store: NotifyStore,
        dispatcher: Dispatcher,
        outbound: Collection[Channel],
        templates: Templates,
        muted: Collection[str],
        contact_wait_seconds: float,
        now: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._dispatcher = dispatcher
        self._outbound = outbound
        self._templates = templates
        self._muted = muted
        self._contact_wait_seconds = contact_wait_seconds
        self._now = now
        self._waiting_since: dict[uuid.UUID, tuple[str, datetime]] = {}
        """Events put back until their ticket's contact is known: the partition each came from
        (its owner) and when it was first put back."""

    async def on_ticket_submitted(self, event: TicketSubmitted, source: Source) -> None:
        contact = contact_of(event)
        await self._store.remember_contact(event.ticket_id, contact)
        await self._notify(event, contact, source)

    async def on_event(self, event: Event, source: Source) -> None:
        """Every other event notify tells someone about; the domain says whom."""
        await self._notify(event, await self._contact(event, source), source)

    def forget_waiting(self, owners: Collection[str]) -> None:
        """Partitions handed to another instance: their events are its to wait for now."""
        for event_id in [e for e, (owner, _) in self._waiting_since.items() if owner in owners]:
            del self._waiting_since[event_id]

    async def _contact(self, event: Event, source: Source) -> EnterpriseContact | None:
        """SLA events come on another topic than the ticket's submission and may overtake it
        (after a restart, say): such an event goes back until the contact is learned, and is
        sent without the enterprise's copy only if it never is."""
        contact = await self._store.contact(event.ticket_id)
        if contact is not None or not needs_contact(event):
            self._waiting_since.pop(event.event_id, None)
            return contact
        now = self._now()
        _, since = self._waiting_since.setdefault(
            event.event_id, (owner_of(source.topic, source.partition), now)
        )
        if now - since < timedelta(seconds=self._contact_wait_seconds):
            raise NotYet(f"no contact yet for {event.ticket_id}")
        del self._waiting_since[event.event_id]
        log.error(
            "%s %s: no contact for ticket %s after %.0f s; sent without the enterprise's copy",
            event.type,
            event.event_id,
            event.ticket_id,
            self._contact_wait_seconds,
        )
        return None

    async def _notify(
        self, event: Event, contact: EnterpriseContact | None, source: Source
    ) -> None:
        owner = owner_of(source.topic, source.partition)
        # Looked up together and stored in one write: each round trip to the store is paid by
        # every event of the partition behind this one.
        recipients = sorted(audience(event, contact))
        found = await asyncio.gather(*(self._store.subscription(r) for r in recipients))
        subscriptions = {r: s for r, s in zip(recipients, found, strict=True) if s is not None}
        messages = messages_for(
            event, contact, self._outbound, self._templates, self._muted, subscriptions
        )
        for notification in await self._store.record_all(event, messages, owner, self._now()):
            self._dispatcher.submit(notification)


class DeliveryOwnership(ConsumerRebalanceListener):  # type: ignore[misc]
    """Delivers what is pending for the partitions this instance is assigned, and only those;
    forgets the waits for contacts of the partitions it gives up."""

    def __init__(self, dispatcher: Dispatcher, handlers: EventHandlers) -> None:
        self._dispatcher = dispatcher
        self._handlers = handlers

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Deliveries under way finish; the next owner skips what they mark delivered."""
        self._handlers.forget_waiting({owner_of(tp.topic, tp.partition) for tp in revoked})

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


class SubscriptionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channels: Annotated[list[Channel], Field(max_length=4)]
    webhook_url: HttpUrl | None = None
    webhook_secret: Annotated[SecretStr | None, Field(min_length=16, max_length=256)] = None


class SubscriptionView(BaseModel):
    recipient: str
    channels: list[Channel]
    webhook_url: str | None
    webhook_secret_set: bool


def subscription_routes(store: NotifyStore, auth: Authenticator, box: SecretBox) -> APIRouter:
    router = APIRouter(prefix="/v1/subscriptions", tags=["subscriptions"])
    Admin = Annotated[Principal, Depends(auth.require(Role.ADMIN))]
    Recipient = Annotated[
        str, Path(pattern=r"^(department|enterprise):[A-Za-z0-9_.-]{1,64}$", max_length=80)
    ]

    def view(subscription: Subscription) -> SubscriptionView:
        return SubscriptionView(
            recipient=subscription.recipient,
            channels=sorted(subscription.channels),
            webhook_url=subscription.webhook_url,
            webhook_secret_set=subscription.sealed_secret is not None,
        )

    @router.put("/{recipient}", summary="Register or replace a recipient's channels")
    async def put_subscription(
        _: Admin, recipient: Recipient, body: SubscriptionBody
    ) -> SubscriptionView:
        kind, name = recipient.split(":", 1)
        if kind == "department" and name not in DEPARTMENTS:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"no department {name!r}")
        secret = body.webhook_secret.get_secret_value() if body.webhook_secret else None
        subscription = Subscription(
            recipient=recipient,
            channels=frozenset(body.channels),
            webhook_url=str(body.webhook_url) if body.webhook_url else None,
            sealed_secret=box.seal(recipient, secret) if secret else None,
        )
        try:
            check(subscription)
        except ValueError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
        await store.subscribe(subscription)
        return view(subscription)

    @router.get("/{recipient}", summary="A recipient's channels (never its webhook secret)")
    async def get_subscription(_: Admin, recipient: Recipient) -> SubscriptionView:
        subscription = await store.subscription(recipient)
        if subscription is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no subscription")
        return view(subscription)

    @router.delete(
        "/{recipient}",
        summary="Back to the channels configured for everyone",
        status_code=status.HTTP_204_NO_CONTENT,
    )
    async def delete_subscription(_: Admin, recipient: Recipient) -> None:
        if not await store.unsubscribe(recipient):
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no subscription")

    return router
