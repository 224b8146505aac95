"""The learned reader on a policy text of the shape users bring: furniture, restated questions,
lists under an introducing line, quantities in words, padding lines, and what it does not say.

Real index (bundled model, embedded Chroma, BM25) over the shipped corpus plus one generated
report; the packaged reader, fusion and refusal models. No LLM."""

from __future__ import annotations

import numpy as np
import pytest

from rag.answering import Assistant, reader
from rag.answering.reader_fit import Question, _fit_weights, _standardisation, recall_at_1
from rag.answering.refusal import asked_type_missing
from rag.chunking import is_bare_list

pytestmark = pytest.mark.slow

REPORT = """---
title: Verkenning samenwerking onderwijs en jeugdhulp regio Noordkust
kind: rapport
year: 2019
publisher: Regio Noordkust
---
# Verkenning samenwerking onderwijs en jeugdhulp regio Noordkust

J. Jansen en P. Bakker, mei 2019

## Aanleiding

De regio zet al jaren in op samenwerking.
Klopt het dat scholen te weinig steun krijgen van de jeugdhulp?
Uit de gesprekken blijkt dat scholen vooral last hebben van lange wachttijden bij de jeugdhulp.

## Deelnemers aan de pilot

De regio zet al jaren in op samenwerking.
Er doen twaalf basisscholen en drie scholen voor voortgezet onderwijs mee aan de pilot.
Ouders beoordelen de ondersteuning op school gemiddeld met een 6,8.

## Uitgangspunten

De pilot is in 2018 gestart na een besluit van de gemeenteraad.
Daarbij gelden vier principes:

 • één kind, één plan
 • de school als vindplaats van zorgvragen
 • korte lijnen met het wijkteam
 • ouders als volwaardige partner

## Proeftuinen

De proeftuinen in de wijken van Noordkust richten zich vooral op
 • een jeugdhulpverlener in de klas
 • een vast aanspreekpunt voor ouders
 • snellere toegang tot het wijkteam
"""


@pytest.fixture(scope="module")
def assistant(tmp_path_factory, embedder):
    from conftest import copy_corpus, make_settings

    from rag.store import Index

    base = tmp_path_factory.mktemp("reader")
    corpus = copy_corpus(base / "corpus")
    (corpus / "verkenning-noordkust.md").write_text(REPORT, encoding="utf-8")
    settings = make_settings(base)
    index = Index(settings, embeddings=embedder)
    index.ingest()
    return Assistant(settings, index.open(), chat_model=None)


def quoted(answer) -> list[str]:
    return [q for c in answer.citations for q in c.quotes]


def test_quantity_in_words_is_the_answer_and_no_furniture_or_padding(assistant):
    answer = assistant.ask("Hoeveel scholen doen er mee met de proef in Noordkust?")
    assert not answer.refused, answer.text
    lines = quoted(answer)
    assert any("twaalf basisscholen" in q for q in lines), lines
    assert not any("Jansen" in q or q.startswith("Verkenning") for q in lines), lines
    assert not any(q.startswith("De regio zet al jaren") for q in lines), lines


def test_grade_matches_cijfer(assistant):
    answer = assistant.ask("Welk cijfer geven ouders aan de ondersteuning op school in Noordkust?")
    assert not answer.refused, answer.text
    assert any("6,8" in q for q in quoted(answer)), answer.text


def test_a_restated_question_is_not_its_own_answer(assistant):
    answer = assistant.ask("Klopt het dat scholen in Noordkust te weinig steun krijgen van de jeugdhulp?")
    assert not answer.refused, answer.text
    lines = quoted(answer)
    assert not any(q.rstrip().endswith("?") for q in lines), lines
    assert any("lange wachttijden" in q for q in lines), lines


def test_a_list_under_its_introducing_line_is_quoted_whole(assistant):
    answer = assistant.ask("Van welke uitgangspunten gaat de pilot in Noordkust uit?")
    assert not answer.refused, answer.text
    for item in ("één kind, één plan", "vindplaats", "korte lijnen", "volwaardige partner"):
        assert item in answer.text, answer.text


