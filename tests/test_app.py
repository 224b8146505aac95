"""The Streamlit app through streamlit.testing.v1.AppTest, on a real temp index (no mocks)."""

from __future__ import annotations

import pytest
from apphelpers import APP, FOLLOW_UP, KNELPUNTEN, WEATHER, app_env, make_root, pdf_bytes, settings_for
from conftest import free_port
from fake_openai import FakeOpenAI, Reply
from streamlit.testing.v1 import AppTest

from rag.answering import NOTE_LLM_DOWN, Assistant
from rag.index import Index
from rag.ui.common import (
    answer_markdown,
    check_upload,
    escape_markdown,
    excerpt,
    passage_markdown,
    sanitize_filename,
    short_section,
    source_label,
)
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


JARGON = ("score", "semantisch", "BM25", "beantwoordbaarheid", "extractief", "MiniLM", "e5")


def text_outside(node, skip_label: str) -> str:
    """All text in `node` and its children, except inside expanders labelled `skip_label`."""
    if getattr(node, "type", None) == "expander" and getattr(node, "label", None) == skip_label:
        return ""
    parts = [str(getattr(node, attr)) for attr in ("label", "value", "body")
             if isinstance(getattr(node, attr, None), str)]
    children = getattr(node, "children", None) or {}
    return "\n".join(parts + [text_outside(child, skip_label) for child in children.values()])


# -- chat ---------------------------------------------------------------------------
@slow
def test_empty_chat_offers_examples_and_sidebar(app):
    labels = [b.label for b in app.button]
    assert "Wat zijn de vijf werkzame factoren?" in labels
    assert "Nieuw gesprek" in labels
    settings = next(e for e in app.sidebar.expander if e.label == "Instellingen")
    assert not settings.proto.expanded  # collapsed: model names and knobs are one click away
    inside = "\n".join(m.value for m in settings.markdown)
    assert "**Antwoorden:** `extractief`" in inside
    assert "multilingual-e5-small" in inside
    assert settings.slider[0].value == 5
    assert not any(word in text_outside(app.sidebar, "Instellingen") for word in ("extractief", "e5-small", "Aantal passages"))
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
    assert cited[0].label.count("Factsheet Aansluiting") == 1  # the title once, then the section
    assert cited[0].label.endswith("— Veel knelpunten")


@slow
def test_scores_and_model_names_only_in_details(app):
    ask(app, KNELPUNTEN)
    message = last_assistant(app)
    outside = text_outside(message, "Details")
    assert "91%" in outside
    assert not [word for word in JARGON if word in outside], outside
    details = next(e for e in message.expander if e.label == "Details")
    inside = texts(details) + "\n".join(c.value for c in details.caption)
    assert "semantisch" in inside and "BM25" in inside and "score" in inside
    assert "Antwoord door: `extractief`" in inside and "beantwoordbaarheid" in inside


@slow
def test_follow_up_is_condensed_and_answered(app):
    ask(app, KNELPUNTEN)
    ask(app, FOLLOW_UP)
    assert [m.name for m in app.chat_message] == ["user", "assistant", "user", "assistant"]
    message = last_assistant(app)
    assert "95%" in message.markdown[0].value
    details = next(e for e in message.expander if e.label == "Details")
    assert "Gezochte vraag: Hoeveel procent van de samenwerkingsverbanden ervaart knelpunten?" in texts(
        details)


@slow
def test_refusal_is_a_warning_with_at_most_two_close_passages(app, indexed):
    ask(app, WEATHER)
    message = last_assistant(app)
    assert message.warning and "Dat staat niet in de" in message.warning[0].value
    answer = app.session_state["messages"][-1]["answer"]
    near_topic = answer.refusal_reason == "missing_document"
    shown = [m.value for m in message.markdown if m.value.startswith("**") and m.value.endswith("**")]
    assert len(shown) == (min(2, len(answer.passages)) if near_topic else 0)
    assert ("Misschien relevant:" in texts(message)) == near_topic


