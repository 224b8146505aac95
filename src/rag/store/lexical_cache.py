"""The BM25 index as a local cache of the chunks in Chroma, saved under RAG_INDEX_DIR/lexical and
keyed by the index's `index_id:generation` (see store.meta); rebuilt when the key changes."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from ..lexical import LexicalIndex

log = logging.getLogger(__name__)


def load_or_build(folder: Path, key: str, rows: Callable[[], list[tuple[str, str]]]) -> LexicalIndex:
    """The saved index when it was built for `key`, else one built from `rows()` ((id, text) pairs)
    and saved (a folder that cannot be written keeps it in memory only)."""
    loaded = LexicalIndex.load(folder) if folder.is_dir() else None
    if loaded is not None and str(loaded.generation) == key:
        return loaded
    pairs = rows()
    lexical = LexicalIndex.build([p[0] for p in pairs], [p[1] for p in pairs], key)
    try:
        if folder.parent.is_dir():
            lexical.save(folder)
    except OSError as exc:
        log.warning("could not save lexical index: %s", exc)
    return lexical
