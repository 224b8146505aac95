"""Errors a user can cause: each carries one English (CLI) and one Dutch (UI) sentence."""

from __future__ import annotations


class RagError(Exception):
    """Base class: `str(err)` is the English message, `err.dutch` the Dutch one."""

    exit_code = 1

    def __init__(self, message: str, dutch: str | None = None):
        super().__init__(message)
        self.dutch = dutch or message


class ConfigError(RagError):
    """A setting is invalid (unknown LLM scheme, missing model path, bad k)."""

    exit_code = 2


class IndexMissingError(RagError):
    """No index has been built yet."""

    exit_code = 2


class IndexMismatchError(RagError):
    """The index was built with another embedding model, or is damaged."""

    exit_code = 1


class IndexBusyError(RagError):
    """Another process is writing the index."""


class StoreWriteError(RagError):
    """The index could not be written: disk full, read-only, I/O error."""


class StoreUnavailableError(RagError):
    """The Chroma server cannot be reached."""


class QuestionError(RagError):
    """The question is empty or too long."""

    exit_code = 2


class LLMError(RagError):
    """The LLM server failed; callers fall back to the extractive answer."""