def answer_script(refused: bool, reason, missing: list[str], dense: list[float], notes: list[str] = ()) -> None:
    """An AppTest script: one hand-made Answer (real Passages) rendered by the chat page."""
    import streamlit as st

    from rag.answering.answer import REFUSAL_TEXTS, Answer
    from rag.retrieval import Passage
    from rag.ui import page_file
    from rag.ui.chat import render_answer

    st.navigation([st.Page(page_file("chat"), title="Chat", url_path="chat", default=True),
                   st.Page(page_file("sources"), title="Bronnen", url_path="bronnen")], position="hidden")
    passages = [Passage(f"c{i}", "factsheet-2021", f"Document {i}", "factsheet", f"Document {i} › Kop {i}", i + 1,
                        "Gemeenten werken samen met scholen aan thuiszitters en jeugdhulp. " * 8, 0.03, d, 1.2)
                for i, d in enumerate(dense)]
    text = REFUSAL_TEXTS[reason] if refused else "Vrijwel alle gemeenten ervaren knelpunten [1]."
    render_answer(Answer("vraag", text, refused, [], passages, "extractief", list(notes), refusal_reason=reason,
                         missing_kinds=missing))


def render_hand_made(refused, reason, missing, dense, notes=()) -> AppTest:
    at = AppTest.from_function(answer_script, args=(refused, reason, missing, dense, list(notes)),
                               default_timeout=30).run()
    assert not at.exception, at.exception
    return at


def shown_passages(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown if m.value.startswith("**Document")]


def test_missing_document_refusal_names_it_links_to_bronnen_and_shows_two_close_passages():
    at = render_hand_made(True, "missing_document", ["rapport"], [0.30, 0.62, 0.10, 0.55, 0.48])
    assert "nog niet is toegevoegd" in at.warning[0].value
    assert not at.info  # the refusal names the document; no second line that says it again
    assert [link.proto.page for link in at.page_link] == ["bronnen"]
    assert "Misschien relevant:" in [m.value for m in at.markdown]
    assert shown_passages(at) == ["**Document 0 — Kop 0, p\\. 1**", "**Document 1 — Kop 1, p\\. 2**"]
    excerpts = [m.value for m in at.markdown if m.value.startswith("Gemeenten werken") and m.value.endswith("…")]
    words = {"Gemeenten", "werken", "samen", "met", "scholen", "aan", "thuiszitters", "en", "jeugdhulp\\."}
    assert len(excerpts) == 2 and all(e[:-1].split()[-1] in words for e in excerpts)  # cut between words
    assert [e.label for e in at.expander if e.label == "Hele passage"] == ["Hele passage"] * 2


def test_instruction_refusal_is_neutral_without_passages():
    from rag.answering.assistant import NOTE_INSTRUCTION

    at = render_hand_made(True, "instruction", [], [0.9, 0.8], [NOTE_INSTRUCTION])
    assert not at.warning
    # Said once: the refusal's own words, not again as a note.
    assert [i.value for i in at.info] == ["Ik beantwoord alleen vragen over de bronnen; instructies aan de assistent volg ik niet\\."]
    assert "Misschien relevant:" not in [m.value for m in at.markdown]
    assert not shown_passages(at) and not at.page_link


def test_not_in_sources_refusal_hides_unrelated_passages():
    at = render_hand_made(True, "not_in_sources", [], [0.35, 0.20, 0.05])
    assert "Dat staat niet in de beschikbare bronnen" in at.warning[0].value
    assert "Misschien relevant:" not in [m.value for m in at.markdown]
    assert not shown_passages(at) and not at.page_link


def test_answer_with_missing_kinds_says_what_is_missing_first():
    at = render_hand_made(False, None, ["rapport", "handreiking"], [0.7])
    assert not at.warning
    assert [i.value for i in at.info] == [
        "Het rapport en de handreiking zijn nog niet toegevoegd; voeg ze toe op Bronnen\\. "
        "Hieronder wat de beschikbare bronnen zeggen\\."
    ]
    assert [link.proto.page for link in at.page_link] == ["bronnen"]
    assert any("ervaren knelpunten" in m.value for m in at.markdown)


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


@slow
def test_too_long_question_is_kept_for_editing_and_can_be_sent_again(app):
    long_question = KNELPUNTEN + " " + "Graag een uitgebreide toelichting. " * 150
    assert len(long_question) > 5000
    ask(app, long_question)
    assert "De vraag is te lang" in app.error[0].value
    assert app.text_area[0].value == long_question  # not wiped: the user can shorten it
    assert any("maximaal 2000" in c.value for c in app.caption)
    app.text_area[0].set_value(KNELPUNTEN).run()
    next(b for b in app.button if b.label == "Vraag versturen").click().run()
    assert not app.exception and not app.error
    assert "91%" in last_assistant(app).markdown[0].value
    assert not app.text_area  # sent: the editor is gone


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
    assert "Antwoord door: `openai:fake-stream`" in details.caption[0].value


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
    assert not (root / "index" / "chroma").exists()


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
    assert app.selectbox(key="browse_doc").value == "corpus/factsheet-2021.md"
    assert any("Veel knelpunten" in e.label for e in app.expander)


