"""intake's request and event handlers."""

import base64
import json
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Request, status
from faststream.kafka import KafkaBroker
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from services.intake.domain import (
    DEPARTMENT_ACTIONS,
    ENTERPRISE_ACTIONS,
    Action,
    IdempotencyKey,
    IllegalAction,
    Status,
    TicketAccepted,
    TicketState,
    accept,
    at_store_precision,
    fingerprint,
    fold,
    new_ticket_id,
    remaining_seconds,
)
from services.intake.relay import OutboxRelay
from services.intake.store import IntakeStore, Recorded
from shared.auth import Authenticator, Principal, Role
from shared.credentials import (
    CredentialEvent,
    CredentialRegistry,
    CredentialRevoked,
    issue,
)
from shared.events import (
    Actor,
    ActorRole,
    Attachment,
    DepartmentCode,
    Event,
    Note,
    Ticket,
    TicketAcknowledged,
    TicketAction,
    TicketClosed,
    TicketCommented,
    TicketContent,
    TicketId,
    TicketInformationProvided,
    TicketInformationRequested,
    TicketReopened,
    TicketResolved,
    TicketTransferred,
    refuse_unsafe_text,
)
from shared.kafka import Source
from shared.logs import CORRELATION_ID, correlation_id_from
from shared.tracing import carrier

log = logging.getLogger("parkdesk.intake")


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    _safe_text = field_validator("*", mode="after")(refuse_unsafe_text)


class AcknowledgeBody(Body):
    pass


class CommentBody(Body):
    comment: Note
    attachments: Annotated[list[Attachment], Field(max_length=10)] = []


class RequestInformationBody(Body):
    question: Note


class ProvideInformationBody(Body):
    answer: Note
    attachments: Annotated[list[Attachment], Field(max_length=10)] = []


class TransferBody(Body):
    to_department: DepartmentCode
    reason: Annotated[str, StringConstraints(min_length=1, max_length=1000)]


class ResolveBody(Body):
    resolution: Note


class CloseBody(Body):
    rating: Annotated[int, Field(ge=1, le=5)]
    comment: Annotated[str, StringConstraints(max_length=2000)] | None = None


class ReopenBody(Body):
    reason: Note


class ActionAccepted(BaseModel):
    ticket_id: str
    event_id: str
    action: str
    status: str
    department: str | None


class HistoryEntry(BaseModel):
    event_id: str
    type: str
    occurred_at: datetime
    details: dict[str, Any]


class TicketView(BaseModel):
    ticket: Ticket
    status: str
    department: str | None
    resolution_due_at: datetime
    remaining_seconds: float
    paused: bool
    at_risk: bool
    breached: bool
    rating: int | None
    allowed_actions: list[str]
    history: list[HistoryEntry]


class TicketSummary(BaseModel):
    ticket_id: str
    enterprise_id: str
    department: str | None
    status: str
    subject: str
    submitted_at: datetime
    resolution_due_at: datetime
    remaining_seconds: float
    paused: bool
    at_risk: bool
    breached: bool


class Page(BaseModel):
    items: list[TicketSummary]
    next_cursor: str | None


ENVELOPE = {
    "event_id",
    "type",
    "schema_version",
    "occurred_at",
    "ticket_id",
    "correlation_id",
    "ticket",
}

BuildEvent = Callable[[Any, dict[str, Any], TicketState], TicketAction]

