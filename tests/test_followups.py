"""Follow-ups carry the previous subject, not the whole previous question (issue 18, item 5):
a question with its own subject or in another language stands alone; a pronoun or a fragment
takes the previous subject. Rule tests, then the real index and a fake LLM server."""

from __future__ import annotations

import pytest
from fake_openai import FakeOpenAI, Reply

from rag.answering import Assistant, condense_question
from rag.answering.followups import is_follow_up, language


def _history(*questions: str) -> list[dict]:
    turns = []
    for q in questions:
        turns += [{"role": "user", "content": q}, {"role": "assistant", "content": "Een antwoord [1]."}]
    return turns


KNELPUNTEN = _history("Welke knelpunten ervaren gemeenten?")


# -- the rule ------------------------------------------------------------------------------------


def test_a_pronoun_takes_the_group_and_the_question_keeps_its_own_predicate():
    condensed = condense_question("En hoe tevreden zijn ze over de aansluiting?", KNELPUNTEN)
    assert condensed == "Hoe tevreden zijn gemeenten over de aansluiting?"
    assert "knelpunten" not in condensed.lower()


@pytest.mark.parametrize(
    "previous, question, expected",
    [
        ("Hoeveel samenwerkingsverbanden ervaren knelpunten?", "Hoe tevreden zijn ze over de aansluiting?",
         "Hoe tevreden zijn samenwerkingsverbanden over de aansluiting?"),  # what "hoeveel" counted
        ("Wat voor bureau is Oberon?", "Hoeveel medewerkers hebben ze in Utrecht?",
         "Hoeveel medewerkers hebben Oberon in Utrecht?"),  # a name first
        ("Which problems do municipalities run into?", "How satisfied are they with the connection?",
         "How satisfied are municipalities with the connection?"),  # not what "which" asked for
        ("Wat deed Oberon in 2018?", "Waar waren gemeenten toen nog mee bezig?",
         "Waar waren gemeenten in 2018 nog mee bezig?"),  # "toen" is the previous question's year
    ],
)
def test_pronouns_resolve_to_what_the_previous_question_named(previous, question, expected):
    assert condense_question(question, _history(previous)) == expected


@pytest.mark.parametrize(
    "previous, question",
    [
        ("Hoe tevreden zijn samenwerkingsverbanden over de aansluiting?", "Wie heeft het onderzoek gefinancierd?"),
        ("Waar zit Oberon?", "Voor wie is het onderzoek bedoeld?"),
        ("Hoeveel gemeenten werken integraal?", "Klopt het dat gemeenten positiever zijn dan samenwerkingsverbanden?"),
        ("Hoeveel pilots zijn er?", "Hoeveel gemeenten die integraal werken ervaren knelpunten?"),  # a relative "die"
        # "het" before an adverb that looks like an infinitive ("morgen") is the weather's, no pointer.
        ("Hoeveel procent van de samenwerkingsverbanden ervaart knelpunten?", "Wat voor weer wordt het morgen in Utrecht?"),
    ],
)
def test_a_question_with_its_own_subject_stands_alone(previous, question):
    assert condense_question(question, _history(previous)) == question
    assert not is_follow_up(question, _history(previous))


@pytest.mark.parametrize(
    "previous, question",
    [
        ("Hoe tevreden zijn gemeenten over de aansluiting?", "Who commissioned the study?"),
        ("Wat levert de samenwerking op?", "What about waiting lists for youth care?"),
        ("How many municipalities experience bottlenecks?", "Wat zijn de kansen om de aansluiting te versterken?"),
    ],
)
def test_a_question_in_another_language_stands_alone(previous, question):
    condensed = condense_question(question, _history(previous))
    assert not is_follow_up(question, _history(previous))
    assert condensed in (question, "Waiting lists for youth care?")  # at most the opener "What about" goes


def test_languages_are_told_apart_only_when_clear():
    assert language("And for municipalities?") == "en"
    assert language("En bij gemeenten?") == "nl"
    assert language("Who commissioned the study?") == "en"
    assert language("pilots?") is None  # both languages know the word: no switch is claimed