@slow
def test_upload_on_sources_page_makes_the_document_answerable(tmp_path, monkeypatch, zonnedorp):
    from rag.ingest import JobQueue
    from rag.ingest.worker import Worker

    root = make_root(tmp_path / "root")
    at = start(monkeypatch, root, RAG_WORKER_AUTOSTART="false")  # the worker runs below, in this process
    at.switch_page(SOURCES_PAGE).run()
    at.file_uploader[0].set_value(("Zonnedorp jeugdhulp (concept).pdf", zonnedorp, "application/pdf"))
    at.selectbox[0].set_value("rapport")
    next(b for b in at.button if b.label == "Toevoegen en indexeren").click().run()
    assert not at.exception
    # The page script only queued the upload: nothing is in the corpus yet, the panel says it waits.
    assert not (root / "corpus" / "rapport-Zonnedorp-jeugdhulp-concept.pdf").exists()
    assert any("in de wachtrij" in p.text for p in at.get("progress")), [p.proto for p in at.get("progress")]
    settings = settings_for(root)
    assert Worker(settings).run_once() == 1
    (job,) = JobQueue.for_settings(settings).jobs()
    assert job.stage == "klaar" and job.pages == 1 and list(job.timings)[:2] == ["lezen", "verwerken"]
    at.run()
    assert not at.exception
    assert at.success and "antwoordregels klaar" in at.success[0].value and "toegevoegd" in at.success[0].value
    assert (root / "corpus" / "rapport-Zonnedorp-jeugdhulp-concept.pdf").is_file()
    assert any("check_circle:] **Rapport** — " in m.value and "Zonnedorp" in m.value for m in at.markdown)
    table = at.dataframe[0].value
    assert table.loc[table["Bestand"] == "rapport-Zonnedorp-jeugdhulp-concept.pdf", "Pagina's"].tolist() == ["1"]
    assert set(table.loc[table["Soort"] == "Webpagina", "Pagina's"]) == {"–"}  # Markdown: no pages, no "None"
    at.switch_page(CHAT_PAGE).run()
    ask(at, "Hoeveel jeugdconsulenten heeft de gemeente Zonnedorp?")
    message = last_assistant(at)
    assert "42" in message.markdown[0].value
    assert any("Zonnedorp" in e.label for e in message.expander)

    # The same bytes under another name: reported as a duplicate at once, nothing queued.
    at.switch_page(SOURCES_PAGE).run()
    at.file_uploader[0].set_value(("kopie van zonnedorp.pdf", zonnedorp, "application/pdf"))
    next(b for b in at.button if b.label == "Toevoegen en indexeren").click().run()
    warnings = [w.value.replace("\\", "") for w in at.warning]  # markdown-escaped
    assert any("byte voor byte hetzelfde bestand" in w and "(rapport-Zonnedorp-jeugdhulp-concept.pdf)" in w
               for w in warnings), warnings
    assert len(JobQueue.for_settings(settings).jobs()) == 1
    assert len([d for d in Index(settings).documents() if "Zonnedorp" in d["path"]]) == 1


def test_sources_page_says_when_no_worker_takes_the_queue(tmp_path, monkeypatch):
    import json

    from rag.ingest import JobQueue

    root = make_root(tmp_path / "root", index=False)
    queue = JobQueue.for_settings(settings_for(root))
    job = queue.enqueue(b"# Notitie\n\nTekst.\n", "notitie.md", "notitie.md")
    path = queue.queued_dir / f"{job.id}.json"
    path.write_text(json.dumps({**job.as_json(), "heartbeat": job.heartbeat - 60}), encoding="utf-8")
    at = start(monkeypatch, root, RAG_WORKER_AUTOSTART="false")
    at.switch_page(SOURCES_PAGE).run()
    assert not at.exception
    assert any("notitie" in p.text and "in de wachtrij" in p.text for p in at.get("progress")), [p.proto for p in at.get("progress")]
    assert any("geen verwerker" in w.value and "rag worker" in w.value for w in at.warning), [w.value for w in at.warning]


