"""routing's event and request handlers."""

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status
from faststream.kafka import KafkaBroker
from pydantic import BaseModel

from services.routing.domain import Decision, PolicyError, transfer_refusal
from services.routing.models import RetrainOutcome, RetrainRunning, RouterHolder, TrainingFailed
from services.routing.reloader import PolicyHolder
from services.routing.router import ticket_text
from services.routing.store import RoutingStore
from shared.auth import Authenticator, Principal, Role
from shared.events import (
    Candidate,
    Event,
    RunnerUp,
    TicketAction,
    TicketAssigned,
    TicketContent,
    TicketRouted,
    TicketSubmitted,
    TicketTransferred,
    TicketTransferRefused,
)
from shared.kafka import Source, publish
from shared.topics import Topics

log = logging.getLogger("parkdesk.routing")


class EventHandlers:
    def __init__(
        self,
        store: RoutingStore,
        broker: KafkaBroker,
        topics: Topics,
        routers: RouterHolder,
        now: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._broker = broker
        self._topics = topics
        self._routers = routers
        self._now = now

    async def on_ticket_submitted(self, event: TicketSubmitted, _: Source) -> None:
        routed = await self._store.decide_once(
            event.ticket, self._routers.router.decide(event.ticket), self._now()
        )
        decision = routed.decision
        # Same ids on a redelivery, so the republished events are recognisably the same ones.
        assigned = TicketAssigned(
            event_id=Event.derived_id(event.ticket_id, "assigned", decision.department),
            ticket_id=event.ticket_id,
            correlation_id=event.correlation_id,
            department=decision.department,
            reason=decision.reason,
            confidence=decision.confidence,
            candidates=decision.candidates,
            ticket=event.ticket,
        )
        # Two topics, no order between them to keep: both confirmations are awaited at once,
        # so a ticket costs one produce round trip here, not two.
        await asyncio.gather(
            publish(self._broker, self._topics.department(decision.department), assigned),
            publish(self._broker, self._topics.tickets, routed_event(event, decision)),
        )
        log.info(
            "ticket %s routed to %s by %s (confidence %s)",
            event.ticket_id,
            decision.department,
            f"rule {decision.rule_id}" if decision.rule_id else f"model {decision.model_version}",
            decision.confidence,
        )

    async def on_ticket_action(self, event: TicketAction, _: Source) -> None:
        """Every step on a ticket also goes to the department that has it, on its topic, so
        that it sees the enterprise's answers and comments where it sees its tickets.
        (A transfer is not forwarded: the new department gets `ticket.assigned`.)"""
        await publish(self._broker, self._topics.department(event.department), event)

    async def on_ticket_transferred(self, event: TicketTransferred, _: Source) -> None:
        routed = await self._store.routed(event.ticket_id)
        if routed is None:
            refusal: str | None = "routing has no record of this ticket"
            current = event.from_department
        else:
            known = await self._store.hop(str(event.event_id))
            # On a redelivery, judge as the first time: the hop may have moved the ticket since.
            current = known["from_department"] if known else routed.current_department
            refusal = transfer_refusal(current, event.to_department)
        decided_by = decided_by_of(routed.decision) if routed else None
        await self._store.record_hop(
            event, decided_by, refusal is None, refusal or event.reason, self._now()
        )
        if refusal is None and routed is not None:
            # The department that takes it over is the label a person gave this text.
            await self._store.record_correction(event, ticket_text(routed.ticket), self._now())
        if refusal is not None or routed is None:
            await publish(
                self._broker,
                self._topics.tickets,
                TicketTransferRefused(
                    event_id=Event.derived_id(event.event_id, "refused"),
                    ticket_id=event.ticket_id,
                    correlation_id=event.correlation_id,
                    transfer_event_id=event.event_id,
                    requested_department=event.to_department,
                    department=current,
                    reason=refusal or "refused",
                ),
            )
            return
        await publish(
            self._broker,
            self._topics.department(event.to_department),
            TicketAssigned(
                event_id=Event.derived_id(event.event_id, "assigned", event.to_department),
                ticket_id=event.ticket_id,
                correlation_id=event.correlation_id,
                department=event.to_department,
                reason=f"transferred from {current}: {event.reason}",
                transferred_from=current,
                ticket=routed.ticket,
            ),
        )


def decided_by_of(decision: Decision) -> str | None:
    """What first routed a ticket: a rule's id, or the model's version; counted per transfer."""
    if decision.rule_id:
        return decision.rule_id
    return f"model:{decision.model_version}" if decision.model_version else None


def routed_event(submitted: TicketSubmitted, decision: Decision) -> TicketRouted:
    return TicketRouted(
        event_id=Event.derived_id(submitted.ticket_id, "routed", decision.department),
        ticket_id=submitted.ticket_id,
        correlation_id=submitted.correlation_id,
        department=decision.department,
        reason=decision.reason,
        rule_id=decision.rule_id,
        matched_terms=decision.matched_terms,
        runner_up=decision.runner_up,
        policy_version=decision.policy_version,
        confidence=decision.confidence,
        candidates=decision.candidates,
        model_version=decision.model_version,
        category=submitted.ticket.category,
        priority=submitted.ticket.priority,
        submitted_at=submitted.ticket.submitted_at,
        resolution_due_at=submitted.ticket.resolution_due_at,
    )


class DryRunAnswer(BaseModel):
    department: str
    reason: str
    rule_id: str | None
    matched_terms: tuple[str, ...]
    runner_up: RunnerUp | None
    policy_version: str | None
    confidence: float | None
    candidates: tuple[Candidate, ...]
    model_version: str | None


class ModelStatus(BaseModel):
    version: str
    trained_at: datetime
    corrections: int
    """Corrections (transfers, triage dispatches) it was trained with."""
    corrections_stored: int
    """Corrections stored now: more than `corrections` means a retrain would learn more."""
    labelled_accuracy: float
    threshold: float
    """Below this confidence a ticket goes to triage."""


class PolicyStatus(BaseModel):
    version: str
    source: str
    rules: int
    last_error: str | None


def routes(
    store: RoutingStore, policies: PolicyHolder, routers: RouterHolder, auth: Authenticator
) -> APIRouter:
    router = APIRouter(prefix="/v1/routing", tags=["routing"])
    Asker = Annotated[Principal, Depends(auth.require(Role.FRONTEND, Role.SUPERVISOR, Role.ADMIN))]
    Supervisor = Annotated[Principal, Depends(auth.require(Role.SUPERVISOR, Role.ADMIN))]
    Admin = Annotated[Principal, Depends(auth.require(Role.ADMIN))]

    @router.post("/dry-run", summary="Where would this ticket go, and why (creates nothing)")
    async def post_dry_run(body: TicketContent, _: Asker) -> DryRunAnswer:
        decision = routers.router.decide(body)
        return DryRunAnswer(
            department=decision.department,
            reason=decision.reason,
            rule_id=decision.rule_id,
            matched_terms=decision.matched_terms,
            runner_up=decision.runner_up,
            policy_version=decision.policy_version,
            confidence=decision.confidence,
            candidates=decision.candidates,
            model_version=decision.model_version,
        )

    @router.get("/policy", summary="The policy in force, and the last refused one's error")
    async def get_policy(_: Supervisor) -> PolicyStatus:
        return _status(policies)

    @router.post(
        "/policy/reload",
        summary="Load the policy file now; a bad one is refused and the old one stays",
        responses={422: {"description": "the file is not a valid policy (file and rule named)"}},
    )
    async def post_policy_reload(_: Admin) -> PolicyStatus:
        try:
            policies.reload()
        except PolicyError as error:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
        return _status(policies)

    @router.get("/model", summary="The ranker model in force: version, training, accuracy")
    async def get_model(_: Supervisor) -> ModelStatus:
        model = routers.model
        if model is None:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "no model loaded yet")
        return ModelStatus(
            version=model.version,
            trained_at=model.trained_at,
            corrections=model.corrections,
            corrections_stored=await store.count_corrections(),
            labelled_accuracy=model.labelled_accuracy,
            threshold=routers.router.threshold,
        )

    @router.post(
        "/retrain",
        summary="Train a new model from the profiles, labelled tickets and every correction; "
        "it replaces the one in force unless it routes the labelled tickets worse",
        responses={
            409: {"description": "a retrain is under way"},
            503: {"description": "the training process failed; the model in force stays"},
        },
    )
    async def post_retrain(_: Admin) -> RetrainOutcome:
        try:
            return await routers.retrain()
        except RetrainRunning as error:
            raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
        except TrainingFailed as error:
            log.error("retrain failed: %s", error)
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, "training failed; the model stays"
            ) from None

    @router.get(
        "/transfers",
        summary="Accepted transfers per rule (or `model:<version>`) that first routed the ticket",
    )
    async def get_transfers(_: Supervisor) -> dict[str, int]:
        return await store.transfers_per_rule()

    return router


def _status(policies: PolicyHolder) -> PolicyStatus:
    policy = policies.policy
    return PolicyStatus(
        version=policy.version,
        source=policy.source,
        rules=len(policy.rules),
        last_error=policies.last_error,
    )
