"""Shared UI parts: settings, the cached Assistant, first-run indexing, safe Markdown, upload checks.

Heavy modules (the index, the embedding model) are imported inside functions so the
app starts fast. Document text is only ever rendered as escaped Markdown, never as HTML.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import unicodedata
import zipfile
from io import BytesIO
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

import streamlit as st

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.store import Index

log = logging.getLogger(__name__)

UPLOAD_TYPES = ("pdf", "docx", "md", "txt", "html", "jpg", "jpeg", "png", "tif", "tiff")
TEXT_TYPES = frozenset({"md", "txt", "html"})
MAX_NAME_CHARS = 100
MAX_PASSAGES_SLIDER = 10
KIND_LABELS = {
    "rapport": "Rapport",
    "factsheet": "Factsheet",
    "handreiking": "Handreiking",
    "webpagina": "Webpagina",
    "other": "Overig",
}
# The kinds as a noun in a sentence ("Het rapport is nog niet toegevoegd").
KIND_NAMES = {
    "rapport": "het rapport",
    "factsheet": "de factsheet",
    "handreiking": "de handreiking",
    "webpagina": "de webpagina",
    "other": "het document",
}
NO_DOCUMENTS = (
    "Er zijn nog geen documenten om vragen over te beantwoorden. Voeg het rapport, de factsheet "
    "of de handreiking toe op de pagina **Bronnen**."
)

# Skip reasons from the loaders (English, one line) -> Dutch, matched by prefix.
_SKIP_REASONS = (
    ("binary content", "het tekstbestand bevat binaire gegevens"),
    ("not a valid DOCX", "het is geen geldig Word-bestand (DOCX)"),
    ("encrypted PDF", "de PDF is beveiligd met een wachtwoord"),
    ("corrupt or unreadable PDF", "de PDF is beschadigd of onleesbaar"),
    ("PDF has no text layer (no page", "de PDF bevat geen tekst en geen scans"),
    ("PDF has no text layer", "de PDF bevat geen tekst en de scans konden niet gelezen worden"),
    ("image not read because Tesseract", "tekstherkenning (OCR) is niet geïnstalleerd: apt-get install tesseract-ocr tesseract-ocr-nld"),
    ("no text recognised in the image", "in de afbeelding is geen tekst herkend"),
    ("not a readable image", "de afbeelding kan niet gelezen worden"),
    ("unsupported file type", "dit bestandstype wordt niet ondersteund"),
    ("file is larger than", "het bestand is te groot"),
    ("cannot read file", "het bestand kan niet gelezen worden"),
    ("empty file", "het bestand is leeg"),
    ("file named .pdf is a ZIP", "het bestand heet .pdf maar is een ZIP-archief"),
    ("file named .pdf does not start", "het bestand heet .pdf maar is geen PDF"),
    ("file named .docx", "het bestand heet .docx maar is geen Word-bestand"),
    ("no text found", "er staat geen leesbare tekst in"),
    ("could not be read", "het bestand kon niet gelezen worden"),
    ("same document id", "er is al een document met dezelfde bestandsnaam; geef het een andere naam"),
    ("no such file", "het bestand bestaat niet"),
    ("not a regular file", "het is geen gewoon bestand (maar bijvoorbeeld een apparaat of pijp)"),
    ("symbolic link to a file outside", "het is een koppeling naar een bestand buiten de map met bronnen"),
    ("symbolic link to a folder", "het is een koppeling naar een map; die wordt niet gevolgd"),
    ("broken symbolic link", "het is een kapotte koppeling"),
    ("parsing took longer", "het inlezen duurde te lang"),
    ("parsing needed more", "het inlezen vroeg te veel geheugen"),
    ("too much text", "het document bevat meer tekst dan is toegestaan"),
    ("too many chunks", "het document is te groot (te veel passages)"),
    ("too many answer lines", "het document bevat te veel losse regels of alinea's"),
    ("ZIP (DOCX)", "het Word-bestand pakt uit tot veel te veel gegevens (een ZIP-bom?)"),
    ("text file is larger", "het tekstbestand is te groot; splits het in kleinere bestanden"),
)


# -- settings and the cached assistant --------------------------------------------
def load_settings() -> Settings:
    """Settings from the environment; a Dutch error (and stop) when one is invalid."""
    from pydantic import ValidationError

    from rag.config import Settings

    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        st.error(f"Ongeldige instelling RAG_{str(first['loc'][0]).upper()}: {first['msg']}. Pas de instelling aan.")
        st.stop()


@st.cache_resource(show_spinner=False)
def _cached_assistant(key: str, _settings: Settings):
    from rag.answering import Assistant

    return Assistant(_settings)


_warm_up_lock = threading.Lock()
_warmed_up: set[str] = set()


def warm_up(settings: Settings) -> threading.Thread | None:
    """Load the embedding model, the answering code and the Assistant in the background, once per process.

    Importing chromadb and LangChain, loading the model, opening the Chroma client and the BM25
    index and reading the answer lines take most of the first question's wait; started with the
    first page view, that overlaps with the page loading and the user typing. The model and the Assistant are caches with their own locks, so a question
    asked meanwhile waits for this load instead of starting a second one. Returns the started
    thread, or None when this process has warmed up for these settings already."""
    key = f"{settings.embed_model}|{settings.embed_batch_size}"
    with _warm_up_lock:
        if key in _warmed_up:
            return None
        _warmed_up.add(key)
    thread = threading.Thread(target=_warm_up, args=(settings, _page_script_thread()), name="rag-warm-up",
                              daemon=True)
    thread.start()
    return thread


WARM_UP_WAIT_S = 3.0  # longest the warm-up lets the first page run go first


def _page_script_thread() -> threading.Thread | None:
    """The Streamlit script thread drawing the first page, when warm_up is called from one."""
    try:
        from streamlit.runtime.scriptrunner import get_script_run_ctx

        ctx = get_script_run_ctx(suppress_warning=True)
    except Exception:  # noqa: BLE001 - another Streamlit version: just do not wait
        return None
    current = threading.current_thread()
    return current if ctx is not None and current is not threading.main_thread() else None


def _warm_up(settings: Settings, page_thread: threading.Thread | None = None) -> None:
    # Imports hold the GIL: let the first page (and its chat box) draw first. The script
    # thread ends when that run is done; the user types meanwhile, so little is lost.
    if page_thread is not None:
        page_thread.join(WARM_UP_WAIT_S)
    started = time.perf_counter()
    try:
        import chromadb  # noqa: F401 - the vector store client

        import rag.answering  # noqa: F401 - LangChain, retrieval, answering
        from rag.embeddings import get_embeddings

        embeddings = get_embeddings(settings.embed_model, settings.embed_batch_size)
        embeddings.encode(["opwarmen"], embeddings.query_prefix)
        index = open_catalog(settings)
        if index is None:
            return
        try:
            built = index.exists()
        finally:
            index.close()
        if built:
            # The shared Assistant and everything a question touches before any LLM call:
            # Chroma client and segment, BM25 index, stored answer lines, refusal model.
            from rag.answering.refusal import decide

            analysis = get_assistant(settings).analyse("Waar gaat het onderzoek over?")
            decide(analysis.features, settings.refusal_threshold)
        log.info("warm-up done in %.1fs", time.perf_counter() - started)
    except Exception:  # noqa: BLE001 - the same error shows, in Dutch, when a question is asked
        log.warning("warming up the embedding model failed", exc_info=True)


def get_assistant(settings: Settings):
    """The Assistant for these settings, shared by all sessions (loads the model once)."""
    return _cached_assistant(settings.model_dump_json(), settings)


def forget_assistant() -> None:
    """Drop cached Assistants so the next question sees a changed index."""
    _cached_assistant.clear()


def open_catalog(settings: Settings) -> Index | None:
    """The index for reading its catalog, or None when none has been built."""
    from rag.errors import RagError
    from rag.store import Index

    index = Index(settings)
    try:
        return index if index.has_store() else None
    except RagError:
        return index  # damaged or out of reach: reading it shows the Dutch sentence where it is used


def index_documents(settings: Settings) -> list[dict]:
    """Indexed documents (empty when there is no index yet)."""
    index = open_catalog(settings)
    if index is None:
        return []
    from rag.errors import RagError

    try:
        return index.documents()
    except RagError as exc:
        st.error(exc.dutch)
        return []
    finally:
        index.close()


def ensure_index(settings: Settings) -> bool:
    """Build the index on first run (with progress); False when there is nothing to index."""
    from rag.loaders import discover
    from rag.store import Index

    index = Index(settings)
    try:
        if index.exists():
            return True
        corpus = Path(settings.corpus_dir)
        files = discover([corpus])[0] if corpus.is_dir() else []
        if not files:
            st.info(NO_DOCUMENTS)
            return False
        with st.status("Eerste start: de documenten worden geïndexeerd…", expanded=True) as status:
            st.write(f"{len(files)} document(en) in `{corpus}`; het embeddingmodel wordt geladen.")
            bar = st.progress(0.0, text="Passages voorbereiden…")
            report = index.ingest(progress=lambda done, total: bar.progress(done / total, text=f"{done} van {total} passages"))
            status.update(label=f"Index klaar: {report.documents} document(en), {report.chunks_total} passages",
                          state="complete", expanded=False)
        show_skipped(report.skipped)
        show_notes(report.notes)
        if not index.exists():
            st.info(NO_DOCUMENTS)
            return False
        return True
    finally:
        index.close()


def sidebar(settings: Settings) -> None:
    """The document count, and a collapsed "Instellingen" expander with the answerer, the embedding
    model and the passages slider (session key `k`): model names and tuning knobs stay out of sight
    until asked for."""
    from rag.errors import RagError
    from rag.llm import describe_llm

    with st.sidebar:
        index = open_catalog(settings)
        info = None
        if index is not None:
            try:
                info = index.info()
            except RagError as exc:
                st.error(exc.dutch)
            finally:
                index.close()
        if info is not None:
            st.caption(f"{info['documents']} document(en), {info['chunks']} passages")
        with st.expander("Instellingen", icon=":material/settings:"):
            try:
                st.markdown(f"**Antwoorden:** {inline_code(describe_llm(settings))}")
            except RagError as exc:
                st.error(exc.dutch)
            model = "nog geen index" if info is None else inline_code(str(info["embed_model"]))
            st.markdown(f"**Embeddingmodel:** {model}")
            st.slider("Aantal passages", 1, MAX_PASSAGES_SLIDER, min(settings.k, MAX_PASSAGES_SLIDER), key="k",
                      help="Hoeveel passages de assistent per vraag opzoekt.")


def inline_code(value: str) -> str:
    """`value` as inline code (backticks in it become quotes)."""
    return "`" + value.replace("`", "'") + "`"


# -- safe Markdown ----------------------------------------------------------------
_MD_SPECIAL = re.compile(r"[\\`*_{}\[\]()#+\-.!|~$=:>]")


def escape_markdown(text: str) -> str:
    """Escape Markdown syntax and HTML so `text` renders literally in st.markdown."""

    def repl(m: re.Match) -> str:
        ch = m.group(0)
        if ch == "&":
            return "&amp;"
        if ch == "<":
            return "&lt;"
        return "\\" + ch

    return re.sub(r"[&<]|" + _MD_SPECIAL.pattern, repl, text)


def _emphasise(segment: str) -> str:
    """Escaped, highlighted segment; surrounding spaces stay outside the markers."""
    core = segment.strip()
    if not core:
        return segment
    lead = segment[: len(segment) - len(segment.lstrip())]
    trail = segment[len(segment.rstrip()):]
    return f"{lead}:orange-background[**{escape_markdown(core)}**]{trail}"


# A Markdown link whose target looks like an address (scheme:, /path, #anchor or www.), e.g.
# `[mvdgrinten@oberon.eu](mailto:mvdgrinten@oberon.eu)`; "[1] (91%)" and "[1](91%)" are not links.
_MD_LINK = re.compile(r"\[([^\[\]\n]+)\]\(\s*(?:[A-Za-z][A-Za-z0-9+.-]*:|/|#|www\.)[^()\s]*(?:\([^()\s]*\)[^()\s]*)*\s*\)")


def link_text(text: str) -> str:
    """`text` with Markdown links replaced by their link text (the address is dropped, never followed)."""
    return _MD_LINK.sub(lambda m: m.group(1), text)


def passage_markdown(text: str, quote: str | list[str] | None = None) -> str:
    """Passage text as safe Markdown, with `quote` (a line, or every quoted line) highlighted
    where found, line by line.

    Markdown links in the source show as their link text; everything else renders literally."""
    from rag.citations import highlight_spans

    text = link_text(text)
    quotes = [link_text(q) for q in ([quote] if isinstance(quote, str) else quote or []) if q]
    spans = highlight_spans(text, quotes) if quotes else [(text, False)]
    lines: list[list[tuple[str, bool]]] = [[]]
    for segment, quoted in spans:
        for i, piece in enumerate(segment.split("\n")):
            if i:
                lines.append([])
            lines[-1].append((piece, quoted))
    rendered: list[str] = []
    for pieces in lines:
        line = "".join(_emphasise(p) if q else escape_markdown(p) for p, q in pieces).strip()
        rendered.append(line)
    out = ""
    for line in rendered:
        if not line:
            out += "\n\n" if out and not out.endswith("\n\n") else ""
        else:
            out += ("  \n" if out and not out.endswith("\n\n") else "") + line
    return out.strip()


def passage_table(header: list[str], rows: list[list[str]], quotes: list[str] | None = None):
    """A table block of a passage as a DataFrame (cells as plain strings; rendered by Streamlit,
    never as HTML); rows whose line was quoted are marked with ▶ in a first column."""
    import pandas as pd

    from rag.tables import ROW_SEPARATOR

    quoted = {q.partition(ROW_SEPARATOR)[0].strip() for q in quotes or [] if ROW_SEPARATOR in q}
    names = [h or " " for h in header]
    seen: dict[str, int] = {}
    for i, name in enumerate(names):  # unique column names
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            names[i] = f"{name} ({seen[name]})"
    frame = pd.DataFrame([[str(c) for c in row] for row in rows], columns=names)
    if quoted:
        marks = ["▶" if any(q == row[0] or q.endswith(": " + row[0]) for q in quoted) else "" for row in rows]
        frame.insert(0, "", marks)
    return frame


def show_passage(text: str, quote: str | list[str] | None = None) -> None:
    """A passage on the page: text as safe Markdown with the quoted lines highlighted, and the
    rows of a table as a real table (st.table)."""
    from rag.tables import table_blocks

    quotes = [quote] if isinstance(quote, str) else list(quote or [])
    for kind, content in table_blocks(text or ""):
        if kind == "table":
            header, rows = content
            st.table(passage_table(header, rows, quotes))
        elif content.strip():
            st.markdown(passage_markdown(content, quotes))


def answer_markdown(text: str) -> str:
    """Answer text as safe Markdown, keeping the answerer's `- ` list items as a list."""
    lines = []
    for line in link_text(text).splitlines():
        stripped = line.strip()
        if stripped.startswith("- "):
            lines.append("- " + escape_markdown(stripped[2:]))
        else:
            lines.append(escape_markdown(stripped))
    return "\n".join(lines)


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", unicodedata.normalize("NFKC", text or "").casefold())


