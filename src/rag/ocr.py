"""Text from scans: Tesseract OCR (Dutch) for PDF pages without a text layer and for images.

Tesseract is a system program (Debian: `tesseract-ocr` and `tesseract-ocr-nld`), driven
through `pytesseract`, one page image at a time, so progress is reported per page and only
pages without a usable text layer are read. Measured against `ocrmypdf` on degraded 150 and
300 dpi scans of a real Dutch PDF (`evals/ocr_measure.py`, README "OCR"): about the same word
accuracy and cost per page once Tesseract runs single-threaded at the scan's own resolution,
without ocrmypdf's whole-file PDF rewriting (pikepdf, ghostscript) that we do not need.

Pages read by OCR carry OCR_MARK in their page label, so every citation of them says so.
"""

from __future__ import annotations

import functools
import io
import logging
import re
import shutil
from dataclasses import dataclass
from typing import Callable

log = logging.getLogger(__name__)

LANGUAGE = "nld"
# A page is rendered for Tesseract at the resolution of the scan on it, within these bounds:
# upsampling a 150 dpi scan to 300 dpi cost 10 points of word accuracy (0.85 against 0.95).
DEFAULT_DPI = 300
MIN_DPI, MAX_DPI = 100, 400
OCR_MARK = "tekst herkend uit een scan"
INSTALL_HINT = "apt-get install tesseract-ocr tesseract-ocr-nld"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff"}
# A page "has usable text" when its text layer holds at least this many words of 2+ letters.
MIN_WORDS = 5
# Fewer recognised words than this, or a lower mean confidence, and the page counts as unreadable.
MIN_OCR_WORDS = 3
MIN_CONFIDENCE = 40.0
# Bump when OCR settings change what a page yields, so stored hashes no longer match.
OCR_VERSION = "tesseract-nld-v1"
_WORD = re.compile(r"[^\W\d_]{2,}", re.UNICODE)


class OcrUnavailable(Exception):
    """Tesseract (or its Dutch model) is not installed; the message says what to install."""


@dataclass
class OcrPage:
    """One page's recognised text, its mean word confidence (0-100) and whether it counts as read."""

    text: str
    confidence: float
    words: int

    @property
    def readable(self) -> bool:
        return self.words >= MIN_OCR_WORDS and self.confidence >= MIN_CONFIDENCE


def has_usable_text(text: str) -> bool:
    """Does a text layer carry real text (not just a page number or a stamp)?"""
    return len(_WORD.findall(text or "")) >= MIN_WORDS


def check_available(language: str = LANGUAGE) -> None:
    """Raise OcrUnavailable naming the packages to install when Tesseract or its model is missing."""
    if shutil.which("tesseract") is None:
        raise OcrUnavailable(f"Tesseract OCR is not installed; install it with `{INSTALL_HINT}`")
    try:
        import pytesseract
    except ImportError as exc:
        raise OcrUnavailable("the Python package pytesseract is missing; install it with `pip install pytesseract`") from exc
    try:
        languages = set(pytesseract.get_languages(config=""))
    except Exception as exc:  # noqa: BLE001 - any failure to run tesseract means: not usable
        raise OcrUnavailable(f"Tesseract OCR does not run ({exc.__class__.__name__}); reinstall it with `{INSTALL_HINT}`") from exc
    if language not in languages:
        raise OcrUnavailable(f"Tesseract has no Dutch model; install it with `{INSTALL_HINT}`")


@functools.lru_cache(maxsize=1)
def available() -> bool:
    """True when OCR can run here (checked once per process)."""
    try:
        check_available()
    except OcrUnavailable:
        return False
    return True


def ocr_signature() -> str:
    """What scanned pages yield here: the OCR version, or that OCR is missing."""
    return OCR_VERSION if available() else "no-ocr"


def ocr_image(image, language: str = LANGUAGE) -> OcrPage:
    """Recognise one page image (PIL) with Tesseract; text keeps Tesseract's lines and blank lines."""
    import os

    import pytesseract

    # Tesseract's OpenMP threads fight each other on a busy machine: one thread read a page
    # 8x faster than the default on 2 shared cores (3 s against 24 s per page).
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    gray = deskew(image.convert("L"))
    data = pytesseract.image_to_data(gray, lang=language, config="--psm 3", output_type=pytesseract.Output.DICT)
    lines: dict[tuple[int, int, int], list[str]] = {}
    confidences: list[float] = []
    paragraphs: list[tuple[int, int]] = []
    for i, word in enumerate(data["text"]):
        word = (word or "").strip()
        conf = float(data["conf"][i])
        if not word or conf < 0:
            continue
        key = (data["block_num"][i], data["par_num"][i], data["line_num"][i])
        lines.setdefault(key, []).append(word)
        confidences.append(conf)
        if (key[0], key[1]) not in paragraphs:
            paragraphs.append((key[0], key[1]))
    out: list[str] = []
    previous: tuple[int, int] | None = None
    for key, words in lines.items():
        if previous is not None and (key[0], key[1]) != previous:
            out.append("")
        out.append(" ".join(words))
        previous = (key[0], key[1])
    text = "\n".join(out)
    mean = sum(confidences) / len(confidences) if confidences else 0.0
    return OcrPage(text, mean, len(_WORD.findall(text)))


