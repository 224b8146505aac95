"""Chat page: ask questions, get cited answers; the history lives in st.session_state."""

from __future__ import annotations

import logging

import streamlit as st

from rag.ui import common, page_file

log = logging.getLogger(__name__)

EXAMPLES = (
    "Hoeveel procent van de gemeenten ervaart knelpunten?",
    "Wat zijn de vijf werkzame factoren?",
    "Hoe tevreden zijn samenwerkingsverbanden over de aansluiting?",
)
MAYBE_RELEVANT = 3


def _messages() -> list[dict]:
    return st.session_state.setdefault("messages", [])


def _new_conversation() -> None:
    st.session_state["messages"] = []


def _ask_example(question: str) -> None:
    st.session_state["pending_question"] = question


def _history() -> list[dict]:
    return [{"role": m["role"], "content": m["content"]} for m in _messages() if m.get("content")]


def _passage_label(n: int | None, passage) -> str:
    section = common.short_section(passage.title, passage.section)
    label = f"[{n}] " if n else ""
    label += passage.title + (f" — {section}" if section else "") + (f", p. {passage.page}" if passage.page else "")
    return common.escape_markdown(label)


def _passage_details(passage) -> str:
    kind = common.KIND_LABELS.get(passage.kind, passage.kind)
    parts = [f"{kind}", f"score {passage.score:.3f}"]
    if passage.dense_score is not None:
        parts.append(f"semantisch {passage.dense_score:.2f}")
    if passage.lexical_score is not None:
        parts.append(f"BM25 {passage.lexical_score:.1f}")
    return " · ".join(parts)


def render_passage(passage, n: int | None = None, quote: str | None = None) -> None:
    """One source passage in an expander: title, section, page, score, text with the quote highlighted."""
    with st.expander(_passage_label(n, passage)):
        st.caption(common.escape_markdown(_passage_details(passage)))
        st.markdown(common.passage_markdown(passage.text, quote))


def render_answer(answer) -> None:
    """An Answer: text (or a refusal), notes, cited passages and the search details."""
    if answer.refused:
        st.warning(answer.text)
        if answer.passages:
            st.markdown("Misschien relevant:")
            for passage in answer.passages[:MAYBE_RELEVANT]:
                render_passage(passage)
    else:
        st.markdown(common.answer_markdown(answer.text))
    for note in answer.notes:
        st.info(note)
    if answer.citations:
        st.caption("Bronnen")
        for citation in answer.citations:
            render_passage(citation.passage, citation.n, citation.quote)
    with st.expander("Details"):
        if answer.condensed_question:
            st.markdown(f"Gezochte vraag: {common.escape_markdown(answer.condensed_question)}")
        st.caption(f"Antwoord door: {answer.backend} · beantwoordbaarheid {answer.answerability:.2f}")


def _replay() -> None:
    for message in _messages():
        with st.chat_message(message["role"]):
            if message.get("answer") is not None:
                render_answer(message["answer"])
            elif message.get("error"):
                st.error(message["error"])
            else:
                st.markdown(common.escape_markdown(message["content"]))


def _answer(question: str, settings) -> None:
    from rag.errors import RagError

    history = _history()
    _messages().append({"role": "user", "content": question})
    with st.chat_message("user"):
        st.markdown(common.escape_markdown(question))
    with st.chat_message("assistant"):
        streamed = st.empty()
        pieces: list[str] = []

        def on_token(token: str) -> None:
            pieces.append(token)
            streamed.markdown(common.answer_markdown("".join(pieces)) + " ▌")

        from rag.embeddings import is_loaded

        waiting = (
            "Bronnen zoeken…"
            if is_loaded(settings.embed_model, settings.embed_batch_size)
            else "Eerste vraag: het taalmodel wordt geladen (eenmalig, enkele seconden)…"
        )
        try:
            with st.spinner(waiting):
                assistant = common.get_assistant(settings)
                answer = assistant.ask(question, history=history, k=st.session_state.get("k"), on_token=on_token)
        except RagError as exc:
            st.error(exc.dutch)
            _messages().append({"role": "assistant", "content": "", "error": exc.dutch})
            return
        except Exception:
            log.exception("answering failed")
            error = "Er ging iets mis bij het beantwoorden. Probeer het opnieuw of stel de vraag anders."
            st.error(error)
            _messages().append({"role": "assistant", "content": "", "error": error})
            return
        streamed.empty()
        render_answer(answer)
    _messages().append({"role": "assistant", "content": answer.text, "answer": answer})


def _empty_chat() -> None:
    st.markdown(
        "Stel een vraag over het onderzoek *Aansluiting onderwijs en jeugdhulp 2021* van Oberon. "
        "Elk antwoord noemt de passages waarop het steunt."
    )
    st.caption("Voorbeeldvragen")
    for i, question in enumerate(EXAMPLES):
        st.button(question, key=f"example-{i}", on_click=_ask_example, args=(question,))


def render() -> None:
    """The chat page."""
    from rag.answering import validate_question
    from rag.errors import QuestionError, RagError

    settings = common.load_settings()
    st.title("Vraag het de bronnen")
    st.sidebar.button("Nieuw gesprek", on_click=_new_conversation, icon=":material/add_comment:")
    typed = st.chat_input("Stel een vraag over onderwijs en jeugdhulp…")
    raw = typed if typed is not None else st.session_state.pop("pending_question", None)
    try:
        ready = common.ensure_index(settings)
    except RagError as exc:
        st.error(exc.dutch)
        return
    if not ready:
        st.page_link(page_file("sources"), label="Naar Bronnen", icon=":material/description:")
        return
    question = error = None
    if raw is not None:
        try:
            question = validate_question(raw, settings.max_question_chars)
        except QuestionError as exc:
            error = exc.dutch
    if _messages() or question:
        _replay()
    else:
        _empty_chat()
    if error:
        st.error(error)
    if question:
        _answer(question, settings)


if __name__ == "__main__":
    render()
