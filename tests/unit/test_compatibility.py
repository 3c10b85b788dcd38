import json
from typing import Any

import pytest

from shared.compatibility import RELEASED_FILE, breaking_changes, current_schemas

TICKET = {
    "type": "object",
    "properties": {"subject": {"type": "string"}, "priority": {"enum": ["normal", "urgent"]}},
    "required": ["subject"],
}


def event(**changes: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            "ticket_id": {"type": "string"},
            "ticket": {"$ref": "#/$defs/Ticket"},
            "candidates": {"type": "array", "items": {"$ref": "#/$defs/Ticket"}},
            "confidence": {"anyOf": [{"type": "number"}, {"type": "null"}]},
        },
        "required": ["ticket_id", "ticket"],
        "$defs": {"Ticket": json.loads(json.dumps(TICKET))},
    }
    for path, value in changes.items():
        node = schema
        *parents, last = path.split("__")
        for part in parents:
            node = node[part]
        if value is None:
            del node[last]
        else:
            node[last] = value
    return schema


def test_this_code_reads_every_event_of_the_last_release_and_they_read_its_events() -> None:
    released = json.loads(RELEASED_FILE.read_text())

    assert breaking_changes(released, current_schemas()) == []
    assert set(released) <= set(current_schemas())


def test_a_new_optional_field_is_compatible() -> None:
    extended = event(properties__channel={"type": "string"})

    assert breaking_changes({"e@v1": event()}, {"e@v1": extended}) == []


@pytest.mark.parametrize(
    ("changed", "complaint"),
    [
        (event(required=["ticket_id", "ticket", "channel"]), "channel: required now"),
        (event(required=["ticket_id"]), "ticket: required by the release, no longer required"),
        (event(properties__ticket_id={"type": "integer"}), "ticket_id: was string, is integer"),
        (event(**{"$defs__Ticket__required": []}), "ticket.subject: required by the release"),
        (
            event(**{"$defs__Ticket__properties__priority": {"enum": ["normal"]}}),
            "ticket.priority: was one of",
        ),
        (
            event(**{"$defs__Ticket__properties__subject": {"type": "array"}}),
            "candidates[].subject: was string, is array",
        ),
        (event(properties__confidence={"type": "number"}), "confidence: was null or number"),
    ],
)
def test_a_breaking_change_is_named(changed: dict[str, Any], complaint: str) -> None:
    found = breaking_changes({"e@v1": event()}, {"e@v1": changed})

    assert any(complaint in line for line in found), found


def test_an_event_version_that_is_gone_is_breaking() -> None:
    assert breaking_changes({"e@v1": event()}, {"e@v2": event()}) == ["e@v1: gone"]
