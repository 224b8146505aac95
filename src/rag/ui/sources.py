"""Bronnen page: indexed documents, what is missing, a chunk browser and uploads."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from rag.errors import RagError
from rag.ui import common

log = logging.getLogger(__name__)

RESEARCH_KINDS = ("rapport", "factsheet", "handreiking")
CHUNKS_PER_PAGE = 25


class UploadError(RagError):
    """An upload was refused (wrong type, too large, content does not match the name)."""


@dataclass
class UploadResult:
    """Where an upload was saved and what the ingest made of it."""

    path: Path
    doc_id: str
    already_present: bool
    skipped: list[str] = field(default_factory=list)
    title: str = ""
    chunks: int = 0
    notes: list[str] = field(default_factory=list)  # pages that could not be read (Dutch)
    warnings: list[str] = field(default_factory=list)  # metadata fields dropped (Dutch)


def check_upload_content(data: bytes, name: str, settings):
    """Parse and chunk an upload in memory, within the limits, before anything is saved;
    the LoadedFile, or UnreadableFile with the reason to refuse it."""
    from rag.chunking import chunk_documents
    from rag.limits import LimitExceeded, Limits, check_chunks, page_count
    from rag.loaders import UnreadableFile, check_content, load_file

    limits = Limits.from_settings(settings)
    check_content(name, data)
    loaded = load_file(Path(name), data=data, limits=limits)
    chunks = chunk_documents(loaded.documents, settings.chunk_size, settings.chunk_overlap)
    try:
        check_chunks(chunks, page_count(loaded.documents), limits)
    except LimitExceeded as exc:
        raise UnreadableFile(str(exc)) from exc
    return loaded


def dutch_warning(warning: str) -> str:
    """A metadata warning ("<file>: metadata field 'year' dropped (...)") in Dutch."""
    m = re.search(r"metadata field '(\w+)' dropped \(([^)]*)\)", warning)
    return f"het veld ‘{m.group(1)}’ in de metadata is genegeerd ({m.group(2)})" if m else warning


def _taken_ids(corpus: Path, settings) -> set[str]:
    """Document ids (file stems, lower-cased) already used in the corpus or the index."""
    stems = {p.stem.lower() for p in corpus.rglob("*") if p.is_file() and not p.name.startswith(".")}
    return stems | {d["name"].lower() for d in common.index_documents(settings)}


def write_upload(data: bytes, name: str, corpus: Path, settings) -> tuple[Path, bool]:
    """Write `data` into `corpus` under a fresh name (never overwriting); (path, already_present)."""
    corpus.mkdir(parents=True, exist_ok=True)
    corpus = corpus.resolve()
    same = corpus / name
    if same.is_file() and same.read_bytes() == data:
        return same, True
    stem, suffix = Path(name).stem, Path(name).suffix
    taken = _taken_ids(corpus, settings)
    n = 0
    while True:
        n += 1
        candidate = corpus / (name if n == 1 else f"{stem[: common.MAX_NAME_CHARS - 8]}-{n}{suffix}")
        if candidate.stem.lower() in taken or candidate.parent != corpus:
            continue
        try:
            with open(candidate, "xb") as fh:
                fh.write(data)
        except FileExistsError:
            continue
        except BaseException:
            candidate.unlink(missing_ok=True)
            raise
        return candidate, False


def save_and_ingest(
    data: bytes,
    name: str,
    settings,
    kind: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    on_page: Callable[[int, int], None] | None = None,
) -> UploadResult:
    """Check an upload, save it into the corpus folder and index just that file.

    `kind` (rapport/handreiking/factsheet) is put in the file name when the name does
    not already say it, because the loaders derive the kind from the name. The file is
    parsed before it is saved: one the loaders refuse is never written, and its Dutch reason
    is returned in `skipped`; a file that fails later is removed again, whatever the error.
    """
    from rag.loaders import UnreadableFile, guess_kind
    from rag.store import Index

    problem = common.check_upload(data, name, settings.upload_max_mb * 2**20)
    if problem:
        raise UploadError(f"upload refused: {name}", problem)
    safe = common.sanitize_filename(name)
    if kind in RESEARCH_KINDS and guess_kind(safe) != kind:
        safe = common.sanitize_filename(f"{kind}-{safe}")
    try:
        checked = check_upload_content(data, safe, settings)
    except UnreadableFile as exc:
        target = Path(settings.corpus_dir).resolve() / safe
        return UploadResult(target, target.stem, False, [common.dutch_skip_reason(str(exc))])
    except Exception as exc:  # noqa: BLE001 - a parser bug must give one sentence, not a traceback
        log.exception("checking upload %s failed", safe)
        raise UploadError(
            f"upload refused: {name} ({exc.__class__.__name__})",
            "Het bestand kan niet gelezen worden; het is niet toegevoegd.",
        ) from exc
    warnings = [dutch_warning(w) for w in checked.warnings]
    path, present = write_upload(data, safe, Path(settings.corpus_dir), settings)
    index = Index(settings)
    try:
        on_event = (lambda stage, done, total, _name: on_page(done, total) if stage == "pages" else None) if on_page else None
        report = index.ingest(paths=[path], progress=progress, on_event=on_event)
        skipped = [common.dutch_skip_reason(s["reason"]) for s in report.skipped]
        if skipped:
            if not present:
                path.unlink(missing_ok=True)
            return UploadResult(path, path.stem, present, skipped)
        doc = next((d for d in index.documents() if Path(d["path"]).resolve() == path.resolve()), {})
    except BaseException as exc:
        # Whatever went wrong, a new file must not stay behind to fail every later ingest.
        if not present:
            path.unlink(missing_ok=True)
        if isinstance(exc, RagError) or not isinstance(exc, Exception):
            raise
        log.exception("upload of %s failed", safe)
        raise UploadError(
            f"upload failed: {name} ({exc.__class__.__name__})",
            "Het bestand kon door een onverwachte fout niet worden toegevoegd; het is niet bewaard.",
        ) from exc
    finally:
        index.close()
    common.forget_assistant()
    notes = [common.dutch_page_note(n["reason"]) for n in report.notes]
    return UploadResult(path, doc.get("doc_id", path.stem), present, [], doc.get("title", path.stem),
                        doc.get("chunks", 0), notes, warnings)


def _documents_table(docs: list[dict]) -> None:
    rows = [
        {
            "Titel": d["title"],
            "Soort": common.KIND_LABELS.get(d["kind"], d["kind"]),
            "Jaar": d["year"],
            "Passages": d["chunks"],
            "Bestand": Path(d["path"]).name,
        }
        for d in docs
    ]
    st.dataframe(rows, hide_index=True, width="stretch")


def _research_status(docs: list[dict]) -> None:
    st.subheader("Onderzoeksdocumenten")
    missing = []
    for kind in RESEARCH_KINDS:
        found = [d for d in docs if d["kind"] == kind]
        label = common.KIND_LABELS[kind]
        if found:
            titles = ", ".join(common.escape_markdown(d["title"]) for d in found)
            st.markdown(f":green[:material/check_circle:] **{label}** — {titles}")
        else:
            st.markdown(f":red[:material/cancel:] **{label}** ontbreekt")
            missing.append(kind)
    if {"rapport", "handreiking"} & set(missing):
        st.info(
            "Het volledige rapport en de handreiking zijn PDF's van oberon.eu. Upload ze hieronder "
            "en kies het soort document (of zet *rapport* of *handreiking* in de bestandsnaam); "
            "daarna kunt u er meteen vragen over stellen."
        )


def _chunk_browser(settings, docs: list[dict]) -> None:
    st.subheader("Passages bekijken")
    by_id = {d["doc_id"]: d for d in docs}
    doc_id = st.selectbox("Document", list(by_id), format_func=lambda i: by_id[i]["title"], key="browse_doc")
    if doc_id is None:
        return
    index = common.open_catalog(settings)
    try:
        chunks = index.chunks_of(doc_id) if index else []
    finally:
        if index:
            index.close()
    pages = max(1, -(-len(chunks) // CHUNKS_PER_PAGE))
    page = 1
    if pages > 1:
        page = st.number_input(f"Bladzijde (van {pages})", 1, pages, 1, key=f"browse_page_{doc_id}")
    start = (page - 1) * CHUNKS_PER_PAGE
    st.caption(f"{len(chunks)} passages")
    for chunk in chunks[start : start + CHUNKS_PER_PAGE]:
        section = common.short_section(chunk.title, chunk.section) or "(begin)"
        label = f"{chunk.ordinal + 1}. {section}" + common.page_text(chunk)
        with st.expander(common.escape_markdown(label)):
            common.show_passage(chunk.text)


def _upload_form(settings) -> None:
    st.subheader("Document toevoegen")
    kinds = {"": "Afleiden uit de bestandsnaam", "rapport": "Rapport", "handreiking": "Handreiking",
             "factsheet": "Factsheet"}
    with st.form("upload", clear_on_submit=True):
        upload = st.file_uploader(
            "Bestand (PDF, Word, Markdown, tekst of HTML)",
            type=list(common.UPLOAD_TYPES),
            max_upload_size=settings.upload_max_mb,
            help=f"Maximaal {settings.upload_max_mb} MB. Het bestand wordt in de map met bronnen gezet en geïndexeerd.",
        )
        kind = st.selectbox("Soort document", list(kinds), format_func=kinds.get)
        submitted = st.form_submit_button("Toevoegen en indexeren")
    if not submitted:
        return
    if upload is None:
        st.error("Kies eerst een bestand.")
        return
    failure = None
    with st.status(f"{upload.name} toevoegen…", expanded=True) as status:
        bar = st.progress(0.0, text="Bestand controleren en inlezen…")
        try:
            result = save_and_ingest(
                upload.getvalue(), upload.name, settings, kind or None,
                progress=lambda done, total: bar.progress(done / total, text=f"{done} van {total} passages"),
                on_page=lambda done, total: bar.progress(done / total, text=f"Pagina {done} van {total} gelezen"),
            )
        except RagError as exc:
            status.update(label=f"{upload.name} niet toegevoegd", state="error", expanded=False)
            failure = exc.dutch
    if failure:
        st.error(failure)  # outside the status box: a collapsed box hid the reason
        return
    if result.skipped:
        st.session_state["upload_flash"] = ("warning", f"{result.path.name} is niet toegevoegd: {'; '.join(result.skipped)}.")
    else:
        again = " (stond er al; de index is bijgewerkt)" if result.already_present else ""
        message = (f"‘{result.title}’ is toegevoegd als {result.path.name}{again}: {result.chunks} passages. "
                   "U kunt er nu vragen over stellen.")
        if result.notes:
            message += " Niet gelezen: " + "; ".join(result.notes) + "."
        if result.warnings:
            message += " Let op: " + "; ".join(result.warnings) + "."
        st.session_state["upload_flash"] = ("warning" if result.notes or result.warnings else "success", message)
    st.rerun()


def render() -> None:
    """The Bronnen page."""
    settings = common.load_settings()
    st.title("Bronnen")
    flash = st.session_state.pop("upload_flash", None)
    if flash:
        kind, message = flash
        (st.success if kind == "success" else st.warning)(common.escape_markdown(message))
    docs = common.index_documents(settings)
    if docs:
        _documents_table(docs)
    else:
        st.info("Er zijn nog geen documenten geïndexeerd. Voeg hieronder een document toe.")
    _research_status(docs)
    _upload_form(settings)
    if docs:
        _chunk_browser(settings, docs)


if __name__ == "__main__":
    render()
