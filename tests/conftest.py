"""Shared fixtures and helpers for the test suite.

Everything here is real: the bundled embedding model, embedded Chroma, a `chroma run`
server on 127.0.0.1, PDFs written with fpdf2. Nothing reaches the internet
(HF_HUB_OFFLINE=1 is forced below).

Helpers (plain functions, importable as `from conftest import make_pdf`, and also
available as fixtures of the same name):

- `make_pdf(path, pages, title=None, bookmarks=None, user_password=None, header=None, footer=None,
  page_labels=None, creation_date=None, font_sizes=None)` (mid-page bookmarks: `[[bookmark:LEVEL:Title]]` lines)
- `make_settings(tmp, **overrides)` -> Settings isolated in a temp folder
- `free_port()` -> a free TCP port on 127.0.0.1 (with `wait_for_http`, `stop_process`: rag.localserver)
- `subprocess_env(settings, **extra)` -> env for a `rag` child process on that index and corpus
- `store_contents(settings)` -> what the store holds, read fresh: catalog records, the chunk ids they
  list, the chunk ids and answer lines in Chroma, the pending mark

Fixtures:

- `embedder` (session): the default embedding model, loaded once per test run.
- `corpus_index` (session): (settings, index) over a copy of `corpus/`, ingested once.
  Treat it as read-only; tests that change files or the index use `make_index`.
- `corpus_copy` (function): a fresh copy of `corpus/` in tmp_path.
- `make_index` (function): factory building an isolated (settings, index), ingested by default.
- `chroma_server` (session): URL of a real `chroma run` server on 127.0.0.1 (terminated at the end).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Callable

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
CORPUS = ROOT / "corpus"
VENV_BIN = Path(sys.executable).parent

# The package may not be pip-installed (editable) yet: make `import rag` work from src/.
try:  # pragma: no cover - depends on the environment
    import rag  # noqa: F401
except ImportError:  # pragma: no cover
    sys.path.insert(0, str(SRC))

from rag.config import Settings  # noqa: E402 - after the src/ fallback above
from rag.localserver import free_port, stop_process, wait_for_http  # noqa: E402 - also re-exported to tests

# A TrueType font makes any Unicode text possible in generated PDFs; without one we
# fall back to fpdf2's core Helvetica, which only encodes Latin-1.
_TTF_CANDIDATES = [
    Path("/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf"),
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
]
TTF_FONT = next((p for p in _TTF_CANDIDATES if p.is_file()), None)


# -- helpers -----------------------------------------------------------------------


def make_pdf(
    path: Path,
    pages: list[str],
    title: str | None = None,
    bookmarks: list[tuple[int, str, int]] | None = None,
    user_password: str | None = None,
    header: Callable[[int], str] | None = None,
    footer: Callable[[int], str] | None = None,
    page_labels: list[tuple[int, str, str | None, int | None]] | None = None,
    creation_date: datetime | bool | None = None,
    font_sizes: dict[str, float] | None = None,
) -> Path:
    """Write a PDF with one page per string in `pages` (text layer, real fonts).

    - `title` sets the PDF metadata title.
    - `bookmarks`: (page number 1-based, title, level 0..) outline entries, written with
      fpdf2's `start_section` at the top of that page (in the given order).
    - Inside a page's text, a line `[[bookmark:LEVEL:Title]]` starts an outline entry at
      that point of the page (mid-page) and prints Title as a line; `[[bookmark-hidden:LEVEL:Title]]`
      starts the entry without printing the title.
    - `user_password`: encrypt the file so it cannot be opened without that password.
    - `header` / `footer`: page number (1-based) -> running text at the top / bottom of every page.
    - `page_labels`: (first page 1-based, style "D"/"r"/"R"/"a"/"A", prefix or None, start or None)
      printed page numbering from that page on (fpdf2's `set_page_label`).
    - `creation_date`: the PDF's CreationDate (None: fpdf2 writes the current time; False: none).
    - `font_sizes`: line text -> font size, for lines printed larger (a title on page 1).

    Text is Unicode-safe when a TTF font is present (`TTF_FONT`), otherwise Latin-1 only.
    Returns `path`.
    """
    from fpdf import FPDF

    class _PDF(FPDF):
        def header(self):
            if header is not None:
                self.set_y(8)
                self.cell(0, 6, header(self.page_no()), new_x="LMARGIN", new_y="NEXT")
                self.set_y(self.t_margin)

        def footer(self):
            if footer is not None:
                self.set_y(-15)
                self.cell(0, 6, footer(self.page_no()), align="C")

    path = Path(path)
    pdf = _PDF()
    pdf.set_top_margin(20)
    if user_password is not None:
        pdf.set_encryption(owner_password="eigenaar-" + user_password, user_password=user_password)
    if TTF_FONT is not None:
        pdf.add_font("Body", "", str(TTF_FONT))
        pdf.set_font("Body", size=11)
    else:
        pdf.set_font("helvetica", size=11)
    if title:
        pdf.set_title(title)
    if isinstance(creation_date, datetime):
        pdf.set_creation_date(creation_date)
    marks = bookmarks or []
    labels = {first: (style, prefix, start) for first, style, prefix, start in (page_labels or [])}
    for number, text in enumerate(pages, start=1):
        pdf.add_page()
        if number in labels:
            style, prefix, start = labels[number]
            pdf.set_page_label(style, prefix, start)
        for page, mark, level in marks:
            if page == number:
                pdf.start_section(mark, level=level)
        block: list[str] = []

        def flush():
            if block:
                pdf.multi_cell(0, 6, "\n".join(block), new_x="LMARGIN", new_y="NEXT")
                block.clear()

        for line in (text or "").split("\n"):
            inline = re.fullmatch(r"\[\[(bookmark|bookmark-hidden):(\d):(.+)\]\]", line.strip())
            size = (font_sizes or {}).get(line)
            if inline:
                flush()
                pdf.start_section(inline.group(3), level=int(inline.group(2)))
                if inline.group(1) == "bookmark":
                    pdf.multi_cell(0, 6, inline.group(3), new_x="LMARGIN", new_y="NEXT")
            elif size:
                flush()
                pdf.set_font_size(size)
                pdf.multi_cell(0, size * 0.6, line, new_x="LMARGIN", new_y="NEXT")
                pdf.set_font_size(11)
            else:
                block.append(line)
        flush()
    path.parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(path))
    if creation_date is False:
        # fpdf2 always writes one; renaming the key (same length) keeps the xref offsets valid.
        path.write_bytes(path.read_bytes().replace(b"/CreationDate", b"/XreationDate"))
    return path


def make_settings(tmp: Path, **overrides) -> Settings:
    """Settings whose corpus and index live under `tmp` (no RAG_CHROMA_URL leaks in).

    Defaults: corpus_dir=tmp/"corpus", index_dir=tmp/"index", chroma_url=None; any
    Settings field can be overridden by keyword.
    """
    tmp = Path(tmp)
    values = {"corpus_dir": tmp / "corpus", "index_dir": tmp / "index", "chroma_url": None}
    values.update(overrides)
    return Settings(**values)


def copy_corpus(dest: Path) -> Path:
    """Copy the shipped `corpus/` folder to `dest` and return it."""
    shutil.copytree(CORPUS, dest)
    return dest


def subprocess_env(settings, **extra: str) -> dict:
    """Environment for a `rag` child process on `settings`' index and corpus, offline, no other RAG_* leaking in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(
        RAG_INDEX_DIR=str(settings.index_dir),
        RAG_CORPUS_DIR=str(settings.corpus_dir),
        PYTHONPATH=os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        ANONYMIZED_TELEMETRY="False",
        NO_PROXY="127.0.0.1,localhost",
    )
    env.update(extra)
    return env


