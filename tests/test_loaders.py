"""Loaders: real files of every supported format -> Documents with metadata, or a clear skip."""

from __future__ import annotations

import io
import os
import random
import zipfile
from pathlib import Path

import pytest
from conftest import make_pdf

from rag.chunking import chunk_documents
from rag.loaders import UnreadableFile, discover, load_file, read_manifest

PAGES = [
    "Eerste pagina: gemeenten ervaren knelpunten in de samenwerking.",
    "Tweede pagina: de samenwerkingsverbanden noemen wachtlijsten.",
    "Derde pagina: vijf werkzame factoren voor de aansluiting.",
]


def _unreadable(path: Path) -> str:
    with pytest.raises(UnreadableFile) as info:
        load_file(path)
    message = str(info.value)
    assert message and "\n" not in message
    return message


# -- PDF ------------------------------------------------------------------------------


def test_pdf_pages_become_documents_with_page_numbers(tmp_path):
    path = make_pdf(tmp_path / "rapport-2021.pdf", PAGES, title="Rapport Aansluiting onderwijs en jeugdhulp 2021")
    loaded = load_file(path)
    assert (loaded.doc_id, loaded.name) == ("corpus/rapport-2021.pdf", "rapport-2021")
    assert [d.metadata["page"] for d in loaded.documents] == [1, 2, 3]
    for doc, text in zip(loaded.documents, PAGES):
        assert " ".join(doc.page_content.split()) == text
    meta = loaded.documents[0].metadata
    assert meta["title"] == "Rapport Aansluiting onderwijs en jeugdhulp 2021"
    assert meta["kind"] == "rapport"  # guessed from the file name
    assert meta["doc_id"] == "corpus/rapport-2021.pdf"


def test_pdf_unicode_text_survives(tmp_path):
    path = make_pdf(tmp_path / "u.pdf", ["Heldere financiële afspraken en thema’s – 91% van de gemeenten."])
    text = load_file(path).documents[0].page_content
    assert "financiële" in text and "91%" in text


def test_pdf_outline_gives_headings(tmp_path):
    path = make_pdf(
        tmp_path / "rapport.pdf",
        PAGES,
        title="Rapport 2021",
        bookmarks=[(1, "Inleiding", 0), (2, "Knelpunten", 0), (2, "Wachtlijsten", 1), (3, "Werkzame factoren", 0)],
    )
    docs = load_file(path).documents
    assert docs[0].page_content.splitlines()[0] == "# Inleiding"
    assert docs[1].page_content.splitlines()[:2] == ["# Knelpunten", "## Wachtlijsten"]
    chunks = chunk_documents(docs)
    by_page = {c.page: c.section for c in chunks}
    assert by_page[1] == "Rapport 2021 › Inleiding"
    assert by_page[2] == "Rapport 2021 › Knelpunten › Wachtlijsten"
    assert by_page[3] == "Rapport 2021 › Werkzame factoren"


def test_pdf_without_text_layer_is_skipped(tmp_path):
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.rect(20, 20, 80, 60, style="F")
    path = tmp_path / "scan.pdf"
    pdf.output(str(path))
    assert "no text layer" in _unreadable(path)


def test_encrypted_pdf_is_skipped(tmp_path):
    path = make_pdf(tmp_path / "geheim.pdf", ["Vertrouwelijke tekst."], user_password="geheim")
    assert "encrypted" in _unreadable(path)


def test_corrupt_pdf_is_skipped(tmp_path):
    rng = random.Random(1234)
    path = tmp_path / "kapot.pdf"
    path.write_bytes(b"%PDF-1.4\n" + bytes(rng.getrandbits(8) for _ in range(4096)))
    assert "PDF" in _unreadable(path)


def test_damaged_pdf_stream_filter_is_unreadable_not_a_crash(tmp_path):
    good = make_pdf(tmp_path / "goed.pdf", PAGES).read_bytes()
    assert b"/FlateDecode" in good
    path = tmp_path / "beschadigd.pdf"
    path.write_bytes(good.replace(b"/FlateDecode", b"/FlathDecode"))  # same length: xref stays valid
    assert "PDF" in _unreadable(path)


