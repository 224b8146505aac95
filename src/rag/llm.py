"""Build the chat model from the RAG_LLM setting: none | ollama:MODEL | openai:MODEL."""

from __future__ import annotations

import os

from .config import Settings
from .errors import ConfigError

SCHEMES = ("none", "ollama:MODEL", "openai:MODEL")


def parse_llm_setting(value: str) -> tuple[str, str]:
    """Split 'scheme:model'; raise ConfigError listing the valid forms."""
    value = (value or "none").strip()
    if value.lower() in ("none", "", "extractive"):
        return "none", ""
    scheme, _, model = value.partition(":")
    scheme = scheme.lower()
    if scheme not in ("ollama", "openai") or not model.strip():
        raise ConfigError(
            f"RAG_LLM='{value}' is not valid; use one of: {', '.join(SCHEMES)}.",
            f"De instelling RAG_LLM='{value}' is ongeldig; gebruik none, ollama:MODEL of openai:MODEL.",
        )
    return scheme, model.strip()


def describe_llm(settings: Settings) -> str:
    """Human label for the active answerer."""
    scheme, model = parse_llm_setting(settings.llm)
    return "extractief" if scheme == "none" else f"{scheme}:{model}"


def build_chat_model(settings: Settings):
    """The LangChain chat model for settings.llm, or None for the extractive answerer."""
    scheme, model = parse_llm_setting(settings.llm)
    if scheme == "none":
        return None
    if scheme == "ollama":
        from langchain_ollama import ChatOllama

        return ChatOllama(
            model=model,
            base_url=os.environ.get("OLLAMA_HOST", "http://127.0.0.1:11434"),
            temperature=0,
            # Ollama's default 2048-token window silently drops passages.
            num_ctx=settings.ollama_num_ctx,
            # The answer-length cap: Ollama's own default (-1, "until the context is full")
            # lets a model that never stops write for minutes.
            num_predict=settings.llm_max_tokens,
            client_kwargs={"timeout": settings.llm_timeout},
        )
    from langchain_openai import ChatOpenAI

    base_url = os.environ.get("OPENAI_BASE_URL") or None
    return ChatOpenAI(
        model=model,
        base_url=base_url,
        # A local OpenAI-compatible server often needs no key; the client insists on one.
        api_key=os.environ.get("OPENAI_API_KEY") or "not-needed",
        temperature=0,
        timeout=settings.llm_timeout,
        max_retries=0,
        streaming=True,
        # The answer-length cap. langchain-openai sends max_tokens as
        # `max_completion_tokens` (OpenAI's current name), which llama.cpp's server and
        # other OpenAI-compatible servers ignore; for those (a base URL is set) the
        # classic `max_tokens` goes into the request body as well. OpenAI itself gets
        # only `max_completion_tokens` (its reasoning models reject `max_tokens`).
        max_tokens=settings.llm_max_tokens,
        extra_body={"max_tokens": settings.llm_max_tokens} if base_url else None,
    )