def test_a_list_under_a_line_without_a_colon_is_quoted_with_it(assistant):
    """PDF text often loses the colon of the line that introduces a list."""
    answer = assistant.ask("Waar richten de proeftuinen in Noordkust zich op?")
    assert not answer.refused, answer.text
    lines = quoted(answer)
    assert any(q.startswith("De proeftuinen in de wijken") for q in lines), lines
    assert any("jeugdhulpverlener in de klas" in q for q in lines), lines
    assert any("snellere toegang tot het wijkteam" in q for q in lines), lines


def test_items_without_bullets_are_quoted_as_items(corpus_index):
    settings, index = corpus_index
    answer = Assistant(settings, index, chat_model=None).ask("Wat levert de samenwerking op voor leerlingen?")
    assert not answer.refused, answer.text
    lines = answer.text.splitlines()
    assert "- minder thuiszitters [1]" in lines and "- thuis nabije hulp en ondersteuning [1]" in lines, answer.text
    assert "thuiszitters [1] thuis" not in answer.text, answer.text


def test_a_cost_the_text_does_not_give_is_refused(assistant):
    answer = assistant.ask("Wat kost de pilot in Noordkust per school?")
    assert answer.refused, answer.text


def test_answer_types_read_from_the_question():
    assert reader.asked_for("Hoeveel scholen doen mee?").quantity
    assert reader.asked_for("Welk cijfer geven ouders?").quantity
    assert reader.asked_for("Wat kost de pilot?").quantity
    assert reader.asked_for("Kan ik een laag verwijderen?").yes_no
    assert not reader.asked_for("Waarom duurt het zo lang?").yes_no
    assert reader.asked_for("Waarom duurt het zo lang?").reason
    assert reader.has_number("Er doen twaalf scholen mee")
    assert reader.has_number("vijfentwintig gemeenten")
    assert not reader.has_number("Er doet een school mee en de regio")
    assert asked_type_missing("Hoeveel scholen doen mee?", "De regio werkt samen.")
    assert asked_type_missing("Wat kost de pilot?", "Er doen twaalf scholen mee.")
    assert not asked_type_missing("Wat kost de pilot?", "De pilot kost € 45.000 per jaar.")
    assert not asked_type_missing("Hoeveel scholen doen mee?", "Er doen twaalf scholen mee.")


def test_a_grade_is_an_answer_type():
    for question in ("Welk cijfer geven ouders de hulp?", "Welk rapportcijfer geven scholen?",
                     "En wat geven de jeugdprofessionals zelf als cijfer?", "What rating do schools give?"):
        assert reader.asked_for(question).grade and reader.asked_for(question).quantity, question
    assert reader.asked_for("How do parents rate the youth care?").grade
    assert not reader.asked_for("Mag ik cijfers in de naam van een variabele gebruiken?").grade
    assert not reader.asked_for("What was the response rate of the survey?").grade  # a share, not a grade
    # A count or a table row is no grade; "een 6,4" and "7.2 on average" are.
    assert asked_type_missing("Welk cijfer geven ouders?", "Gemeente: Lindewaard — Leerlingen vo: 5.420, Thuiszitters: 36")
    assert not asked_type_missing("Welk cijfer geven ouders?", "Ouders geven de hulp gemiddeld een 6,4.")
    assert not asked_type_missing("What grade do parents give?", "Parents rate it 7.2 on average.")


def test_the_years_a_text_names():
    assert reader.years("Tussen 2019 en 2021 steeg het, in schooljaar 2022/23 daalde het") == {"2019", "2021", "2022"}
    assert reader.years("Er zijn 2019,5 uren en 12.2019 euro") == set()