@pytest.mark.parametrize(
    "previous, question, rest",
    [
        ("Hoe hoog was de respons bij de samenwerkingsverbanden?", "En bij de gemeenten?", "bij de gemeenten"),
        ("Wat zijn de knelpunten?", "En bij gemeenten?", "bij gemeenten"),  # one plural: the asked thing
        ("Hoeveel pilots zijn er?", "En bij gemeenten?", "bij gemeenten"),  # what was counted stays
        ("Welke knelpunten ervaren samenwerkingsverbanden?", "En de oplossingen?", "de oplossingen"),
        ("Wat doet Oberon?", "Gemeenten?", "Gemeenten"),  # a capital that starts the question is no name
        ("Hoeveel procent van de gemeenten is tevreden over de aansluiting?", "En ontevreden?", "ontevreden"),
        ("Wat is het bezoekadres van Oberon?", "En het postadres?", "het postadres"),
        ("Hoeveel gemeenten werken integraal samen?", "Geldt dat ook voor samenwerkingsverbanden?",
         "Geldt dat ook voor samenwerkingsverbanden"),
    ],
)
def test_a_fragment_or_a_pointing_word_is_read_against_the_previous_question(previous, question, rest):
    assert condense_question(question, _history(previous)) == f"{previous.rstrip('?')} — {rest}?"


@pytest.mark.parametrize(
    "previous, question, condensed",
    [
        ("Hoeveel procent van de samenwerkingsverbanden ervaart knelpunten?", "En bij gemeenten?",
         "Hoeveel procent van de gemeenten ervaart knelpunten?"),
        ("What share of school partnerships experience bottlenecks?", "And for municipalities?",
         "What share of municipalities experience bottlenecks?"),
        ("Welke knelpunten ervaren samenwerkingsverbanden?", "En voor de scholen?", "Welke knelpunten ervaren de scholen?"),
        ("Hoe tevreden waren gemeenten in 2021 over de aansluiting?", "En in 2018?",
         "Hoe tevreden waren gemeenten in 2018 over de aansluiting?"),
        ("Hoeveel scholen doen mee in Veenmarke?", "En in Zuidhaven?", "Hoeveel scholen doen mee in Zuidhaven?"),
        ("What does Oberon do?", "And NRO?", "What does NRO do?"),
    ],
)
def test_a_fragment_that_names_another_group_year_or_place_takes_its_place(previous, question, condensed):
    assert condense_question(question, _history(previous)) == condensed


def test_a_pronoun_with_a_one_word_predicate_keeps_the_previous_topic():
    """"Waar zitten ze?" says too little to search by: the previous question comes along."""
    assert condense_question("Wat is hun postadres?", _history("Wat voor bureau is Oberon?")) == (
        "Wat voor bureau is Oberon — Wat is Oberon postadres?"
    )


def _turns(*pairs: tuple[str, str]) -> list[dict]:
    return [{"role": role, "content": text} for question, answer in pairs
            for role, text in (("user", question), ("assistant", answer))]


@pytest.mark.parametrize(
    "question, answer, follow_up, expected",
    [
        ("Welk bureau heeft het onderzoek uitgevoerd?", "Oberon, een onafhankelijk onderzoeks- en adviesbureau.",
         "Hoe kan ik ze telefonisch bereiken?", "Hoe kan ik Oberon telefonisch bereiken?"),
        ("Who carried out the research?", "Oberon, an independent research and consultancy firm.",
         "How many employees do they have?", "How many employees do Oberon have?"),  # not "carried out"
        # The assistant's own answer, with its lead and citation markers.
        ("Welk bureau deed het onderzoek?",
         "Volgens ‘Aansluiting onderwijs en jeugdhulp 2021 (projectpagina)’: Oberon is een onafhankelijk bureau. [1]",
         "Hoeveel mensen werken er bij hen in Utrecht?", "Hoeveel mensen werken er bij Oberon in Utrecht?"),
        ("Wie schreven in 2019 een artikel over de aansluiting?", "Marjolein Bomhof en Miriam Walraven.",
         "Bij welk blad werken ze?", "Bij welk blad werken Marjolein Bomhof en Miriam Walraven?"),
    ],
)
def test_a_pronoun_after_a_who_question_takes_the_name_the_answer_gave(question, answer, follow_up, expected):
    assert condense_question(follow_up, _turns((question, answer))) == expected


def test_a_chain_of_pronouns_keeps_the_name():
    history = _turns(("Welk bureau heeft het onderzoek uitgevoerd?", "Oberon, een onafhankelijk bureau."),
                     ("Hoe kan ik ze telefonisch bereiken?", "(030) 230 60 90 [1]"))
    assert "Oberon postadres" in condense_question("En wat is hun postadres?", history)


