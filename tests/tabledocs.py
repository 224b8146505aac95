"""Generated documents with tables and scans (fpdf2, python-docx, Pillow): text written for the
tests, no third-party text. Shared by the tests and `evals/make_tables_scans.py`."""

from __future__ import annotations

import io
from pathlib import Path

SATISFACTION = [
    ["", "Samenwerkingsverbanden", "Gemeenten"],
    ["(zeer) ontevreden", "33", "23"],
    ["neutraal", "40", "39"],
    ["(zeer) tevreden", "27", "39"],
]


def _pdf():
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(True, margin=20)
    pdf.set_font("Helvetica", size=11)
    return pdf


def _para(pdf, text: str, size: int = 11, style: str = "") -> None:
    pdf.set_font("Helvetica", style=style, size=size)
    pdf.multi_cell(0, 6, text, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)


def _ruled(pdf, rows: list[list[str]], widths: tuple[int, ...] | None = None, repeat_header: bool = True) -> None:
    with pdf.table(col_widths=widths, text_align="LEFT", repeat_headings=1 if repeat_header else 0,
                   first_row_as_headings=True, line_height=7) as table:
        for row in rows:
            r = table.row()
            for cell in row:
                r.cell(cell)


def _borderless(pdf, rows: list[list[str]], widths: tuple[int, ...]) -> None:
    pdf.set_font("Helvetica", size=10)
    for n, row in enumerate(rows):
        pdf.set_font("Helvetica", style="B" if n == 0 else "", size=10)
        for cell, width in zip(row, widths):
            pdf.cell(width, 7, cell)
        pdf.ln(7)
    pdf.ln(3)
    pdf.set_font("Helvetica", size=11)


def table_pdf(rows: list[list[str]], caption: str, before: list[str], after: list[str], ruled: bool = True,
              title: str = "Tevredenheid over de samenwerking") -> bytes:
    """A one-page report: a title, paragraphs, the caption and the table, more paragraphs."""
    pdf = _pdf()
    pdf.add_page()
    _para(pdf, title, size=16, style="B")
    for text in before:
        _para(pdf, text)
    _para(pdf, caption, style="B")
    if ruled:
        _ruled(pdf, rows)
        pdf.ln(4)
    else:
        _borderless(pdf, rows, (55,) + (60,) * (len(rows[0]) - 1))
    for text in after:
        _para(pdf, text)
    return bytes(pdf.output())


def long_table_pdf(rows: list[list[str]], caption: str, intro: list[str], title: str) -> bytes:
    """A ruled table that starts low on page 1 and continues on page 2 (header repeated)."""
    pdf = _pdf()
    pdf.add_page()
    _para(pdf, title, size=16, style="B")
    for text in intro:
        _para(pdf, text)
    _para(pdf, caption, style="B")
    _ruled(pdf, rows)
    return bytes(pdf.output())


def two_tables_pdf(first: list[list[str]], between: list[str], second: list[list[str]], intro: list[str],
                   wrapped_caption: tuple[str, str] | None = None) -> bytes:
    """Table `first` ending low on page 1, the paragraphs `between` below it, and table `second`
    at the top of page 2 (same number of columns, its own header). With `wrapped_caption`
    (a paragraph and its last word), the paragraph above the first table wraps so that only
    that word stands on the line right above the table."""
    pdf = _pdf()
    pdf.add_page()
    for text in intro:
        _para(pdf, text)
    if wrapped_caption:
        text, tail = wrapped_caption
        pdf.set_font("Helvetica", size=11)
        pdf.multi_cell(0, 6, text, new_x="LMARGIN", new_y="NEXT")
        pdf.multi_cell(0, 6, tail, new_x="LMARGIN", new_y="NEXT")
    _ruled(pdf, first)
    pdf.ln(3)
    for text in between:
        _para(pdf, text)
    pdf.add_page()
    _ruled(pdf, second)
    return bytes(pdf.output())


def text_pdf(pages: list[tuple[str, list[str]]]) -> bytes:
    """A text PDF: one page per (heading, paragraphs)."""
    pdf = _pdf()
    for heading, paragraphs in pages:
        pdf.add_page()
        _para(pdf, heading, size=15, style="B")
        for text in paragraphs:
            _para(pdf, text)
    return bytes(pdf.output())


def docx_with_table(path: Path, rows: list[list[str]], caption: str, before: str, after: str) -> None:
    import docx

    document = docx.Document()
    document.add_heading("Resultaten", 1)
    document.add_paragraph(before)
    document.add_paragraph(caption)
    table = document.add_table(rows=len(rows), cols=len(rows[0]))
    table.style = "Table Grid"
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            table.cell(i, j).text = value
    document.add_paragraph(after)
    document.save(path)


def scan_of(pdf_bytes: bytes, page: int, dpi: int = 150, seed: int = 0):
    """A degraded scan (PIL image) of one page of a PDF given as bytes."""
    import tempfile

    from scanhelpers import degrade, rasterize

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "doc.pdf"
        path.write_bytes(pdf_bytes)
        return degrade(rasterize(path, page, dpi), seed=seed)


def mixed_pdf(text_pages: bytes, scans: dict[int, object], dpi: int = 150) -> bytes:
    """A PDF whose pages are those of `text_pages`, except the (1-based) pages in `scans`, which
    are replaced by image-only pages (no text layer)."""
    import pypdfium2 as pdfium
    from scanhelpers import images_to_pdf

    out = pdfium.PdfDocument.new()
    source = pdfium.PdfDocument(text_pages)
    for number in range(1, len(source) + 1):
        if number in scans:
            image_pdf = pdfium.PdfDocument(images_to_pdf([scans[number]], dpi))
            out.import_pages(image_pdf)
        else:
            out.import_pages(source, [number - 1])
    buffer = io.BytesIO()
    out.save(buffer)
    return buffer.getvalue()


def photo(image, angle: float = 4.0, seed: int = 0):
    """A photo-like picture of a page: rotated on a grey desk, uneven light, soft, JPEG-ish."""
    import numpy as np
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(seed)
    page = image.convert("L").rotate(angle, resample=Image.BICUBIC, expand=True, fillcolor=110)
    w, h = page.size
    canvas = Image.new("L", (w + 80, h + 80), 100)
    canvas.paste(page, (40, 40))
    pixels = np.asarray(canvas, dtype=np.float32)
    light = np.linspace(0.8, 1.05, pixels.shape[1])[None, :] * np.linspace(0.9, 1.0, pixels.shape[0])[:, None]
    pixels = pixels * light + rng.normal(0, 6, pixels.shape)
    out = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.6))
    return out.convert("RGB")