def test_what_a_how_many_question_counts_and_a_number_of_it():
    assert reader.counted_noun("Hoeveel scholen doen mee aan de pilot?") == "scholen"
    assert reader.counted_noun("How many pupils were out of school?") == "pupils"
    assert reader.counted_noun("Hoeveel procent van de gemeenten ervaart knelpunten?") == "%"
    assert reader.counted_noun("Welke knelpunten ervaren gemeenten?") is None
    # A condensed follow-up counts what its own part counts.
    assert reader.counted_noun("Hoeveel gemeenten ervaren knelpunten — Waar lopen gemeenten dan op vast?") is None
    assert reader.gives_count_of("Er doen elf scholen mee aan de verkenning.", "scholen")
    assert reader.gives_count_of("Van de 40 scholen deden er 12 mee.", "scholen")
    assert reader.gives_count_of("Vrijwel alle gemeenten (91%) ervaren knelpunten", "%")
    assert not reader.gives_count_of("De regio telt zes gemeenten en een samenwerkingsverband.", "scholen")
    assert not reader.gives_count_of("De scholen werken samen met de gemeenten.", "scholen")


@pytest.mark.parametrize(
    "question",
    ["In welk jaar is het onderzoek gedaan?", "Aan hoeveel pilots werken ze?", "In opdracht van wie is het gedaan?",
     "Sinds wanneer hebben gemeenten die taken?", "For whom was the study written?"],
)
def test_a_question_word_after_an_opening_preposition_is_no_yes_no_question(question):
    assert not reader.asked_for(question).yes_no
    assert reader.asked_for("In de regio werken scholen samen, klopt dat?").yes_no


def test_a_condensed_follow_up_asks_what_its_own_part_asks():
    # The follow-up's own question decides: no quantity is asked after a "hoeveel" question ...
    own = reader.asked_for("Hoeveel gemeenten ervaren knelpunten — Waar lopen gemeenten dan vooral op vast?")
    assert not own.quantity
    assert reader.asked_for("Wat levert het op — Scheelt het ook in de papierwinkel?").yes_no
    subsidy = reader.asked_for("Wie heeft het onderzoek mogelijk gemaakt — Hoe hoog was die subsidie?")
    assert subsidy.quantity and not subsidy.person
    # ... while a fragment asks what the question before it asked.
    fragment = reader.asked_for("Hoeveel samenwerkingsverbanden ervaren knelpunten — bij gemeenten?")
    assert fragment.quantity and not fragment.yes_no
    assert reader.asked_for("Hoeveel procent van de gemeenten is tevreden — ontevreden?").quantity


@pytest.mark.parametrize(
    "question, kind",
    [
        ("Hoe kan ik ze telefonisch bereiken?", "phone"),
        ("Wat is het telefoonnummer van de helpdesk?", "phone"),
        ("Wat is zijn mailadres?", "email"),
        ("Wat is het e-mailadres van de contactpersoon?", "email"),  # not "address" from "...adres"
        ("What is his e-mail address?", "email"),
        ("En het postadres?", "address"),
        ("Waar is Oberon gevestigd?", "address"),
        ("Where is Oberon located?", "address"),
        ("How do municipalities address waiting lists?", None),  # "address" as a verb
        ("Wat is de link tussen onderwijs en jeugdhulp?", None),
        ("Hoeveel scholen doen mee?", None),
        # A condensed follow-up: its own words come last and say what is asked now.
        ("Hoe kan ik Oberon telefonisch bereiken — Wat is Oberon postadres?", "address"),
    ],
)
def test_a_contact_detail_is_an_answer_type(question, kind):
    assert reader.asked_for(question).contact == kind


def test_the_line_with_the_asked_contact_detail_is_the_answer(assistant):
    answer = assistant.ask("Hoe kan ik Oberon telefonisch bereiken?")
    assert not answer.refused, answer.text
    assert "230 60 90" in " ".join(quoted(answer)), answer.text


def test_bare_lines_in_a_row_become_items_but_sentences_and_wrapped_prose_do_not():
    assert is_bare_list(["minder thuiszitters", "tevreden ouders", "minder verwijzingen"])
    assert not is_bare_list(["Aan de slag", "Inhoudsopgave"])  # two lines are no list
    assert not is_bare_list(["Vrijwel alle", "gemeenten (91%) en", "samenwerkingsverbanden ervaren"])
    assert not is_bare_list(["minder thuiszitters", "Dit is een zin.", "tevreden ouders"])