@slow
def test_upload_refusal_is_shown_in_dutch(tmp_path, monkeypatch):
    root = make_root(tmp_path / "root")
    at = start(monkeypatch, root)
    at.switch_page(SOURCES_PAGE).run()
    at.file_uploader[0].set_value(("rapport.pdf", b"PK\x03\x04 not a pdf", "application/pdf"))
    next(b for b in at.button if b.label == "Toevoegen en indexeren").click().run()
    assert not at.exception
    assert any("ZIP-archief" in e.value for e in at.error)
    assert not at.get("progress")  # refused by the page itself: nothing queued
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
    assert answer.citations[0].passage.doc_id == "corpus/Zonnedorp.pdf"

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
def test_source_label_shows_the_title_once_and_the_printed_page():
    from types import SimpleNamespace

    title = "Factsheet Aansluiting onderwijs en jeugdhulp 2021"
    assert short_section(title, f"{title} › Veel knelpunten") == "Veel knelpunten"
    assert short_section(title, f"{title} › {title} › Veel knelpunten") == "Veel knelpunten"  # PDF title bookmark
    report = "Aansluiting onderwijs en jeugdhulp 2021 (rapport)"
    assert short_section(report, "Aansluiting onderwijs en jeugdhulp 2021 › Eindrapport aansluiting onderwijs en "
                                 "jeugdhulp 2021 › 3 Knelpunten") == "3 Knelpunten"
    assert short_section(report, "Aansluiting onderwijs en jeugdhulp 2021 › Samenvatting") == "Samenvatting"
    passage = SimpleNamespace(title=title, doc_id="f", section=f"{title} › {title} › Veel knelpunten", page=5)
    assert source_label(passage, 2) == "\\[2\\] Factsheet Aansluiting onderwijs en jeugdhulp 2021 — Veel knelpunten, p\\. 5"
    passage.page_label = "iii"
    assert source_label(passage).endswith("Veel knelpunten, p\\. iii")


def test_excerpt_cuts_at_a_word_boundary():
    text = "Samenwerkingsverbanden passend onderwijs en gemeenten werken samen aan meer dan 200 pilots"
    assert excerpt(text, 200) == text
    cut = excerpt(text, 40)
    assert cut == "Samenwerkingsverbanden passend onderwijs…" and len(cut) <= 41


def test_markdown_links_show_their_text():
    text = "Meer informatie: Michiel van der Grinten [mvdgrinten@oberon.eu](mailto:mvdgrinten@oberon.eu)"
    md = passage_markdown(text, "Meer informatie: Michiel van der Grinten mvdgrinten@oberon.eu")
    assert "mailto" not in md and "mvdgrinten@oberon\\.eu**]" in md and md.startswith(":orange-background[")
    assert answer_markdown("Zie [de site](https://www.oberon.eu/x_(y)) [1].") == "Zie de site \\[1\\]\\."
    assert answer_markdown("knelpunten [1](91%)") == "knelpunten \\[1\\]\\(91%\\)"  # not a link


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
    assert "&amp; link  \n" in md and "javascript" not in md  # a link shows as its text, its address dropped
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


@slow
def test_a_quoted_table_row_shows_in_a_real_table_with_its_row_marked(tmp_path, monkeypatch):
    from tabledocs import SATISFACTION, table_pdf

    from rag.store import Index

    root = make_root(tmp_path / "root", corpus=False, index=False)
    (root / "corpus" / "tevredenheid.pdf").write_bytes(table_pdf(
        SATISFACTION, "Tabel 1. Tevredenheid (in procenten)",
        ["In het onderzoek is gevraagd hoe tevreden men is over de samenwerking tussen onderwijs en jeugdhulp."],
        ["Gemeenten zijn vaker tevreden dan samenwerkingsverbanden."]))
    Index(settings_for(root)).ingest()
    at = ask(start(monkeypatch, root), "Hoeveel procent van de gemeenten is (zeer) tevreden?")
    answer = last_assistant(at)
    assert "tevreden — Samenwerkingsverbanden\\: 27%, Gemeenten\\: 39%" in texts(answer)  # Markdown-escaped
    tables = [t.value for t in answer.table]
    assert len(tables) == 1, texts(answer)
    table = tables[0]
    assert list(table.columns) == ["", " ", "Samenwerkingsverbanden", "Gemeenten"]
    # Every row is in the table; the quoted "(zeer) tevreden" row is marked (the reader may also
    # quote the "(zeer) ontevreden" row, which shares the asked words).
    rows = table.values.tolist()
    assert [r[1:] for r in rows] == [["(zeer) ontevreden", "33%", "23%"], ["neutraal", "40%", "39%"],
                                     ["(zeer) tevreden", "27%", "39%"]]
    assert rows[2][0] == "▶" and rows[1][0] == ""
    # The rows are not repeated as text beside the table.
    assert not any("40%" in m.value for m in answer.markdown)  # the unquoted "neutraal" row
