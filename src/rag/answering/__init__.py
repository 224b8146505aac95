"""Questions -> cited Answers. One concern per module:

- questions: validation, instruction attacks, question kinds
- followups: making a follow-up stand alone
- refusal: whether the passages can answer
- extractive: the offline answerer (verbatim lines with [n])
- llm: the LLM answerer and its prompt
- assistant: `Assistant.ask`, which ties them together
"""

from .answer import (
    NOTE_LLM_DOWN,
    REFUSAL_INSTRUCTION,
    REFUSAL_MISSING_DOCUMENT,
    REFUSAL_NOT_IN_SOURCES,
    REFUSAL_TEXT,
    REFUSAL_TEXTS,
    Answer,
    Citation,
)
from .assistant import Assistant
from .extractive import ExtractiveAnswerer
from .followups import condense_question
from .llm import SYSTEM_PROMPT, LLMAnswerer, passages_block
from .questions import validate_question

__all__ = [
    "NOTE_LLM_DOWN", "REFUSAL_INSTRUCTION", "REFUSAL_MISSING_DOCUMENT", "REFUSAL_NOT_IN_SOURCES", "REFUSAL_TEXT",
    "REFUSAL_TEXTS", "SYSTEM_PROMPT", "Answer", "Assistant", "Citation", "ExtractiveAnswerer",
    "LLMAnswerer", "condense_question", "passages_block", "validate_question",
]
