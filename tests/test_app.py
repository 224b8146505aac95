"""The Streamlit app through streamlit.testing.v1.AppTest, on a real temp index (no mocks)."""

from __future__ import annotations

import pytest
from apphelpers import APP, FOLLOW_UP, KNELPUNTEN, REFUSAL, WEATHER, app_env, make_root, pdf_bytes, settings_for
from conftest import free_port
from fake_openai import FakeOpenAI, Reply
from streamlit.testing.v1 import AppTest

from rag.answering import NOTE_LLM_DOWN, Assistant
from rag.ui.common import check_upload, escape_markdown, passage_markdown, sanitize_filename
from rag.ui.sources import UploadError, save_and_ingest

SOURCES_PAGE = "src/rag/ui/sources.py"
CHAT_PAGE = "src/rag/ui/chat.py"
TIMEOUT = 120  # the first run loads the embedding model
ZONNEDORP_LINES = ("Jeugdhulp in Zonnedorp", "De gemeente Zonnedorp heeft 42 jeugdconsulenten in dienst voor het onderwijs.")

slow = pytest.mark.slow  # loads the embedding model


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    """A copy of the shipped corpus, indexed once for the module."""
    return make_root(tmp_path_factory.mktemp("app") / "root")


@pytest.fixture
def zonnedorp(tmp_path) -> bytes:
    """A real PDF about a made-up municipality the shipped corpus knows nothing of."""
    return pdf_bytes(tmp_path, *ZONNEDORP_LINES)


def start(monkeypatch, root, **env: str) -> AppTest:
    """Run the app once with its env pointing at `root` (plus `env`)."""
    for key, value in {**app_env(root), **env}.items():
        monkeypatch.setenv(key, value)
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    return at


@pytest.fixture
def app(indexed, monkeypatch) -> AppTest:
    return start(monkeypatch, indexed)


def ask(at: AppTest, question: str) -> AppTest:
    at.chat_input[0].set_value(question).run()
    assert not at.exception, at.exception
    return at


def last_assistant(at: AppTest):
    return [m for m in at.chat_message if m.name == "assistant"][-1]


def texts(block) -> str:
    return "\n".join(m.value for m in block.markdown)


# -- chat ---------------------------------------------------------------------------
@slow
def test_empty_chat_offers_examples_and_sidebar(app):
    labels = [b.label for b in app.button]
    assert "Wat zijn de vijf werkzame factoren?" in labels
    assert "Nieuw gesprek" in labels
    sidebar = "\n".join(m.value for m in app.sidebar.markdown)
    assert "**Antwoorden:** `extractief`" in sidebar
    assert "MiniLM" in sidebar
    assert app.sidebar.slider[0].value == 5
    assert not app.chat_message


@slow
def test_answer_shows_number_and_cited_factsheet_passage(app):
    ask(app, KNELPUNTEN)
    message = last_assistant(app)
    assert "91%" in message.markdown[0].value
    cited = [e for e in message.expander if e.label.startswith("\\[1\\]")]
    assert cited and "Factsheet" in cited[0].label
    passage = "\n".join(m.value for m in cited[0].markdown)
    assert ":orange-background[**" in passage and "91%" in passage  # the quoted sentence is highlighted


@slow
def test_follow_up_is_condensed_and_answered(app):
    ask(app, KNELPUNTEN)
    ask(app, FOLLOW_UP)
    assert [m.name for m in app.chat_message] == ["user", "assistant", "user", "assistant"]
    message = last_assistant(app)
    assert "95%" in message.markdown[0].value
    details = next(e for e in message.expander if e.label == "Details")
    assert "Gezochte vraag: Hoeveel procent van de samenwerkingsverbanden" in texts(details)


@slow
def test_refusal_is_a_warning_with_closest_passages(app):
    ask(app, WEATHER)
    message = last_assistant(app)
    assert message.warning and REFUSAL in message.warning[0].value
    assert "Misschien relevant:" in texts(message)


