"""The assistant the fits analyse tuning questions with: one index per tuning corpus."""

from __future__ import annotations

from pathlib import Path

from ..config import Settings
from ..store import Index
from .assistant import Assistant


def tuning_assistant(corpus: Path, settings: Settings, work_dir: Path) -> Assistant:
    """An Assistant (no LLM) over `corpus`, indexed incrementally in its own folder under `work_dir`."""
    index_dir = Path(work_dir) / Path(corpus).resolve().as_posix().strip("/").replace("/", "_")
    local = settings.with_overrides(corpus_dir=corpus, index_dir=index_dir, chroma_url=None)
    index = Index(local)
    index.ingest()
    return Assistant(local, index.open(), chat_model=None)
