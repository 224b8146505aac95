"""Simulated scans for tests and evals: rasterize PDF pages with pdftoppm, degrade them like a
cheap office scanner (skew, noise, JPEG artefacts), and score OCR by word accuracy."""

from __future__ import annotations

import io
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

_TOKEN = re.compile(r"\w+", re.UNICODE)


def rasterize(pdf: Path, page: int, dpi: int) -> Image.Image:
    """One page (1-based) of a PDF as a grayscale image, by poppler's pdftoppm."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "page"
        subprocess.run(["pdftoppm", "-r", str(dpi), "-gray", "-f", str(page), "-l", str(page), "-png", str(pdf), str(out)],
                       check=True, capture_output=True)
        produced = sorted(Path(tmp).glob("page*.png"))
        return Image.open(produced[0]).copy()


def degrade(image: Image.Image, seed: int = 0, skew: float = 1.5, noise: float = 14.0, jpeg_quality: int = 45) -> Image.Image:
    """A scan's faults: rotated by `skew` degrees, Gaussian noise and specks, JPEG-compressed."""
    rng = np.random.default_rng(seed)
    gray = image.convert("L").rotate(skew, resample=Image.BICUBIC, expand=True, fillcolor=255)
    pixels = np.asarray(gray, dtype=np.float32)
    pixels = pixels + rng.normal(0.0, noise, pixels.shape)
    specks = rng.random(pixels.shape) < 0.002
    pixels[specks] = 0.0
    noisy = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    noisy.save(buffer, format="JPEG", quality=jpeg_quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("L")


def words(text: str) -> list[str]:
    """Lower-cased word tokens, line-end hyphenation joined."""
    text = re.sub(r"(\w)[-\ufffe\x02]\s*\n\s*(\w)", r"\1\2", text.replace("\ufffe", "-\n"))
    return [w.casefold() for w in _TOKEN.findall(text)]


def word_accuracy(reference: str, hypothesis: str) -> float:
    """1 - word error rate (word-level Levenshtein distance / reference words), floored at 0."""
    ref, hyp = words(reference), words(hypothesis)
    if not ref:
        return 1.0 if not hyp else 0.0
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h))
        previous = current
    return max(0.0, 1.0 - previous[-1] / len(ref))


def images_to_pdf(images: list[Image.Image], dpi: int) -> bytes:
    """Image-only PDF pages (no text layer), as a scanner writes them."""
    buffer = io.BytesIO()
    first, *rest = [im.convert("RGB") for im in images]
    first.save(buffer, format="PDF", save_all=True, append_images=rest, resolution=float(dpi))
    return buffer.getvalue()
