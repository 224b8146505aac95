"""Bronnen page: uploads in progress, indexed documents, what is missing, a chunk browser and uploads.

An upload is checked (type, size, content by its first bytes, byte-identical duplicates) and put
in the ingest job queue (rag.ingest); a worker process ingests it while the panel at the top of
the page shows its stage and pages, refreshed every second."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from rag import access
from rag.errors import RagError
from rag.ui import account, common

log = logging.getLogger(__name__)

RESEARCH_KINDS = ("rapport", "factsheet", "handreiking")
CHUNKS_PER_PAGE = 25
JOBS_SHOWN = 5
RECENT_JOB_SECONDS = 15 * 60  # finished jobs stay in the panel this long
STAGE_PATH = ("wachtrij", "lezen", "doorzoekbaar", "klaar")
NO_WORKER_SECONDS = 30


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


def _admit_upload(data: bytes, name: str, settings, kind: str | None, actor: access.Actor | None):
    """(the curator, the name to save under) for an upload, or NotAllowed / UploadError (Dutch reason).

    `kind` is put in the name when the name does not say it: the loaders derive the kind from it."""
    from rag.loaders import guess_kind

    actor = access.require_curator(actor or access.local_actor(), settings)
    problem = common.check_upload(data, name, settings.upload_max_mb * 2**20)
    if problem:
        raise UploadError(f"upload refused: {name}", problem)
    safe = common.sanitize_filename(name)
    if kind in RESEARCH_KINDS and guess_kind(safe) != kind:
        safe = common.sanitize_filename(f"{kind}-{safe}")
    return actor, safe


def save_and_ingest(
    data: bytes,
    name: str,
    settings,
    kind: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    on_page: Callable[[int, int], None] | None = None,
    actor: access.Actor | None = None,
) -> UploadResult:
    """Check an upload, save it into the corpus folder and index just that file, as `actor` (None:
    someone on this machine, without login); recorded in the change log.

    Only a curator may (rag.access): anyone else gets NotAllowed before anything is read or written.

    `kind` (rapport/handreiking/factsheet) is put in the file name when the name does
    not already say it, because the loaders derive the kind from the name. The file is
    parsed before it is saved: one the loaders refuse is never written, and its Dutch reason
    is returned in `skipped`; a file that fails later is removed again, whatever the error.
    """
    from rag.loaders import UnreadableFile
    from rag.store import Index

    actor, safe = _admit_upload(data, name, settings, kind, actor)
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
        before = index.documents()
        on_event = (lambda stage, done, total, _name: on_page(done, total) if stage == "pages" else None) if on_page else None
        report = index.ingest(paths=[path], progress=progress, on_event=on_event, added_by=actor.who or None)
        skipped = [common.dutch_skip_reason(s["reason"]) for s in report.skipped]
        if skipped:
            if not present:
                path.unlink(missing_ok=True)
            return UploadResult(path, path.stem, present, skipped)
        after = index.documents()
        doc = next((d for d in after if Path(d["path"]).resolve() == path.resolve()), {})
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
    if not log_change(settings, actor, before, after, report, "upload"):
        warnings.append(UNLOGGED)
    notes = [common.dutch_page_note(n["reason"]) for n in report.notes]
    return UploadResult(path, doc.get("doc_id", path.stem), present, [], doc.get("title", path.stem),
                        doc.get("chunks", 0), notes, warnings)


UNLOGGED = "de wijziging kon niet in het logboek worden vastgelegd"


def log_change(settings, actor: access.Actor, before: list[dict], after: list[dict], report, via: str) -> bool:
    """Record an ingest's changes in the change log; False (and a logged error) when that failed."""
    from rag import changelog

    try:
        changelog.record_ingest(settings, actor, before, after, report, via)
        return True
    except Exception:  # noqa: BLE001 - the change is made; a failing log must not hide that
        log.exception("could not record the change in the change log")
        return False


class DeleteError(RagError):
    """A document could not be deleted (not found, not in the corpus folder)."""


def deletable(doc: dict, settings) -> bool:
    """Can this document be deleted from the app: is its file in the corpus folder (uploads land there)?
    Documents of other folders go with `rag ingest` on that folder."""
    from rag.identity import doc_source

    corpus = Path(settings.corpus_dir).resolve()
    return doc_source(doc["doc_id"]) == "corpus" and Path(doc["path"]).resolve().is_relative_to(corpus)


def delete_document(doc_id: str, settings, actor: access.Actor | None = None) -> str:
    """Delete a document of the corpus folder: its file and its passages, as `actor` (None: someone on
    this machine, without login); recorded in the change log. Returns its title.

    Only a curator may (rag.access). The file is put back when the index cannot be updated."""
    from rag.index import Index

    actor = access.require_curator(actor or access.local_actor(), settings)
    index = Index(settings)
    try:
        before = index.documents()
        doc = next((d for d in before if d["doc_id"] == doc_id), None)
        if doc is None or not deletable(doc, settings):
            raise DeleteError(
                f"cannot delete {doc_id}: it is not a document of the corpus folder",
                "Dit document staat niet (meer) in de map met bronnen en kan hier niet worden verwijderd.",
            )
        path = Path(doc["path"])
        data = path.read_bytes() if path.is_file() else None
        path.unlink(missing_ok=True)
        try:
            report = index.ingest(paths=[path])
        except BaseException:
            if data is not None and not path.exists():
                path.write_bytes(data)
            raise
        after = index.documents()
    finally:
        index.close()
    common.forget_assistant()
    log_change(settings, actor, before, after, report, "verwijderen")
    return doc["title"]


