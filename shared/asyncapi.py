"""The AsyncAPI 3.0 document of every topic, generated from the event models and the topic
layout (never written by hand), and its HTML rendering. Every service serves both, beside its
OpenAPI docs.

Which event goes on which topic, and who sends and receives it, is stated once here; a test
compares it with what the running suite really publishes.
"""

import json
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from shared.credentials import CredentialIssued, CredentialRevoked
from shared.departments import DEPARTMENTS
from shared.events import (
    FORWARDED_ACTIONS,
    NotificationSent,
    SlaBreached,
    SlaFirstResponseMissed,
    SlaMet,
    SlaPaused,
    SlaResumed,
    SlaStarted,
    SlaWarning,
    TicketAssigned,
    TicketRouted,
    TicketSubmitted,
    TicketTransferred,
    TicketTransferRefused,
)
from shared.topics import Topics


@dataclass(frozen=True)
class ChannelDoc:
    key: str
    address: str
    description: str
    messages: tuple[type[BaseModel], ...]
    senders: tuple[str, ...]
    receivers: tuple[str, ...]
    key_is: str = "the ticket id: one ticket's events stay on one partition, in order"


def channel_docs(topics: Topics) -> list[ChannelDoc]:
    return [
        ChannelDoc(
            "tickets",
            topics.tickets,
            "Every step of every ticket: submitted and acted on at intake, routed by routing.",
            (
                TicketSubmitted,
                *FORWARDED_ACTIONS,
                TicketTransferred,
                TicketRouted,
                TicketTransferRefused,
            ),
            senders=("intake", "routing"),
            receivers=("intake", "routing", "sla", "notify"),
        ),
        ChannelDoc(
            "sla",
            topics.sla,
            "The 24-hour clock of every ticket: started, warnings, misses, pauses, the outcome.",
            (
                SlaStarted,
                SlaWarning,
                SlaFirstResponseMissed,
                SlaBreached,
                SlaPaused,
                SlaResumed,
                SlaMet,
            ),
            senders=("sla",),
            receivers=("intake", "notify"),
        ),
        ChannelDoc(
            "department",
            topics.department("{department}"),
            "One department's work: each ticket it is assigned, in full, then every later step "
            "on it. Departments consume their own topic; events may repeat after a crash under "
            "the same event_id, so deduplicate on it.",
            (TicketAssigned, *FORWARDED_ACTIONS),
            senders=("routing",),
            receivers=("the department's own systems",),
        ),
        ChannelDoc(
            "notifications",
            topics.notifications,
            "Each notification delivered, on which channel, to whom, for which event.",
            (NotificationSent,),
            senders=("notify",),
            receivers=("audits",),
        ),
        ChannelDoc(
            "credentials",
            topics.credentials,
            "Every API credential issued and revoked (its SHA-256, never the token); compacted, "
            "read to its end by every service before it serves.",
            (CredentialIssued, CredentialRevoked),
            senders=("intake", "parkdesk-admin"),
            receivers=("intake", "routing", "sla", "notify"),
            key_is="the credential id: its last event is its state",
        ),
    ]


def _message_name(model: type[BaseModel]) -> str:
    return model.__name__


def _headers_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "event-id": {"type": "string", "format": "uuid"},
            "event-type": {"type": "string"},
            "schema-version": {"type": "string"},
            "correlation-id": {"type": "string", "maxLength": 128},
        },
    }


