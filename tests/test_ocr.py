"""OCR of scans: pages without a text layer and image files, read with Tesseract (Dutch).
Documents are generated (our own text) or rasterized from a real Dutch PDF from a Debian package."""

from __future__ import annotations

from pathlib import Path

import pytest
from scanhelpers import degrade, images_to_pdf, rasterize, word_accuracy
from tabledocs import mixed_pdf, photo, scan_of, text_pdf

from rag import ocr
from rag.loaders import UnreadableFile, load_file

needs_tesseract = pytest.mark.skipif(
    not ocr.available(), reason=f"Tesseract OCR is not installed; install it with `{ocr.INSTALL_HINT}`")
REAL_PDF = Path(__file__).resolve().parents[1] / "evals" / "realdocs" / "tune" / "debian-faq.nl.pdf"
PAGES = [
    ("Verslag van het overleg", ["Het overleg vond plaats op dinsdag in het gemeentehuis van Zandvoort.",
                                 "Aanwezig waren de wethouder, twee intern begeleiders en de coördinator jeugdhulp."]),
    ("Afspraken over thuiszitters", ["Elke school meldt een leerling die langer dan vier weken thuis zit binnen vijf werkdagen.",
                                     "De leerplichtambtenaar belt de ouders binnen twee weken na de melding."]),
    ("Vervolg", ["Het volgende overleg is in maart; de coördinator stuurt de agenda twee weken vooraf rond."]),
]


@needs_tesseract
def test_mixed_pdf_loses_no_page_and_marks_the_scanned_one(tmp_path):
    source = text_pdf(PAGES)
    path = tmp_path / "verslag.pdf"
    path.write_bytes(mixed_pdf(source, {2: scan_of(source, 2, dpi=150, seed=2)}))
    loaded = load_file(path)
    assert [d.metadata["page"] for d in loaded.documents] == [1, 2, 3]
    scanned = loaded.documents[1]
    assert scanned.metadata["page_label"] == f"2 ({ocr.OCR_MARK})"
    assert loaded.documents[0].metadata["page_label"] == "1"
    expected = " ".join([PAGES[1][0]] + PAGES[1][1])
    assert word_accuracy(expected, scanned.page_content) >= 0.95
    assert "binnen vijf werkdagen" in scanned.page_content
    assert loaded.notes == []


@needs_tesseract
@pytest.mark.skipif(not REAL_PDF.is_file(), reason="real documents not fetched (evals/fetch_real_docs.sh)")
@pytest.mark.parametrize("dpi", [150, 300])
def test_degraded_scan_of_a_real_dutch_page_reads_back(tmp_path, dpi):
    import pypdfium2 as pdfium

    reference = pdfium.PdfDocument(str(REAL_PDF))[12].get_textpage().get_text_range()
    scan = degrade(rasterize(REAL_PDF, 13, dpi), seed=13)
    path = tmp_path / "faq-scan.pdf"
    path.write_bytes(images_to_pdf([scan], dpi))
    loaded = load_file(path)
    assert loaded.documents[0].metadata["page_label"].endswith(f"({ocr.OCR_MARK})")
    assert word_accuracy(reference, loaded.documents[0].page_content) >= 0.95


@needs_tesseract
def test_photo_like_png_is_read(tmp_path):
    source = text_pdf(PAGES[:1])
    path = tmp_path / "foto-verslag.png"
    photo(scan_of(source, 1, dpi=200, seed=5), angle=3.0, seed=5).save(path)
    loaded = load_file(path)
    assert len(loaded.documents) == 1
    assert loaded.documents[0].metadata["page_label"] == f"({ocr.OCR_MARK})"
    assert "gemeentehuis van Zandvoort" in loaded.documents[0].page_content


@needs_tesseract
def test_unreadable_scan_page_is_named(tmp_path):
    import numpy as np
    from PIL import Image

    noise = Image.fromarray((np.random.default_rng(1).random((600, 420)) * 255).astype("uint8"))
    source = text_pdf(PAGES)
    path = tmp_path / "verslag.pdf"
    path.write_bytes(mixed_pdf(source, {3: noise}, dpi=72))
    loaded = load_file(path)
    assert [d.metadata["page"] for d in loaded.documents] == [1, 2]
    assert loaded.notes == ["page 3: no text recognised in the scan"]


def test_without_tesseract_the_reason_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no tesseract on it
    ocr.available.cache_clear()
    try:
        blank = images_to_pdf([degrade(rasterize_text(tmp_path), seed=1)], 100)
        scanned = tmp_path / "scan.pdf"
        scanned.write_bytes(blank)
        with pytest.raises(UnreadableFile, match="apt-get install tesseract-ocr tesseract-ocr-nld"):
            load_file(scanned)
        image = tmp_path / "scan.png"
        degrade(rasterize_text(tmp_path), seed=1).save(image)
        with pytest.raises(UnreadableFile, match="apt-get install tesseract-ocr tesseract-ocr-nld"):
            load_file(image)
    finally:
        ocr.available.cache_clear()


def rasterize_text(tmp_path):
    from PIL import Image, ImageDraw

    image = Image.new("L", (400, 200), 255)
    ImageDraw.Draw(image).text((20, 80), "Een gescande bladzijde", fill=0)
    return image