def _documents_table(docs: list[dict]) -> None:
    rows = [
        {
            "Titel": d["title"],
            "Soort": common.KIND_LABELS.get(d["kind"], d["kind"]),
            # Text, so a Markdown source (no pages) or an undated one shows a dash, not "None".
            "Jaar": _or_dash(d["year"]),
            "Pagina's": _or_dash(d.get("pages")),
            "Passages": d["chunks"],
            "Bestand": Path(d["path"]).name,
        }
        for d in docs
    ]
    st.dataframe(rows, hide_index=True, width="stretch")


def _or_dash(value) -> str:
    return "–" if value in (None, "", 0) else str(value)


def _research_status(docs: list[dict], curator: bool = True) -> None:
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
    if {"rapport", "handreiking"} & set(missing) and not curator:
        names = [common.KIND_NAMES[k] for k in ("rapport", "handreiking") if k in missing]
        st.info(f"{' en '.join(names).capitalize()} {'ontbreekt' if len(names) == 1 else 'ontbreken'} nog; "
                "vraag een beheerder van de bronnen erom.")
    elif {"rapport", "handreiking"} & set(missing):
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
    try:
        message = enqueue_upload(upload.getvalue(), upload.name, settings, kind or None,
                                 actor=account.current_actor(settings))  # who submits, read now
    except RagError as exc:
        st.error(exc.dutch)
        return
    if message:
        st.warning(common.escape_markdown(message))
        return
    st.rerun()  # the jobs panel at the top shows the upload from now on


def enqueue_upload(data: bytes, name: str, settings, kind: str | None = None,
                   actor: access.Actor | None = None) -> str | None:
    """Check an upload and queue it for the ingest worker (started when none runs), as `actor`
    (None: someone on this machine, without login); None when queued, else why it was not
    (Dutch: a byte-identical document is already indexed).

    Only a curator may (rag.access): anyone else gets NotAllowed before anything is queued.
    UploadError (with a Dutch reason) for a file of the wrong type, size or content."""
    from dataclasses import asdict

    from rag.ingest import JobQueue, file_sha256
    from rag.ingest.worker import ensure_worker, find_duplicate

    actor, safe = _admit_upload(data, name, settings, kind, actor)
    duplicate = find_duplicate(settings, file_sha256(data), safe)
    if duplicate is not None:
        title, where = duplicate["title"], Path(duplicate["path"]).name
        if duplicate["same_name"]:
            return f"{name} staat al in de bronnen als ‘{title}’ ({where}); er is niets veranderd."
        return (f"{name} is niet toegevoegd: het is byte voor byte hetzelfde bestand als het document "
                f"‘{title}’ ({where}), dat al in de bronnen staat.")
    JobQueue.for_settings(settings).enqueue(data, name, safe, kind, actor=asdict(actor))
    if settings.worker_autostart:
        ensure_worker(settings)
    return None


def _job_line(job) -> None:
    """One upload in the jobs panel: its stages, the current one marked, and its progress."""
    from rag.ingest import STAGE_LABELS

    name = common.escape_markdown(job.name)
    current = "klaar" if job.stage == "klaar" else job.stage
    path = list(STAGE_PATH)
    if job.stage in ("mislukt", "dubbel"):
        path = [s for s in STAGE_PATH if job.timings.get(s) is not None or s == "wachtrij"] + [job.stage]
    steps = " → ".join(
        f"**{STAGE_LABELS[s].lower()}**" if s == current else STAGE_LABELS[s].lower() for s in path
    )
    if job.stage == "klaar":
        st.success(f"{name}: antwoordregels klaar. {common.escape_markdown(job.message)} "
                   "U kunt er nu vragen over stellen.")
        return
    if job.stage == "mislukt":
        st.error(f"{name}: mislukt — {common.escape_markdown(job.message)}")
        return
    if job.stage == "dubbel":
        st.warning(f"{name}: {common.escape_markdown(job.message)}")
        return
    st.caption(steps)
    if job.stage == "wachtrij":
        again = f" ({common.escape_markdown(job.message)})" if job.message else ""
        st.progress(0.0, text=f"{name}: in de wachtrij{again}…")
    elif job.stage == "lezen":
        pages = f"pagina {job.done} van {job.total}" if job.total else "bestand openen"
        st.progress(job.done / job.total if job.total else 0.0, text=f"{name}: lezen — {pages}")
    elif job.stage == "verwerken":
        st.progress(job.done / job.total if job.total else 0.0,
                    text=f"{name}: passages verwerken — {job.done} van {job.total}")
    else:  # doorzoekbaar: the passages can be found, the answer lines are being made
        st.progress(job.done / job.total if job.total else 0.0,
                    text=f"{name}: doorzoekbaar; antwoordregels maken — {job.done} van {job.total}")


