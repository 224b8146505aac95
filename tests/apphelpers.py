"""Helpers shared by the app (AppTest) and browser tests: a temp corpus + index and its env vars."""

from __future__ import annotations

from pathlib import Path

from conftest import ROOT, copy_corpus, make_pdf, make_settings

from rag.config import Settings
from rag.store import Index

APP = ROOT / "app.py"
KNELPUNTEN = "Hoeveel procent van de gemeenten ervaart knelpunten?"
FOLLOW_UP = "En bij samenwerkingsverbanden?"
WEATHER = "Wat voor weer wordt het morgen in Utrecht?"
REFUSAL = "Dat staat niet in de beschikbare bronnen"


def app_env(root: Path) -> dict[str, str]:
    """RAG_* variables pointing the app at `root/corpus` and `root/index`, offline, extractive."""
    return {
        "RAG_CORPUS_DIR": str(root / "corpus"),
        "RAG_INDEX_DIR": str(root / "index"),
        "RAG_LLM": "none",
        "RAG_CHROMA_URL": "",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }


def settings_for(root: Path) -> Settings:
    """The Settings the app sees for a root made by `make_root`."""
    return make_settings(root, llm="none")


def make_root(root: Path, corpus: bool = True, index: bool = True) -> Path:
    """A copy of the shipped corpus under `root/corpus` (or an empty folder), optionally indexed."""
    root.mkdir(parents=True, exist_ok=True)
    if corpus:
        copy_corpus(root / "corpus")
    else:
        (root / "corpus").mkdir()
    if index:
        Index(settings_for(root)).ingest()
    return root


def pdf_bytes(tmp: Path, *lines: str) -> bytes:
    """The bytes of a one-page PDF with these lines (written with fpdf2)."""
    return make_pdf(tmp / "upload.pdf", ["\n".join(lines)]).read_bytes()
