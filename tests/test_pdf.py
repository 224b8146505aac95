"""PDF ingestion on generated PDFs that carry the artifacts of real reports, checked on the
chunks the real chunker produces, plus the incremental (no re-parse) ingest."""

from __future__ import annotations

import re
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest
from conftest import CORPUS, TTF_FONT, make_pdf

from rag import pdf as pdf_module
from rag.chunking import PATH_SEPARATOR, chunk_documents
from rag.loaders import load_file

BODY = (
    "De samenwerking tussen scholen en gemeenten is in veel regio's verbeterd. "
    "Gemeenten noemen vooral de wachtlijsten bij de jeugdhulp als knelpunt."
)


def _chunks(path: Path):
    return chunk_documents(load_file(path).documents)


def _all_text(chunks) -> str:
    return "\n".join(c.text for c in chunks)


def test_running_headers_and_footers_stay_out_of_chunks(tmp_path):
    topics = ["wachtlijsten", "thuiszitters", "financiering", "privacy", "wijkteams", "ouders"]
    pages = [f"Pagina-inhoud {n} gaat over {topic}. {BODY}" for n, topic in enumerate(topics, start=1)]
    path = make_pdf(
        tmp_path / "rapport.pdf",
        pages,
        title="Rapport 2021",
        header=lambda n: f"Aansluiting onderwijs en jeugdhulp 2021 {n} / 6",
        footer=lambda n: f"Oberon {n}",
    )
    chunks = _chunks(path)
    text = _all_text(chunks)
    assert "Aansluiting onderwijs en jeugdhulp 2021" not in text
    assert not re.search(r"Oberon \d", text)
    for n in range(1, 7):
        assert f"Pagina-inhoud {n} gaat over" in text  # the body itself survives
    assert {c.page for c in chunks} == set(range(1, 7))


def test_running_headers_naming_the_current_section_stay_out_of_chunks(tmp_path):
    # DocBook manuals head each page with the chapter and section in capitals; the words after
    # "HOOFDSTUK n." change with the section, so no whole line recurs.
    sections = ["SYSTEEMVEREISTEN", "VEREISTEN INZAKE GEHEUGEN", "PARTITIONEREN", "OPSTARTEN", "NETWERK"]
    pages = [f"Pagina-inhoud {n} gaat over {s.lower()}. {BODY}" for n, s in enumerate(sections, start=1)]
    path = make_pdf(tmp_path / "handleiding.pdf", pages,
                    header=lambda n: f"HOOFDSTUK {(n + 1) // 2}. {sections[n - 1]} {(n + 1) // 2}.{n}. {sections[n - 1]}")
    text = _all_text(_chunks(path))
    assert "HOOFDSTUK" not in text
    for n, s in enumerate(sections, start=1):
        assert f"Pagina-inhoud {n} gaat over {s.lower()}." in text


def test_line_end_hyphenation_is_joined_unless_it_is_a_compound(tmp_path):
    page1 = (
        "De samenwerkingsverbanden passend onderwijs werken met gemeenten.\n"
        "Alle samenwerkings-\n"
        "verbanden willen de aansluiting tussen onderwijs-\n"
        "en jeugdhulp verbeteren, ook in Noord-\n"
        "Brabant, waar scholen leerlingen instal-\n"
        "leren in een nieuwe klas."
    )
    path = make_pdf(tmp_path / "doc.pdf", [page1])
    text = " ".join(_all_text(_chunks(path)).split())
    assert "Alle samenwerkingsverbanden willen" in text  # joined form seen elsewhere
    assert "onderwijs- en jeugdhulp" in text  # ellipsis compound kept
    assert "Noord-Brabant" in text  # capitalised second part keeps its hyphen
    assert "installeren" in text  # a split word in the layout is joined
    assert not re.search(r"[a-z]- [a-z]", text.replace("onderwijs- en", ""))


def test_lines_starting_with_a_hash_are_text_not_headings(tmp_path):
    # Manuals print shell prompts and config comments ("# dpkg-reconfigure ..."); read as
    # Markdown they became ~120 bogus sections in the Debian installation guide.
    page = (
        "[[bookmark:0:Een defect systeem herstellen]]\n"
        "Start de herstelmodus vanuit het opstartmenu.\n"
        "# dpkg-reconfigure exim4-config\n"
        "# U kunt ervoor kiezen om niet-vrije firmware te installeren.\n"
        "Daarna werkt de mailserver weer."
    )
    chunks = _chunks(make_pdf(tmp_path / "handleiding.pdf", [page]))
    sections = {c.section for c in chunks}
    assert all("dpkg" not in s and "firmware" not in s for s in sections), sections
    text = _all_text(chunks)
    assert "# dpkg-reconfigure exim4-config" in text and "\\#" not in text
    assert any(s.endswith("Een defect systeem herstellen") for s in sections), sections


