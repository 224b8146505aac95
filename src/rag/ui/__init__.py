"""Streamlit pages of the assistant: `chat.py` and `sources.py` double as page scripts."""

from pathlib import Path

PAGES_DIR = Path(__file__).resolve().parent


def page_file(name: str) -> Path:
    """Absolute path of a page script in this package (for `st.Page`)."""
    return PAGES_DIR / f"{name}.py"
