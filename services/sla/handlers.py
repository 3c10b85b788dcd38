"""sla's event and request handlers, and what a milestone does when it fires."""

import asyncio
import base64
import gc
import hashlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path as Path_
from typing import Annotated, Any

from aiokafka import TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from fastapi import APIRouter, Depends, HTTPException, Path, Query, status
from fastapi.responses import HTMLResponse, StreamingResponse
from faststream.kafka import KafkaBroker
from pydantic import BaseModel

from services.sla.domain import (
    Clock,
    Milestone,
    SlaPolicy,
    acknowledge,
    met_event,
    milestone_event,
    needing_attention,
    pause,
    paused_event,
    rate,
    reopen,
    report,
    resolve,
    resume,
    resumed_event,
    start_clock,
    started_event,
    transfer,
)
from services.sla.feed import SlaFeed
from services.sla.store import NextVersion, SlaStore, StaleClock, next_version
from services.sla.timers import ClockScheduler, Due
from shared.auth import Authenticator, Principal, Role
from shared.events import (
    Event,
    TicketAcknowledged,
    TicketClosed,
    TicketId,
    TicketInformationProvided,
    TicketInformationRequested,
    TicketReopened,
    TicketResolved,
    TicketRouted,
    TicketTransferred,
    TicketTransferRefused,
)
from shared.kafka import Source, publish_all
from shared.metrics import OPEN_CLOCKS, SLA_EVENTS
from shared.topics import Topics

log = logging.getLogger("parkdesk.sla")


STALE_RETRIES = 5
"""Versions of a clock another instance may store while one lifecycle event is applied."""

Transition = Callable[[Clock, Any], Clock]
Reaction = Callable[[Clock, Any], list[Event]]


@dataclass(frozen=True, slots=True)
class Firing(Due):
    """A milestone's fire, staged: the clock as it will be stored once the milestone fired."""

    fired: NextVersion


def stage_firing(clock: Clock, milestone: Milestone) -> Firing:
    return Firing(clock, milestone, next_version(clock.with_fired(milestone.name)))