ACTIONS: dict[Action, tuple[type[Body], BuildEvent]] = {
    Action.ACKNOWLEDGE: (AcknowledgeBody, lambda _, common, __: TicketAcknowledged(**common)),
    Action.COMMENT: (
        CommentBody,
        lambda body, common, _: TicketCommented(
            **common, comment=body.comment, attachments=tuple(body.attachments)
        ),
    ),
    Action.REQUEST_INFORMATION: (
        RequestInformationBody,
        lambda body, common, _: TicketInformationRequested(**common, question=body.question),
    ),
    Action.PROVIDE_INFORMATION: (
        ProvideInformationBody,
        lambda body, common, _: TicketInformationProvided(
            **common, answer=body.answer, attachments=tuple(body.attachments)
        ),
    ),
    Action.TRANSFER: (
        TransferBody,
        lambda body, common, state: TicketTransferred(
            **common,
            from_department=state.department,
            to_department=body.to_department,
            reason=body.reason,
        ),
    ),
    Action.RESOLVE: (
        ResolveBody,
        lambda body, common, _: TicketResolved(**common, resolution=body.resolution),
    ),
    Action.CLOSE: (
        CloseBody,
        lambda body, common, _: TicketClosed(**common, rating=body.rating, comment=body.comment),
    ),
    Action.REOPEN: (
        ReopenBody,
        lambda body, common, _: TicketReopened(**common, reason=body.reason),
    ),
}


