"""routing's own database.

- `decisions`: one document per ticket under its id: the first decision (which is the decision:
  a redelivered `ticket.submitted` finds it and republishes the same events), the ticket as
  submitted (to hand it on when it is transferred), and the department that has it now.
- `hops`: one document per transfer request under its event id, accepted or refused, with the
  rule that first routed the ticket, so that transfers per rule show which rules misroute.
- `corrections`: one document per accepted transfer under its event id: the ticket's text and
  the department it went to. The last one per ticket is a labelled example for retraining.
- `models`: one document per accepted ranker model under its version: the model itself (a
  compressed blob of a few MB), when and from what it was trained, and how it scored.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from services.routing.domain import Decision
from services.routing.learning import Correction
from shared.events import Candidate, RunnerUp, Ticket, TicketTransferred
from shared.mongo import Document, insert_once


@dataclass(frozen=True, slots=True)
class Routed:
    decision: Decision
    ticket: Ticket
    current_department: str


@dataclass(frozen=True, slots=True)
class StoredModel:
    version: str
    trained_at: datetime
    knowledge: str
    """The digest of the profiles it was trained on."""
    labelled: str
    """The digest of the shipped labelled tickets it was trained on."""
    corrections: int
    labelled_accuracy: float
    blob: bytes


class RoutingStore:
    def __init__(self, database: AsyncDatabase[Document]) -> None:
        self._decisions = database["decisions"]
        self._hops = database["hops"]
        self._corrections = database["corrections"]
        self._models = database["models"]

    async def ensure_indexes(self) -> None:
        await self._hops.create_index([("rule_id", ASCENDING)])
        await self._hops.create_index([("ticket_id", ASCENDING)])
        await self._corrections.create_index([("at", ASCENDING)])
        await self._models.create_index([("trained_at", ASCENDING)])

    async def decide_once(self, ticket: Ticket, decision: Decision, decided_at: datetime) -> Routed:
        """Stores the decision unless one exists; returns the one in force."""
        runner_up = decision.runner_up
        document = {
            "_id": ticket.ticket_id,
            "department": decision.department,
            "current_department": decision.department,
            "reason": decision.reason,
            "rule_id": decision.rule_id,
            "matched_terms": list(decision.matched_terms),
            "runner_up": None if runner_up is None else runner_up.model_dump(mode="json"),
            "policy_version": decision.policy_version,
            "confidence": decision.confidence,
            "candidates": [c.model_dump(mode="json") for c in decision.candidates],
            "model_version": decision.model_version,
            "decided_at": decided_at,
            "ticket": ticket.model_dump(mode="json"),
        }
        if await insert_once(self._decisions, document):
            return Routed(decision, ticket, decision.department)
        found = await self.routed(ticket.ticket_id)
        assert found is not None, "a decision that was a duplicate key must exist"
        return found

    async def routed(self, ticket_id: str) -> Routed | None:
        document = await self._decisions.find_one({"_id": ticket_id})
        return None if document is None else _routed(document)

    async def record_hop(
        self,
        transfer: TicketTransferred,
        rule_id: str | None,
        accepted: bool,
        reason: str,
        now: datetime,
    ) -> bool:
        """Records the transfer request once; False if it was recorded before (redelivery)."""
        recorded = await insert_once(
            self._hops,
            {
                "_id": str(transfer.event_id),
                "ticket_id": transfer.ticket_id,
                "rule_id": rule_id,
                "from_department": transfer.from_department,
                "to_department": transfer.to_department,
                "accepted": accepted,
                "reason": reason,
                "at": now,
            },
        )
        if recorded and accepted:
            # One writer per ticket: the consumer of the ticket's partition.
            await self._decisions.update_one(
                {"_id": transfer.ticket_id},
                {"$set": {"current_department": transfer.to_department}},
            )
        return recorded

    async def record_correction(
        self, transfer: TicketTransferred, text: str, now: datetime
    ) -> None:
        """The ticket's text now belongs to the department it was transferred to (once)."""
        await insert_once(
            self._corrections,
            {
                "_id": str(transfer.event_id),
                "ticket_id": transfer.ticket_id,
                "text": text,
                "department": transfer.to_department,
                "at": now,
            },
        )

    async def corrections(self) -> list[Correction]:
        """Every correction, oldest first."""
        cursor = self._corrections.find({})
        rows = sorted([row async for row in cursor], key=lambda row: (row.get("at"), row["_id"]))
        return [Correction(row["ticket_id"], row["text"], row["department"]) for row in rows]

    async def count_corrections(self) -> int:
        return await self._corrections.count_documents({})

    async def save_model(self, model: StoredModel) -> None:
        """Stores the model once (the same model from the cache may be stored already)."""
        await insert_once(
            self._models,
            {
                "_id": model.version,
                "trained_at": model.trained_at,
                "knowledge": model.knowledge,
                "labelled": model.labelled,
                "corrections": model.corrections,
                "labelled_accuracy": model.labelled_accuracy,
                "blob": model.blob,
            },
        )

    async def latest_model_version(self) -> str | None:
        """The newest model's version, without its blob: cheap enough to ask every few seconds."""
        cursor = self._models.find({}, {"_id": 1}).sort("trained_at", -1).limit(1)
        async for row in cursor:
            return str(row["_id"])
        return None

    async def latest_model(self) -> StoredModel | None:
        cursor = self._models.find({}).sort("trained_at", -1).limit(1)
        async for row in cursor:
            return StoredModel(
                version=row["_id"],
                trained_at=row["trained_at"],
                knowledge=row["knowledge"],
                labelled=row.get("labelled", ""),
                corrections=row["corrections"],
                labelled_accuracy=row["labelled_accuracy"],
                blob=bytes(row["blob"]),
            )
        return None

    async def hop(self, transfer_event_id: str) -> Document | None:
        return await self._hops.find_one({"_id": transfer_event_id})

    async def transfers_per_rule(self) -> dict[str, int]:
        """Accepted transfers counted by the rule that first routed the ticket."""
        cursor = await self._hops.aggregate(
            [
                {"$match": {"accepted": True}},
                {"$group": {"_id": "$rule_id", "transfers": {"$sum": 1}}},
            ]
        )
        counts = {row["_id"] or "(unplaceable)": row["transfers"] async for row in cursor}
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _routed(document: dict[str, Any]) -> Routed:
    runner_up = document.get("runner_up")
    decision = Decision(
        department=document["department"],
        reason=document["reason"],
        rule_id=document["rule_id"],
        matched_terms=tuple(document["matched_terms"]),
        runner_up=None if runner_up is None else RunnerUp.model_validate(runner_up),
        policy_version=document.get("policy_version"),
        confidence=document.get("confidence"),
        candidates=tuple(Candidate.model_validate(c) for c in document.get("candidates", ())),
        model_version=document.get("model_version"),
    )
    return Routed(
        decision, Ticket.model_validate(document["ticket"]), document["current_department"]
    )
