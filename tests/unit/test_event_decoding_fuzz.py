"""Property-based fuzzing of event decoding: whatever bytes arrive on a topic, decoding either
gives a valid event, says as UndecodableEvent why the record belongs in the dead letters, or
says as NotReadableYet that it is a whole event of a newer version, which waits for an upgrade.
Any other exception would crash a consumer or block its partition."""

import json
from typing import Any, get_args

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.events import (
    LATEST_VERSIONS,
    AnyEvent,
    Event,
    NotReadableYet,
    UndecodableEvent,
    decode_event,
)
from tests.unit.samples import sample_events

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=20), children, max_size=4)
    ),
    max_leaves=12,
)


def decodes_or_explains(raw: bytes) -> Event | None:
    try:
        return decode_event(raw)
    except UndecodableEvent as refused:
        reason = str(refused)
    except NotReadableYet:
        reason = waits_for_an_upgrade(raw)
    assert reason
    return None


def waits_for_an_upgrade(raw: bytes) -> str:
    """Only a known type, in a version above the last known, with a whole envelope, waits."""
    document = json.loads(raw)
    assert document["schema_version"] > LATEST_VERSIONS[document["type"]]
    assert {"event_id", "occurred_at", "ticket_id", "correlation_id"} <= set(document)
    return "a newer version: waits for an upgrade"


@settings(max_examples=500)
@given(st.binary(max_size=2048))
def test_random_bytes(raw: bytes) -> None:
    decodes_or_explains(raw)


@settings(max_examples=500)
@given(json_values)
def test_random_json(value: Any) -> None:
    decodes_or_explains(json.dumps(value).encode())


VALID = [event.model_dump(mode="json") for event in sample_events()]


def test_the_samples_cover_every_event_type() -> None:
    assert {document["type"] for document in VALID} == {
        model.event_type for model in get_args(AnyEvent)
    }
    for document in VALID:
        assert decodes_or_explains(json.dumps(document).encode()) is not None


@settings(max_examples=1000)
@given(
    st.sampled_from(VALID),
    st.sampled_from(["drop", "replace", "add"]),
    st.data(),
)
def test_mutated_valid_events(document: dict[str, Any], mutation: str, data: st.DataObject) -> None:
    mutated = dict(document)
    key = data.draw(st.sampled_from(sorted(mutated)))
    if mutation == "drop":
        del mutated[key]
    elif mutation == "replace":
        mutated[key] = data.draw(json_values)
    else:
        mutated[data.draw(st.text(min_size=1, max_size=20))] = data.draw(json_values)
    event = decodes_or_explains(json.dumps(mutated).encode())
    if event is not None:
        # Whatever got through is a whole, valid event of the type it claims.
        assert event.type == mutated["type"]
        assert type(event).model_validate(event.model_dump(mode="json")) == event
