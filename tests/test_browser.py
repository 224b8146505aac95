"""The real app in a real browser: `streamlit run` on 127.0.0.1, driven by Playwright + Chromium."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
from apphelpers import FOLLOW_UP, KNELPUNTEN, app_env, make_root

from rag.index import Index
from rag.localserver import CHROMIUM, CHROMIUM_ARGS, free_port, start_streamlit, stop_process, wait_for_http

STARTUP_SECONDS = 90
ANSWER_MS = 120_000  # the first question loads the embedding model
# Words a policy adviser should not meet outside the answer's "Details" and the sidebar's "Instellingen".
JARGON = ("score", "semantisch", "BM25", "beantwoordbaarheid", "extractief", "MiniLM", "all-MiniLM", "e5-small")
# A tiny eval set for `rag eval`: one case passes, one fails (it expects a fact the sources do not state).
EVAL_CASES = [
    {"id": "fs-pilots", "user_input": "Aan hoeveel pilots werken samenwerkingsverbanden en gemeenten samen?",
     "reference": "Aan meer dan 200 pilots.", "facts": ["200"], "reference_doc_ids": ["factsheet-2021"],
     "answerable": True},
    {"id": "fs-knelpunten-budget", "user_input": "Hoeveel procent van de gemeenten ervaart knelpunten?",
     "reference": "91% van de gemeenten, vooral door een tekort van 3 miljoen euro.",
     "facts": ["91%", "3 miljoen euro"], "reference_doc_ids": ["factsheet-2021"], "answerable": True},
]

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _unavailable(reason: str) -> None:
    """Skip locally, but fail in CI, where the browser must be there."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def sync_playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed")
    if not Path(CHROMIUM).is_file():
        _unavailable(f"no Chromium at {CHROMIUM}")
    return sync_playwright


@pytest.fixture(scope="module")
def server(tmp_path_factory, sync_playwright):
    """`streamlit run app.py` on a free local port over a temp index; terminated afterwards."""
    root = make_root(tmp_path_factory.mktemp("browser") / "root")
    report = _eval_report(root)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = root / "streamlit.log"
    proc = start_streamlit(port, {**app_env(root), "RAG_EVAL_REPORT": str(report),
                                  "RAG_EVAL_DATASET": str(root / "gold.jsonl")}, log)
    try:
        try:
            wait_for_http(f"{url}/_stcore/health", timeout=STARTUP_SECONDS, proc=proc)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{exc}\n{log.read_text()[-3000:]}") from exc
        yield url
    finally:
        stop_process(proc, timeout=15)


def _eval_report(root: Path) -> Path:
    """The real `rag eval` on EVAL_CASES over the temp index: the JSON and Markdown the Evaluatie page reads."""
    from click.testing import CliRunner

    from rag.cli import main

    dataset = root / "gold.jsonl"
    dataset.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in EVAL_CASES), encoding="utf-8")
    report = root / "reports" / "latest.json"
    result = CliRunner().invoke(main, ["eval", "--dataset", str(dataset), "--json", str(report),
                                       "--report", str(report.with_suffix(".md"))], env=app_env(root))
    assert result.exit_code == 0, result.output
    return report


def _browser(pw):
    return pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def _jargon(text: str) -> list[str]:
    return [word for word in JARGON if word in text]


