"""routing's own database: `decisions`, one document per ticket under its id.

The first decision stored for a ticket is the decision: a redelivered `ticket.submitted` finds it
and republishes the same events instead of deciding again.
"""

from datetime import datetime

from pymongo.asynchronous.database import AsyncDatabase

from services.routing.domain import Decision
from shared.mongo import Document, insert_once


class RoutingStore:
    def __init__(self, database: AsyncDatabase[Document]) -> None:
        self._decisions = database["decisions"]

    async def ensure_indexes(self) -> None:
        """The ticket id is the key; nothing else is queried yet."""

    async def decide_once(
        self, ticket_id: str, decision: Decision, decided_at: datetime
    ) -> Decision:
        """Stores the decision unless one exists; returns the one in force."""
        document = {
            "_id": ticket_id,
            "department": decision.department,
            "reason": decision.reason,
            "rule_id": decision.rule_id,
            "matched_terms": list(decision.matched_terms),
            "decided_at": decided_at,
        }
        if await insert_once(self._decisions, document):
            return decision
        return await self.decision(ticket_id) or decision

    async def decision(self, ticket_id: str) -> Decision | None:
        document = await self._decisions.find_one({"_id": ticket_id})
        if document is None:
            return None
        return Decision(
            department=document["department"],
            reason=document["reason"],
            rule_id=document["rule_id"],
            matched_terms=tuple(document["matched_terms"]),
        )