# -- fixtures ----------------------------------------------------------------------


def store_contents(settings) -> dict:
    """What the store of `settings` holds, read with a new Index (no cached view)."""
    from rag.store import Index

    index = Index(settings)
    meta_store, catalog, chunks, lines = index.stores()
    meta = meta_store.read()
    docs = catalog.all()
    got = lines.collection.get(include=["metadatas", "documents"])
    return {
        "docs": docs,
        "catalog": [cid for d in docs.values() for cid in d.chunk_ids],
        "stored": chunks.all_ids(),
        "lines": {i: (m["chunk_id"], t) for i, m, t in zip(got["ids"], got["metadatas"], got["documents"])},
        "pending": bool(meta and meta.pending),
        "generation": meta.generation if meta else 0,
    }


@pytest.fixture(name="make_pdf")
def _make_pdf_fixture():
    """The `make_pdf` helper as a fixture."""
    return make_pdf


@pytest.fixture(name="make_settings")
def _make_settings_fixture():
    """The `make_settings` helper as a fixture."""
    return make_settings


@pytest.fixture
def corpus_copy(tmp_path: Path) -> Path:
    """A fresh, writable copy of the shipped corpus at tmp_path/"corpus"."""
    return copy_corpus(tmp_path / "corpus")


@pytest.fixture(scope="session")
def embedder():
    """The default embedding model (bundled multilingual-e5-small through ONNX Runtime), loaded once per session.

    `Index` picks up the same instance through `rag.embeddings.get_embeddings`'s cache
    as long as the model name and batch size are the defaults.
    """
    from rag.config import DEFAULT_EMBED_MODEL
    from rag.embeddings import get_embeddings

    return get_embeddings(DEFAULT_EMBED_MODEL, Settings.model_fields["embed_batch_size"].default)


