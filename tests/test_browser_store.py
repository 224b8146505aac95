"""Two app replicas on one `chroma run` server, in a real browser: a PDF uploaded on A's Bronnen
page is answered on B without a restart, and once deleted on A's Bronnen page it is gone from B."""

from __future__ import annotations

import re
import time
import uuid

import pytest
from apphelpers import app_env
from conftest import SRC, copy_corpus, make_pdf, make_settings, store_contents
from test_browser import ANSWER_MS, STARTUP_SECONDS, _ask, _browser, _chat_page, sync_playwright  # noqa: F401

from rag.localserver import free_port, start_streamlit, stop_process, wait_for_http
from rag.store import Index

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ZONNEDORP = "Hoeveel pilots telt de Zonnedorpse aanpak?"
DEADLINE_S = 90  # generous: an ingest on a shared machine, then at most a second for the check


@pytest.fixture
def replicas(tmp_path, chroma_server, embedder):
    """(url A, url B, settings of A): two `streamlit run` on free ports, one shared corpus folder,
    one Chroma server, each its own empty RAG_INDEX_DIR; stopped afterwards."""
    collection = f"b-{uuid.uuid4().hex[:10]}"
    corpus = copy_corpus(tmp_path / "corpus")
    settings = make_settings(tmp_path / "a", corpus_dir=corpus, chroma_url=chroma_server, collection=collection)
    Index(settings, embeddings=embedder).ingest()
    procs, urls = [], []
    try:
        for name in ("a", "b"):
            port = free_port()
            env = {**app_env(tmp_path), "RAG_CORPUS_DIR": str(corpus), "RAG_INDEX_DIR": str(tmp_path / name / "index"),
                   "RAG_CHROMA_URL": chroma_server, "RAG_COLLECTION": collection, "PYTHONPATH": str(SRC)}
            log = tmp_path / f"streamlit-{name}.log"
            procs.append(start_streamlit(port, env, log))
            url = f"http://127.0.0.1:{port}"
            try:
                wait_for_http(f"{url}/_stcore/health", timeout=STARTUP_SECONDS, proc=procs[-1])
            except (RuntimeError, TimeoutError) as exc:
                raise RuntimeError(f"{exc}\n{log.read_text()[-3000:]}") from exc
            urls.append(url)
        yield urls[0], urls[1], settings
    finally:
        for proc in procs:
            stop_process(proc, timeout=15)


def _answer_until(page, assistant, question: str, wanted: bool) -> str:
    """Ask until the last answer does (or does not) say "37 pilots", or the deadline passes."""
    end = time.monotonic() + DEADLINE_S
    while True:
        count = assistant.count()
        _ask(page, question)
        message = assistant.nth(count)
        message.wait_for(timeout=ANSWER_MS)
        try:  # the answer is written at once; a refusal has no "37 pilots" to wait for
            message.get_by_text("37 pilots").first.wait_for(timeout=15_000)
        except Exception:  # noqa: BLE001 - playwright's TimeoutError: read whatever it says
            pass
        text = message.inner_text()
        if ("37 pilots" in text) == wanted or time.monotonic() > end:
            return text
        time.sleep(1)


def test_upload_in_a_is_answered_in_b_and_gone_after_delete_in_a(replicas, sync_playwright, tmp_path):  # noqa: F811
    url_a, url_b, settings = replicas
    pdf = make_pdf(tmp_path / "zonnedorp-2024.pdf", [
        "Zonnedorpse aanpak\n\nDe Zonnedorpse aanpak van thuiszitters telt 37 pilots in de regio Zonnedorp.\n"
        "Elke pilot koppelt een school aan een jeugdhulpaanbieder."])
    with sync_playwright() as pw:
        browser = _browser(pw)
        try:
            page_b, answers_b = _chat_page(browser, url_b)  # B is up and has answered nothing yet

            page_a = browser.new_page(viewport={"width": 1280, "height": 1000})
            page_a.goto(f"{url_a}/bronnen", wait_until="domcontentloaded")
            page_a.get_by_text("Document toevoegen").wait_for(timeout=ANSWER_MS)
            page_a.locator('input[type="file"]').set_input_files(str(pdf))
            page_a.get_by_text("zonnedorp-2024.pdf").first.wait_for(timeout=ANSWER_MS)  # uploaded to the server
            page_a.get_by_role("button", name="Toevoegen en indexeren").click()
            try:
                page_a.get_by_text("is toegevoegd").first.wait_for(timeout=ANSWER_MS)
            finally:
                page_a.screenshot(path=str(tmp_path / "a-upload.png"), full_page=True)

            text = _answer_until(page_b, answers_b, ZONNEDORP, wanted=True)
            assert "37 pilots" in text, text

            # Deleted through A's Bronnen page (no login configured: whoever uses this machine may).
            page_a.reload(wait_until="domcontentloaded")
            page_a.get_by_text("Document verwijderen").wait_for(timeout=ANSWER_MS)
            delete_form = page_a.get_by_test_id("stForm").filter(has=page_a.get_by_role("button", name="Verwijderen"))
            delete_form.get_by_test_id("stSelectbox").click()
            page_a.keyboard.type("zonnedorp-2024")
            page_a.get_by_text(re.compile(r"\(zonnedorp-2024\.pdf\)$")).first.click()
            page_a.get_by_text("Ja, verwijder dit document").click()
            page_a.get_by_role("button", name="Verwijderen").click()
            page_a.get_by_text("is verwijderd").first.wait_for(timeout=ANSWER_MS)
            assert not any(d.endswith("zonnedorp-2024.pdf") for d in store_contents(settings)["docs"])
            assert not (settings.corpus_dir / "zonnedorp-2024.pdf").exists()
            text = _answer_until(page_b, answers_b, ZONNEDORP, wanted=False)
            assert "37 pilots" not in text, text
        finally:
            browser.close()
