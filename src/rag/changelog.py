"""The change log: every document added, replaced, re-indexed or removed, with who and when.

Kept in Chroma (collection `<RAG_COLLECTION>-changes`), so every app replica on one Chroma
server shows the same log. One record per document per change; records are never rewritten.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from rag.access import Actor
from rag.config import Settings
from rag.errors import ConfigError

log = logging.getLogger(__name__)

ADDED, REPLACED, REINDEXED, REMOVED = "added", "replaced", "reindexed", "removed"
SUFFIX = "-changes"
MAX_NAME = 63  # Chroma's longest collection name
# Chroma stores a vector with every record; the log needs none, so each gets this one.
_NO_VECTOR = [1.0]


@dataclass(frozen=True)
class Change:
    """One change to one document."""

    at: float  # seconds since the epoch (UTC)
    action: str  # ADDED | REPLACED | REINDEXED | REMOVED
    doc_id: str
    title: str
    who: str  # e-mail (login), user@host (command line), "" (the app without login)
    actor_kind: str  # rag.access kinds: login | os | local | system
    via: str  # "upload", "verwijderen", "rag ingest", "eerste start"

    @property
    def when(self) -> datetime:
        return datetime.fromtimestamp(self.at, tz=timezone.utc)


def collection_name(settings: Settings) -> str:
    """`<RAG_COLLECTION>-changes`."""
    name = settings.collection + SUFFIX
    if len(name) > MAX_NAME:
        raise ConfigError(
            f"RAG_COLLECTION '{settings.collection}' is too long for its change log; use at most "
            f"{MAX_NAME - len(SUFFIX)} characters.",
            "De naam van de collectie (RAG_COLLECTION) is te lang; kies een kortere.",
        )
    return name


def changes_collection(settings: Settings, create: bool = True):
    """The Chroma collection holding the change log (created when missing; without `create`, None then).

    The one place that reaches the Chroma client, so moving the client moves this too."""
    from rag.store.client import connect

    client = connect(settings, create=create)
    if client is None:
        return None  # no embedded store yet: do not create one in a folder no index has claimed
    if create:
        return client.get_or_create_collection(collection_name(settings), embedding_function=None)
    try:
        return client.get_collection(collection_name(settings), embedding_function=None)
    except Exception:  # noqa: BLE001 - NotFoundError differs by client: no log yet
        return None


def record(settings: Settings, actor: Actor, changes: list[tuple[str, str, str]], via: str) -> int:
    """Record (action, doc_id, title) changes made by `actor`; the number recorded."""
    if not changes:
        return 0
    now = time.time()
    metadatas = [
        {"at": now, "action": action, "doc_id": doc_id, "title": title or doc_id,
         "who": actor.who, "actor_kind": actor.kind, "via": via}
        for action, doc_id, title in changes
    ]
    changes_collection(settings).add(
        ids=[uuid.uuid4().hex for _ in changes], embeddings=[_NO_VECTOR] * len(changes), metadatas=metadatas
    )
    log.info("change log: %s by %s via %s", [c[:2] for c in changes], actor.who or actor.kind, via)
    return len(changes)


def ingest_changes(before: list[dict], after: list[dict], report) -> list[tuple[str, str, str]]:
    """(action, doc_id, title) for an ingest, from the catalogs `before` and `after` it and its IngestReport
    (documents it wrote, and which of them had new content)."""
    old = {d["doc_id"]: d for d in before}
    new = {d["doc_id"]: d for d in after}
    replaced = {r["doc_id"] for r in report.replaced}
    out = []
    for doc_id in report.changed_docs:
        if doc_id not in new:
            continue
        action = ADDED if doc_id not in old else REPLACED if doc_id in replaced else REINDEXED
        out.append((action, doc_id, new[doc_id].get("title", "")))
    out += [(REMOVED, doc_id, old[doc_id].get("title", "")) for doc_id in old if doc_id not in new]
    return out


def record_ingest(settings: Settings, actor: Actor, before: list[dict], after: list[dict], report, via: str) -> int:
    """Record what an ingest changed (see `ingest_changes`); the number of records."""
    return record(settings, actor, ingest_changes(before, after, report), via)


def export(settings: Settings) -> list[tuple[str, dict]]:
    """Every record as (id, metadata), to carry the log over a rebuild that deletes its folder."""
    collection = changes_collection(settings, create=False)
    got = collection.get(include=["metadatas"]) if collection is not None else {}
    return list(zip(got.get("ids") or [], got.get("metadatas") or []))


def restore(settings: Settings, records: list[tuple[str, dict]]) -> None:
    """Put exported records back (records already there are left as they are)."""
    for start in range(0, len(records), 1000):
        part = records[start : start + 1000]
        changes_collection(settings).upsert(
            ids=[i for i, _ in part], embeddings=[_NO_VECTOR] * len(part), metadatas=[m for _, m in part]
        )


def recent(settings: Settings, limit: int = 50) -> list[Change]:
    """The latest `limit` changes, newest first."""
    collection = changes_collection(settings, create=False)
    got = collection.get(include=["metadatas"]) if collection is not None else {}
    changes = [
        Change(float(m.get("at", 0)), str(m.get("action", "")), str(m.get("doc_id", "")), str(m.get("title", "")),
               str(m.get("who", "")), str(m.get("actor_kind", "")), str(m.get("via", "")))
        for m in got.get("metadatas") or []
    ]
    changes.sort(key=lambda c: c.at, reverse=True)
    return changes[:limit]
