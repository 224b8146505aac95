"""Measure OCR on degraded scans of a real Dutch PDF: word accuracy and seconds per page.

Pages of `evals/realdocs/tune/debian-faq.nl.pdf` (package debian-faq-nl) are rasterized with
pdftoppm at 150 and 300 dpi, degraded (1.5 degree skew, noise, specks, JPEG quality 45),
written into an image-only PDF and read back; the reference is the PDF's own text layer.
Engines: pytesseract on the page rendered at the scan's own resolution (what `rag.ocr` does), pytesseract on
the scan at its own resolution, and ocrmypdf (`--output-type pdf`). Run once; Tesseract is
CPU heavy.

    PYTHONPATH=src python evals/ocr_measure.py [--pages 9,13,21] [--engines all]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import pypdfium2 as pdfium  # noqa: E402
from scanhelpers import degrade, images_to_pdf, rasterize, word_accuracy  # noqa: E402

from rag import ocr  # noqa: E402

PDF = Path(__file__).resolve().parent / "realdocs" / "tune" / "debian-faq.nl.pdf"


def reference_texts(pdf: Path, pages: list[int]) -> dict[int, str]:
    doc = pdfium.PdfDocument(str(pdf))
    try:
        return {p: doc[p - 1].get_textpage().get_text_range() for p in pages}
    finally:
        doc.close()


def pdf_page_texts(data: bytes) -> list[str]:
    doc = pdfium.PdfDocument(data)
    try:
        return [doc[i].get_textpage().get_text_range() for i in range(len(doc))]
    finally:
        doc.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", default="9,13,21")
    parser.add_argument("--dpis", default="150,300")
    parser.add_argument("--engines", default="render,native,ocrmypdf")
    args = parser.parse_args()
    pages = [int(p) for p in args.pages.split(",")]
    engines = args.engines.split(",")
    refs = reference_texts(PDF, pages)
    print(f"{PDF.name}: pages {pages}, {sum(len(r.split()) for r in refs.values())} reference words")
    for dpi in [int(d) for d in args.dpis.split(",")]:
        scans = [degrade(rasterize(PDF, p, dpi), seed=p) for p in pages]
        scanned_pdf = images_to_pdf(scans, dpi)
        results: dict[str, tuple[list[float], float]] = {}
        if "render" in engines:
            started = time.perf_counter()
            doc = pdfium.PdfDocument(scanned_pdf)
            texts = [ocr.ocr_image(ocr.render_pdf_page(doc[i])).text for i in range(len(doc))]
            doc.close()
            results["pytesseract, page rendered at the scan resolution (rag.ocr)"] = (
                [word_accuracy(refs[p], t) for p, t in zip(pages, texts)], time.perf_counter() - started)
        if "native" in engines:
            started = time.perf_counter()
            texts = [ocr.ocr_image(im).text for im in scans]
            results[f"pytesseract, scan at its own {dpi} dpi"] = (
                [word_accuracy(refs[p], t) for p, t in zip(pages, texts)], time.perf_counter() - started)
        if "ocrmypdf" in engines:
            import ocrmypdf

            with tempfile.TemporaryDirectory() as tmp:
                src, out = Path(tmp) / "in.pdf", Path(tmp) / "out.pdf"
                src.write_bytes(scanned_pdf)
                started = time.perf_counter()
                ocrmypdf.ocr(src, out, language=["nld"], output_type="pdf", progress_bar=False, optimize=0, jobs=1)
                seconds = time.perf_counter() - started
                texts = pdf_page_texts(out.read_bytes())
            results["ocrmypdf --output-type pdf"] = ([word_accuracy(refs[p], t) for p, t in zip(pages, texts)], seconds)
        for name, (accs, seconds) in results.items():
            per_page = " ".join(f"{a:.3f}" for a in accs)
            print(f"{dpi} dpi degraded | {name}: word accuracy mean {sum(accs) / len(accs):.3f} "
                  f"(pages {per_page}), {seconds / len(pages):.1f} s/page")


if __name__ == "__main__":
    main()