@pytest.fixture(scope="session")
def corpus_index(tmp_path_factory, embedder):
    """(settings, index): the shipped corpus, copied to a temp dir and ingested once.

    Shared by the whole session: do not change its files or write to the index. The
    returned Index has been `open()`ed and is ready for `HybridSearcher`.
    """
    from rag.store import Index

    base = tmp_path_factory.mktemp("corpus_index")
    copy_corpus(base / "corpus")
    settings = make_settings(base)
    index = Index(settings, embeddings=embedder)
    report = index.ingest()
    assert report.documents >= 2, report.as_json()
    index.open()
    return settings, index


@pytest.fixture
def make_index(tmp_path: Path, embedder):
    """Factory: `make_index(corpus_dir=None, ingest=True, **settings_overrides) -> (settings, index)`.

    Without `corpus_dir` a fresh copy of the shipped corpus is used. The index lives in
    its own folder under tmp_path (each call gets a new one).
    """
    from rag.store import Index

    counter = {"n": 0}

    def factory(corpus_dir: Path | None = None, ingest: bool = True, **overrides):
        counter["n"] += 1
        base = tmp_path / f"idx{counter['n']}"
        base.mkdir()
        if corpus_dir is None:
            corpus_dir = copy_corpus(base / "corpus")
        settings = make_settings(base, corpus_dir=Path(corpus_dir), **overrides)
        index = Index(settings, embeddings=embedder)
        if ingest:
            index.ingest()
        return settings, index

    return factory


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory):
    """URL (http://127.0.0.1:PORT) of a real `chroma run` server, stopped after the session."""
    chroma = VENV_BIN / "chroma"
    if not chroma.exists():
        pytest.skip("the `chroma` CLI is not installed in this environment")
    data = tmp_path_factory.mktemp("chroma_server")
    port = free_port()
    log = (data / "server.log").open("wb")
    proc = subprocess.Popen(
        [str(chroma), "run", "--host", "127.0.0.1", "--port", str(port), "--path", str(data / "db")],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=60, proc=proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)
        log.close()