def test_zip_named_pdf_is_skipped(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("rapport.txt", "Dit is geen PDF.")
    path = tmp_path / "rapport.pdf"
    path.write_bytes(buf.getvalue())
    assert "ZIP" in _unreadable(path)


def test_manifest_overrides_pdf_metadata(tmp_path):
    make_pdf(tmp_path / "oberon-2021-def.pdf", PAGES, title="Microsoft Word - def.docx")
    (tmp_path / "manifest.toml").write_text(
        '["oberon-2021-def"]\n'
        'title = "Handreiking aansluiting onderwijs en jeugdhulp"\n'
        'kind = "handreiking"\n'
        "year = 2021\n"
        'publisher = "Oberon"\n',
        encoding="utf-8",
    )
    manifest = read_manifest(tmp_path)
    meta = load_file(tmp_path / "oberon-2021-def.pdf", manifest).documents[0].metadata
    assert meta["title"] == "Handreiking aansluiting onderwijs en jeugdhulp"
    assert meta["kind"] == "handreiking"
    assert meta["year"] == 2021
    assert meta["publisher"] == "Oberon"


def test_manifest_change_changes_content_hash(tmp_path):
    make_pdf(tmp_path / "doc.pdf", PAGES)
    before = load_file(tmp_path / "doc.pdf", {}).content_hash
    after = load_file(tmp_path / "doc.pdf", {"doc": {"title": "Nieuwe titel"}}).content_hash
    assert before != after


# -- text and Markdown ---------------------------------------------------------------


def test_latin1_text_is_decoded(tmp_path):
    path = tmp_path / "notitie.txt"
    path.write_bytes("Heldere financiële afspraken in het café.\n".encode("latin-1"))
    text = load_file(path).documents[0].page_content
    assert "financiële" in text and "café" in text


def test_cp1252_quotes_are_decoded(tmp_path):
    path = tmp_path / "windows.txt"
    path.write_bytes("De thema’s van het “onderzoek”.\n".encode("cp1252"))
    assert "thema’s" in load_file(path).documents[0].page_content


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-be-bom", "utf-8-sig"])
def test_text_with_bom_is_decoded(tmp_path, codec):
    text = "# Notitie\n\nFinanciële knelpunten bij gemeenten.\n"
    data = b"\xfe\xff" + text.encode("utf-16-be") if codec == "utf-16-be-bom" else text.encode(codec)
    path = tmp_path / "bom.txt"
    path.write_bytes(data)
    loaded = load_file(path)
    assert "Financiële knelpunten bij gemeenten." in loaded.documents[0].page_content
    assert "\ufeff" not in loaded.documents[0].page_content
    assert loaded.documents[0].metadata["title"] == "Notitie"


@pytest.mark.parametrize("content", [b"", b"   \n\n\t  \n"])
def test_empty_file_is_skipped(tmp_path, content):
    path = tmp_path / "leeg.txt"
    path.write_bytes(content)
    assert "empty" in _unreadable(path)


def test_binary_markdown_is_skipped(tmp_path):
    path = tmp_path / "plaatje.md"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4)
    assert "binary" in _unreadable(path)


def test_front_matter_gives_metadata(tmp_path):
    path = tmp_path / "factsheet-2021.md"
    path.write_text(
        "---\n"
        'title: "Factsheet Aansluiting onderwijs en jeugdhulp 2021"\n'
        "kind: factsheet\n"
        "year: 2021\n"
        "publisher: Oberon\n"
        "url: https://www.oberon.eu/portfolio/aansluiting-onderwijs-en-jeugdhulp-2021/\n"
        "---\n\n"
        "## Veel knelpunten\n\nVrijwel alle gemeenten (91%) ervaren knelpunten.\n",
        encoding="utf-8",
    )
    loaded = load_file(path)
    doc = loaded.documents[0]
    assert doc.metadata["title"] == "Factsheet Aansluiting onderwijs en jeugdhulp 2021"
    assert doc.metadata["kind"] == "factsheet"
    assert doc.metadata["year"] == 2021
    assert doc.metadata["publisher"] == "Oberon"
    assert doc.metadata["url"] == "https://www.oberon.eu/portfolio/aansluiting-onderwijs-en-jeugdhulp-2021/"
    assert doc.metadata["page"] is None
    assert "---" not in doc.page_content and "publisher" not in doc.page_content
    assert "91%" in doc.page_content


