"""The store the tests run on serves a lookup by `_id` from the `_id` index.

Every store module reads and updates its documents by key and relies on that being cheap however
large a collection grows. FerretDB v1.24's SQLite backend did not: its `_id` filter was not the
expression of its `_id` index, so each lookup scanned the table (deploy/local/infra.sh builds it
with deploy/local/ferretdb-sqlite-id-index.patch). A FerretDB built without the patch fails
here, and so would a MongoDB that answered by a collection scan.
"""

import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

pytestmark = pytest.mark.integration


@pytest.fixture
async def database(
    mongo: AsyncMongoClient[dict[str, Any]],
) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    name = "store_plan_" + secrets.token_hex(4)
    yield mongo[name]
    await mongo.drop_database(name)


def scans_the_collection(explained: dict[str, Any]) -> bool:
    """Whether an `explain` answer shows a scan of the whole collection."""
    planner = explained["queryPlanner"]
    sqlite_plan: list[str] | None = planner.get("Plan")
    if sqlite_plan is not None:
        # FerretDB over SQLite answers with SQLite's EXPLAIN QUERY PLAN, a line per step.
        return any("SCAN" in step and "USING" not in step for step in sqlite_plan)
    return "COLLSCAN" in json.dumps(planner["winningPlan"], default=str)


async def test_a_lookup_by_id_uses_the_index(database: AsyncDatabase[dict[str, Any]]) -> None:
    tickets = database["tickets"]
    await tickets.insert_many([{"_id": f"T-{n:04d}", "n": n} for n in range(200)])

    by_id = await database.command("explain", {"find": "tickets", "filter": {"_id": "T-0042"}})
    by_other_field = await database.command("explain", {"find": "tickets", "filter": {"n": 42}})

    assert not scans_the_collection(by_id), by_id["queryPlanner"]
    # The check can tell: a filter on an unindexed field is a scan on either store.
    assert scans_the_collection(by_other_field), by_other_field["queryPlanner"]
    assert await tickets.find_one({"_id": "T-0042"}) == {"_id": "T-0042", "n": 42}
