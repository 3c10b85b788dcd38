"""Event contracts: every record on a parkdesk topic is one of these models, serialised as JSON.

Each event carries the same envelope (event id, type, schema version, time, ticket id,
correlation id) and is keyed by ticket id on Kafka, so one ticket's events stay in order on one
partition. A breaking change to a payload gets a new `schema_version` and a new model; a new
optional field is added to the version in force. Consumers read tolerantly: fields they do not
know are ignored, so a newer producer's additions never cost an event; a schema version newer
than any they know is not poison but an upgrade under way, and waits (`NotReadableYet`) until
a consumer that knows it reads it. API request bodies stay strict: an unknown field there is a
client's mistake, answered with 422.
"""

import json
import re
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from types import UnionType
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

TicketId = Annotated[str, StringConstraints(pattern=r"^T-[0-9A-Z]{26}$")]
"""`T-` and a ULID-like upper-case id: sortable by submission time, safe in URLs and keys."""

EnterpriseId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]
DepartmentCode = Annotated[str, StringConstraints(pattern=r"^[a-z]+(-[a-z]+)*$", max_length=40)]
Phone = Annotated[str, StringConstraints(pattern=r"^\+?[0-9][0-9 -]{5,19}$")]


class Origin(StrEnum):
    BEIJING = "beijing"
    TIANJIN = "tianjin"
    OTHER = "other"


class Language(StrEnum):
    ZH = "zh"
    EN = "en"


class Category(StrEnum):
    """The four kinds of problem the park's 24-hour promise covers."""

    ADMINISTRATIVE = "administrative"
    PRODUCTION = "production"
    MANAGEMENT = "management"
    DAILY_LIFE = "daily_life"


class Priority(StrEnum):
    NORMAL = "normal"
    URGENT = "urgent"
    """Production stopped, people stranded: SLA policies may set shorter targets."""


_UNSAFE_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
"""NUL and the other control characters but tab and line breaks, and unpaired surrogates (a
JSON `\\ud800` escape): nothing a person types, and a surrogate cannot even be encoded."""


def refuse_unsafe_text(value: Any) -> Any:
    """For a model's `field_validator("*")`: a text field with unsafe characters is refused,
    by field, without quoting it."""
    if isinstance(value, str) and _UNSAFE_TEXT.search(value):
        raise ValueError("contains a control character or an unpaired surrogate")
    return value


class Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    _safe_text = field_validator("*", mode="after")(refuse_unsafe_text)


class Enterprise(Contract):
    id: EnterpriseId
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    origin: Origin
    zhongguancun_certified: bool


class Contact(Contract):
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    phone: Phone
    email: EmailStr
    language: Language


class TicketContent(Contract):
    """What an enterprise reports: the body a frontend POSTs to open a ticket."""

    enterprise: Enterprise
    contact: Contact
    category: Category
    priority: Priority = Priority.NORMAL
    subject: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    description: Annotated[str, StringConstraints(min_length=1, max_length=10_000)]


class Ticket(TicketContent):
    """A ticket as intake accepted it."""

    ticket_id: TicketId
    submitted_at: AwareDatetime
    resolution_due_at: AwareDatetime


class Event(Contract):
    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: str
    schema_version: int
    occurred_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    ticket_id: TicketId
    correlation_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]

    event_type: ClassVar[str]
    """The `type` literal of a concrete event; the registry is built from it."""

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def derived_id(cls, *parts: object) -> uuid.UUID:
        """A deterministic event id, so that re-emitting after a crash yields the same event."""
        return uuid.uuid5(uuid.NAMESPACE_URL, "parkdesk:" + ":".join(str(p) for p in parts))


# --- ticket lifecycle, on <namespace>.tickets -------------------------------------------


class TicketSubmitted(Event):
    event_type: ClassVar[str] = "ticket.submitted"
    type: Literal["ticket.submitted"] = "ticket.submitted"
    schema_version: Literal[1] = 1
    ticket: Ticket


Confidence = Annotated[float, Field(ge=0.0, le=1.0)]
"""A calibrated probability that the department is the right one: 0.8 is right four times in
five."""


class RunnerUp(Contract):
    """The best choice of another department: what routing would have done otherwise."""

    department: DepartmentCode
    rule_id: str
    """The rule that chose it, or `model:<version>` when the ranker did."""
    matched_terms: tuple[str, ...]
    confidence: Confidence | None = None


class Candidate(Contract):
    """A department the ranker weighed for a ticket, with how sure it is and why."""

    department: DepartmentCode
    confidence: Confidence
    matched_terms: tuple[str, ...] = ()