@slow
def test_example_button_asks_the_question(app):
    next(b for b in app.button if b.label == KNELPUNTEN).click().run()
    assert not app.exception
    assert "91%" in last_assistant(app).markdown[0].value


@slow
def test_passages_slider_sets_k(app):
    app.sidebar.slider[0].set_value(2).run()
    ask(app, KNELPUNTEN)
    assert len(app.session_state["messages"][-1]["answer"].passages) == 2


@slow
def test_new_conversation_clears_history(app):
    ask(app, KNELPUNTEN)
    next(b for b in app.button if b.label == "Nieuw gesprek").click().run()
    assert not app.chat_message
    assert app.session_state["messages"] == []


@slow
@pytest.mark.parametrize(
    "question, expected",
    [("   ", "Stel een vraag"), ("waarom " * 400, "De vraag is te lang")],
)
def test_bad_question_gives_dutch_error(app, question, expected):
    ask(app, question)
    assert [e.value for e in app.error] and expected in app.error[0].value
    assert not app.chat_message


# -- LLM mode -----------------------------------------------------------------------
@slow
def test_llm_answer_is_streamed_and_cited(indexed, monkeypatch):
    with FakeOpenAI(Reply("text", "Vrijwel alle gemeenten (91%) ervaren knelpunten [1].")) as server:
        at = start(monkeypatch, indexed, RAG_LLM="openai:fake-stream", OPENAI_BASE_URL=server.base_url)
        assert "`openai:fake-stream`" in "\n".join(m.value for m in at.sidebar.markdown)
        ask(at, KNELPUNTEN)
        assert [r.get("stream") for r in server.answer_requests()] == [True]
    message = last_assistant(at)
    assert message.markdown[0].value == "Vrijwel alle gemeenten \\(91%\\) ervaren knelpunten \\[1\\]\\."
    assert "Factsheet" in message.expander[0].label
    details = next(e for e in message.expander if e.label == "Details")
    assert "Antwoord door: openai:fake-stream" in details.caption[0].value


@slow
def test_llm_down_falls_back_with_a_note(indexed, monkeypatch):
    nobody = f"http://127.0.0.1:{free_port()}/v1"
    at = start(monkeypatch, indexed, RAG_LLM="openai:fake-down", OPENAI_BASE_URL=nobody)
    ask(at, KNELPUNTEN)
    message = last_assistant(at)
    assert "91%" in message.markdown[0].value
    assert [i.value for i in message.info] == [NOTE_LLM_DOWN]


# -- first run ----------------------------------------------------------------------
@slow
def test_first_run_builds_the_index_then_answers(tmp_path, monkeypatch):
    root = make_root(tmp_path / "root", index=False)
    at = start(monkeypatch, root)
    assert any(s.label.startswith("Index klaar: 2 document(en)") for s in at.status)
    ask(at, KNELPUNTEN)
    assert "91%" in last_assistant(at).markdown[0].value


def test_empty_corpus_points_to_the_sources_page(tmp_path, monkeypatch):
    root = make_root(tmp_path / "root", corpus=False, index=False)
    at = start(monkeypatch, root)
    assert any("Bronnen" in i.value and "geen documenten" in i.value for i in at.info)
    assert not (root / "index" / "catalog.sqlite").exists()


# -- Bronnen page -------------------------------------------------------------------
@slow
def test_sources_page_lists_documents_and_missing_kinds(app):
    app.switch_page(SOURCES_PAGE).run()
    assert not app.exception
    table = app.dataframe[0].value
    assert set(table["Soort"]) == {"Factsheet", "Webpagina"}
    assert table["Passages"].sum() > 0
    marks = [m.value for m in app.markdown]
    assert any(m.endswith("**Rapport** ontbreekt") for m in marks)
    assert any(m.endswith("**Handreiking** ontbreekt") for m in marks)
    assert any("check_circle:] **Factsheet** — Factsheet Aansluiting" in m for m in marks)
    assert any("handreiking" in i.value and "Upload" in i.value for i in app.info)
    assert app.selectbox(key="browse_doc").value == "factsheet-2021"
    assert any("Veel knelpunten" in e.label for e in app.expander)