def document(topics: Topics) -> dict[str, Any]:
    channels = channel_docs(topics)
    models = sorted(
        {model for channel in channels for model in channel.messages}, key=_message_name
    )
    _, schemas = models_json_schema(
        [(model, "serialization") for model in models],
        ref_template="#/components/schemas/{model}",
    )
    messages = {
        _message_name(model): {
            "name": model.model_fields["type"].default,
            "title": _message_name(model),
            "summary": (model.__doc__ or "").strip().split("\n")[0] or None,
            "contentType": "application/json",
            "headers": _headers_schema(),
            "payload": {"$ref": f"#/components/schemas/{_message_name(model)}"},
        }
        for model in models
    }
    for message in messages.values():
        if message["summary"] is None:
            del message["summary"]
    doc_channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for channel in channels:
        refs = {
            _message_name(m): {"$ref": f"#/components/messages/{_message_name(m)}"}
            for m in channel.messages
        }
        doc_channels[channel.key] = {
            "address": channel.address,
            "description": f"{channel.description} Key: {channel.key_is}.",
            "messages": refs,
        }
        if "{department}" in channel.address:
            doc_channels[channel.key]["parameters"] = {
                "department": {
                    "enum": sorted(DEPARTMENTS),
                    "description": "The department's code (the department directory).",
                }
            }
        for action, parties in (("send", channel.senders), ("receive", channel.receivers)):
            for party in parties:
                operations[f"{party}.{action}.{channel.key}".replace(" ", "-")] = {
                    "action": action,
                    "channel": {"$ref": f"#/channels/{channel.key}"},
                    "summary": f"{party} {action}s on {channel.address}",
                    "messages": [
                        {"$ref": f"#/channels/{channel.key}/messages/{name}"} for name in refs
                    ],
                }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "parkdesk events",
            "version": "1",
            "description": "The Kafka topics of parkdesk, the science park's 24-hour service "
            "desk. Every event is JSON with an event_id, type, schema_version, occurred_at, "
            "ticket_id and correlation_id. A breaking change to an event is a new "
            "schema_version; a new optional field with a default is added to the version in "
            "force and says so in its description (ticket.routed and ticket.assigned v1 gained "
            "confidence, candidates and model_version that way), so a department's reader must "
            "ignore fields it does not know.",
        },
        "defaultContentType": "application/json",
        "channels": doc_channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas["$defs"]},
    }


_PAGE = Environment(autoescape=True).from_string(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ doc.info.title }}</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem;color:#222}
code,pre{font:13px ui-monospace,monospace}pre{background:#f6f8fa;padding:.8rem;overflow:auto}
section{border-top:1px solid #ddd;margin-top:1.5rem}h3{margin-bottom:.2rem}
.who{color:#555}
</style></head><body>
<h1>{{ doc.info.title }} <small>AsyncAPI {{ doc.asyncapi }}</small></h1>
<p>{{ doc.info.description }}</p>
<p><a href="asyncapi.json">asyncapi.json</a> · <a href="docs">HTTP API (OpenAPI)</a></p>
{% for key, channel in doc.channels.items() %}
<section id="channel-{{ key }}"><h2><code>{{ channel.address }}</code></h2>
<p>{{ channel.description }}</p>
<p class="who">{% for id, op in doc.operations.items()
  if op.channel["$ref"] == "#/channels/" ~ key %}
{{ op.summary }}{% if not loop.last %} · {% endif %}{% endfor %}</p>
{% for name in channel.messages %}{% set message = doc.components.messages[name] %}
<h3 id="{{ key }}-{{ name }}"><code>{{ message.name }}</code></h3>
{% if message.summary %}<p>{{ message.summary }}</p>{% endif %}
<details><summary>payload schema</summary>
<pre>{{ schemas[name] }}</pre></details>
{% endfor %}</section>
{% endfor %}
</body></html>
"""
)


def html(doc: dict[str, Any]) -> str:
    schemas = {
        name: json.dumps(schema, indent=2, ensure_ascii=False)
        for name, schema in doc["components"]["schemas"].items()
    }
    return _PAGE.render(doc=doc, schemas=schemas)


def event_types(doc: dict[str, Any], address: str) -> set[str]:
    """The event types the document says travel on a topic (department topics by pattern)."""
    types: set[str] = set()
    for channel in doc["channels"].values():
        pattern = channel["address"]
        if pattern == address or (
            "{department}" in pattern
            and address.startswith(pattern.split("{")[0])
            and address.removeprefix(pattern.split("{")[0]) in DEPARTMENTS
        ):
            types |= {doc["components"]["messages"][name]["name"] for name in channel["messages"]}
    return types