def routes(
    store: IntakeStore,
    relay: OutboxRelay,
    auth: Authenticator,
    resolution_target: timedelta,
    reopen_window: timedelta,
) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["tickets"])
    Submitter = Annotated[Principal, Depends(auth.require(Role.ENTERPRISE, Role.FRONTEND))]
    Reader = Annotated[
        Principal,
        Depends(auth.require(Role.ENTERPRISE, Role.FRONTEND, Role.DEPARTMENT, Role.SUPERVISOR)),
    ]
    Worker = Annotated[
        Principal, Depends(auth.require(Role.ENTERPRISE, Role.FRONTEND, Role.DEPARTMENT))
    ]
    QueueReader = Annotated[Principal, Depends(auth.require(Role.DEPARTMENT, Role.SUPERVISOR))]

    @router.post(
        "/tickets",
        status_code=status.HTTP_202_ACCEPTED,
        summary="Open a ticket",
        responses={409: {"description": "Idempotency-Key used before with a different body"}},
    )
    async def post_ticket(
        body: TicketContent,
        request: Request,
        idempotency_key: Annotated[IdempotencyKey, Header()],
        principal: Submitter,
    ) -> TicketAccepted:
        if not principal.may_act_for_enterprise(body.enterprise.id):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, "may not open tickets for this enterprise"
            )
        now = at_store_precision(datetime.now(UTC))
        body_fingerprint = fingerprint(body)
        claimed = await store.claim_idempotency_key(
            f"{principal.role.value}:{principal.subject}:{idempotency_key}",
            body_fingerprint,
            new_ticket_id(now),
            now,
        )
        if claimed["fingerprint"] != body_fingerprint:
            raise HTTPException(
                status.HTTP_409_CONFLICT, "Idempotency-Key was used before with a different body"
            )
        submitted = accept(
            body,
            ticket_id=claimed["ticket_id"],
            submitted_at=claimed["submitted_at"],
            resolution_target=resolution_target,
            correlation_id=correlation_id(request),
        )
        # For a retry this finds the event stored already, or completes a first request that
        # died between claiming its key and storing its event.
        recorded = await store.record(submitted, 1, recorded_at=now, trace=carrier())
        if recorded is Recorded.STORED:
            relay.submit(submitted)
            await store.audit(submitted, "submit", principal, client_address(request), now)
            log.info(
                "ticket %s accepted: %s from %s",
                submitted.ticket_id,
                submitted.ticket.category.value,
                principal.subject,
            )
        else:
            await relay.submit_unless_relayed(submitted)
        return TicketAccepted(
            ticket_id=submitted.ticket_id,
            status=Status.SUBMITTED.value,
            submitted_at=submitted.ticket.submitted_at,
            resolution_due_at=submitted.ticket.resolution_due_at,
        )

    @router.get("/tickets/{ticket_id}", summary="A ticket with its state and full history")
    async def get_ticket(ticket_id: Annotated[TicketId, Path()], principal: Reader) -> TicketView:
        state = await visible_state(store, ticket_id, principal)
        now = datetime.now(UTC)
        side = DEPARTMENT_ACTIONS if principal.role is Role.DEPARTMENT else ENTERPRISE_ACTIONS
        return TicketView(
            ticket=state.ticket,
            status=state.status.value,
            department=state.department,
            resolution_due_at=state.resolution_due_at,
            remaining_seconds=remaining_seconds(state.resolution_due_at, now),
            paused=state.paused,
            at_risk=state.at_risk,
            breached=state.breached,
            rating=state.rating,
            allowed_actions=[] if principal.role is Role.SUPERVISOR else state.allowed(side),
            history=[
                HistoryEntry(
                    event_id=str(event.event_id),
                    type=event.type,
                    occurred_at=event.occurred_at,
                    details=event.model_dump(mode="json", exclude=ENVELOPE),
                )
                for event in state.history
            ],
        )

    @router.get("/tickets", summary="An enterprise's tickets, oldest first")
    async def get_tickets(
        principal: Annotated[
            Principal, Depends(auth.require(Role.ENTERPRISE, Role.FRONTEND, Role.SUPERVISOR))
        ],
        enterprise_id: Annotated[str | None, Query(max_length=64)] = None,
        ticket_status: Annotated[Status | None, Query(alias="status")] = None,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 50,
    ) -> Page:
        if principal.role is Role.ENTERPRISE:
            if enterprise_id not in (None, principal.subject):
                raise HTTPException(status.HTTP_404_NOT_FOUND, "no such enterprise")
            enterprise_id = principal.subject
        elif principal.role is Role.FRONTEND and enterprise_id is None:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                "a frontend names the enterprise: ?enterprise_id=",
            )
        criteria: dict[str, Any] = {}
        if enterprise_id is not None:
            criteria["enterprise_id"] = enterprise_id
        if ticket_status is not None:
            criteria["status"] = ticket_status.value
        return await page(store, criteria, "submitted_at", cursor, limit)

    @router.get("/queue", summary="A department's tickets by due time, with filters")
    async def get_queue(
        principal: QueueReader,
        department: Annotated[DepartmentCode | None, Query()] = None,
        ticket_status: Annotated[Status | None, Query(alias="status")] = None,
        at_risk: bool | None = None,
        breached: bool | None = None,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 50,
    ) -> Page:
        if principal.role is Role.DEPARTMENT:
            if department not in (None, principal.subject):
                raise HTTPException(status.HTTP_404_NOT_FOUND, "no such queue")
            department = principal.subject
        criteria: dict[str, Any] = {}
        for name, value in (
            ("department", department),
            ("at_risk", at_risk),
            ("breached", breached),
        ):
            if value is not None:
                criteria[name] = value
        if ticket_status is not None:
            criteria["status"] = ticket_status.value
        return await page(store, criteria, "due_at", cursor, limit)

    for action, (body_model, build) in ACTIONS.items():
        router.add_api_route(
            f"/tickets/{{ticket_id}}/{action.value}",
            action_handler(store, relay, action, body_model, build, Worker, reopen_window),
            methods=["POST"],
            status_code=status.HTTP_202_ACCEPTED,
            summary=f"{action.value.replace('-', ' ').capitalize()}",
            responses={
                404: {"description": "no such ticket, or not the caller's"},
                409: {"description": "not allowed in the ticket's state; the message says why"},
            },
            response_model=ActionAccepted,
        )
    return router