@slow
def test_upload_on_sources_page_makes_the_document_answerable(tmp_path, monkeypatch, zonnedorp):
    root = make_root(tmp_path / "root")
    at = start(monkeypatch, root)
    at.switch_page(SOURCES_PAGE).run()
    at.file_uploader[0].set_value(("Zonnedorp jeugdhulp (concept).pdf", zonnedorp, "application/pdf"))
    at.selectbox[0].set_value("rapport")
    next(b for b in at.button if b.label == "Toevoegen en indexeren").click().run()
    assert not at.exception
    assert at.success and "toegevoegd" in at.success[0].value
    assert (root / "corpus" / "rapport-Zonnedorp-jeugdhulp-concept.pdf").is_file()
    assert any("check_circle:] **Rapport** — " in m.value and "Zonnedorp" in m.value for m in at.markdown)
    at.switch_page(CHAT_PAGE).run()
    ask(at, "Hoeveel jeugdconsulenten heeft de gemeente Zonnedorp?")
    message = last_assistant(at)
    assert "42" in message.markdown[0].value
    assert any("Zonnedorp" in e.label for e in message.expander)


@slow
def test_upload_refusal_is_shown_in_dutch(tmp_path, monkeypatch):
    root = make_root(tmp_path / "root")
    at = start(monkeypatch, root)
    at.switch_page(SOURCES_PAGE).run()
    at.file_uploader[0].set_value(("rapport.pdf", b"PK\x03\x04 not a pdf", "application/pdf"))
    next(b for b in at.button if b.label == "Toevoegen en indexeren").click().run()
    assert not at.exception
    assert any("ZIP-archief" in e.value for e in at.error)
    assert sorted(p.name for p in (root / "corpus").iterdir()) == ["factsheet-2021.md", "projectpagina-2021.md"]


# -- save_and_ingest (the upload handler) -------------------------------------------
@slow
def test_save_and_ingest_adds_an_answerable_document(tmp_path, zonnedorp):
    root = make_root(tmp_path / "root")
    settings = settings_for(root)
    calls = []
    result = save_and_ingest(zonnedorp, "../../Zonnedorp.pdf", settings, progress=lambda d, t: calls.append((d, t)))
    assert result.path == (root / "corpus" / "Zonnedorp.pdf").resolve()
    assert not result.skipped and result.chunks >= 1 and calls and calls[-1][0] == calls[-1][1]
    answer = Assistant(settings).ask("Hoeveel jeugdconsulenten heeft de gemeente Zonnedorp?")
    assert not answer.refused and "42" in answer.text
    assert answer.citations[0].passage.doc_id == "Zonnedorp"

    again = save_and_ingest(zonnedorp, "Zonnedorp.pdf", settings)  # same bytes: reused, not copied
    assert again.already_present and again.path == result.path
    other = save_and_ingest(pdf_bytes(tmp_path, "Een ander verslag over Zonnedorp."), "Zonnedorp.pdf", settings)
    assert other.path.name == "Zonnedorp-2.pdf"  # never overwrites a different file
    assert (root / "corpus" / "Zonnedorp.pdf").read_bytes() == zonnedorp
    clash = save_and_ingest(pdf_bytes(tmp_path, "Nog een factsheet."), "factsheet-2021.pdf", settings)
    assert clash.path.name == "factsheet-2021-2.pdf"  # the stem is the doc id: keep it unique


@slow
def test_save_and_ingest_refuses_and_reports_in_dutch(tmp_path):
    root = make_root(tmp_path / "root")
    settings = settings_for(root)
    with pytest.raises(UploadError) as refused:
        save_and_ingest(b"MZ\x90\x00", "setup.exe", settings)
    assert "niet ondersteund" in refused.value.dutch
    result = save_and_ingest(b"%PDF-1.4\nnot really a pdf", "kapot.pdf", settings)
    assert result.skipped == ["de PDF is beschadigd of onleesbaar"]
    assert not result.path.exists()  # a skipped upload does not stay in the corpus


