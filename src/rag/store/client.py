"""The Chroma client (embedded folder or `chroma run` server, one code path) and the four
collections that hold the index: `<name>` (chunk vectors), `<name>-documents` (the catalog),
`<name>-lines` (answer lines with their vectors) and `<name>-meta` (generation, model, sources)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ..config import Settings
from ..errors import ConfigError, StoreUnavailableError

log = logging.getLogger(__name__)

# HNSW settings. Chroma's default ef_search (100) misses true nearest neighbours on e5 vectors
# (cosines crowd into 0.75-0.9): on 529 real-PDF chunks 5-7 of the exact top-30 per 55 questions,
# once the exact top-1. Below its sync threshold (default 1000 items) Chroma also rebuilds the
# graph on every load, so which ones it missed changed from process to process and so did the
# eval figures. ef_search 500 found the exact top-30 in every run; a sync threshold of 100
# stores the graph at ingest so every process searches the same one (ingest time unchanged at
# 20k vectors). The bench prints the query cost at 100k chunks (`dense query p50`).
EF_SEARCH = 500
SYNC_THRESHOLD = 100
# Answer lines are read by id, never searched by vector: the cheapest graph Chroma allows.
_LINES_HNSW = {"space": "cosine", "ef_construction": 16, "max_neighbors": 4}
# Catalog and meta records carry no vector; Chroma wants one, so each gets this.
NO_VECTOR = [0.0]


@dataclass(frozen=True)
class Names:
    """The collection names derived from RAG_COLLECTION."""

    chunks: str
    documents: str
    lines: str
    meta: str

    @classmethod
    def of(cls, collection: str) -> "Names":
        return cls(collection, f"{collection}-documents", f"{collection}-lines", f"{collection}-meta")

    def all(self) -> list[str]:
        return [self.chunks, self.documents, self.lines, self.meta]


def embedded_path(settings: Settings) -> Path:
    """Where embedded Chroma keeps its files."""
    return Path(settings.index_dir) / "chroma"


def connect(settings: Settings, create: bool = True):
    """A Chroma client: HttpClient when RAG_CHROMA_URL is set, else a PersistentClient in the index
    dir. With `create=False` an embedded store that does not exist yet gives None (nothing is made)."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    if settings.chroma_url:
        from urllib.parse import urlparse

        url = urlparse(settings.chroma_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ConfigError(
                f"RAG_CHROMA_URL '{settings.chroma_url}' is not an http(s) URL; use e.g. http://127.0.0.1:8000.",
                "RAG_CHROMA_URL is geen geldige http-URL.",
            )
        try:
            client = chromadb.HttpClient(
                host=url.hostname,
                port=url.port or (443 if url.scheme == "https" else 80),
                ssl=url.scheme == "https",
                settings=chroma_settings,
            )
            client.heartbeat()
        except Exception as exc:  # noqa: BLE001 - httpx/chroma raise many connection types
            raise unavailable(settings, exc, "Cannot reach") from exc
        return client
    path = embedded_path(settings)
    if not create and not path.is_dir():
        return None
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=chroma_settings)


def unavailable(settings: Settings, exc: BaseException, verb: str = "Lost") -> StoreUnavailableError:
    """The one sentence for a Chroma server that does not answer."""
    return StoreUnavailableError(
        f"{verb} the Chroma server at {settings.chroma_url} ({exc.__class__.__name__}); "
        "start it (`chroma run --host 127.0.0.1 --port 8000 --path .chroma`) or unset RAG_CHROMA_URL.",
        "De Chroma-server is niet bereikbaar; probeer het later opnieuw of vraag de beheerder.",
    )


def get_collection(client, name: str):
    """An existing collection, or None."""
    try:
        return client.get_collection(name, embedding_function=None)
    except Exception as exc:  # noqa: BLE001 - NotFoundError differs by client and version
        if "does not exist" in str(exc) or "not found" in str(exc).lower() or exc.__class__.__name__ == "NotFoundError":
            return None
        raise


def create_collection(client, names: Names, name: str):
    """Get or create one of the index's collections with the settings it needs."""
    if name == names.chunks:
        config = {"hnsw": {"space": "cosine", "ef_search": EF_SEARCH, "sync_threshold": SYNC_THRESHOLD}}
    elif name == names.lines:
        config = {"hnsw": dict(_LINES_HNSW)}
    else:
        config = None
    kwargs = {"configuration": config} if config else {}
    collection = client.get_or_create_collection(name, embedding_function=None, **kwargs)
    if name == names.chunks:
        upgrade_hnsw(collection)
    return collection


def upgrade_hnsw(collection) -> None:
    """Give a chunk collection made with Chroma's default HNSW settings (an index from an older release)
    EF_SEARCH and SYNC_THRESHOLD (the stored graph takes effect at its next ingest or a rebuild);
    a store that refuses keeps answering, with less exact dense candidates."""
    try:
        hnsw = (collection.configuration or {}).get("hnsw") or {}
        if hnsw and (int(hnsw.get("ef_search") or 0) < EF_SEARCH or int(hnsw.get("sync_threshold") or 0) > SYNC_THRESHOLD):
            collection.modify(configuration={"hnsw": {"ef_search": EF_SEARCH, "sync_threshold": SYNC_THRESHOLD}})
    except Exception as exc:  # noqa: BLE001 - older servers lack configuration updates
        log.warning("could not update the collection's HNSW settings: %s", exc)


def release_embedded(settings: Settings) -> None:
    """chromadb caches one client system per folder; stop it before deleting the folder,
    or the next write in this process hits a stale read-only database."""
    from chromadb.api.shared_system_client import SharedSystemClient

    key = str(embedded_path(settings))
    system = SharedSystemClient._identifier_to_system.pop(key, None)
    SharedSystemClient._identifier_to_refcount.pop(key, None)
    if system is not None:
        try:
            system.stop()
        except Exception as exc:  # noqa: BLE001 - a system that never started (a damaged folder) has nothing to stop
            log.debug("stopping the embedded Chroma system failed: %s", exc)


def batched(items: list, size: int):
    """Consecutive slices of at most `size` items (Chroma caps a request's size)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