def test_front_matter_with_crlf_and_unknown_kind(tmp_path):
    path = tmp_path / "memo.md"
    path.write_bytes(b"---\r\ntitle: Memo\r\nkind: brochure\r\nyear: '2020'\r\n---\r\n\r\nTekst van de memo.\r\n")
    meta = load_file(path).documents[0].metadata
    assert meta["title"] == "Memo"
    assert meta["kind"] == "other"
    assert meta["year"] == 2020


def test_title_falls_back_to_first_heading_then_file_name(tmp_path):
    (tmp_path / "a.md").write_text("Intro.\n\n# De echte titel\n\nTekst.\n", encoding="utf-8")
    (tmp_path / "mijn_notitie-2021.txt").write_text("Alleen tekst.\n", encoding="utf-8")
    assert load_file(tmp_path / "a.md").documents[0].metadata["title"] == "De echte titel"
    assert load_file(tmp_path / "mijn_notitie-2021.txt").documents[0].metadata["title"] == "mijn notitie 2021"


def test_shipped_corpus_metadata():
    from conftest import CORPUS

    manifest = read_manifest(CORPUS)
    factsheet = load_file(CORPUS / "factsheet-2021.md", manifest).documents[0].metadata
    page = load_file(CORPUS / "projectpagina-2021.md", manifest).documents[0].metadata
    assert (factsheet["doc_id"], factsheet["kind"], factsheet["year"]) == ("corpus/factsheet-2021.md", "factsheet", 2021)
    assert (page["doc_id"], page["kind"], page["year"]) == ("corpus/projectpagina-2021.md", "webpagina", 2021)
    assert factsheet["publisher"] == page["publisher"] == "Oberon"


# -- HTML ---------------------------------------------------------------------------

HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>Handreiking onderwijs en jeugdhulp</title>
<style>.geheim { color: red } /* STYLETEKST */</style>
<script>var x = "SCRIPTTEKST";</script></head>
<body>
<nav><a href="/">Home</a> MENUTEKST</nav>
<h2>Gedeelde visie</h2>
<p>Een gedeelde visie is de basis van de samenwerking. Partners spreken samen doelen af.</p>
<ul><li>Maak afspraken over rollen.</li><li>Evalueer de samenwerking jaarlijks.</li></ul>
<h3>Voorbeelden uit de praktijk</h3>
<p>In Utrecht werken het samenwerkingsverband en de gemeente met een gezamenlijk wijkteam dat op
scholen aanwezig is. Leerkrachten kunnen het team direct inschakelen als een leerling hulp nodig heeft.
Ouders worden vanaf het eerste gesprek betrokken en de school houdt regie op het onderwijsdeel.</p>
<script>document.write("SCRIPTTEKST2")</script>
</body></html>
"""


def test_html_headings_and_no_script_text(tmp_path):
    path = tmp_path / "handreiking.html"
    path.write_text(HTML, encoding="utf-8")
    loaded = load_file(path)
    doc = loaded.documents[0]
    assert doc.metadata["title"] == "Handreiking onderwijs en jeugdhulp"
    assert doc.metadata["kind"] == "handreiking"
    for hidden in ("SCRIPTTEKST", "STYLETEKST", "color: red", "MENUTEKST"):
        assert hidden not in doc.page_content
    assert "## Gedeelde visie" in doc.page_content
    assert "- Maak afspraken over rollen." in doc.page_content
    chunks = chunk_documents(loaded.documents)
    sections = {c.section for c in chunks}
    assert "Handreiking onderwijs en jeugdhulp › Gedeelde visie" in sections
    assert "Handreiking onderwijs en jeugdhulp › Gedeelde visie › Voorbeelden uit de praktijk" in sections
    visie = next(c for c in chunks if "gedeelde visie is de basis" in c.text)
    assert visie.section == "Handreiking onderwijs en jeugdhulp › Gedeelde visie"
    assert all("SCRIPTTEKST" not in c.embed_text for c in chunks)


def test_html_latin1_without_meta_charset(tmp_path):
    path = tmp_path / "oud.htm"
    path.write_bytes("<html><body><h1>Financiële kaders</h1><p>Tekst over geld.</p></body></html>".encode("latin-1"))
    assert "# Financiële kaders" in load_file(path).documents[0].page_content


def test_html_article_header_heading_is_kept(tmp_path):
    path = tmp_path / "pagina.html"
    path.write_text(
        "<html><head><title>Oberon</title></head><body><header>Site-menu</header>"
        "<article><header><h1>Aansluiting onderwijs en jeugdhulp 2021</h1></header>"
        "<p>Dit onderzoek brengt de stand van het land in beeld.</p></article></body></html>",
        encoding="utf-8",
    )
    content = load_file(path).documents[0].page_content
    assert "Site-menu" not in content
    assert "# Aansluiting onderwijs en jeugdhulp 2021" in content


# -- DOCX ---------------------------------------------------------------------------


def test_docx_heading_styles_give_headings(tmp_path):
    import docx

    document = docx.Document()
    document.core_properties.title = "Handreiking samenwerking"
    document.add_heading("Samenwerking in de regio", level=1)
    document.add_paragraph("Gemeenten en samenwerkingsverbanden werken samen in de regio. Dat vraagt tijd.")
    document.add_heading("Gedeelde visie", level=2)
    document.add_paragraph(
        "Een gedeelde visie is de basis van de samenwerking tussen onderwijs en jeugdhulp. "
        "Partners spreken samen doelen af en evalueren die jaarlijks met alle betrokkenen. "
        "Zo ontstaat vertrouwen tussen scholen, gemeenten en aanbieders van jeugdhulp in de wijk."
    )
    document.add_paragraph("Maak afspraken over rollen", style="List Bullet")
    path = tmp_path / "handreiking.docx"
    document.save(str(path))

    loaded = load_file(path)
    doc = loaded.documents[0]
    assert doc.metadata["title"] == "Handreiking samenwerking"
    assert doc.metadata["kind"] == "handreiking"
    lines = [ln for ln in doc.page_content.splitlines() if ln.strip()]
    assert "# Samenwerking in de regio" in lines
    assert "## Gedeelde visie" in lines
    assert "- Maak afspraken over rollen" in lines
    chunks = chunk_documents(loaded.documents)
    regio = next(c for c in chunks if "werken samen in de regio" in c.text)
    assert regio.section == "Handreiking samenwerking › Samenwerking in de regio"
    visie = next(c for c in chunks if "gedeelde visie is de basis" in c.text)
    assert visie.section == "Handreiking samenwerking › Samenwerking in de regio › Gedeelde visie"


def test_docx_that_is_not_a_zip_is_skipped(tmp_path):
    path = tmp_path / "nep.docx"
    path.write_text("gewone tekst", encoding="utf-8")
    assert "DOCX" in _unreadable(path)


def test_corrupt_docx_zip_is_skipped(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("iets.txt", "geen word-document")
    path = tmp_path / "kapot.docx"
    path.write_bytes(buf.getvalue())
    _unreadable(path)


# -- discover ------------------------------------------------------------------------


def test_discover_skips_unsupported_with_reason(tmp_path):
    (tmp_path / "a.md").write_text("# A\n\nTekst.\n", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("Tekst.\n", encoding="utf-8")
    (tmp_path / "setup.exe").write_bytes(b"MZ\x90\x00")
    (tmp_path / ".verborgen.md").write_text("# Verborgen\n", encoding="utf-8")
    (tmp_path / "manifest.toml").write_text("", encoding="utf-8")
    files, skipped = discover([tmp_path, tmp_path / "bestaat-niet"])
    assert sorted(p.name for p in files) == ["a.md", "b.txt"]
    reasons = {p.name: reason for p, reason in skipped}
    assert set(reasons) == {"setup.exe", "bestaat-niet"}
    assert "unsupported" in reasons["setup.exe"] and ".exe" in reasons["setup.exe"]
    assert "no such file" in reasons["bestaat-niet"]


def test_load_file_rejects_unsupported_suffix(tmp_path):
    path = tmp_path / "setup.exe"
    path.write_bytes(b"MZ\x90\x00")
    assert "unsupported" in _unreadable(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read files without read permission")
def test_unreadable_permissions_are_skipped(tmp_path):
    path = tmp_path / "prive.md"
    path.write_text("# Prive\n", encoding="utf-8")
    path.chmod(0)
    try:
        assert "cannot read" in _unreadable(path)
    finally:
        path.chmod(0o644)