def test_ligatures_become_letters(tmp_path):
    if not TTF_FONT:
        pytest.skip("no Unicode TTF font to print a ligature with")
    text = _all_text(_chunks(make_pdf(tmp_path / "doc.pdf", [f"Zie de Bĳlage bij hoofdstuk 2 en de ﬁnanciering. {BODY}"])))
    assert "Zie de Bijlage bij hoofdstuk 2 en de financiering." in " ".join(text.split())


def test_markdown_line_end_hyphen_is_joined_but_not_ellipsis_compounds(tmp_path):
    factsheet = chunk_documents(load_file(CORPUS / "factsheet-2021.md").documents)
    text = " ".join(_all_text(factsheet).split())
    assert "samenwerkingsverbanden (95%)" in text
    assert "samenwerkings-" not in text
    page = chunk_documents(load_file(CORPUS / "projectpagina-2021.md").documents)
    assert "onderzoeks- en" in " ".join(_all_text(page).split())


def test_bookmark_halfway_down_a_page_splits_the_sections_there(tmp_path):
    pages = [
        f"[[bookmark:0:Inleiding]]\n{BODY}",
        f"Tekst boven de kop hoort nog bij de inleiding. {BODY}\n"
        f"[[bookmark:0:Knelpunten]]\n"
        f"Tekst onder de kop gaat over knelpunten. {BODY}\n"
        f"[[bookmark-hidden:1:Wachtlijsten]]\n"
        f"Tekst onder een onzichtbare bladwijzer gaat over wachtlijsten. {BODY}",
    ]
    path = make_pdf(tmp_path / "rapport.pdf", pages, title="Rapport 2021")
    chunks = _chunks(path)

    def section_of(snippet: str) -> str:
        [chunk] = [c for c in chunks if snippet in c.text]
        return chunk.section

    assert section_of("Tekst boven de kop") == "Rapport 2021 › Inleiding"
    assert section_of("Tekst onder de kop") == "Rapport 2021 › Knelpunten"
    assert section_of("onzichtbare bladwijzer") == "Rapport 2021 › Knelpunten › Wachtlijsten"
    assert all(c.page == 2 for c in chunks if "Tekst" in c.text)
    # the printed heading is not repeated as body text
    assert not any(c.text.strip().startswith("Knelpunten") for c in chunks)


def test_contents_page_is_not_chunked(tmp_path):
    contents = "Inhoudsopgave\n" + "\n".join(
        f"{n} {t} {'.' * 60} {p}" for n, t, p in [(1, "Inleiding", 2), (2, "Knelpunten", 3), (3, "Werkzame factoren", 3)]
    ) + f"\n4 Een hoofdstuk met een heel lange titel die over twee regels loopt\nen hier eindigt {'.' * 50} 4"
    pages = [contents, f"Inleiding. {BODY}", f"Knelpunten. {BODY}", f"Factoren. {BODY}"]
    path = make_pdf(tmp_path / "rapport.pdf", pages)
    chunks = _chunks(path)
    assert 1 not in {c.page for c in chunks}
    assert "...." not in _all_text(chunks)
    assert {2, 3, 4} <= {c.page for c in chunks}


def test_en_dash_list_items_are_items_and_wrapped_items_are_rejoined(tmp_path):
    long_item = (
        "– de gemeente en het samenwerkingsverband maken samen afspraken over de inzet van "
        "jeugdhulp op school en over de financiering daarvan voor langere tijd"
    )
    page = (
        "Werkzame factoren zijn onder meer:\n"
        "– korte lijnen tussen school en wijkteam\n"
        f"{long_item}\n"
        "- een gedeelde visie op passend onderwijs\n"
        "• ouders worden vroeg betrokken\n"
        "Daarna volgt een gewone alinea die geen lijstitem is."
    )
    path = make_pdf(tmp_path / "doc.pdf", [page])
    docs = load_file(path).documents
    lines = docs[0].page_content.splitlines()
    assert " ".join(long_item.split()) in lines  # the wrapped item is one line again
    chunks = chunk_documents(docs)
    units = [u for c in chunks for u in c.text.split("\n")]
    assert "– korte lijnen tussen school en wijkteam" in units
    assert " ".join(long_item.split()) in units
    assert "- een gedeelde visie op passend onderwijs" in units
    assert "• ouders worden vroeg betrokken" in units
    assert "Daarna volgt een gewone alinea die geen lijstitem is." in units


def test_chunker_treats_pdf_bullets_as_list_items():
    from langchain_core.documents import Document

    text = "Factoren:\n– korte lijnen\n∗ een gedeelde visie\n• ouders betrokken\n2) tijd en geld"
    doc = Document(page_content=text, metadata={"doc_id": "d", "title": "", "page": 1})
    units = chunk_documents([doc], root_title=False)[0].text.split("\n")
    assert units == ["Factoren:", "– korte lijnen", "∗ een gedeelde visie", "• ouders betrokken", "2) tijd en geld"]


