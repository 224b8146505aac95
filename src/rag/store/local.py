"""The local index folder (RAG_INDEX_DIR): the marker that makes it ours, the writer lock, and the
one-sentence messages for writes that fail on the disk. With a Chroma server it holds only caches."""

from __future__ import annotations

import errno
import sqlite3
from contextlib import contextmanager
from pathlib import Path

from ..errors import ConfigError, IndexBusyError, RagError, StoreWriteError

# Written when an index is created: RAG_INDEX_DIR is only written when it holds this file,
# is empty or new, or holds an index of an earlier version (recognised by its catalog).
MARKER = ".rag-index"
MARKER_TEXT = "onderwijs-jeugdhulp-rag index: written by `rag ingest`; do not put other files here\n"
# The SQLite catalog of indexes before schema 4 (migrated into Chroma on first open).
CATALOG = "catalog.sqlite"
MIGRATED = "catalog.sqlite.migrated"
# What an index of an earlier version may hold (also a damaged one that `--rebuild` must replace).
OWN_NAMES = {CATALOG, MIGRATED, "chroma", "lexical", "lexical.tmp", "lexical.old", ".ingest.lock", ".write-test",
             "jobs"}  # jobs: the ingest queue's default folder (rag.ingest.queue)


@contextmanager
def write_lock(folder: Path, timeout: float = 30.0):
    """Exclusive writer lock across processes on this machine; IndexBusyError after `timeout` seconds."""
    from filelock import FileLock, Timeout

    claim(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        marker = folder / MARKER
        if not marker.is_file():
            marker.write_text(MARKER_TEXT, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"Cannot create the index dir {folder} ({exc.strerror or exc}); set RAG_INDEX_DIR to a writable folder.",
            "De indexmap kan niet worden aangemaakt; kies een andere map (RAG_INDEX_DIR).",
        ) from exc
    lock = FileLock(str(folder / ".ingest.lock"))
    try:
        lock.acquire(timeout=timeout)
    except Timeout as exc:
        raise IndexBusyError(
            f"Another `rag ingest` is writing {folder}; wait for it to finish and try again.",
            "Er worden al documenten toegevoegd; probeer het over een minuut opnieuw.",
        ) from exc
    try:
        yield
    finally:
        lock.release()


def claim(d: Path) -> None:
    """Refuse an index dir that is neither new, empty, marked as ours nor an older index of ours."""
    if (d / MARKER).is_file():
        return
    if d.exists() and not d.is_dir():
        raise ConfigError(
            f"RAG_INDEX_DIR {d} is a file, not a folder; set RAG_INDEX_DIR to a new or empty folder.",
            "De indexmap (RAG_INDEX_DIR) is een bestand; kies een nieuwe of lege map.",
        )
    if not d.is_dir():
        return
    try:
        names = {p.name for p in d.iterdir()}
    except OSError as exc:
        raise ConfigError(
            f"Cannot read the index dir {d} ({exc.strerror or exc}); set RAG_INDEX_DIR to a writable folder.",
            "De indexmap kan niet worden gelezen; kies een andere map (RAG_INDEX_DIR).",
        ) from exc
    if names <= OWN_NAMES or is_legacy_catalog(d / CATALOG):
        return
    raise ConfigError(
        f"RAG_INDEX_DIR {d} holds other files and no index of this project, so nothing was written; "
        "set RAG_INDEX_DIR to a new or empty folder.",
        "De indexmap (RAG_INDEX_DIR) bevat andere bestanden; kies een nieuwe of lege map.",
    )


def is_legacy_catalog(path: Path) -> bool:
    """True when `path` is this project's SQLite catalog (an index made before schema 4)."""
    if not path.is_file():
        return False
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            return {"meta", "documents", "chunks"} <= tables
        finally:
            conn.close()
    except sqlite3.Error:
        return False


def check_writable(folder: Path) -> None:
    probe = folder / ".write-test"
    try:
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            probe.unlink(missing_ok=True)
            raise write_failure(exc, f"the index in {folder}") from exc
        raise ConfigError(
            f"The index dir {folder} is not writable ({exc.strerror}); set RAG_INDEX_DIR to a writable folder.",
            "De indexmap is niet schrijfbaar; kies een andere map (RAG_INDEX_DIR).",
        ) from exc


# Chroma's Rust core reports a full disk as a failed compaction without the OS error; below this
# many free bytes on the index's disk a failed write is taken to be one.
NEARLY_FULL_BYTES = 4 * 2**20


def write_failure(exc: BaseException, where: str, folder: Path | None = None) -> RagError | None:
    """One sentence for a write that failed on a full, read-only or failing disk, else None."""
    texts, codes = [], set()
    seen: BaseException | None = exc
    while seen is not None:
        texts.append(str(seen).lower())
        if isinstance(seen, OSError) and seen.errno:
            codes.add(seen.errno)
        seen = seen.__cause__ or seen.__context__
    text = " ".join(texts)
    again = "then run `rag ingest` again (the index keeps its last complete state)"
    if codes & {errno.ENOSPC, errno.EDQUOT} or "disk is full" in text or "no space left" in text:
        return StoreWriteError(
            f"Could not write {where}: the disk is full; free some space or set RAG_INDEX_DIR to a "
            f"folder on another disk, {again}.",
            "De index kon niet worden bijgewerkt: de schijf is vol. Vraag de beheerder ruimte vrij te maken.",
        )
    if errno.EROFS in codes or errno.EACCES in codes or "readonly database" in text or "read-only file system" in text:
        return StoreWriteError(
            f"Could not write {where}: it is read-only; make it writable or set RAG_INDEX_DIR to a "
            f"writable folder, {again}.",
            "De index kon niet worden bijgewerkt: de map is alleen-lezen. Vraag de beheerder om hulp.",
        )
    if _nearly_full(folder):
        return write_failure(OSError(errno.ENOSPC, "no space left on device"), where)
    if errno.EIO in codes or "disk i/o error" in text:
        return StoreWriteError(
            f"Could not write {where}: the disk reported an I/O error; check the disk (space, "
            f"permissions, health), {again}.",
            "De index kon niet worden bijgewerkt door een schijffout. Vraag de beheerder om hulp.",
        )
    return None


def _nearly_full(folder: Path | None) -> bool:
    if folder is None:
        return False
    import shutil

    try:
        return shutil.disk_usage(folder).free < NEARLY_FULL_BYTES
    except OSError:
        return False
