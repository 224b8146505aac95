"""Document metadata (front matter, manifest, PDF/DOCX properties) into typed, bounded values.

A field that does not fit is dropped with a warning that names the file and the field; the
document itself is kept.
"""

from __future__ import annotations

import datetime as _dt
import re
import unicodedata

KINDS = ("rapport", "factsheet", "handreiking", "webpagina", "other")
YEAR_RANGE = (1900, 2100)
MAX_CHARS = {"title": 300, "publisher": 200, "url": 2000}
_YEAR = re.compile(r"[0-9]{4}")
_UNPRINTABLE = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
_URL = re.compile(r"https?://[^\s]+", re.IGNORECASE)


def _shown(value) -> str:
    """A short, printable rendering of a rejected value for a warning."""
    text = value if isinstance(value, str) else type(value).__name__ if isinstance(value, (dict, list)) else None
    if text is None:
        try:
            text = str(value)
        except (ValueError, TypeError):  # an int too long to print (sys.set_int_max_str_digits)
            text = type(value).__name__
    text = "".join(ch if ch.isprintable() else "?" for ch in text[:40])
    return repr(text + ("…" if len(text) >= 40 else ""))


def _clean_string(value) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    try:
        text = str(value)
    except ValueError:
        return None
    text = "".join(ch for ch in text if unicodedata.category(ch) not in _UNPRINTABLE or ch in "\t\n")
    return " ".join(text.split())


def parse_year(value) -> int | None:
    """A year between 1900 and 2100 from an int, a four-digit string or a date; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, _dt.date):
        year = value.year
    elif isinstance(value, int):
        year = value
    elif isinstance(value, float) and value.is_integer() and abs(value) < 10_000:
        year = int(value)
    elif isinstance(value, str) and _YEAR.fullmatch(value.strip()):
        year = int(value.strip())
    else:
        return None
    return year if YEAR_RANGE[0] <= year <= YEAR_RANGE[1] else None


def validate_metadata(raw: dict, name: str) -> tuple[dict, list[str]]:
    """Typed metadata from `raw` (only known fields) and warnings for fields dropped."""
    out: dict = {}
    warnings: list[str] = []

    def drop(field: str, why: str) -> None:
        warnings.append(f"{name}: metadata field '{field}' dropped ({why}): {_shown(raw[field])}")

    for field in ("title", "publisher", "url"):
        if field not in raw or raw[field] is None or raw[field] == "":
            continue
        text = _clean_string(raw[field])
        if text is None:
            drop(field, "not text")
        elif len(text) > MAX_CHARS[field]:
            drop(field, f"longer than {MAX_CHARS[field]} characters")
        elif field == "url" and not _URL.fullmatch(text):
            drop(field, "not an http(s) address")
        elif text:
            out[field] = text
    if raw.get("kind") not in (None, ""):
        kind = _clean_string(raw["kind"])
        if kind is not None and kind.lower() in KINDS:
            out["kind"] = kind.lower()
        else:
            drop("kind", f"not one of {', '.join(KINDS)}")
    if raw.get("year") not in (None, ""):
        year = parse_year(raw["year"])
        if year is None:
            drop("year", f"not a year between {YEAR_RANGE[0]} and {YEAR_RANGE[1]}")
        else:
            out["year"] = year
    return out, warnings
