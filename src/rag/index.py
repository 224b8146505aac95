"""Kept for imports written before the store split: the index now lives in `rag.store`."""

from .store import (  # noqa: F401
    CATALOG,
    EF_SEARCH,
    MARKER,
    MARKER_TEXT,
    REBUILD_HINT,
    SCHEMA_VERSION,
    SYNC_THRESHOLD,
    ChunkRecord,
    Index,
    IngestReport,
)