def _chat_page(browser, server, outside: list[str] | None = None):
    """A page on the chat with its example questions drawn, and the locator of assistant messages.
    Requests to any host but this machine are blocked, and their URLs added to `outside`."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})

    def keep_local(route):
        host = urlparse(route.request.url).hostname
        if route.request.url.startswith(("data:", "blob:")) or host in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            (outside if outside is not None else []).append(route.request.url)
            route.abort()

    page.route("**/*", keep_local)
    page.goto(server, wait_until="domcontentloaded")
    page.get_by_text("Voorbeeldvragen").wait_for(timeout=ANSWER_MS)
    assistant = page.locator('[data-testid="stChatMessage"]').filter(
        has=page.locator('[data-testid="stChatMessageAvatarAssistant"]')
    )
    return page, assistant


def _ask(page, question: str) -> None:
    box = page.get_by_placeholder("Stel een vraag over onderwijs en jeugdhulp…")
    box.fill(question)
    box.press("Enter")


def test_chat_answers_with_cited_passages_and_follow_up(server, sync_playwright, tmp_path):
    with sync_playwright() as pw:
        browser = _browser(pw)
        try:
            outside: list[str] = []
            page, assistant = _chat_page(browser, server, outside)

            _ask(page, KNELPUNTEN)
            first = assistant.nth(0)
            first.get_by_text("91%").first.wait_for(timeout=ANSWER_MS)
            source = first.locator('[data-testid="stExpander"] summary').filter(has_text="Factsheet").first
            source.wait_for()
            source.click()  # open the cited passage: the quoted sentence is highlighted
            first.locator('[data-testid="stExpander"] strong').filter(has_text="91%").first.wait_for()

            page.get_by_text("Voorbeeldvragen").wait_for(state="detached")  # the run is over: no stale elements
            # No scores or model names in sight: not in the answer, its open passage, or the sidebar.
            visible = page.locator('[data-testid="stMainBlockContainer"]').inner_text() + page.locator(
                '[data-testid="stSidebar"]').inner_text()
            assert "91%" in visible and "Instellingen" in visible
            assert not _jargon(visible), _jargon(visible)
            page.screenshot(path=str(tmp_path / "chat-answer.png"), full_page=True)
            details = first.locator('[data-testid="stExpander"] summary').filter(has_text="Details")
            details.click()  # the scores are there, one click away
            first.get_by_text("BM25").first.wait_for()
            assert "semantisch" in first.inner_text()

            _ask(page, FOLLOW_UP)
            second = assistant.nth(1)
            second.get_by_text("95%").first.wait_for(timeout=ANSWER_MS)
            assert assistant.count() == 2
            cited = second.locator('[data-testid="stExpander"] summary').filter(has_text="Factsheet")
            assert cited.count() >= 1
            for i in range(cited.count()):
                cited.nth(i).click()
            second.locator('[data-testid="stExpander"] strong').filter(has_text="95%").first.wait_for()
            assert page.locator('[data-testid="stException"]').count() == 0
            # Offline means offline: nothing on the page (fonts, the tab icon) is fetched from elsewhere.
            assert outside == [], outside

            page.screenshot(path=str(tmp_path / "chat.png"), full_page=True)
        finally:
            browser.close()


def test_sources_page_shows_documents_and_what_is_missing(server, sync_playwright, tmp_path):
    with sync_playwright() as pw:
        browser = _browser(pw)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(f"{server}/bronnen", wait_until="domcontentloaded")
            page.get_by_text("Rapport ontbreekt").wait_for(timeout=ANSWER_MS)
            page.get_by_text("Handreiking ontbreekt").wait_for()
            page.locator('[data-testid="stDataFrame"]').wait_for()
            page.locator('[data-testid="stFileUploader"]').wait_for()
            page.get_by_text("Veel knelpunten").first.wait_for()
            assert page.locator('[data-testid="stException"]').count() == 0
            page.screenshot(path=str(tmp_path / "sources.png"), full_page=True)
        finally:
            browser.close()


def test_too_long_question_keeps_its_text(server, sync_playwright, tmp_path):
    question = KNELPUNTEN + " " + "Graag een uitgebreide toelichting met alle details. " * 100
    assert len(question) > 5000
    with sync_playwright() as pw:
        browser = _browser(pw)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(server, wait_until="domcontentloaded")
            page.get_by_text("Voorbeeldvragen").wait_for(timeout=ANSWER_MS)
            _ask(page, question)
            page.get_by_text("De vraag is te lang").wait_for(timeout=ANSWER_MS)
            editor = page.locator('[data-testid="stTextArea"] textarea')
            editor.wait_for()
            assert editor.input_value() == question  # kept, to be shortened rather than retyped
            page.screenshot(path=str(tmp_path / "too-long.png"), full_page=False)
            editor.fill(KNELPUNTEN)
            editor.press("Control+Enter")  # commit the edit, then send it
            page.get_by_role("button", name="Vraag versturen").click()
            assistant = page.locator('[data-testid="stChatMessage"]').filter(
                has=page.locator('[data-testid="stChatMessageAvatarAssistant"]'))
            assistant.first.get_by_text("91%").first.wait_for(timeout=ANSWER_MS)
            page.locator('[data-testid="stTextArea"]').wait_for(state="detached")  # sent: the editor is gone
            assert page.locator('[data-testid="stException"]').count() == 0
        finally:
            browser.close()


def test_evaluation_page_shows_questions_and_a_readable_table(server, sync_playwright, tmp_path):
    failing = EVAL_CASES[1]
    with sync_playwright() as pw:
        browser = _browser(pw)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(f"{server}/evaluatie", wait_until="domcontentloaded")
            label = page.locator('[data-testid="stExpander"] summary').filter(has_text=failing["user_input"])
            label.wait_for(timeout=ANSWER_MS)
            main = page.locator('[data-testid="stMainBlockContainer"]')
            assert failing["id"] not in main.inner_text()  # the question, not the dataset id
            label.click()
            page.get_by_text(failing["reference"]).wait_for()  # what was expected ...
            page.get_by_text("Geantwoord").wait_for()  # ... next to what was answered
            assert failing["id"] in main.inner_text()  # the id only inside, for maintainers
            assert "Evaluatieset" in main.inner_text() and "Geëvalueerd op" in main.inner_text()  # what it ran on

            table = page.locator('[data-testid="stTable"]')
            table.wait_for()
            assert "Feitenrecall (feiten in het antwoord)" in table.inner_text()  # whole labels, not clipped
            fits = "e => e.scrollWidth <= e.clientWidth + 1"
            assert table.evaluate(fits)
            code = page.locator('[data-testid="stCode"]').last
            assert "--json evals/reports/latest.json" in code.inner_text()
            assert code.locator("pre").evaluate(fits)  # the whole command in sight, no hidden scroll
            assert page.locator('[data-testid="stException"]').count() == 0
            page.screenshot(path=str(tmp_path / "evaluatie.png"), full_page=True)
        finally:
            browser.close()


def test_what_a_policy_adviser_asks_first(server, sync_playwright, tmp_path):
    """The report is missing and the chat says so with a link to Bronnen; a summary question is answered
    with citations; the satisfaction chart reads as numbers with their labels."""
    with sync_playwright() as pw:
        browser = _browser(pw)
        try:
            page, assistant = _chat_page(browser, server)

            _ask(page, "Wat zegt het rapport over wachtlijsten?")
            first = assistant.nth(0)
            first.get_by_text("rapport", exact=False).first.wait_for(timeout=ANSWER_MS)
            first.locator('a[href*="bronnen"]').first.wait_for()  # where to add it
            assert "nog niet" in first.inner_text() and "toegevoegd" in first.inner_text()
            page.screenshot(path=str(tmp_path / "missing-report.png"), full_page=False)

            _ask(page, "Geef me een samenvatting van het onderzoek")
            second = assistant.nth(1)
            second.get_by_text("Bronnen").first.wait_for(timeout=ANSWER_MS)
            text = second.inner_text()
            assert "[1]" in text and "[2]" in text, text  # cited, from more than one document
            assert "Dat staat niet" not in text

            _ask(page, "Hoe tevreden zijn samenwerkingsverbanden over de aansluiting?")
            third = assistant.nth(2)
            third.get_by_text("33% (zeer) ontevreden").first.wait_for(timeout=ANSWER_MS)
            assert "27% (zeer) tevreden" in third.inner_text()
            visible = page.locator('[data-testid="stMainBlockContainer"]').inner_text()
            assert not _jargon(visible), _jargon(visible)
            assert page.locator('[data-testid="stException"]').count() == 0
            page.screenshot(path=str(tmp_path / "adviser.png"), full_page=False)
        finally:
            browser.close()


# Enough pages that the panel, redrawn every second, catches the encoding at several points: at 30
# (one passage a page) the ONNX encoder was done with the passages between two redraws, and at 80 a
# faster machine showed only two of its steps.
PAGES_UPLOADED = 240


def test_upload_on_bronnen_shows_stages_and_pages_while_a_worker_ingests(sync_playwright, tmp_path):
    """A 240-page PDF uploaded on Bronnen: the app queues it and starts a `rag worker`; the panel at
    the top moves through its stages and pages without a click; the table shows the page count;
    the same bytes under another name are reported as a duplicate. The worker leaves with the app."""
    from apphelpers import settings_for
    from conftest import SRC, make_pdf
    from test_worker import kwartelveld_pages

    from rag.ingest.worker import worker_running

    root = make_root(tmp_path / "root")
    pdf = make_pdf(tmp_path / "upload" / "wijkrapport-kwartelveld.pdf", kwartelveld_pages(PAGES_UPLOADED),
                   title="Wijkrapport Kwartelveld")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = root / "streamlit.log"
    proc = start_streamlit(port, {**app_env(root), "PYTHONPATH": str(SRC)}, log)
    try:
        wait_for_http(f"{url}/_stcore/health", timeout=STARTUP_SECONDS, proc=proc)
        with sync_playwright() as pw:
            browser = _browser(pw)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                page.goto(f"{url}/bronnen", wait_until="domcontentloaded")
                page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(pdf))
                page.locator('[data-testid="stFileChip"]').wait_for(timeout=ANSWER_MS)
                page.get_by_role("button", name="Toevoegen en indexeren").click()
                panel = page.get_by_text("Verwerking", exact=True)
                panel.wait_for(timeout=ANSWER_MS)
                # The panel redraws itself; collect what it says until the job is done.
                seen: list[str] = []
                done = page.get_by_text("pdf: antwoordregels klaar.", exact=False)
                for _ in range(6000):
                    bars = page.locator('[data-testid="stProgress"]').all_inner_texts()
                    seen += [b for b in bars if b and (not seen or seen[-1] != b)]
                    if done.count():
                        break
                    page.wait_for_timeout(100)
                done.first.wait_for(timeout=ANSWER_MS)
                page.screenshot(path=str(tmp_path / "bronnen-klaar.png"), full_page=True)
                # Parsing the generated pages takes well under a second, so the panel may show few of them;
                # encoding (passages, then their answer lines) takes most of the time and moves with
                # every 16 texts encoded.
                assert any("in de wachtrij" in s or "lezen" in s for s in seen), seen
                assert any("doorzoekbaar; antwoordregels maken —" in s for s in seen), seen
                encoded = {s for s in seen if "passages verwerken —" in s or "antwoordregels maken —" in s}
                assert len(encoded) >= 3, seen
                # The page reran by itself when the job finished: the research status names the new document
                # (the table is drawn on a canvas; its rows are checked in the catalog below).
                page.get_by_text("Wijkrapport Kwartelveld", exact=False).first.wait_for(timeout=ANSWER_MS)
                assert worker_running(settings_for(root))  # started by the app

                # The same bytes under another name.
                copy = tmp_path / "upload" / "kopie.pdf"
                copy.write_bytes(pdf.read_bytes())
                page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(copy))
                page.locator('[data-testid="stFileChip"]').wait_for(timeout=ANSWER_MS)
                page.get_by_role("button", name="Toevoegen en indexeren").click()
                page.get_by_text("byte voor byte hetzelfde bestand", exact=False).wait_for(timeout=ANSWER_MS)
                assert page.locator('[data-testid="stException"]').count() == 0
                page.screenshot(path=str(tmp_path / "bronnen-dubbel.png"), full_page=True)

                # The chat answers from the new document: the app process sees what the worker process wrote.
                chat, assistant = _chat_page(browser, url)
                _ask(chat, "Hoeveel jeugdconsulenten werken er in wijk 12 van Kwartelveld?")
                assistant.first.get_by_text("Bronnen").first.wait_for(timeout=ANSWER_MS)
                answer = assistant.first.inner_text()
                assert "Wijkrapport Kwartelveld, p. 12" in answer, answer  # cited from the page that says it
            finally:
                browser.close()
    except (RuntimeError, TimeoutError) as exc:
        raise RuntimeError(f"{exc}\n{log.read_text()[-3000:]}") from exc
    finally:
        stop_process(proc, timeout=15)
    settings = settings_for(root)
    docs = [d for d in Index(settings).documents() if "kwartelveld" in d["doc_id"]]
    assert [(d["pages"], Path(d["path"]).name) for d in docs] == [(PAGES_UPLOADED, "wijkrapport-kwartelveld.pdf")]
    deadline = time.monotonic() + 60
    while worker_running(settings) and time.monotonic() < deadline:  # it follows the app out
        time.sleep(0.5)
    assert not worker_running(settings)
