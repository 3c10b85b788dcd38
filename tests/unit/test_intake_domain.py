from datetime import UTC, datetime, timedelta

from services.intake.domain import accept, fingerprint, new_ticket_id, submission_time, view
from shared.events import Event, TicketRouted
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


def test_submission_time_keeps_what_the_store_keeps() -> None:
    assert submission_time(NOW) == NOW.replace(microsecond=123000)


def test_accepting_sets_the_due_time_and_a_stable_event_id() -> None:
    one = accept(sample_content(), "T-01M8M3WQ6WQ4ZQ3FGCHBD04QCM", NOW, timedelta(hours=24), "c")
    two = accept(sample_content(), "T-01M8M3WQ6WQ4ZQ3FGCHBD04QCM", NOW, timedelta(hours=24), "d")

    assert one.ticket.resolution_due_at == NOW + timedelta(hours=24)
    assert one.event_id == two.event_id


def test_view_follows_the_events_in_time_order_and_ignores_repeats() -> None:
    submitted = accept(
        sample_content(), "T-01M8M3WQ6WQ4ZQ3FGCHBD04QCM", NOW, timedelta(hours=24), "c"
    )
    routed = TicketRouted(
        event_id=Event.derived_id("routed"),
        occurred_at=NOW + timedelta(seconds=1),
        ticket_id=submitted.ticket_id,
        correlation_id="c",
        department="bj-education",
        reason="matched 学籍",
        submitted_at=NOW,
        resolution_due_at=NOW + timedelta(hours=24),
    )

    found = view([routed, submitted, routed])

    assert found is not None
    assert found.status == "routed"
    assert found.department == "bj-education"
    assert [h.type for h in found.history] == ["ticket.submitted", "ticket.routed"]


def test_no_view_before_submission() -> None:
    assert view([]) is None
