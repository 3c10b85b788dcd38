"""MongoDB plumbing: one database per service, majority writes, duplicate keys as a signal.

The store may be FerretDB (no transactions, updates not conditioned on what was read), so
races are settled by inserts on unique keys: a duplicate key means "already done".
"""

from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from shared.settings import CommonSettings

Document = dict[str, Any]

DUPLICATE_KEY = 11000


def connect(
    settings: CommonSettings, service: str
) -> tuple[AsyncMongoClient[Document], AsyncDatabase[Document]]:
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        settings.mongodb_url.get_secret_value(),
        w="majority",
        tz_aware=True,
        uuidRepresentation="standard",
        serverSelectionTimeoutMS=5_000,
        appname=f"parkdesk-{service}",
    )
    return client, client[settings.database_name(service)]


def is_duplicate_key(exc: Exception) -> bool:
    if isinstance(exc, DuplicateKeyError):
        return True
    if isinstance(exc, BulkWriteError):
        errors = exc.details.get("writeErrors", [])
        return bool(errors) and all(error.get("code") == DUPLICATE_KEY for error in errors)
    return False


async def insert_once(collection: AsyncCollection[Document], document: Document) -> bool:
    """Inserts the document; False if one with its key exists already (the work is done)."""
    try:
        await collection.insert_one(document)
        return True
    except DuplicateKeyError:
        return False


async def insert_all_once(
    collection: AsyncCollection[Document], documents: list[Document]
) -> set[int]:
    """Inserts every document whose key is new; returns the positions of those that existed."""
    if not documents:
        return set()
    try:
        await collection.insert_many(documents, ordered=False)
    except BulkWriteError as exc:
        if not is_duplicate_key(exc):
            raise
        return {error["index"] for error in exc.details["writeErrors"]}
    return set()