# -- pure helpers -------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, expected",
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\Windows\\rapport.PDF", "rapport.pdf"),
        ("rapport 2021 (definitief).pdf", "rapport-2021-definitief.pdf"),
        ("Één café-rapport.docx", "Een-cafe-rapport.docx"),
        ("報告.pdf", "document.pdf"),
        (".hidden.md", "hidden.md"),
        ("...", "document"),
        ("a/b/../c.txt", "c.txt"),
        ("x" * 300 + ".pdf", "x" * 96 + ".pdf"),
    ],
)
def test_sanitize_filename(name, expected):
    assert sanitize_filename(name) == expected


@pytest.mark.parametrize(
    "data, name, error",
    [
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "rapport.pdf", None),
        (b"# Kop\n\nTekst.", "notities.md", None),
        (b"<p>tekst</p>", "pagina.html", None),
        ("\ufefftekst".encode("utf-16"), "utf16.txt", None),
        (b"MZ\x90\x00", "setup.exe", "niet ondersteund"),
        (b"<svg onload='alert(1)'/>", "logo.svg", "niet ondersteund"),
        (b"PK\x03\x04\x14\x00", "rapport.pdf", "ZIP-archief"),
        (b"hello", "rapport.pdf", "geen PDF"),
        (b"%PDF-1.7", "rapport.docx", "geen geldig Word-bestand"),
        (b"# Kop\x00\x01", "notities.md", "NUL-bytes"),
        (b"", "leeg.txt", "leeg"),
        (b"x" * 2048, "groot.txt", "te groot"),
    ],
)
def test_check_upload(data, name, error):
    problem = check_upload(data, name, max_bytes=1024)
    assert problem is None if error is None else error in problem


def test_document_text_is_escaped_and_quote_highlighted():
    text = "Kop\n<script>alert(1)</script> & [link](javascript:x)\nVrijwel alle gemeenten (91%) ervaren knelpunten."
    md = passage_markdown(text, "Vrijwel alle gemeenten (91%) ervaren knelpunten.")
    assert "<" not in md and "&lt;script\\>" in md and "&amp;" in md
    assert "\\[link\\]\\(javascript\\:x\\)" in md
    assert md.endswith(":orange-background[**Vrijwel alle gemeenten \\(91%\\) ervaren knelpunten\\.**]")
    assert escape_markdown("*a* _b_ `c` #d $e$") == "\\*a\\* \\_b\\_ \\`c\\` \\#d \\$e\\$"


@slow
def test_warm_up_loads_the_model_in_the_background_once(indexed):
    """The first page view starts loading the model without waiting for it; a second view starts nothing."""
    import time

    from rag.embeddings import get_embeddings, is_loaded
    from rag.ui.common import forget_assistant, warm_up

    settings = settings_for(indexed).model_copy(update={"embed_batch_size": 7})  # a model instance no test loaded
    assert not is_loaded(settings.embed_model, 7)
    started = time.perf_counter()
    thread = warm_up(settings)
    returned_after = time.perf_counter() - started
    assert thread is not None and thread.name == "rag-warm-up"
    assert not is_loaded(settings.embed_model, 7) and returned_after < 1.0  # loading takes seconds: not waited for
    assert warm_up(settings) is None  # once per process
    thread.join(TIMEOUT)
    assert not thread.is_alive() and is_loaded(settings.embed_model, 7)
    embeddings = get_embeddings(settings.embed_model, 7)  # a question after the warm-up gets that same model
    assert embeddings.batch_size == 7 and embeddings.encode(["opwarmen"], embeddings.query_prefix).shape[0] == 1
    forget_assistant()  # the warm-up also cached an Assistant for these settings