def action_handler(
    store: IntakeStore,
    relay: OutboxRelay,
    action: Action,
    body_model: type[Body],
    build: BuildEvent,
    worker: Any,
    reopen_window: timedelta,
) -> Any:
    async def take_action(
        ticket_id: Annotated[TicketId, Path()],
        body: body_model,  # type: ignore[valid-type]
        request: Request,
        principal: worker,
        idempotency_key: Annotated[IdempotencyKey | None, Header()] = None,
    ) -> ActionAccepted:
        state = await visible_state(store, ticket_id, principal)
        now = datetime.now(UTC)
        side = DEPARTMENT_ACTIONS if principal.role is Role.DEPARTMENT else ENTERPRISE_ACTIONS
        try:
            state.check(action, side, now, reopen_window)
            if action is Action.TRANSFER:
                state.check_transfer(cast(TransferBody, body).to_department)
        except IllegalAction as illegal:
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                {
                    "message": str(illegal),
                    "status": state.status.value,
                    "allowed": state.allowed(side),
                },
            ) from None
        scope = f"{principal.role.value}:{principal.subject}:{ticket_id}:{idempotency_key}"
        common = {
            "event_id": Event.derived_id(scope) if idempotency_key else uuid.uuid4(),
            "occurred_at": now,
            "ticket_id": ticket_id,
            "correlation_id": correlation_id(request),
            "actor": actor_of(principal),
            "department": state.department,
        }
        event = build(body, common, state)
        recorded = await store.record(event, state.sequence + 1, recorded_at=now, trace=carrier())
        if recorded is Recorded.CONFLICT:
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                {
                    "message": "the ticket changed while this was sent; reload it and retry",
                    "status": state.status.value,
                    "allowed": state.allowed(side),
                },
            )
        if recorded is Recorded.ALREADY:
            earlier = await store.stored_event(str(event.event_id))
            if not isinstance(earlier, TicketAction) or content(earlier) != content(event):
                raise HTTPException(
                    status.HTTP_409_CONFLICT,
                    {
                        "message": "Idempotency-Key was used before with a different request",
                        "status": state.status.value,
                        "allowed": state.allowed(side),
                    },
                )
            event = earlier
        if recorded is Recorded.STORED:
            await store.audit(event, action.value, principal, client_address(request), now)
            await relay.submit_after(event, state.own_events)
        after = fold([*state.history, event])
        assert after is not None
        return ActionAccepted(
            ticket_id=ticket_id,
            event_id=str(event.event_id),
            action=action.value,
            status=after.status.value,
            department=after.department,
        )

    take_action.__name__ = f"post_{action.value.replace('-', '_')}"
    return take_action


def content(event: Event) -> dict[str, Any]:
    """What a request asked for, without when it was sent or what the ticket was like then."""
    return event.model_dump(mode="json", exclude={"occurred_at", "correlation_id", "department"})


async def visible_state(store: IntakeStore, ticket_id: str, principal: Principal) -> TicketState:
    """The ticket if the caller may see it; 404 otherwise, so that it learns nothing."""
    state = fold(await store.ticket_events(ticket_id))
    if state is None or not may_see(principal, state):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such ticket")
    return state


def may_see(principal: Principal, state: TicketState) -> bool:
    if principal.role is Role.DEPARTMENT:
        return state.department == principal.subject
    return principal.may_read_enterprise(state.ticket.enterprise.id)


def actor_of(principal: Principal) -> Actor:
    roles = {
        Role.ENTERPRISE: ActorRole.ENTERPRISE,
        Role.FRONTEND: ActorRole.FRONTEND,
        Role.DEPARTMENT: ActorRole.DEPARTMENT,
    }
    return Actor(role=roles[principal.role], id=principal.subject)


def correlation_id(request: Request) -> str:
    """The request's correlation id, which the service's middleware chose and logs under."""
    return CORRELATION_ID.get() or correlation_id_from(request.headers.get("x-correlation-id"))


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