def test_page_labels_come_through_to_chunks(tmp_path):
    pages = [f"Voorwoord {BODY}", f"Samenvatting {BODY}", f"Hoofdstuk een {BODY}", f"Hoofdstuk twee {BODY}"]
    path = make_pdf(tmp_path / "rapport.pdf", pages, page_labels=[(1, "r", None, 1), (3, "D", None, 1)])
    docs = load_file(path).documents
    assert [(d.metadata["page"], d.metadata["page_label"]) for d in docs] == [(1, "i"), (2, "ii"), (3, "1"), (4, "2")]
    by_text = {c.text.split()[0] + " " + c.text.split()[1]: (c.page, c.page_label) for c in chunk_documents(docs)}
    assert by_text["Hoofdstuk twee"] == (4, "2")
    assert by_text["Samenvatting De"] == (2, "ii")


def test_without_labels_the_page_label_is_the_page_number(tmp_path):
    docs = load_file(make_pdf(tmp_path / "doc.pdf", [BODY, BODY])).documents
    assert [d.metadata["page_label"] for d in docs] == ["1", "2"]


def test_numbered_headings_without_outline_become_sections(tmp_path):
    page = f"3.1 Het netwerk\n{BODY}\n3.1.2 Hoofdserver\nDe hoofdserver heet tjener. {BODY} {BODY}"
    chunks = _chunks(make_pdf(tmp_path / "handleiding.pdf", [page], title="Handleiding"))
    [server] = [c for c in chunks if "tjener" in c.text]
    assert server.section == "Handleiding › 3.1 Het netwerk › 3.1.2 Hoofdserver"


def test_title_and_year_from_the_pdf_metadata(tmp_path):
    path = make_pdf(tmp_path / "upload.pdf", [BODY], title="Aansluiting onderwijs en jeugdhulp",
                    creation_date=datetime(2021, 6, 1, tzinfo=timezone.utc))
    meta = load_file(path).documents[0].metadata
    assert meta["title"] == "Aansluiting onderwijs en jeugdhulp" and meta["year"] == 2021


def test_a_year_in_the_title_wins_over_the_creation_date(tmp_path):
    path = make_pdf(tmp_path / "upload.pdf", [BODY], title="Aansluiting onderwijs en jeugdhulp 2021",
                    creation_date=datetime(2026, 11, 30, tzinfo=timezone.utc))
    assert load_file(path).documents[0].metadata["year"] == 2021


def test_title_and_year_from_the_first_page_without_metadata(tmp_path):
    first = "Monitor passend onderwijs\nEen onderzoek uit november 2019 naar de aansluiting.\n" + BODY
    path = make_pdf(tmp_path / "upload-zonder-metadata.pdf", [first, BODY], creation_date=False,
                    font_sizes={"Monitor passend onderwijs": 20})
    meta = load_file(path).documents[0].metadata
    assert meta["title"] == "Monitor passend onderwijs"
    assert meta["year"] == 2019


def test_unchanged_pdf_is_not_parsed_again_and_page_labels_reach_passages(make_index, tmp_path, monkeypatch):
    from rag.retrieval import HybridSearcher

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(CORPUS / "factsheet-2021.md", corpus)
    pages = [f"Voorwoord {BODY}", "Het rapport telt precies zevenendertig zorgcoördinatoren in de regio."]
    make_pdf(corpus / "rapport-2021.pdf", pages, title="Rapport", page_labels=[(1, "r", None, 1), (2, "D", None, 5)])

    calls: list[int] = []
    real = pdf_module.extract_pdf

    def counting(data, on_page=None):
        calls.append(len(data))
        return real(data, on_page)

    monkeypatch.setattr(pdf_module, "extract_pdf", counting)
    events: list[tuple[str, int, int, str]] = []
    settings, index = make_index(corpus_dir=corpus, ingest=False)
    first = index.ingest(on_event=lambda *e: events.append(e))
    assert len(calls) == 1 and first.documents == 2
    assert ("pages", 2, 2, "rapport-2021.pdf") in events
    assert events[0][0] == "files" and ("files", 2, 2, "") in events
    assert any(e[0] == "embedding" and e[1] == e[2] > 0 for e in events)

    second = index.ingest()
    assert len(calls) == 1  # unchanged bytes: not parsed again
    assert second.unchanged == 2 and second.added == 0

    index.open()
    [hit] = [p for p in HybridSearcher(index, settings).search("zevenendertig zorgcoördinatoren", k=3)
             if p.name == "rapport-2021"][:1]
    assert (hit.page, hit.page_label) == (2, "5")
    assert [c.page_label for c in index.chunks_of("corpus/rapport-2021.pdf")] == ["i", "5"]

    make_pdf(corpus / "rapport-2021.pdf", pages + [f"Bijlage {BODY}"], title="Rapport")
    third = index.ingest()
    assert len(calls) == 2 and third.unchanged == 1
    assert PATH_SEPARATOR.join(["Rapport"]) in {c.section for c in index.chunks_of("corpus/rapport-2021.pdf")}