class EventHandlers:
    def __init__(
        self,
        store: SlaStore,
        broker: KafkaBroker,
        topics: Topics,
        policy: SlaPolicy,
        now: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._broker = broker
        self._topics = topics
        self._policy = policy
        self._now = now
        self.scheduler = ClockScheduler(stage_firing, self.on_milestones_due, now)
        OPEN_CLOCKS.set_function(lambda: len(self.scheduler))

    async def on_ticket_routed(self, event: TicketRouted, source: Source) -> None:
        async with self.scheduler.locked(event.ticket_id):
            clock = await self._store.start_once(start_clock(event, self._policy, source.partition))
            self.scheduler.add(clock)
        await self._say([started_event(clock)])

    async def on_ticket_acknowledged(self, event: TicketAcknowledged, _: Source) -> None:
        await self._change(event, lambda clock, e: acknowledge(clock, e.occurred_at), no_reaction)

    async def on_information_requested(self, event: TicketInformationRequested, _: Source) -> None:
        await self._change(
            event,
            lambda clock, e: pause(clock, e.occurred_at),
            lambda clock, e: [paused_event(clock, e)],
        )

    async def on_information_provided(self, event: TicketInformationProvided, _: Source) -> None:
        await self._change(
            event,
            lambda clock, e: resume(clock, e.occurred_at),
            lambda clock, e: [resumed_event(clock, e)],
        )

    async def on_ticket_resolved(self, event: TicketResolved, _: Source) -> None:
        await self._change(
            event,
            lambda clock, e: resolve(clock, e.occurred_at),
            lambda clock, e: [met_event(clock, e)],
        )

    async def on_ticket_reopened(self, event: TicketReopened, _: Source) -> None:
        await self._change(
            event,
            lambda clock, e: reopen(clock, e.occurred_at),
            lambda clock, _: [started_event(clock)],
        )

    async def on_ticket_closed(self, event: TicketClosed, _: Source) -> None:
        await self._change(event, lambda clock, e: rate(clock, e.rating), no_reaction)

    async def on_ticket_transferred(self, event: TicketTransferred, _: Source) -> None:
        await self._change(event, lambda clock, e: transfer(clock, e.to_department), no_reaction)

    async def on_transfer_refused(self, event: TicketTransferRefused, _: Source) -> None:
        await self._change(event, lambda clock, e: transfer(clock, e.department), no_reaction)

    async def _change(self, event: Event, transition: Transition, reaction: Reaction) -> None:
        """Applies a lifecycle event to the ticket's clock once, and says what it means."""
        async with self.scheduler.locked(event.ticket_id):
            clock = self.scheduler.get(event.ticket_id)
            for _ in range(STALE_RETRIES):
                clock = clock or await self._store.clock(event.ticket_id)
                if clock is None:
                    log.warning("%s for %s, which has no clock", event.type, event.ticket_id)
                    return
                if str(event.event_id) in clock.applied:
                    break
                try:
                    clock = await self._store.save(transition(clock, event).with_applied(event))
                except StaleClock:
                    # Another instance stored a newer version (a rebalance in between):
                    # apply the event to that one.
                    clock = None
                    continue
                self.scheduler.hold(clock)
                break
            else:
                raise StaleClock(event.ticket_id)
            # Republished as the same events on a redelivery, so nothing is lost in between.
            await self._say(reaction(clock, event))

    async def on_milestones_due(self, due: list[Firing]) -> list[Clock]:
        # Published before they are marked fired: a crash in between fires them again, under
        # the same event ids, rather than never.
        now = self._now()
        await self._say([milestone_event(each.clock, each.milestone, now) for each in due])
        return await self._store.save_versions([each.fired for each in due])

    async def _say(self, events: list[Event]) -> None:
        await publish_all(self._broker, self._topics.sla, events)
        said = Counter((event.type, getattr(event, "department", "")) for event in events)
        for (event_type, department), count in said.items():
            SLA_EVENTS.labels(event_type, department).inc(count)


def no_reaction(_: Clock, __: Event) -> list[Event]:
    return []


class ClockOwnership(ConsumerRebalanceListener):  # type: ignore[misc]
    """Holds in memory exactly the clocks of the ticket partitions this instance is assigned."""

    def __init__(self, store: SlaStore, scheduler: ClockScheduler[Any], tickets_topic: str) -> None:
        self._store = store
        self._scheduler = scheduler
        self._topic = tickets_topic

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._scheduler.drop_partitions(tp.partition for tp in revoked if tp.topic == self._topic)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        partitions = [tp.partition for tp in assigned if tp.topic == self._topic]
        # A rebuild allocates a million objects that all live on: a garbage collection while
        # it reads would walk them over and over. adopt() moves them out of the collector's
        # sight once they are in.
        gc.disable()
        try:
            pending = await self._store.pending_clocks(partitions)
        finally:
            gc.enable()
        self._scheduler.adopt(pending)


class ClockView(BaseModel):
    ticket_id: str
    department: str
    generation: int
    started_at: datetime
    resolution_due_at: datetime
    first_response_due_at: datetime
    paused: bool
    stopped_at: datetime | None
    fired: list[str]


def routes(store: SlaStore, auth: Authenticator) -> APIRouter:
    router = APIRouter(prefix="/v1/clocks", tags=["sla"])
    Reader = Annotated[Principal, Depends(auth.require(Role.DEPARTMENT, Role.SUPERVISOR))]

    @router.get("/{ticket_id}", summary="A ticket's SLA clock")
    async def get_clock(ticket_id: Annotated[TicketId, Path()], principal: Reader) -> ClockView:
        clock = await store.clock(ticket_id)
        visible = clock is not None and (
            principal.role is Role.SUPERVISOR or principal.subject == clock.department
        )
        if clock is None or not visible:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such clock")
        return ClockView(
            ticket_id=clock.ticket_id,
            department=clock.department,
            generation=clock.generation,
            started_at=clock.started_at,
            resolution_due_at=clock.resolution_due_at,
            first_response_due_at=clock.first_response_due_at,
            paused=clock.paused_at is not None,
            stopped_at=clock.stopped_at,
            fired=sorted(clock.fired),
        )

    return router


class FiguresView(BaseModel):
    tickets: int
    response_rate: float | None
    resolution_rate: float | None
    satisfaction_rate: float | None
    responses_due: int
    responded_in_time: int
    resolutions_due: int
    resolved_in_time: int
    rated: int
    satisfied: int
    open: int
    at_risk: int
    breached: int


class Report(BaseModel):
    since: datetime
    until: datetime
    at: datetime
    departments: dict[str, FiguresView]


def build_report(clocks: list[Clock], since: datetime, until: datetime, now: datetime) -> Report:
    figures = report(clocks, now)
    return Report(
        since=since,
        until=until,
        at=now,
        departments={
            name: FiguresView(
                tickets=f.tickets,
                response_rate=f.response_rate,
                resolution_rate=f.resolution_rate,
                satisfaction_rate=f.satisfaction_rate,
                responses_due=f.responses_due,
                responded_in_time=f.responded_in_time,
                resolutions_due=f.resolutions_due,
                resolved_in_time=f.resolved_in_time,
                rated=f.rated,
                satisfied=f.satisfied,
                open=f.open,
                at_risk=f.at_risk,
                breached=f.breached,
            )
            for name, f in figures.items()
        },
    )


def report_routes(store: SlaStore, auth: Authenticator, now: Callable[[], datetime]) -> APIRouter:
    router = APIRouter(prefix="/v1/reports", tags=["reports"])
    Reader = Annotated[
        Principal, Depends(auth.require(Role.DEPARTMENT, Role.SUPERVISOR, Role.ADMIN))
    ]

    @router.get("", summary="The three rates and where tickets stand, per department")
    async def get_report(
        principal: Reader,
        since: Annotated[
            datetime | None, Query(description="start of the period (default: 30 days ago)")
        ] = None,
        until: Annotated[datetime | None, Query(description="end (default: now)")] = None,
    ) -> Report:
        moment = now()
        end = until or moment
        start = since or end - timedelta(days=30)
        if start.tzinfo is None or end.tzinfo is None:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                "since and until need a time zone, e.g. 2026-11-01T00:00:00+08:00",
            )
        if start >= end:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "since must be before until")
        found = build_report(await store.started_between(start, end), start, end, moment)
        if principal.role is Role.DEPARTMENT:
            # A department sees its own figures, not the others' nor the park's.
            found.departments = {
                name: figures
                for name, figures in found.departments.items()
                if name == principal.subject
            }
        return found

    return router


