"""Tables kept as tables: generated PDFs (ruled, borderless, across a page break), DOCX and HTML
tables come out as one unit with their caption and one answer line per row naming its cells."""

from __future__ import annotations

import pytest
from tabledocs import SATISFACTION, docx_with_table, long_table_pdf, table_pdf, two_tables_pdf

from rag.chunking import chunk_documents
from rag.lines import split_lines
from rag.loaders import load_file
from rag.tables import table_blocks

INTRO = ["In het onderzoek is gevraagd hoe tevreden men is over de samenwerking tussen onderwijs en jeugdhulp."]
AFTER = ["Gemeenten zijn vaker tevreden dan samenwerkingsverbanden."]
CAPTION = "Tabel 1. Tevredenheid (in procenten)"
ROW = "(zeer) tevreden — Samenwerkingsverbanden: 27%, Gemeenten: 39%."


def _table_chunks(path):
    chunks = chunk_documents(load_file(path).documents)
    return chunks, [c for c in chunks if "—" in c.text]


@pytest.mark.parametrize("ruled", [True, False], ids=["ruled", "borderless"])
def test_pdf_table_is_one_unit_with_caption_and_named_cells(tmp_path, ruled):
    path = tmp_path / "rapport.pdf"
    path.write_bytes(table_pdf(SATISFACTION, CAPTION, INTRO, AFTER, ruled=ruled))
    chunks, tables = _table_chunks(path)
    assert len(tables) == 1
    lines = [ln.text for ln in split_lines(tables[0].text)]
    assert lines == [CAPTION, "(zeer) ontevreden — Samenwerkingsverbanden: 33%, Gemeenten: 23%.",
                     "neutraal — Samenwerkingsverbanden: 40%, Gemeenten: 39%.", ROW]
    assert tables[0].page == 1
    # The text around the table stays text, in order, and no number is left outside the table.
    texts = [c.text for c in chunks]
    assert texts.index(tables[0].text) > 0 and any(AFTER[0] in t for t in texts[texts.index(tables[0].text):])
    assert not any("33 23" in t for t in texts)


def test_pdf_table_across_a_page_break_is_one_table(tmp_path):
    rows = [["Regio", "Leerlingen", "Thuiszitters"]] + [[f"Regio {i}", str(100 + 7 * i), str(i)] for i in range(1, 41)]
    path = tmp_path / "thuiszitters.pdf"
    path.write_bytes(long_table_pdf(rows, "Tabel 2. Thuiszitters per regio", INTRO * 12, "Thuiszitters"))
    _, tables = _table_chunks(path)
    row_lines = [ln.text for c in tables for ln in split_lines(c.text) if "—" in ln.text]
    assert len(row_lines) == 40  # every row once; the header repeated on page 2 is no row
    assert row_lines[-1] == "Regio: Regio 40 — Leerlingen: 380, Thuiszitters: 40."
    assert {c.page for c in tables} == {1}
    assert tables[0].text.startswith("Tabel 2. Thuiszitters per regio\n")


def test_docx_table_stays_in_place_as_rows(tmp_path):
    path = tmp_path / "rapport.docx"
    docx_with_table(path, SATISFACTION, CAPTION, "Eerst de inleiding van de resultaten.", "Daarna de conclusie.")
    chunks, tables = _table_chunks(path)
    texts = [c.text for c in chunks]
    assert texts == ["Eerst de inleiding van de resultaten.", tables[0].text, "Daarna de conclusie."]
    assert ROW in tables[0].text.splitlines() and tables[0].text.startswith(CAPTION)


def test_html_table_with_caption_units_and_colspan(tmp_path):
    path = tmp_path / "pagina.html"
    path.write_text(
        "<html><body><h1>Budget</h1><p>Inleiding bij het budget.</p><table><caption>Tabel 3. Budget per regio</caption>"
        "<tr><th>Regio</th><th>Scholen</th><th>Budget (in euro)</th></tr>"
        "<tr><td>Noord</td><td>12</td><td>1.500</td></tr><tr><td>Zuid</td><td colspan='2'>geen opgave</td></tr>"
        "</table></body></html>", encoding="utf-8")
    _, tables = _table_chunks(path)
    assert tables[0].text.splitlines() == ["Tabel 3. Budget per regio", "Regio: Noord — Scholen: 12, Budget (in euro): € 1.500.",
                                           "Regio: Zuid — Scholen: geen opgave."]


def test_markdown_pipe_table_and_row_lines_read_back_as_cells():
    from langchain_core.documents import Document

    text = f"# Uitkomsten\n\n{CAPTION}\n|  | Samenwerkingsverbanden | Gemeenten |\n|---|---|---|\n" \
           "| neutraal | 40 | 39,5 |\n| (zeer) tevreden | 27 | 39 |\n\nSlot."
    chunks = chunk_documents([Document(page_content=text, metadata={"doc_id": "d", "title": "T", "page": None})])
    table = next(c for c in chunks if "—" in c.text)
    blocks = table_blocks(table.text)
    assert blocks[0] == ("text", CAPTION)
    assert blocks[1] == ("table", (["", "Samenwerkingsverbanden", "Gemeenten"],
                                   [["neutraal", "40%", "39,5%"], ["(zeer) tevreden", "27%", "39%"]]))
    assert table_blocks("Gewone zin — met een streep.\nNog een zin.") == [("text", "Gewone zin — met een streep.\nNog een zin.")]