def test_the_fit_learns_the_informative_feature_and_ranks_held_out_questions():
    """On synthetic questions where one feature marks the answer line, the conditional logit
    puts the answer line first on questions it was not fit on."""
    rng = np.random.default_rng(1)
    d = len(reader.FEATURES)
    target = reader.FEATURES.index("number_match")

    def question(i):
        matrix = rng.normal(size=(12, d)).astype(np.float32)
        matrix[:, target] = 0.0
        answer = int(rng.integers(12))
        matrix[answer, target] = 1.0
        labels = np.zeros(12, dtype=bool)
        labels[answer] = True
        return Question("synthetic", str(i), "q", ["f"], [], matrix, labels)

    train, held = [question(i) for i in range(60)], [question(i) for i in range(60, 90)]
    mean, scale = _standardisation(train)
    model = _fit_weights(train, mean, scale, hidden=0, penalty=0.1)
    assert int(np.argmax(np.abs(model["coef"]))) == target
    for q in held:
        q.scores = reader.scores(q.matrix, model)
    assert recall_at_1(held) == 1.0


def test_an_emoji_before_the_question_does_not_make_its_first_word_a_name():
    from rag.answering.questions import named_terms

    assert named_terms("🤔 Hoeveel procent van de gemeenten ervaart knelpunten? 📊") == []
    assert named_terms("Geldt dat ook in Vlaanderen?") == ["Vlaanderen"]


def _candidates(texts_and_scores, passage=0):
    from rag.answering.extractive import Candidate

    return [Candidate(text, passage, i, False, set(), set(), score=score) for i, (text, score) in enumerate(texts_and_scores)]


def test_the_best_lines_neighbour_comes_along_only_when_the_rule_says_so_and_it_fits():
    from rag.answering.extractive import choose_lines

    lines = _candidates([
        ("De regio zet al jaren in op samenwerking.", 0.0),
        ("Er zijn veel penselen voor andere tekenprogramma's.", 5.0),
        ("Sommige daarvan kunnen eenvoudig naar GIMP worden omgezet.", 1.0),
        ("Klopt het dat dit altijd werkt?", 0.5),
    ])
    rule = {"margin": 1.0, "other_margin": 0.0, "list_margin": 1.0, "max_lines": 4}
    assert [c.position for c in choose_lines("Kan ik penselen gebruiken?", lines, rule, 600)] == [1]
    with_next = {**rule, "after": 1, "before": 0, "neighbour_chars": 300}
    assert [c.position for c in choose_lines("Kan ik penselen gebruiken?", lines, with_next, 600)] == [1, 2]
    # A question is never a neighbour worth quoting, and the length cap holds.
    two_after = {**rule, "after": 3, "before": 1, "neighbour_chars": 120}
    chosen = [c.position for c in choose_lines("Kan ik penselen gebruiken?", lines, two_after, 600)]
    assert chosen == [1, 2]
    roomy = {**two_after, "neighbour_chars": 400}
    assert sorted(c.position for c in choose_lines("Kan ik penselen gebruiken?", lines, roomy, 600)) == [0, 1, 2]
    # A line that introduces a list is no neighbour: quoted without its items it dangles.
    from rag.answering.extractive import Candidate

    factsheet = _candidates([
        ("Vrijwel alle gemeenten (91%) ervaren knelpunten.", 5.0),
        ("veelgenoemd ...", 0.0),
    ]) + [Candidate(text, 0, i, True, set(), set(), score=0.0)
          for i, text in enumerate(["geen duidelijke kaders", "wachtlijsten"], start=2)]
    chosen = choose_lines("Hoeveel gemeenten ervaren knelpunten?", factsheet, roomy, 600)
    assert [c.position for c in chosen] == [0]
    # A table row's neighbours are other rows: records of their own, not a continuation.
    rows = _candidates([
        ("Regio: Gooi — Leerlingen: 1385, Thuiszitters: 9.", 5.0),
        ("Regio: IJmond — Leerlingen: 1422, Thuiszitters: 10.", 1.0),
    ])
    assert [c.position for c in choose_lines("Hoeveel thuiszitters in Gooi?", rows, roomy, 600)] == [0]