class TicketRouted(Event):
    event_type: ClassVar[str] = "ticket.routed"
    type: Literal["ticket.routed"] = "ticket.routed"
    schema_version: Literal[1] = 1
    department: DepartmentCode
    reason: Annotated[str, StringConstraints(max_length=500)]
    rule_id: str | None = None
    """The policy rule that decided; None when no rule matched (triage)."""
    matched_terms: tuple[str, ...] = ()
    runner_up: RunnerUp | None = None
    policy_version: str | None = None
    confidence: Confidence | None = Field(
        default=None,
        description="How sure routing is of `department` (a calibrated probability); absent "
        "from tickets routed before routing measured it. Added compatibly to v1.",
    )
    candidates: tuple[Candidate, ...] = Field(
        default=(),
        max_length=3,
        description="The ranker's top three departments, most likely first, with their "
        "confidence and the terms that scored: a triage agent dispatches from them. Added "
        "compatibly to v1.",
    )
    model_version: str | None = Field(
        default=None,
        description="The ranker model that scored the ticket (`policy_version` names the "
        "override rules). Added compatibly to v1.",
    )
    category: Category
    priority: Priority
    submitted_at: AwareDatetime
    resolution_due_at: AwareDatetime


class TicketTransferRefused(Event):
    """Routing refused a transfer: the ticket stays with the department that has it."""

    event_type: ClassVar[str] = "ticket.transfer_refused"
    type: Literal["ticket.transfer_refused"] = "ticket.transfer_refused"
    schema_version: Literal[1] = 1
    transfer_event_id: uuid.UUID
    requested_department: DepartmentCode
    department: DepartmentCode
    """The department that keeps the ticket."""
    reason: Annotated[str, StringConstraints(max_length=500)]


class ActorRole(StrEnum):
    ENTERPRISE = "enterprise"
    FRONTEND = "frontend"
    DEPARTMENT = "department"


class Actor(Contract):
    """Who did it: for a frontend acting for an enterprise, the frontend is the actor."""

    role: ActorRole
    id: Annotated[str, StringConstraints(min_length=1, max_length=100)]


AttachmentUrl = Annotated[str, StringConstraints(pattern=r"^https://\S{1,2000}$")]


