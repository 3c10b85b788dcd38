from datetime import UTC, datetime, timedelta

import pytest

from services.intake.domain import (
    DEPARTMENT_ACTIONS,
    ENTERPRISE_ACTIONS,
    Action,
    IllegalAction,
    Status,
    TicketState,
    accept,
    at_store_precision,
    fingerprint,
    fold,
    new_ticket_id,
)
from shared.events import (
    Actor,
    ActorRole,
    Event,
    SlaPaused,
    SlaResumed,
    SlaStarted,
    TicketAcknowledged,
    TicketAction,
    TicketClosed,
    TicketCommented,
    TicketInformationProvided,
    TicketInformationRequested,
    TicketReopened,
    TicketResolved,
    TicketRouted,
    TicketSubmitted,
    TicketTransferred,
    TicketTransferRefused,
)
from tests.unit.samples import sample_content

NOW = datetime(2026, 11, 29, 8, 30, 15, 123456, tzinfo=UTC)


def test_ticket_ids_are_well_formed_unique_and_sort_by_time() -> None:
    earlier = [new_ticket_id(NOW) for _ in range(1000)]
    later = new_ticket_id(NOW + timedelta(milliseconds=1))

    assert len(set(earlier)) == 1000
    assert all(len(t) == 28 and t.startswith("T-") for t in earlier)
    assert all(t < later for t in earlier)


def test_fingerprint_tells_retries_from_different_bodies() -> None:
    assert fingerprint(sample_content()) == fingerprint(sample_content())
    assert fingerprint(sample_content()) != fingerprint(sample_content(subject="另一个问题"))


def test_at_store_precision_keeps_what_the_store_keeps() -> None:
    assert at_store_precision(NOW) == NOW.replace(microsecond=123000)


def test_accepting_sets_the_due_time_and_a_stable_event_id() -> None:
    one = accept(sample_content(), "T-01M8M3WQ6WQ4ZQ3FGCHBD04QCM", NOW, timedelta(hours=24), "c")
    two = accept(sample_content(), "T-01M8M3WQ6WQ4ZQ3FGCHBD04QCM", NOW, timedelta(hours=24), "d")

    assert one.ticket.resolution_due_at == NOW + timedelta(hours=24)
    assert one.event_id == two.event_id


TICKET = "T-01M8M3WQ6WQ4ZQ3FGCHBD04QCM"
DEPT = Actor(role=ActorRole.DEPARTMENT, id="tj-tax")
FIRM = Actor(role=ActorRole.ENTERPRISE, id="E-1")


class Story:
    """A ticket's events, one a minute, as the services would publish them."""

    def __init__(self) -> None:
        self.clock = NOW
        self.events: list[Event] = [accept(sample_content(), TICKET, NOW, timedelta(hours=24), "c")]

    def _at(self) -> dict[str, object]:
        self.clock += timedelta(minutes=1)
        return {"ticket_id": TICKET, "correlation_id": "c", "occurred_at": self.clock}

    def act(
        self,
        model: type[TicketAction],
        actor: Actor = DEPT,
        department: str = "tj-tax",
        **fields: object,
    ) -> "Story":
        self.events.append(model(**self._at(), actor=actor, department=department, **fields))
        return self

    def learn(self, model: type[Event], **fields: object) -> "Story":
        self.events.append(model(**self._at(), **fields))
        return self

    def routed(self, department: str = "tj-tax") -> "Story":
        return self.learn(
            TicketRouted,
            department=department,
            reason="r",
            category="daily_life",
            priority="normal",
            submitted_at=NOW,
            resolution_due_at=NOW + timedelta(hours=24),
        )

    @property
    def state(self) -> TicketState:
        state = fold(self.events)
        assert state is not None
        return state


def status_of(story: Story) -> Status:
    """A call, not an attribute chain, so that type narrowing does not carry across steps."""
    return story.state.status


def test_the_lifecycle_from_submission_to_closing() -> None:
    story = Story()
    assert status_of(story) is Status.SUBMITTED
    assert status_of(story.routed()) is Status.ROUTED
    assert status_of(story.act(TicketAcknowledged)) is Status.ACKNOWLEDGED
    story.act(TicketInformationRequested, question="which invoice?")
    assert status_of(story) is Status.AWAITING_ENTERPRISE
    story.act(TicketInformationProvided, actor=FIRM, answer="No. 42")
    assert status_of(story) is Status.IN_PROGRESS
    story.act(TicketResolved, resolution="reissued")
    assert status_of(story) is Status.RESOLVED
    assert story.state.resolved_at == story.clock
    story.act(TicketClosed, actor=FIRM, rating=5)
    assert status_of(story) is Status.CLOSED
    assert story.state.rating == 5
    assert story.state.sequence == 6  # submitted + five actions; the routing is learned


