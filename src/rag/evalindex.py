"""An eval's own index: only the corpus documents a dataset is about, apart from the live index.

The live index holds whatever users uploaded, and every upload shifts retrieval, BM25 weights and
the refusal features, so a score measured there changes with the uploads. `prepare` copies the
documents a dataset's `reference_doc_ids` name from the corpus folder into an eval-only corpus
folder under `<index_dir>/eval/<dataset>/` and indexes them there (incrementally: unchanged files
are neither copied nor embedded again). The main index never reads that folder.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .config import Settings
from .errors import RagError

log = logging.getLogger(__name__)

EVAL_SUBDIR = "eval"  # under the main index dir


class EvalDocumentsError(RagError):
    """The documents a dataset is about are not (all) in the corpus folder."""

    exit_code = 2


@dataclass
class EvalIndex:
    """The eval corpus and index of one dataset, ready to open."""

    settings: Settings  # corpus_dir and index_dir point at the eval-only folders
    documents: list[dict]  # [{doc_id, title}] of the indexed documents, by doc_id
    changed: list[str] = field(default_factory=list)  # doc ids (re)indexed by this prepare

    def describe(self) -> dict:
        """What a report records about the index it was run on."""
        return {"documents": self.documents, "index_dir": str(self.settings.index_dir)}


def referenced_documents(cases: Iterable) -> list[str]:
    """The doc ids the cases' `reference_doc_ids` name, sorted."""
    return sorted({d for case in cases for d in case.reference_doc_ids})


def eval_root(settings: Settings, dataset: Path) -> Path:
    """`<index_dir>/eval/<dataset stem>`: one folder per dataset."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(dataset).stem).strip(".-") or "dataset"
    return Path(settings.index_dir) / EVAL_SUBDIR / name


def eval_settings(settings: Settings, root: Path) -> Settings:
    """The settings with the eval corpus and index under `root`, always an embedded Chroma:
    the eval index is a local cache, never written to a shared Chroma server."""
    data = settings.model_dump()
    data.update(corpus_dir=root / "corpus", index_dir=root / "index", chroma_url=None)
    return Settings(**data)


def source_files(corpus: Path, doc_ids: list[str]) -> dict[str, Path]:
    """The corpus files of these doc ids (the doc id is the file stem)."""
    from .loaders import discover, doc_id_for

    files = discover([corpus])[0] if Path(corpus).is_dir() else []
    wanted = set(doc_ids)
    return {doc_id_for(p): p for p in sorted(files) if doc_id_for(p) in wanted}


def sync_corpus(files: dict[str, Path], source: Path, target: Path) -> list[str]:
    """Make `target` hold exactly these files (and the source's manifest); return the doc ids whose
    copy was written. A file whose bytes are unchanged is left alone."""
    from .loaders import MANIFEST_NAME

    target.mkdir(parents=True, exist_ok=True)
    written = []
    keep = {MANIFEST_NAME}
    for doc_id, path in files.items():
        keep.add(path.name)
        if _copy_if_changed(path, target / path.name):
            written.append(doc_id)
    manifest = Path(source) / MANIFEST_NAME
    if manifest.is_file():
        _copy_if_changed(manifest, target / MANIFEST_NAME)
    elif (target / MANIFEST_NAME).exists():
        (target / MANIFEST_NAME).unlink()
    for old in target.iterdir():
        if old.is_file() and old.name not in keep:
            old.unlink()
    return written


def _copy_if_changed(source: Path, target: Path) -> bool:
    data = source.read_bytes()
    try:
        if target.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)
    return True


def prepare(settings: Settings, cases: list, dataset: Path,
            progress: Callable[[int, int], None] | None = None) -> EvalIndex:
    """Copy the documents the cases are about out of the corpus folder and index them on their own.

    EvalDocumentsError when the cases name no document or one is not in the corpus folder (a score
    over part of the documents would not compare with earlier runs)."""
    from filelock import FileLock

    from .store import Index

    doc_ids = referenced_documents(cases)
    corpus = Path(settings.corpus_dir)
    if not doc_ids:
        raise EvalDocumentsError(
            f"Dataset {dataset} names no documents in reference_doc_ids; evaluate it without --own-index.",
            "De evaluatieset noemt geen documenten, dus er valt geen eigen index voor te bouwen.",
        )
    files = source_files(corpus, doc_ids)
    missing = [d for d in doc_ids if d not in files]
    if missing:
        raise EvalDocumentsError(
            f"Dataset {dataset} is about documents that are not in {corpus}: {', '.join(missing)}; "
            "put them back or evaluate without --own-index.",
            f"De evaluatieset gaat over documenten die niet in de bronnenmap {corpus} staan: "
            f"{', '.join(missing)}. Zet ze terug om deze set te evalueren.",
        )
    root = eval_root(settings, dataset)
    local = eval_settings(settings, root)
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / ".prepare.lock")):  # two runs of the same set do not copy over each other
        sync_corpus(files, corpus, Path(local.corpus_dir))
        index = Index(local)
        try:
            report = index.ingest(progress=progress)
            documents = sorted(({"doc_id": d["doc_id"], "title": d.get("title") or ""} for d in index.documents()),
                               key=lambda d: d["doc_id"])
        finally:
            index.close()
    if report.changed_docs:
        log.info("eval index %s: indexed %s", local.index_dir, ", ".join(report.changed_docs))
    return EvalIndex(local, documents, list(report.changed_docs))