class Attachment(Contract):
    """A reference to a file kept elsewhere; parkdesk never stores the file itself."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    url: AttachmentUrl


Note = Annotated[str, StringConstraints(min_length=1, max_length=10_000)]


class TicketAction(Event):
    """A step of the lifecycle someone took through the API."""

    actor: Actor
    department: DepartmentCode
    """The department that has the ticket when the action is taken."""


class TicketAcknowledged(TicketAction):
    event_type: ClassVar[str] = "ticket.acknowledged"
    type: Literal["ticket.acknowledged"] = "ticket.acknowledged"
    schema_version: Literal[1] = 1


class TicketCommented(TicketAction):
    event_type: ClassVar[str] = "ticket.commented"
    type: Literal["ticket.commented"] = "ticket.commented"
    schema_version: Literal[1] = 1
    comment: Note
    attachments: tuple[Attachment, ...] = ()


class TicketInformationRequested(TicketAction):
    """The department needs something from the enterprise: the SLA clock pauses."""

    event_type: ClassVar[str] = "ticket.information_requested"
    type: Literal["ticket.information_requested"] = "ticket.information_requested"
    schema_version: Literal[1] = 1
    question: Note


class TicketInformationProvided(TicketAction):
    """The enterprise answered: the SLA clock resumes."""

    event_type: ClassVar[str] = "ticket.information_provided"
    type: Literal["ticket.information_provided"] = "ticket.information_provided"
    schema_version: Literal[1] = 1
    answer: Note
    attachments: tuple[Attachment, ...] = ()


class TicketResolved(TicketAction):
    event_type: ClassVar[str] = "ticket.resolved"
    type: Literal["ticket.resolved"] = "ticket.resolved"
    schema_version: Literal[1] = 1
    resolution: Note


class TicketClosed(TicketAction):
    """The enterprise confirmed the resolution and rated it."""

    event_type: ClassVar[str] = "ticket.closed"
    type: Literal["ticket.closed"] = "ticket.closed"
    schema_version: Literal[1] = 1
    rating: Annotated[int, Field(ge=1, le=5)]
    comment: Annotated[str, StringConstraints(max_length=2000)] | None = None


class TicketReopened(TicketAction):
    """The enterprise says it is not resolved: a fresh resolution target starts."""

    event_type: ClassVar[str] = "ticket.reopened"
    type: Literal["ticket.reopened"] = "ticket.reopened"
    schema_version: Literal[1] = 1
    reason: Note


class TicketTransferred(TicketAction):
    """The department that has the ticket hands it to another; the SLA clock keeps running."""

    event_type: ClassVar[str] = "ticket.transferred"
    type: Literal["ticket.transferred"] = "ticket.transferred"
    schema_version: Literal[1] = 1
    from_department: DepartmentCode
    to_department: DepartmentCode
    reason: Annotated[str, StringConstraints(min_length=1, max_length=1000)]


# --- the ticket as a department receives it, on <namespace>.dept.<code> -----------------


class TicketAssigned(Event):
    """The full ticket a department needs to start work, published on its own topic."""

    event_type: ClassVar[str] = "ticket.assigned"
    type: Literal["ticket.assigned"] = "ticket.assigned"
    schema_version: Literal[1] = 1
    department: DepartmentCode
    reason: Annotated[str, StringConstraints(max_length=500)]
    transferred_from: DepartmentCode | None = None
    """Set when the ticket comes by transfer rather than by first routing."""
    confidence: Confidence | None = Field(
        default=None,
        description="How sure routing is that the ticket is yours; absent for a transfer (a "
        "person chose). Added compatibly to v1.",
    )
    candidates: tuple[Candidate, ...] = Field(
        default=(),
        max_length=3,
        description="The ranker's top three departments: for park-service triage, where to "
        "dispatch the ticket with one transfer. Added compatibly to v1.",
    )
    ticket: Ticket


FORWARDED_ACTIONS: tuple[type[TicketAction], ...] = (
    TicketAcknowledged,
    TicketCommented,
    TicketInformationRequested,
    TicketInformationProvided,
    TicketResolved,
    TicketClosed,
    TicketReopened,
)
"""The steps routing forwards to the topic of the department that has the ticket (a transfer
is not forwarded: the new department gets `ticket.assigned`)."""


# --- the clock, on <namespace>.sla ------------------------------------------------------


class SlaStarted(Event):
    event_type: ClassVar[str] = "sla.started"
    type: Literal["sla.started"] = "sla.started"
    schema_version: Literal[1] = 1
    department: DepartmentCode
    started_at: AwareDatetime
    resolution_due_at: AwareDatetime
    first_response_due_at: AwareDatetime


class SlaWarning(Event):
    event_type: ClassVar[str] = "sla.warning"
    type: Literal["sla.warning"] = "sla.warning"
    schema_version: Literal[1] = 1
    department: DepartmentCode
    threshold: Annotated[float, Field(gt=0, lt=1)]
    resolution_due_at: AwareDatetime
    remaining_seconds: float


class SlaBreached(Event):
    event_type: ClassVar[str] = "sla.breached"
    type: Literal["sla.breached"] = "sla.breached"
    schema_version: Literal[1] = 1
    department: DepartmentCode
    escalated_to: DepartmentCode
    resolution_due_at: AwareDatetime
    overdue_seconds: float


class SlaFirstResponseMissed(Event):
    event_type: ClassVar[str] = "sla.first_response_missed"
    type: Literal["sla.first_response_missed"] = "sla.first_response_missed"
    schema_version: Literal[1] = 1
    department: DepartmentCode
    first_response_due_at: AwareDatetime
    overdue_seconds: float


class SlaPaused(Event):
    """The ticket awaits the enterprise: the resolution clock stands still."""

    event_type: ClassVar[str] = "sla.paused"
    type: Literal["sla.paused"] = "sla.paused"
    schema_version: Literal[1] = 1
    department: DepartmentCode
    remaining_seconds: float


class SlaResumed(Event):
    """The enterprise answered: the clock runs again, and the due time moved by the pause."""

    event_type: ClassVar[str] = "sla.resumed"
    type: Literal["sla.resumed"] = "sla.resumed"
    schema_version: Literal[1] = 1
    department: DepartmentCode
    resolution_due_at: AwareDatetime
    remaining_seconds: float


class SlaMet(Event):
    """Resolved, and whether in time; the clock stops."""

    event_type: ClassVar[str] = "sla.met"
    type: Literal["sla.met"] = "sla.met"
    schema_version: Literal[1] = 1
    department: DepartmentCode
    resolution_due_at: AwareDatetime
    resolved_at: AwareDatetime
    in_time: bool
    remaining_seconds: float
    """Negative when resolved late."""


# --- deliveries, on <namespace>.notifications -------------------------------------------


class Channel(StrEnum):
    INBOX = "inbox"
    WEBHOOK = "webhook"
    EMAIL = "email"
    SMS = "sms"


class NotificationSent(Event):
    event_type: ClassVar[str] = "notification.sent"
    type: Literal["notification.sent"] = "notification.sent"
    schema_version: Literal[1] = 1
    notification_id: str
    recipient: str
    channel: Channel
    trigger_event_id: uuid.UUID
    trigger_type: str


AnyEvent = (
    TicketSubmitted
    | TicketRouted
    | TicketTransferred
    | TicketTransferRefused
    | TicketAcknowledged
    | TicketCommented
    | TicketInformationRequested
    | TicketInformationProvided
    | TicketResolved
    | TicketClosed
    | TicketReopened
    | TicketAssigned
    | SlaStarted
    | SlaWarning
    | SlaBreached
    | SlaFirstResponseMissed
    | SlaPaused
    | SlaResumed
    | SlaMet
    | NotificationSent
)

EVENT_MODELS: dict[tuple[str, int], type[Event]] = {
    (model.event_type, model.model_fields["schema_version"].default): model
    for model in get_args(AnyEvent)
}
"""Which model decodes a record, by its type and schema version: every model of AnyEvent."""


LATEST_VERSIONS: dict[str, int] = {}
for _type, _version in EVENT_MODELS:
    LATEST_VERSIONS[_type] = max(_version, LATEST_VERSIONS.get(_type, 0))


class _Envelope(BaseModel):
    """What every event of every version carries: checked before a record waits for an upgrade."""

    event_id: uuid.UUID
    type: str
    schema_version: int
    occurred_at: AwareDatetime
    ticket_id: TicketId
    correlation_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]


class UndecodableEvent(ValueError):
    """A record that no version of this code can ever process: it belongs in the dead letters."""


class NotReadableYet(ValueError):
    """A known event type in a schema version newer than this code knows: a producer was
    upgraded before this consumer. The record waits for the consumer's upgrade; it is not
    poison."""


Shape = dict[str, "Shape"] | list["Shape"] | None
"""Which keys of a JSON document a model reads, nested: a dict per model, a one-element list
for a sequence of them, None for a value read whole."""


def _shape(annotation: Any) -> Shape:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {
            field.alias or name: _shape(field.annotation)
            for name, field in annotation.model_fields.items()
        }
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _shape(args[0])
    if origin in (Union, UnionType):
        shapes = [shape for arg in args if (shape := _shape(arg)) is not None]
        return shapes[0] if len(shapes) == 1 else None
    if origin in (tuple, list) and args:
        element = _shape(args[0])
        return None if element is None else [element]
    return None


_SHAPES: dict[type[Event], Shape] = {model: _shape(model) for model in EVENT_MODELS.values()}


def known_fields(value: Any, shape: Shape) -> Any:
    """The document without the fields its model does not know, at any depth."""
    if isinstance(shape, dict) and isinstance(value, dict):
        return {key: known_fields(item, shape[key]) for key, item in value.items() if key in shape}
    if isinstance(shape, list) and isinstance(value, list):
        return [known_fields(item, shape[0]) for item in value]
    return value


def decode_event(raw: bytes) -> Event:
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UndecodableEvent(f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise UndecodableEvent("not a JSON object")
    event_type, version = document.get("type"), document.get("schema_version")
    # Anything may arrive here: a list or an object as the type is refused, not a crash.
    known = isinstance(event_type, str) and type(version) is int
    model = EVENT_MODELS.get((event_type, version)) if known else None  # type: ignore[arg-type]
    key = (event_type, version)
    if model is None:
        latest = LATEST_VERSIONS.get(event_type) if known else None  # type: ignore[arg-type]
        if latest is not None and version > latest:  # type: ignore[operator]
            # Waiting is for events of a newer producer; a record without an event's envelope
            # is poison whatever version it claims, and must not hold its partition.
            try:
                _Envelope.model_validate(document)
            except ValidationError as exc:
                raise UndecodableEvent(
                    f"{event_type} in schema version {version}, without an event's envelope: "
                    f"{_summary(exc)}"
                ) from None
            raise NotReadableYet(f"{event_type} v{version} is newer than v{latest}, the last known")
        raise UndecodableEvent(f"unknown event type or schema version: {key[0]!r} v{key[1]!r}")
    try:
        return model.model_validate(known_fields(document, _SHAPES[model]))
    except ValidationError as exc:
        raise UndecodableEvent(f"invalid {key[0]} v{key[1]}: {_summary(exc)}") from None


def _summary(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()[:5]
    )
