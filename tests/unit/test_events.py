import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from shared.events import (
    EVENT_MODELS,
    Candidate,
    Category,
    Event,
    NotReadableYet,
    Priority,
    SlaWarning,
    TicketContent,
    TicketRouted,
    TicketSubmitted,
    UndecodableEvent,
    decode_event,
)
from tests.unit.samples import sample_ticket


def submitted() -> TicketSubmitted:
    ticket = sample_ticket()
    return TicketSubmitted(ticket_id=ticket.ticket_id, correlation_id="c-1", ticket=ticket)


def test_an_event_round_trips_through_its_json() -> None:
    event = submitted()

    decoded = decode_event(event.to_json())

    assert decoded == event
    assert isinstance(decoded, TicketSubmitted)


def test_every_event_carries_the_envelope() -> None:
    document = json.loads(submitted().to_json())

    assert {
        "event_id",
        "type",
        "schema_version",
        "occurred_at",
        "ticket_id",
        "correlation_id",
    } <= document.keys()
    assert document["type"] == "ticket.submitted"
    assert document["schema_version"] == 1


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe", "not JSON"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"type": "ticket.exploded", "schema_version": 1}', "unknown event type"),
        (b'{"type": "ticket.submitted", "schema_version": 0}', "unknown event type or schema"),
        (b'{"type": "ticket.submitted", "schema_version": 2}', "without an event's envelope"),
        (b'{"type": "ticket.submitted", "schema_version": 1, "ticket_id": "x"}', "invalid"),
    ],
)
def test_what_cannot_be_decoded_says_why(raw: bytes, reason: str) -> None:
    with pytest.raises(UndecodableEvent, match=reason):
        decode_event(raw)


def test_a_newer_producer_s_fields_are_ignored_at_any_depth() -> None:
    event = submitted()
    document = json.loads(event.to_json())
    document["surprise"] = True
    document["ticket"]["channel"] = "wechat"
    document["ticket"]["enterprise"]["tier"] = "gold"

    decoded = decode_event(json.dumps(document).encode())

    assert decoded == event


def test_fields_of_a_sequence_of_models_are_pruned_too() -> None:
    routed = TicketRouted(
        ticket_id=submitted().ticket_id,
        correlation_id="c-1",
        department="tj-tax",
        reason="r",
        category=Category.ADMINISTRATIVE,
        priority=Priority.NORMAL,
        submitted_at=datetime(2026, 12, 2, 8, tzinfo=UTC),
        resolution_due_at=datetime(2026, 12, 3, 8, tzinfo=UTC),
        candidates=(Candidate(department="tj-tax", confidence=0.9),),
    )
    document = json.loads(routed.to_json())
    document["candidates"][0]["explanation"] = "a newer producer's"

    assert decode_event(json.dumps(document).encode()) == routed


def test_an_api_body_still_refuses_unknown_fields() -> None:
    body = submitted().ticket.model_dump(
        mode="json", exclude={"ticket_id", "submitted_at", "resolution_due_at"}
    )

    with pytest.raises(ValidationError, match="surprise"):
        TicketContent.model_validate({**body, "surprise": True})


def test_a_newer_schema_version_waits_for_an_upgrade() -> None:
    document = json.loads(submitted().to_json())
    document["schema_version"] = 2

    with pytest.raises(NotReadableYet, match="v2 is newer than v1"):
        decode_event(json.dumps(document).encode())


def test_derived_ids_are_stable_and_distinct() -> None:
    assert Event.derived_id("T-1", "sla", "breached") == Event.derived_id("T-1", "sla", "breached")
    assert Event.derived_id("T-1", "sla", "breached") != Event.derived_id("T-2", "sla", "breached")
    assert isinstance(Event.derived_id("x"), uuid.UUID)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        SlaWarning(
            ticket_id=sample_ticket().ticket_id,
            correlation_id="c",
            department="tj-tax",
            threshold=0.5,
            resolution_due_at=datetime(2026, 1, 1),
            remaining_seconds=1.0,
        )


def test_registry_knows_every_event_type() -> None:
    types = {event_type for event_type, _ in EVENT_MODELS}
    assert types == {
        "ticket.submitted",
        "ticket.routed",
        "ticket.assigned",
        "ticket.acknowledged",
        "ticket.commented",
        "ticket.information_requested",
        "ticket.information_provided",
        "ticket.transferred",
        "ticket.transfer_refused",
        "ticket.resolved",
        "ticket.closed",
        "ticket.reopened",
        "sla.started",
        "sla.warning",
        "sla.breached",
        "sla.first_response_missed",
        "sla.paused",
        "sla.resumed",
        "sla.met",
        "notification.sent",
    }
    assert all(model.event_type == event_type for (event_type, _), model in EVENT_MODELS.items())


def test_times_stay_timezone_aware() -> None:
    ticket = sample_ticket(submitted_at=datetime(2026, 3, 1, 8, tzinfo=UTC))
    assert ticket.resolution_due_at - ticket.submitted_at == timedelta(hours=24)


@pytest.mark.parametrize(
    ("text", "safe"),
    [
        ("停电\n第二行\t缩进", True),
        ("bad\x00byte", False),
        ("bell\x07", False),
        ("lone \ud800 surrogate", False),
    ],
)
def test_text_with_control_characters_or_lone_surrogates_is_refused(text: str, safe: bool) -> None:
    body = submitted().ticket.model_dump(
        mode="python", exclude={"ticket_id", "submitted_at", "resolution_due_at"}
    )

    if safe:
        assert TicketContent.model_validate({**body, "description": text}).description == text
    else:
        with pytest.raises(ValidationError) as refused:
            TicketContent.model_validate({**body, "description": text})
        assert refused.value.errors()[0]["loc"] == ("description",)