def _repeats_title(part: str, title: str) -> bool:
    """Is this heading the document's title again (the chunker's root, or a PDF's title bookmark)?"""
    words, title_words = _words(part), _words(title)
    if not words or not title_words:
        return False
    if " ".join(words) in " ".join(title_words) or " ".join(title_words) in " ".join(words):
        return True
    shared = len(set(words) & set(title_words))
    return len(words) >= 3 and shared / min(len(set(words)), len(set(title_words))) >= 0.8


def short_section(title: str, section: str) -> str:
    """The section path below the document root: leading parts that repeat the title are dropped."""
    parts = [p for p in (section or "").split(" › ") if p]
    while parts and _repeats_title(parts[0], title):
        parts = parts[1:]
    return " › ".join(parts)


def page_text(passage) -> str:
    """", p. 12" with the printed page label when the passage has one, else the page number; "" without."""
    label = getattr(passage, "page_label", None) or getattr(passage, "page", None)
    if isinstance(label, str) and label.startswith("("):  # a single scanned image: only the OCR mark
        return f" {label}"
    return f", p. {label}" if label not in (None, "") else ""


def source_label(passage, n: int | None = None) -> str:
    """"[n] Title — section › subsection, p. 12" as safe Markdown: the title once, then where in it."""
    section = short_section(passage.title, passage.section)
    label = f"[{n}] " if n else ""
    label += (passage.title or passage.doc_id) + (f" — {section}" if section else "") + page_text(passage)
    return escape_markdown(label)