@st.fragment(run_every=1.0)
def _jobs_panel(settings) -> None:
    """Uploads waiting, running and just finished (every replica's), refreshed every second; the
    whole page reruns when one of them finishes, so the documents table shows it."""
    from rag.ingest import JobQueue
    from rag.ingest.worker import ensure_worker, jobs_in_progress, worker_running

    queue = JobQueue.for_settings(settings)
    now = time.time()
    jobs = [j for j in queue.jobs() if not j.final or now - j.finished < RECENT_JOB_SECONDS][-JOBS_SHOWN:]
    running = jobs_in_progress(jobs)
    before = st.session_state.get("jobs_running", set())
    st.session_state["jobs_running"] = {j.id for j in running}
    if running and settings.worker_autostart and any(j.stage == "wachtrij" for j in running) \
            and not worker_running(settings):
        ensure_worker(settings)  # the worker that served this queue is gone
    if jobs:
        st.subheader("Verwerking")
        # Workers look every half second: a job waiting this long while none is being worked on has no worker.
        waiting = [j for j in running if j.stage == "wachtrij" and now - j.heartbeat > NO_WORKER_SECONDS]
        if waiting and all(j.stage == "wachtrij" for j in running):
            st.warning("Er draait geen verwerker voor de wachtrij op deze server; vraag de beheerder "
                       "`rag worker` te starten.")
        for job in jobs:
            _job_line(job)
    if before - st.session_state["jobs_running"]:
        st.rerun()  # a job finished: redraw the documents table and the research status


def _delete_form(settings, docs: list[dict]) -> None:
    candidates = {d["doc_id"]: d for d in docs if deletable(d, settings)}
    if not candidates:
        return
    st.subheader("Document verwijderen")
    with st.form("delete", clear_on_submit=True):
        doc_id = st.selectbox(
            "Document", list(candidates),
            format_func=lambda i: f"{candidates[i]['title']} ({Path(candidates[i]['path']).name})",
        )
        sure = st.checkbox("Ja, verwijder dit document en zijn passages")
        submitted = st.form_submit_button("Verwijderen")
    if not submitted or doc_id is None:
        return
    if not sure:
        st.error("Vink eerst aan dat u het document wilt verwijderen.")
        return
    try:
        title = delete_document(doc_id, settings, actor=account.current_actor(settings))
    except RagError as exc:
        st.error(exc.dutch)
        return
    st.session_state["upload_flash"] = ("success", f"‘{title}’ is verwijderd; het staat niet meer in de bronnen.")
    st.rerun()


ACTIONS = {"added": "toegevoegd", "replaced": "vervangen", "reindexed": "opnieuw geïndexeerd", "removed": "verwijderd"}
CHANGES_SHOWN = 50


def _who(change) -> str:
    if change.actor_kind == access.LOCAL:
        return "lokaal (zonder login)"
    if change.actor_kind == access.SYSTEM:
        return "de app (eerste start)"
    return change.who


def _change_log(settings) -> None:
    from zoneinfo import ZoneInfo

    from rag import changelog

    st.subheader("Wijzigingen")
    try:
        changes = changelog.recent(settings, CHANGES_SHOWN)
    except RagError as exc:
        st.error(exc.dutch)
        return
    except Exception:  # noqa: BLE001 - the rest of the page must still show
        log.exception("could not read the change log")
        st.warning("Het logboek met wijzigingen kan nu niet worden gelezen.")
        return
    if not changes:
        st.caption("Nog geen wijzigingen vastgelegd.")
        return
    import pandas as pd

    zone = ZoneInfo("Europe/Amsterdam")
    rows = [
        {"Wanneer": c.when.astimezone(zone).strftime("%d-%m-%Y %H:%M"), "Wie": _who(c),
         "Wat": ACTIONS.get(c.action, c.action), "Document": c.title, "Via": c.via}
        for c in changes
    ]
    st.table(pd.DataFrame(rows))  # a table, not a data grid: text a screen reader (and a test) can read


def render() -> None:
    """The Bronnen page."""
    settings = common.load_settings()
    st.title("Bronnen")
    _jobs_panel(settings)
    actor = account.current_actor(settings)
    curator = access.may_change(actor, settings)
    if not access.login_configured():
        st.info(account.LOCAL_ONLY)
    flash = st.session_state.pop("upload_flash", None)
    if flash:
        kind, message = flash
        (st.success if kind == "success" else st.warning)(common.escape_markdown(message))
    docs = common.index_documents(settings)
    if docs:
        _documents_table(docs)
    else:
        st.info("Er zijn nog geen documenten geïndexeerd." + (" Voeg hieronder een document toe." if curator else ""))
    _research_status(docs, curator)
    if curator:
        _upload_form(settings)
        _delete_form(settings, docs)
    else:
        st.info(account.READER)
    _change_log(settings)
    if docs:
        _chunk_browser(settings, docs)


if __name__ == "__main__":
    render()
