"""Document identity: a document is its source and its path within that source.

- The *source* is the corpus folder (`RAG_CORPUS_DIR`, key `corpus`; uploads are saved there)
  or another folder given to `rag ingest PATH` (key `<folder name>-<8 hex of its absolute path>`).
- `doc_id` = `<source>/<path within the source>`, suffix included: `corpus/factsheet-2021.md`.
  Two folders, or `longline.md` next to `longline.pdf`, never share one.
- `name` = the path within the source without its suffix (`factsheet-2021`): what eval files,
  `manifest.toml` and people use to refer to a document. Names may repeat; ids do not.

An index from before this scheme keyed documents by the bare file stem; such an id has no
`/`, and its name is the id itself.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

CORPUS_SOURCE = "corpus"


@dataclass(frozen=True)
class DocIdentity:
    """Where a document comes from: a source key and a POSIX path within that source."""

    source: str
    path: str

    @property
    def doc_id(self) -> str:
        return f"{self.source}/{self.path}"

    @property
    def name(self) -> str:
        return doc_name(self.doc_id)


def doc_name(doc_id: str) -> str:
    """The readable name of a document id: its path within the source, without the suffix."""
    if "/" not in doc_id:  # an id of an index built before sources (the bare stem)
        return doc_id
    rel = PurePosixPath(doc_id.split("/", 1)[1])
    return str(rel.with_suffix("")) if rel.suffix else str(rel)


def doc_source(doc_id: str) -> str | None:
    """The source key of a document id (None for an id from before sources)."""
    return doc_id.split("/", 1)[0] if "/" in doc_id else None


def matches(reference: str, doc_id: str) -> bool:
    """True when a reference (a name such as `factsheet-2021`, or a full id) names this document."""
    return reference == doc_id or reference == doc_name(doc_id)


def absolute(path: Path) -> Path:
    """An absolute, normalised path: a folder resolved, a file's folder resolved (the file keeps
    its name, so a symlink is identified where it lies, not where it points)."""
    path = Path(os.path.abspath(path))
    try:
        if path.is_dir() or not path.name:
            return path.resolve()
        return path.parent.resolve() / path.name
    except OSError:
        return path


def source_key(root: Path) -> str:
    """The key of an external source folder: its name plus a hash of its absolute path."""
    digest = hashlib.sha256(str(root).encode("utf-8", "surrogateescape")).hexdigest()[:8]
    name = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in root.name)[:40] or "root"
    return f"{name}-{digest}"


class SourceResolver:
    """Gives each file its identity: within the corpus folder, within a folder already known as
    a source (the deepest one, so `rag ingest /x` after `rag ingest /x/sub` keeps the ids of
    /x/sub's files), else within the folder the user named."""

    def __init__(self, corpus_dir: Path, known: dict[str, str] | None = None):
        self.corpus = absolute(Path(corpus_dir))
        self.known: dict[str, Path] = {k: Path(v) for k, v in (known or {}).items() if k != CORPUS_SOURCE}

    def scope(self, root: Path) -> tuple[str, Path, str]:
        """(source key, source folder, path prefix within it) for a folder or file to ingest."""
        root = absolute(Path(root))
        folder = root if root.is_dir() or not root.suffix else root.parent
        candidates = [(CORPUS_SOURCE, self.corpus), *self.known.items()]
        inside = [(k, p) for k, p in candidates if root == p or p in root.parents]
        if inside:
            key, base = max(inside, key=lambda kp: len(kp[1].parts))
        else:
            key, base = source_key(folder), folder
        prefix = "" if root == base else root.relative_to(base).as_posix()
        return key, base, prefix

    def identify(self, path: Path) -> DocIdentity:
        """The identity of one file (after `scope` has registered its source)."""
        path = absolute(Path(path))
        key, base, prefix = self.scope(path)
        return DocIdentity(key, prefix or path.name)

    def register(self, key: str, base: Path) -> None:
        """Remember a source folder so files under it are identified within it."""
        if key != CORPUS_SOURCE:
            self.known[key] = base


def in_scope(doc_id: str, key: str, prefix: str) -> bool:
    """True when the document lies within `prefix` of source `key` (prefix "" = the whole source)."""
    if doc_source(doc_id) != key:
        return False
    rel = doc_id.split("/", 1)[1]
    return not prefix or rel == prefix or rel.startswith(prefix + "/")
