"""The real app in a real browser: `streamlit run` on 127.0.0.1, driven by Playwright + Chromium."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from apphelpers import FOLLOW_UP, KNELPUNTEN, app_env, make_root

from rag.localserver import CHROMIUM, CHROMIUM_ARGS, free_port, start_streamlit, stop_process, wait_for_http

STARTUP_SECONDS = 90
ANSWER_MS = 120_000  # the first question loads the embedding model

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
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = root / "streamlit.log"
    proc = start_streamlit(port, app_env(root), log)
    try:
        try:
            wait_for_http(f"{url}/_stcore/health", timeout=STARTUP_SECONDS, proc=proc)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{exc}\n{log.read_text()[-3000:]}") from exc
        yield url
    finally:
        stop_process(proc, timeout=15)


def _ask(page, question: str) -> None:
    box = page.get_by_placeholder("Stel een vraag over onderwijs en jeugdhulp…")
    box.fill(question)
    box.press("Enter")


def test_chat_answers_with_cited_passages_and_follow_up(server, sync_playwright, tmp_path):
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(server, wait_until="domcontentloaded")
            page.get_by_text("Voorbeeldvragen").wait_for(timeout=ANSWER_MS)
            assistant = page.locator('[data-testid="stChatMessage"]').filter(
                has=page.locator('[data-testid="stChatMessageAvatarAssistant"]')
            )

            _ask(page, KNELPUNTEN)
            first = assistant.nth(0)
            first.get_by_text("91%").first.wait_for(timeout=ANSWER_MS)
            source = first.locator('[data-testid="stExpander"] summary').filter(has_text="Factsheet").first
            source.wait_for()
            source.click()  # open the cited passage: the quoted sentence is highlighted
            first.locator('[data-testid="stExpander"] strong').filter(has_text="91%").first.wait_for()

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

            page.screenshot(path=str(tmp_path / "chat.png"), full_page=True)
        finally:
            browser.close()


def test_sources_page_shows_documents_and_what_is_missing(server, sync_playwright, tmp_path):
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
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