def scan_dpi(page) -> int:
    """The resolution of the densest image on a pypdfium2 page (bounded), or DEFAULT_DPI."""
    import pypdfium2.raw as raw

    best = 0.0
    try:
        for obj in page.get_objects(filter=[raw.FPDF_PAGEOBJ_IMAGE], max_depth=3):
            meta = obj.get_metadata()
            best = max(best, float(meta.horizontal_dpi or 0), float(meta.vertical_dpi or 0))
    except Exception:  # noqa: BLE001 - the default resolution is a fine fallback
        return DEFAULT_DPI
    return int(min(MAX_DPI, max(MIN_DPI, best))) if best else DEFAULT_DPI


def skew_angle(gray, limit: float = 6.0, step: float = 0.25) -> float:
    """The rotation (degrees) that makes text lines horizontal: the angle whose row profile of
    dark pixels is sharpest, on a downscaled copy (Tesseract's layout breaks lines beyond ~1 degree)."""
    import numpy as np
    from PIL import Image

    small = gray.copy()
    small.thumbnail((900, 900))
    dark = Image.fromarray(((np.asarray(small) < 128) * 255).astype(np.uint8))
    best, best_score = 0.0, -1.0
    for n in range(int(-limit / step), int(limit / step) + 1):
        angle = n * step
        rows = np.asarray(dark.rotate(angle, resample=Image.NEAREST, fillcolor=0), dtype=np.float32).sum(axis=1)
        score = float(np.square(np.diff(rows)).sum())
        if score > best_score:
            best, best_score = angle, score
    return best


def deskew(gray):
    """The page image rotated upright (white fill), when it is skewed by a quarter degree or more."""
    from PIL import Image

    angle = skew_angle(gray)
    if abs(angle) < 0.25:
        return gray
    return gray.rotate(angle, resample=Image.BICUBIC, expand=True, fillcolor=255)


def render_pdf_page(page, dpi: int | None = None):
    """A pypdfium2 page as a PIL image, at the resolution of its scan unless `dpi` is given."""
    return page.render(scale=(dpi or scan_dpi(page)) / 72).to_pil()


def page_has_image(page) -> bool:
    """Does a pypdfium2 page draw an image (a scan), so OCR may find text on it?"""
    import pypdfium2.raw as raw

    try:
        return any(True for _ in page.get_objects(filter=[raw.FPDF_PAGEOBJ_IMAGE], max_depth=3))
    except Exception:  # noqa: BLE001 - when in doubt, let OCR look
        return True


def image_frames(data: bytes) -> list:
    """The page images of an image file (every frame of a multi-page TIFF); raise ValueError when unreadable."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
        frames = []
        for index in range(getattr(image, "n_frames", 1)):
            image.seek(index)
            # A phone photo is stored sideways with an EXIF rotation; Tesseract needs it upright.
            frames.append(ImageOps.exif_transpose(image.copy()).convert("RGB"))
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise ValueError(f"not a readable image ({exc.__class__.__name__})") from exc
    return frames


def ocr_images(frames: list, on_page: Callable[[int, int], None] | None = None) -> list[OcrPage]:
    """OCR a list of page images, reporting `on_page(done, total)` after each."""
    check_available()
    results: list[OcrPage] = []
    for index, frame in enumerate(frames):
        results.append(ocr_image(frame))
        if on_page:
            on_page(index + 1, len(frames))
    return results


class PageReader:
    """OCR for the pages of one PDF that have no usable text layer, one page at a time.

    Remembers which pages it read (`read`), which it could not (`unreadable`), and, when
    Tesseract is missing, why (`missing`) with the pages that needed it (`skipped`)."""

    def __init__(self) -> None:
        self.read: list[int] = []
        self.unreadable: list[int] = []
        self.skipped: list[int] = []
        self.missing: str | None = None
        self._checked = False

    def lines(self, number: int, pdf_page, text_layer: str) -> list[str] | None:
        """The recognised lines of page `number` when its text layer is unusable and it shows an
        image; None when the text layer stands (or the page is blank or cannot be read)."""
        if has_usable_text(text_layer) or not page_has_image(pdf_page):
            return None
        if not self._checked:
            self._checked = True
            try:
                check_available()
            except OcrUnavailable as exc:
                self.missing = str(exc)
        if self.missing:
            self.skipped.append(number)
            return None
        result = ocr_image(render_pdf_page(pdf_page))
        if not result.readable:
            log.info("page %d: OCR found no readable text (%d words, confidence %.0f)", number, result.words, result.confidence)
            self.unreadable.append(number)
            return None
        self.read.append(number)
        return [ln for ln in result.text.splitlines() if ln.strip()]


def page_list(numbers: list[int]) -> str:
    """"page 3" / "pages 3, 5 and 9"."""
    if len(numbers) == 1:
        return f"page {numbers[0]}"
    return "pages " + ", ".join(str(n) for n in numbers[:-1]) + f" and {numbers[-1]}"