class AttentionView(BaseModel):
    ticket_id: str
    department: str
    resolution_due_at: datetime
    paused: bool


class Board(BaseModel):
    report: Report
    at_risk: list[AttentionView]
    """Open tickets past 75 % of their target, soonest due first (the first 100)."""
    at_risk_total: int
    breached: list[AttentionView]
    """Open tickets past their due time, most recently breached first (the first 100)."""
    breached_total: int


BOARD_LIST_LIMIT = 100
BOARD_PERIOD = timedelta(days=30)
BOARD_CACHE_SECONDS = 2.0
HEARTBEAT_SECONDS = 15.0
BOARD_PAGE = (Path_(__file__).parent / "board.html").read_text(encoding="utf-8")


def content_security_policy(page: str) -> str:
    """Lets the page run its own inline script, by hash, and talk only to this origin."""
    script = page.split("<script>", 1)[1].split("</script>", 1)[0]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    return (
        f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


BOARD_CSP = content_security_policy(BOARD_PAGE)


def board_routes(
    store: SlaStore, feed: SlaFeed, auth: Authenticator, now: Callable[[], datetime]
) -> APIRouter:
    """The live SLA board: a page, its figures, and a stream of SLA events. A department sees
    its own tickets and events only; supervisors and administrators see the park's."""
    router = APIRouter(tags=["board"])
    Viewer = Annotated[
        Principal, Depends(auth.require(Role.DEPARTMENT, Role.SUPERVISOR, Role.ADMIN))
    ]

    cached: list[tuple[datetime, list[Clock]]] = []
    reading = asyncio.Lock()

    async def recent_clocks(moment: datetime) -> list[Clock]:
        """The last 30 days' clocks, read at most once per BOARD_CACHE_SECONDS however many
        boards are open: every open page asks every few seconds and after every SLA event."""
        async with reading:
            if not cached or moment - cached[0][0] > timedelta(seconds=BOARD_CACHE_SECONDS):
                cached[:] = [(moment, await store.started_between(moment - BOARD_PERIOD, moment))]
            return cached[0][1]

    def visible_to(principal: Principal, department: str) -> bool:
        return principal.role is not Role.DEPARTMENT or department == principal.subject

    @router.get("/board", response_class=HTMLResponse, summary="The live SLA board (a web page)")
    async def get_board_page() -> HTMLResponse:
        # The page is code without data, like the API docs: it asks the viewer for a
        # credential and sends it with every request for figures and events.
        return HTMLResponse(BOARD_PAGE, headers={"Content-Security-Policy": BOARD_CSP})

    @router.get("/v1/board", summary="Tickets at risk and breached, and the rates per department")
    async def get_board(principal: Viewer) -> Board:
        moment = now()
        clocks = [c for c in await recent_clocks(moment) if visible_to(principal, c.department)]
        at_risk, breached = needing_attention(clocks, moment)
        found = build_report(clocks, moment - BOARD_PERIOD, moment, moment)
        if principal.role is Role.DEPARTMENT:
            found.departments.pop("overall", None)

        def views(chosen: list[Clock]) -> list[AttentionView]:
            return [
                AttentionView(
                    ticket_id=clock.ticket_id,
                    department=clock.department,
                    resolution_due_at=clock.resolution_due_at,
                    paused=clock.paused_at is not None,
                )
                for clock in chosen[:BOARD_LIST_LIMIT]
            ]

        return Board(
            report=found,
            at_risk=views(at_risk),
            at_risk_total=len(at_risk),
            breached=views(breached),
            breached_total=len(breached),
        )

    @router.get(
        "/v1/board/events",
        summary="SLA events as they happen (text/event-stream), the latest few first",
        response_class=StreamingResponse,
    )
    async def get_board_events(principal: Viewer) -> StreamingResponse:
        async def stream() -> AsyncIterator[str]:
            async with feed.subscription() as events:
                for earlier in list(feed.recent):
                    if visible_to(principal, getattr(earlier, "department", "")):
                        yield f"data: {earlier.model_dump_json()}\n\n"
                while True:
                    try:
                        async with asyncio.timeout(HEARTBEAT_SECONDS):
                            event = await events.get()
                    except TimeoutError:
                        yield ": still here\n\n"  # keeps proxies from closing an idle stream
                        continue
                    if event is None:
                        return
                    if visible_to(principal, getattr(event, "department", "")):
                        yield f"data: {event.model_dump_json()}\n\n"

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    return router