async def page(
    store: IntakeStore, criteria: dict[str, Any], sort_field: str, cursor: str | None, limit: int
) -> Page:
    after = decode_cursor(cursor) if cursor else None
    documents = await store.views(criteria, after, sort_field, limit + 1)
    now = datetime.now(UTC)
    items = [
        TicketSummary(
            ticket_id=d["_id"],
            enterprise_id=d["enterprise_id"],
            department=d["department"],
            status=d["status"],
            subject=d["subject"],
            submitted_at=d["submitted_at"],
            resolution_due_at=d["due_at"],
            remaining_seconds=remaining_seconds(d["due_at"], now),
            paused=d["paused"],
            at_risk=d["at_risk"],
            breached=d["breached"],
        )
        for d in documents[:limit]
    ]
    next_cursor = None
    if len(documents) > limit:
        last = documents[limit - 1]
        next_cursor = encode_cursor(last[sort_field], last["_id"])
    return Page(items=items, next_cursor=next_cursor)


def encode_cursor(moment: datetime, ticket_id: str) -> str:
    raw = json.dumps([moment.isoformat(), ticket_id]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        moment, ticket_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return datetime.fromisoformat(moment), str(ticket_id)
    except (ValueError, TypeError):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "invalid cursor") from None


class EventHandlers:
    """Keeps the read model of each ticket current from every event of it."""

    def __init__(self, store: IntakeStore) -> None:
        self._store = store

    async def on_own_event(self, event: Event, _: Source) -> None:
        await self._refresh(await self._store.ticket_events(event.ticket_id))

    async def on_learned_event(self, event: Event, _: Source) -> None:
        await self._refresh(await self._store.learn(event))

    async def _refresh(self, ticket_events: list[Event]) -> None:
        state = fold(ticket_events)
        if state is not None:
            await self._store.save_view(state, datetime.now(UTC))


class CredentialRequest(Body):
    role: Role
    subject: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")]
    valid_days: Annotated[float, Field(gt=0, le=366)] = 30


class IssuedCredential(BaseModel):
    credential_id: str
    token: str
    """Shown once: parkdesk keeps only its hash."""
    role: Role
    subject: str
    expires_at: datetime


class CredentialSummary(BaseModel):
    credential_id: str
    role: Role
    subject: str
    expires_at: datetime
    revoked: bool


def credential_routes(
    registry: CredentialRegistry, broker: KafkaBroker, topic: str, secret: str, auth: Authenticator
) -> APIRouter:
    router = APIRouter(prefix="/v1/credentials", tags=["credentials"])
    Admin = Annotated[Principal, Depends(auth.require(Role.ADMIN))]

    async def record(event: CredentialEvent) -> None:
        await broker.publish(
            event.model_dump_json().encode(), topic, key=event.credential_id.encode()
        )

    @router.post("", status_code=status.HTTP_201_CREATED, summary="Issue a credential")
    async def post_credential(body: CredentialRequest, _: Admin) -> IssuedCredential:
        token, issued = issue(secret, body.role, body.subject, timedelta(days=body.valid_days))
        await record(issued)
        registry.apply(issued.model_dump_json().encode())
        return IssuedCredential(
            credential_id=issued.credential_id,
            token=token,
            role=body.role,
            subject=body.subject,
            expires_at=issued.expires_at,
        )

    @router.get("", summary="Every credential issued, without the tokens")
    async def get_credentials(_: Admin) -> list[CredentialSummary]:
        return [
            CredentialSummary(
                credential_id=c.credential_id,
                role=c.role,
                subject=c.subject,
                expires_at=c.expires_at,
                revoked=registry.is_revoked(c.credential_id),
            )
            for c in sorted(registry.issued.values(), key=lambda c: c.occurred_at)
        ]

    @router.delete(
        "/{credential_id}",
        status_code=status.HTTP_204_NO_CONTENT,
        summary="Revoke a credential: every service refuses it from now on",
    )
    async def delete_credential(
        credential_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")], admin: Admin
    ) -> None:
        if credential_id not in registry.issued:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such credential")
        revoked = CredentialRevoked(
            credential_id=credential_id, reason=f"revoked by {admin.subject}"
        )
        await record(revoked)
        registry.apply(revoked.model_dump_json().encode())

    return router