def test_without_a_name_in_the_answer_the_pronoun_takes_the_previous_group():
    history = _turns(("Welke gemeenten werken integraal samen?", "Dat staat niet in de beschikbare bronnen."))
    assert condense_question("Hoe tevreden zijn ze over de aansluiting?", history) == (
        "Hoe tevreden zijn gemeenten over de aansluiting?"
    )


def test_a_possessive_points_back_but_the_verb_zijn_does_not():
    history = _turns(("Bij wie kan ik terecht voor meer informatie?", "Bij Michiel van der Grinten."))
    assert "Michiel van der Grinten mailadres" in condense_question("Wat is zijn mailadres?", history)
    assert "Michiel van der Grinten email address" in condense_question(
        "What is his email address?", _turns(("Who is the contact person?", "Michiel van der Grinten of Oberon.")))
    knelpunten = _turns(("Welke knelpunten ervaren gemeenten?", "Onder meer wachtlijsten."))
    assert condense_question("Hoe tevreden zijn ze over de aansluiting?", knelpunten) == (
        "Hoe tevreden zijn gemeenten over de aansluiting?"
    )
    assert condense_question("Wat zijn de vijf werkzame factoren?", knelpunten) == "Wat zijn de vijf werkzame factoren?"


def test_sindsdien_takes_the_year_of_the_previous_question_or_its_answer():
    history = _turns(("Wanneer deed Oberon het vorige onderzoek?", "In 2018."))
    assert condense_question("Wat is er sindsdien veranderd in de aandacht voor de aansluiting?", history) == (
        "Wat is er sinds 2018 veranderd in de aandacht voor de aansluiting?"
    )


def test_a_chain_resolves_the_pronoun_to_the_latest_group():
    history = _history("Hoeveel samenwerkingsverbanden ervaren knelpunten?", "En gemeenten?")
    assert condense_question("Hoe tevreden zijn ze over de aansluiting?", history) == (
        "Hoe tevreden zijn gemeenten over de aansluiting?"
    )


def test_a_standalone_question_loses_its_chat_opener():
    history = _history("Welke knelpunten zijn er in de samenwerking tussen onderwijs en jeugdhulp?")
    assert condense_question("Oké, en waar liggen dan de oplossingen?", history) == "Waar liggen dan de oplossingen?"


# -- the assistant -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def assistant(corpus_index) -> Assistant:
    settings, index = corpus_index
    return Assistant(settings, index=index)


def test_a_pronoun_follow_up_answers_the_new_predicate_not_the_old_answer(assistant):
    """The issue's conversation: the second answer gave the knelpunten list again."""
    first = assistant.ask("Welke knelpunten ervaren gemeenten?")
    history = [{"role": "user", "content": "Welke knelpunten ervaren gemeenten?"},
               {"role": "assistant", "content": first.text}]
    answer = assistant.ask("En hoe tevreden zijn ze over de aansluiting?", history=history)
    assert not answer.refused
    assert "39% (zeer) tevreden" in answer.text, answer.text
    assert "wachtlijsten" not in answer.text, answer.text
    assert answer.condensed_question == "Hoe tevreden zijn gemeenten over de aansluiting?"


def test_a_new_subject_after_a_conversation_is_answered_as_asked(assistant):
    history = _history("Hoe tevreden zijn samenwerkingsverbanden over de aansluiting?")
    answer = assistant.ask("Wie heeft het onderzoek gefinancierd?", history=history)
    assert answer.condensed_question is None
    assert "NRO" in answer.text, answer.text


def test_the_llm_is_not_asked_to_rewrite_a_question_that_stands_alone(corpus_index, monkeypatch):
    """Only follow-ups go to the LLM rewrite; a question with its own subject is sent as asked."""
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    settings, index = corpus_index
    with FakeOpenAI(Reply("text", "91% van de gemeenten ervaart knelpunten [1].")) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        llm = Assistant(settings.with_overrides(llm="openai:fake-model", llm_timeout=10.0), index=index)
        answer = llm.ask("Hoeveel procent van de gemeenten ervaart knelpunten?", history=KNELPUNTEN)
        assert answer.condensed_question is None
        assert len(server.requests) == 1  # the answer only, no rewrite
        assert "Welke knelpunten" not in FakeOpenAI.content(server.requests[0], "user")
