from typing import Any, get_args

from httpx import ASGITransport, AsyncClient

from shared.asyncapi import channel_docs, document, event_types, html
from shared.credentials import CredentialIssued, CredentialRevoked
from shared.departments import DEPARTMENTS
from shared.events import AnyEvent
from shared.topics import Topics
from tests.unit.test_service_shell import app

TOPICS = Topics("parkdesk")
DOC = document(TOPICS)


def resolve(ref: str) -> Any:
    node: Any = DOC
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_every_event_model_is_documented_on_some_topic() -> None:
    documented = {model for channel in channel_docs(TOPICS) for model in channel.messages}
    every = {*get_args(AnyEvent), CredentialIssued, CredentialRevoked}
    assert documented == every
    names = {message["name"] for message in DOC["components"]["messages"].values()}
    assert names == {model.event_type for model in every}


def test_every_reference_resolves() -> None:
    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            found = [node["$ref"]] if "$ref" in node else []
            return found + [ref for value in node.values() for ref in refs(value)]
        if isinstance(node, list):
            return [ref for value in node for ref in refs(value)]
        return []

    found = refs(DOC)
    assert len(found) > 100
    for ref in found:
        assert resolve(ref) is not None, ref


def test_a_payload_schema_is_the_model_s() -> None:
    submitted = resolve(DOC["components"]["messages"]["TicketSubmitted"]["payload"]["$ref"])
    assert {"event_id", "type", "schema_version", "ticket_id", "correlation_id", "ticket"} <= set(
        submitted["properties"]
    )
    assert submitted["additionalProperties"] is False


def test_department_topics_are_one_parameterised_channel() -> None:
    channel = DOC["channels"]["department"]
    assert channel["address"] == "parkdesk.dept.{department}"
    assert channel["parameters"]["department"]["enum"] == sorted(DEPARTMENTS)
    code = next(iter(DEPARTMENTS))
    assert "ticket.assigned" in event_types(DOC, f"parkdesk.dept.{code}")
    assert event_types(DOC, "parkdesk.dept.no-such-department") == set()
    assert "ticket.submitted" not in event_types(DOC, f"parkdesk.dept.{code}")


def test_the_page_shows_every_topic_and_event_and_escapes_text() -> None:
    page = html(DOC)
    for channel in DOC["channels"].values():
        assert f"<code>{channel['address']}</code>" in page
    for message in DOC["components"]["messages"].values():
        assert f"<code>{message['name']}</code>" in page
    assert "<script" not in page


async def test_every_service_serves_the_document_and_the_page() -> None:
    async with AsyncClient(transport=ASGITransport(app()), base_url="http://test") as http:
        served = await http.get("/asyncapi.json")
        page = await http.get("/asyncapi")

    assert served.status_code == 200
    assert served.json()["asyncapi"] == "3.0.0"
    assert set(served.json()["channels"]) == set(DOC["channels"])
    assert page.headers["content-type"].startswith("text/html")
    assert "parkdesk.tickets" in page.text


def test_routing_confidence_is_documented_as_a_compatible_addition() -> None:
    routed = resolve(DOC["components"]["messages"]["TicketRouted"]["payload"]["$ref"])
    assigned = resolve(DOC["components"]["messages"]["TicketAssigned"]["payload"]["$ref"])

    for payload in (routed, assigned):
        for field in ("confidence", "candidates"):
            assert field not in payload.get("required", [])
            assert "Added compatibly to v1" in payload["properties"][field]["description"]
    assert routed["properties"]["candidates"]["maxItems"] == 3
    assert "model_version" in routed["properties"]