def test_a_department_comment_starts_the_work_an_enterprise_one_does_not() -> None:
    story = Story().routed().act(TicketAcknowledged)
    assert story.act(TicketCommented, actor=FIRM, comment="any news?").state.status is (
        Status.ACKNOWLEDGED
    )
    assert story.act(TicketCommented, comment="on it").state.status is Status.IN_PROGRESS


@pytest.mark.parametrize(
    ("story", "action", "side", "message"),
    [
        (
            Story()
            .routed()
            .act(TicketAcknowledged)
            .act(TicketResolved, resolution="x")
            .act(TicketClosed, actor=FIRM, rating=4),
            Action.RESOLVE,
            DEPARTMENT_ACTIONS,
            "cannot resolve a ticket that is closed; allowed now: nothing more",
        ),
        (
            Story()
            .routed()
            .act(TicketAcknowledged)
            .act(TicketResolved, resolution="x")
            .act(TicketClosed, actor=FIRM, rating=4),
            Action.CLOSE,
            ENTERPRISE_ACTIONS,
            "cannot close a ticket that is closed",
        ),
        (
            Story().routed(),
            Action.RESOLVE,
            DEPARTMENT_ACTIONS,
            "cannot resolve a ticket that is routed; allowed now: acknowledge, comment, transfer",
        ),
        (
            Story().routed().act(TicketAcknowledged),
            Action.CLOSE,
            ENTERPRISE_ACTIONS,
            "cannot close a ticket that is acknowledged; allowed now: comment",
        ),
        (
            Story().routed().act(TicketAcknowledged),
            Action.PROVIDE_INFORMATION,
            ENTERPRISE_ACTIONS,
            "cannot provide-information",
        ),
        (Story().routed(), Action.REOPEN, ENTERPRISE_ACTIONS, "cannot reopen"),
    ],
)
def test_illegal_actions_say_the_state_and_what_is_allowed(
    story: Story, action: Action, side: frozenset[Action], message: str
) -> None:
    with pytest.raises(IllegalAction, match=message.replace("(", r"\(")):
        story.state.check(action, side, story.clock)


def test_reopening_is_allowed_for_seven_days_after_resolution() -> None:
    story = Story().routed().act(TicketAcknowledged).act(TicketResolved, resolution="done")
    resolved = story.clock

    story.state.check(Action.REOPEN, ENTERPRISE_ACTIONS, resolved + timedelta(days=7))
    with pytest.raises(IllegalAction, match="more than 7 days ago"):
        story.state.check(
            Action.REOPEN, ENTERPRISE_ACTIONS, resolved + timedelta(days=7, seconds=1)
        )
    story.act(TicketReopened, actor=FIRM, reason="still broken")
    assert status_of(story) is Status.IN_PROGRESS
    assert story.state.resolved_at is None


def test_transfers_move_the_ticket_and_a_refusal_moves_it_back() -> None:
    story = Story().routed().act(TicketAcknowledged)
    with pytest.raises(IllegalAction, match="escalations"):
        story.state.check_transfer("park-supervision")
    with pytest.raises(IllegalAction, match="already"):
        story.state.check_transfer("tj-tax")
    with pytest.raises(IllegalAction, match="unknown department"):
        story.state.check_transfer("tj-nowhere")

    story.act(
        TicketTransferred,
        from_department="tj-tax",
        to_department="tj-market",
        reason="registration",
    )
    assert (story.state.status, story.state.department) == (Status.ROUTED, "tj-market")
    transfer_id = story.events[-1].event_id
    story.learn(
        TicketTransferRefused,
        transfer_event_id=transfer_id,
        requested_department="tj-market",
        department="tj-tax",
        reason="race",
    )
    assert (story.state.status, story.state.department) == (Status.ACKNOWLEDGED, "tj-tax")


def test_the_due_time_follows_the_sla_clock() -> None:
    story = Story().routed()
    assert story.state.resolution_due_at == NOW + timedelta(hours=24)
    later = NOW + timedelta(hours=25)
    story.learn(
        SlaStarted,
        department="tj-tax",
        started_at=NOW,
        resolution_due_at=NOW + timedelta(hours=24),
        first_response_due_at=NOW + timedelta(hours=2),
    )
    story.learn(SlaPaused, department="tj-tax", remaining_seconds=3600.0)
    assert story.state.paused
    story.learn(SlaResumed, department="tj-tax", resolution_due_at=later, remaining_seconds=1.0)
    assert story.state.resolution_due_at == later
    assert not story.state.paused


def test_repeated_events_count_once() -> None:
    story = Story().routed().act(TicketAcknowledged)
    assert fold([*story.events, *story.events]) == story.state


def test_nothing_before_submission() -> None:
    assert fold([]) is None
    assert isinstance(Story().events[0], TicketSubmitted) is not False
