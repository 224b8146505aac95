"""The store: everything that defines the index lives in Chroma (embedded or a `chroma run` server).

Where to find what:

- `client`        the Chroma client (embedded folder or server, one code path), collection names
- `meta`          the generation marker and what the index was built with (`<name>-meta`)
- `catalog`       the documents (`<name>-documents`): the commit point of each document
- `chunks`        the chunk vectors with their metadata (`<name>`)
- `answer_lines`  the answer lines with their vectors (`<name>-lines`)
- `lexical_cache` the BM25 index, a local cache keyed by generation
- `ingest`        the pipeline that writes all of the above, in an order readers can trust
- `migrate`       moves an index from before schema 4 (SQLite catalog) into Chroma
- `local`         the local index folder: marker, writer lock, disk-failure messages
- `index`         `Index`, the facade the rest of the code uses
"""

from .chunks import ChunkRecord
from .client import EF_SEARCH, SYNC_THRESHOLD
from .index import REBUILD_HINT, Index
from .ingest import IngestReport
from .local import CATALOG, MARKER, MARKER_TEXT
from .meta import SCHEMA_VERSION

__all__ = [
    "CATALOG", "EF_SEARCH", "MARKER", "MARKER_TEXT", "REBUILD_HINT", "SCHEMA_VERSION", "SYNC_THRESHOLD",
    "ChunkRecord", "Index", "IngestReport",
]