def test_borderless_header_wider_than_its_column_keeps_every_word(tmp_path):
    # The last column's numbers are narrower than its header: the column must still take the
    # whole header ("Wachttijd 2023", not "Wachttijd"), else the 2023 figures are misnamed.
    rows = [["Vorm van hulp", "Wachttijd 2022", "Wachttijd 2023"], ["Ambulante jeugdhulp", "6", "9"],
            ["Dagbehandeling", "11", "14"], ["Pleegzorg", "8", "7"]]
    path = tmp_path / "wachttijden.pdf"
    path.write_bytes(table_pdf(rows, "Tabel 2. Gemiddelde wachttijd in weken", INTRO, AFTER, ruled=False))
    _, tables = _table_chunks(path)
    assert [ln.text for ln in split_lines(tables[0].text)][1:] == [
        "Vorm van hulp: Ambulante jeugdhulp — Wachttijd 2022: 6, Wachttijd 2023: 9.",
        "Vorm van hulp: Dagbehandeling — Wachttijd 2022: 11, Wachttijd 2023: 14.",
        "Vorm van hulp: Pleegzorg — Wachttijd 2022: 8, Wachttijd 2023: 7."]


def test_row_lines_read_back_without_their_sentence_end():
    from rag.tables import Table, parse_row, row_lines

    table = Table(["Post", "Begroting (in euro)", "Status"], [["Scholing", "95.000", "n.v.t."], ["Huur", "1.250", "klaar"]])
    lines = row_lines(table)
    assert lines == ["Post: Scholing — Begroting (in euro): € 95.000, Status: n.v.t.",
                     "Post: Huur — Begroting (in euro): € 1.250, Status: klaar."]
    assert [parse_row(line)[1][-1] for line in lines] == [("Status", "n.v.t."), ("Status", "klaar")]


def test_extractive_answer_quotes_the_asked_row_not_the_whole_table(tmp_path, make_index):
    # A row is one statement: the answer to a question about one region quotes that row, not
    # every row of the table as if the rows were the items of a list.
    from rag.answering import Assistant

    names = ["Amstelland", "Bollenstreek", "Delfland", "Eemland", "Flevopolder", "Gooi", "IJmond", "Kennemerland",
             "Lopikerwaard", "Noordkop", "Oostzaan", "Peelland"]
    rows = [["Regio", "Leerlingen", "Thuiszitters"]] + [[n, str(1200 + 37 * i), str(4 + i)] for i, n in enumerate(names)]
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "thuiszitters.pdf").write_bytes(table_pdf(rows, "Tabel 3. Leerlingen en thuiszitters per regio", INTRO, AFTER))
    settings, index = make_index(corpus)
    answer = Assistant(settings, index=index).ask("Hoeveel thuiszitters telt de regio Gooi?")
    quoted_rows = [q for c in answer.citations for q in c.quoted_lines if "—" in q]
    assert quoted_rows == ["Regio: Gooi — Leerlingen: 1385, Thuiszitters: 9."], answer.text


DRUMS = [["Nr.", "Drumstel", "Toepassing"]] + [[str(n), f"Stel {n}", "Alles"] for n in range(1, 19)]
CONTROLS = [["Nr.", "Bedieningselement", "Wat het doet"], ["7", "Volume", "Het volume van het spoor"],
            ["91", "Galm", "De grootte van de kamer"]]


def test_a_new_table_after_text_on_the_next_page_is_not_the_continuation(tmp_path):
    # A table low on a page, a paragraph and a heading below it, and a table with a header of
    # its own on the next page: two tables, each row named by its own header, text in between.
    path = tmp_path / "midi.pdf"
    path.write_bytes(two_tables_pdf(DRUMS, ["Het nummer staat voor het toewijzen van een instrument."],
                                    CONTROLS, INTRO * 10))
    lines = [ln.text for c in chunk_documents(load_file(path).documents) for ln in split_lines(c.text)]
    assert "Nr.: 91 — Bedieningselement: Galm, Wat het doet: De grootte van de kamer." in lines
    assert lines.index("Het nummer staat voor het toewijzen van een instrument.") < lines.index(
        "Nr.: 7 — Bedieningselement: Volume, Wat het doet: Het volume van het spoor.")
    assert not any("Drumstel: Galm" in line or "Drumstel: Bedieningselement" in line for line in lines)


def test_the_last_word_of_a_wrapped_paragraph_is_no_caption(tmp_path):
    paragraph = ("De volgende apparatuur werd uitgetest onder skolelinux 3, kubuntu 7.10, kubuntu 8.04 en met de "
                 "kernels 2.6.22.16 en")
    path = tmp_path / "apparaten.pdf"
    path.write_bytes(two_tables_pdf(CONTROLS, [], CONTROLS, INTRO, wrapped_caption=(paragraph, "2.6.24.18")))
    chunks, tables = _table_chunks(path)
    assert not tables[0].text.startswith("2.6.24.18")
    assert any(c.text.endswith("2.6.22.16 en 2.6.24.18") or "en 2.6.24.18" in c.text for c in chunks)