def _passage(doc_id: str, title: str = "Handreiking"):
    from rag.retrieval import Passage

    return Passage(chunk_id=f"{doc_id}#0", doc_id=doc_id, title=title, kind="doc", section=title, page=None,
                   text="", score=1.0)


def test_a_lead_names_the_documents_only_when_the_answer_quotes_several():
    from rag.answering.extractive import compose_answer

    one = _candidates([("Er doen twaalf scholen mee.", 1.0), ("Zij starten in 2022.", 0.5)])
    text, citations = compose_answer(one, [_passage("a.md", "Verkenning")])
    assert text == "Er doen twaalf scholen mee. [1] Zij starten in 2022. [1]" and len(citations) == 1
    two = one[:1] + _candidates([("De gemeente betaalt de coach.", 0.8)], passage=1)
    text, citations = compose_answer(two, [_passage("a.md", "Verkenning"), _passage("b.md", "Evaluatie")])
    assert text.startswith("Volgens ‘Verkenning’: Er doen twaalf scholen mee. [1]")
    assert "Volgens ‘Evaluatie’: De gemeente betaalt de coach. [2]" in text and len(citations) == 2


def test_the_rule_fit_keeps_median_answers_within_the_length_limit():
    """Quoting a long second line would find more facts, but makes the median answer longer
    than MAX_MEDIAN_CHARS: the fitted rule quotes one line."""
    from rag.answering.reader_fit import MAX_MEDIAN_CHARS, choose_rule

    def question(i):
        texts = [f"Het eerste antwoord {i} staat hier.", f"Het tweede antwoord {i} " + "en een lange uitleg " * 25]
        q = Question("synthetic", str(i), "Wat zijn de antwoorden?", [f"eerste antwoord {i}", f"tweede antwoord {i}"],
                     _candidates([(t, 0.0) for t in texts]), np.zeros((2, len(reader.FEATURES)), dtype=np.float32),
                     np.array([True, True]), passages=[_passage("doc.md")])
        q.scores = np.array([5.0, 4.9])
        return q

    assert len(question(0).candidates[1].text) > MAX_MEDIAN_CHARS
    rule, recall, chars = choose_rule([question(i) for i in range(10)])
    assert recall == 0.5 and chars < MAX_MEDIAN_CHARS and rule["max_lines"] == 1


def test_the_rule_fit_takes_the_next_line_when_answers_go_on_there():
    """Out-of-fold scores that rank the line before the answer first: the fitted rule brings
    the next line along; where the best line is the answer it adds nothing it need not."""
    from rag.answering.reader_fit import choose_rule

    def question(i, answer_next):
        texts = [f"Regel {i}-{j} over iets anders in deze passage." for j in range(6)]
        best, answer = 2, 3 if answer_next else 2
        texts[answer] = f"Het antwoord {i} staat in deze regel."
        matrix = np.zeros((6, len(reader.FEATURES)), dtype=np.float32)
        labels = np.arange(6) == answer
        q = Question("synthetic", str(i), "Waar staat het antwoord?", [f"Het antwoord {i}"],
                     _candidates([(t, 0.0) for t in texts]), matrix, labels, passages=[_passage("doc.md")])
        q.scores = np.where(np.arange(6) == best, 5.0, 0.0)
        return q

    rule, recall, _ = choose_rule([question(i, answer_next=True) for i in range(20)])
    assert rule.get("after", 0) >= 1 and recall == 1.0
    rule, recall, _ = choose_rule([question(i, answer_next=False) for i in range(20)])
    assert rule.get("after", 0) == 0 and rule.get("before", 0) == 0 and recall == 1.0
