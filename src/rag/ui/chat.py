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
MAYBE_RELEVANT = 2  # at most this many "Misschien relevant" passages under a refusal
EXCERPT_CHARS = 300
DRAFT_KEY = "draft_question"  # a rejected (too long) question, kept for editing


def _messages() -> list[dict]:
    return st.session_state.setdefault("messages", [])


def _new_conversation() -> None:
    st.session_state["messages"] = []
    st.session_state.pop(DRAFT_KEY, None)


def _ask_example(question: str) -> None:
    st.session_state["pending_question"] = question


def _ask_draft() -> None:
    st.session_state["pending_question"] = st.session_state.get(DRAFT_KEY, "")


def _history() -> list[dict]:
    return [{"role": m["role"], "content": m["content"]} for m in _messages() if m.get("content")]


def render_passage(passage, n: int | None = None, quote: str | list[str] | None = None) -> None:
    """One source passage in an expander: title, section and page in the label; the text with the
    quoted line(s) highlighted."""
    with st.expander(common.source_label(passage, n)):
        kind = common.KIND_LABELS.get(passage.kind, passage.kind)
        if kind:
            st.caption(common.escape_markdown(kind))
        common.show_passage(passage.text, quote)


def render_maybe_relevant(passage) -> None:
    """A passage shown under a refusal: its source and an excerpt, the whole text one click away."""
    with st.container(border=True):
        st.markdown(f"**{common.source_label(passage)}**")
        short = common.excerpt(common.link_text(passage.text), EXCERPT_CHARS)
        st.markdown(common.escape_markdown(short))
        if short.endswith("…"):
            with st.expander("Hele passage"):
                common.show_passage(passage.text)


def maybe_relevant(answer) -> list:
    """The passages worth showing under a refusal: only when the question was near the topic
    (the refusal model judged it close but the loaded documents do not answer it), at most
    MAYBE_RELEVANT; an off-topic question or an instruction gets none (they would be unrelated)."""
    from rag.answering.answer import REFUSAL_MISSING_DOCUMENT  # not at import: the first page must draw fast

    if answer.refusal_reason != REFUSAL_MISSING_DOCUMENT:
        return []
    return answer.passages[:MAYBE_RELEVANT]


def missing_documents_line(kinds: list[str], refused: bool) -> str:
    """"Het rapport is nog niet toegevoegd; voeg het toe op Bronnen." (plus, for an answer, what follows)."""
    names = [common.KIND_NAMES.get(k, k) for k in kinds]
    if not names:
        names = ["het document"]
    subject = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " en " + names[-1]
    verb, obj = ("is", "het") if len(names) == 1 else ("zijn", "ze")
    line = f"{subject[0].upper()}{subject[1:]} {verb} nog niet toegevoegd; voeg {obj} toe op Bronnen."
    if not refused:
        line += " Hieronder wat de beschikbare bronnen zeggen."
    return line


def _missing_documents(answer) -> None:
    st.info(common.escape_markdown(missing_documents_line(list(answer.missing_kinds or []), answer.refused)),
            icon=":material/note_add:")
    st.page_link(page_file("sources"), label="Naar Bronnen", icon=":material/description:")


def _details(answer) -> None:
    """Everything a maintainer wants and a policy adviser does not: the condensed question,
    the answerer, answerability and each passage's retrieval scores."""
    with st.expander("Details"):
        if answer.condensed_question:
            st.markdown(f"Gezochte vraag: {common.escape_markdown(answer.condensed_question)}")
        st.caption(f"Antwoord door: {common.inline_code(answer.backend)} · "
                   f"beantwoordbaarheid {answer.answerability:.2f}")
        if answer.passages:
            st.markdown("Gevonden passages (score · semantisch · BM25):")
            lines = []
            for i, p in enumerate(answer.passages, start=1):
                scores = [f"score {p.score:.3f}"]
                if p.dense_score is not None:
                    scores.append(f"semantisch {p.dense_score:.2f}")
                if p.lexical_score is not None:
                    scores.append(f"BM25 {p.lexical_score:.1f}")
                lines.append(f"{i}. {common.source_label(p)}: {' · '.join(scores)}")
            st.markdown("\n".join(lines))


def render_answer(answer) -> None:
    """An Answer: text (or a refusal, worded by its reason), a pointer to missing documents,
    notes, cited passages, and the retrieval details in a collapsed expander."""
    from rag.answering.answer import REFUSAL_INSTRUCTION, REFUSAL_MISSING_DOCUMENT

    reason = getattr(answer, "refusal_reason", None)
    missing = list(getattr(answer, "missing_kinds", None) or [])
    if answer.refused:
        if reason == REFUSAL_INSTRUCTION:
            st.info(common.escape_markdown(answer.text), icon=":material/info:")
        else:
            st.warning(common.escape_markdown(answer.text))
        if reason == REFUSAL_MISSING_DOCUMENT or missing:
            # The refusal itself names what is missing; only the way there is added.
            st.page_link(page_file("sources"), label="Naar Bronnen", icon=":material/description:")
        shown = maybe_relevant(answer)
        if shown:
            st.markdown("Misschien relevant:")
            for passage in shown:
                render_maybe_relevant(passage)
    else:
        if missing:
            _missing_documents(answer)
        st.markdown(common.answer_markdown(answer.text))
    for note in answer.notes:
        if not (answer.refused and reason == REFUSAL_INSTRUCTION):  # the refusal already says it
            st.info(note)
    if answer.citations:
        st.caption("Bronnen")
        for citation in answer.citations:
            render_passage(citation.passage, citation.n, citation.quoted_lines)
    _details(answer)


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
            if raw.strip():  # keep what was typed, so it can be shortened instead of retyped
                st.session_state[DRAFT_KEY] = raw
        else:
            st.session_state.pop(DRAFT_KEY, None)
    if _messages() or question:
        _replay()
    else:
        _empty_chat()
    if error:
        st.error(error)
    if st.session_state.get(DRAFT_KEY) and not question:
        _draft_editor(settings.max_question_chars)
    if question:
        _answer(question, settings)


def _draft_editor(max_chars: int) -> None:
    """The rejected question in an editable box, with its length, to shorten and send again."""
    draft = st.session_state.get(DRAFT_KEY, "")
    st.text_area("Uw vraag (maak hem korter en verstuur opnieuw)", key=DRAFT_KEY, height=200)
    length = len(" ".join(draft.split()))
    st.caption(f"{length} tekens; maximaal {max_chars}.")
    st.button("Vraag versturen", key="send_draft", on_click=_ask_draft, icon=":material/send:", type="primary")


if __name__ == "__main__":
    render()
