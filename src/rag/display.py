"""Text from files and the environment, made safe for a terminal and a log.

A file name may hold ANSI escape codes, other control characters, bidirectional overrides
or bytes that are not UTF-8 (surrogate-escaped by Python); printed raw they recolour or
rewrite the terminal, reorder what the user reads, or crash the print. These are shown
as visible escapes instead (`\\x1b`, `\\u202e`).
"""

from __future__ import annotations

import logging
import re

# C0 and C1 controls, DEL, bidi embeddings/overrides/isolates, line/paragraph separators,
# and lone surrogates (undecodable bytes of a file name).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not valid UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: object) -> str:
    """`text` with every control or direction-changing character shown as an escape."""
    return _UNSAFE.sub(_escape, str(text))


def json_printable(text: str) -> str:
    """A JSON text with the characters `json.dumps(ensure_ascii=False)` leaves raw (C1 controls,
    bidi overrides, lone surrogates) written as \\u escapes; it still parses to the same value."""
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


class PrintableFilter(logging.Filter):
    """Escape the rendered message of every log record (tracebacks are left as they are)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: let logging report it
            return True
        record.msg, record.args = printable(message), ()
        return True