def excerpt(text: str, limit: int = 300) -> str:
    """The start of `text` on one line, at most `limit` characters, cut at a word boundary with "…"."""
    flat = " ".join((text or "").split())
    if len(flat) <= limit:
        return flat
    cut = flat[: limit + 1]
    space = cut.rfind(" ")
    head = cut[:space] if space > limit // 2 else flat[:limit]
    return head.rstrip(" ,;:-–—") + "…"


# -- uploads ----------------------------------------------------------------------
def sanitize_filename(name: str, max_chars: int = MAX_NAME_CHARS) -> str:
    """A safe file name: last path part only, [A-Za-z0-9._-], no leading dots, bounded length."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = unicodedata.normalize("NFKD", base)
    base = "".join(ch for ch in base if not unicodedata.combining(ch))
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", base)
    base = re.sub(r"-{2,}", "-", base).lstrip(".")
    suffix = PurePath(base).suffix.lower() if "." in base else ""
    if not re.fullmatch(r"\.[a-z0-9]{1,10}", suffix or ".x"):
        suffix = ""
    stem = base[: len(base) - len(suffix)] if suffix else base
    stem = re.sub(r"\.{2,}", ".", stem).strip("-._") or "document"
    return stem[: max(1, max_chars - len(suffix))].rstrip("-._") + suffix


def check_upload(data: bytes, name: str, max_bytes: int) -> str | None:
    """Why an upload is refused (Dutch), or None: type by name, size, and content by magic bytes."""
    suffix = PurePath(sanitize_filename(name)).suffix.lower().lstrip(".")
    if suffix not in UPLOAD_TYPES:
        allowed = ", ".join(t.upper() for t in UPLOAD_TYPES)
        return f"Dit bestandstype ({suffix.upper() or 'onbekend'}) wordt niet ondersteund; kies een {allowed}-bestand."
    if not data:
        return "Het bestand is leeg."
    if len(data) > max_bytes:
        return f"Het bestand is te groot ({len(data) / 2**20:.1f} MB; maximaal {max_bytes / 2**20:.0f} MB)."
    if suffix == "pdf" and not data.lstrip()[:5].startswith(b"%PDF"):
        if data.startswith(b"PK"):
            return "Dit bestand heet .pdf maar is een ZIP-archief (bijvoorbeeld een Word-bestand), geen PDF."
        return "Dit bestand heet .pdf maar is geen PDF."
    if suffix == "docx" and not _is_docx(data):
        return "Dit bestand heet .docx maar is geen geldig Word-bestand."
    if suffix in TEXT_TYPES and b"\x00" in data and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "Dit tekstbestand bevat binaire gegevens (NUL-bytes); is het wel een tekstbestand?"
    return None


def _is_docx(data: bytes) -> bool:
    if not data.startswith(b"PK\x03\x04"):
        return False
    try:
        with zipfile.ZipFile(BytesIO(data)) as archive:
            return "word/document.xml" in archive.namelist()
    except zipfile.BadZipFile:
        return False


def dutch_skip_reason(reason: str) -> str:
    """A loader's English skip reason in Dutch (the original kept when unknown)."""
    for prefix, dutch in _SKIP_REASONS:
        if reason.startswith(prefix):
            if "Tesseract" in reason and "no text layer" in reason:
                return "de PDF is gescand en tekstherkenning (OCR) is niet geïnstalleerd: " + OCR_INSTALL
            return dutch
    return f"overgeslagen ({reason})"


OCR_INSTALL = "apt-get install tesseract-ocr tesseract-ocr-nld"


def dutch_page_note(reason: str) -> str:
    """A loader's note about unread pages ("pages 3 and 5: ...") in Dutch."""
    import re

    m = re.match(r"^pages? ([\d, and]+): (.*)$", reason)
    if not m:
        return reason
    numbers = re.findall(r"\d+", m.group(1))
    where = ("pagina " if len(numbers) == 1 else "pagina's ") + (
        numbers[0] if len(numbers) == 1 else ", ".join(numbers[:-1]) + " en " + numbers[-1])
    if "Tesseract" in m.group(2) or "pytesseract" in m.group(2):
        return f"{where}: gescand, niet gelezen omdat tekstherkenning (OCR) niet is geïnstalleerd ({OCR_INSTALL})"
    return f"{where}: in de scan is geen tekst herkend"


def show_skipped(skipped: list[dict]) -> None:
    """One Dutch warning listing the files an ingest skipped and why."""
    if skipped:
        lines = [f"- {escape_markdown(PurePath(s['path']).name)}: {dutch_skip_reason(s['reason'])}" for s in skipped]
        st.warning("Niet alle bestanden zijn ingelezen:\n\n" + "\n".join(lines))


def show_notes(notes: list[dict]) -> None:
    """One Dutch warning naming the pages of ingested files that could not be read."""
    if notes:
        lines = [f"- {escape_markdown(PurePath(n['path']).name)}: {escape_markdown(dutch_page_note(n['reason']))}"
                 for n in notes]
        st.warning("Niet alle pagina's zijn gelezen:\n\n" + "\n".join(lines))
