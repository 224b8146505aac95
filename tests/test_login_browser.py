"""Curators and readers through a real OIDC provider (`oidc-provider-mock` on 127.0.0.1), a real
`streamlit run` configured against it, and a real Chromium."""

from __future__ import annotations

import os
import re
import secrets
import threading
from urllib.parse import urlparse

import pytest
from apphelpers import app_env, make_root, pdf_bytes
from conftest import SRC
from test_browser import _unavailable, sync_playwright  # noqa: F401 - the shared browser fixture

from rag.localserver import (
    CHROMIUM,
    CHROMIUM_ARGS,
    LOCALHOST,
    free_port,
    start_streamlit,
    stop_process,
    wait_for_http,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

STARTUP_SECONDS = 90
PAGE_MS = 60_000
INGEST_MS = 240_000  # the upload loads the embedding model and indexes the PDF
CURATOR = "curator@gemeente.example"
READER = "lezer@gemeente.example"
GROUP_CURATOR = "redacteur@partner.example"


@pytest.fixture(scope="module")
def oidc_provider():
    """An OpenID provider on 127.0.0.1 with a curator, a reader and a curator by group; its base URL."""
    try:
        import oidc_provider_mock
        import werkzeug.serving
    except ImportError:
        _unavailable("oidc-provider-mock is not installed (pip install -e '.[dev]')")
    users = [
        oidc_provider_mock.User(sub=CURATOR, claims={"email": CURATOR, "name": "Cora Curator", "groups": ["staf"]}),
        oidc_provider_mock.User(sub=READER, claims={"email": READER, "name": "Lex Lezer", "groups": ["lezers"]}),
        oidc_provider_mock.User(sub=GROUP_CURATOR, claims={"email": GROUP_CURATOR, "groups": ["bronbeheer"]}),
    ]
    app = oidc_provider_mock.app(user_claims=users, require_nonce=True)
    server = werkzeug.serving.make_server(LOCALHOST, free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://{LOCALHOST}:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def app_with_login(tmp_path_factory, sync_playwright, oidc_provider):  # noqa: F811
    """`streamlit run app.py` with `[auth]` secrets pointing at the provider; (url, root)."""
    root = make_root(tmp_path_factory.mktemp("login") / "root")
    port = free_port()
    url = f"http://{LOCALHOST}:{port}"
    secrets_file = root / "secrets.toml"
    secrets_file.write_text(
        "[auth]\n"
        f'redirect_uri = "{url}/oauth2callback"\n'
        f'cookie_secret = "{secrets.token_hex(32)}"\n'
        'client_id = "onderwijs-jeugdhulp-test"\n'
        f'client_secret = "{secrets.token_hex(16)}"\n'
        f'server_metadata_url = "{oidc_provider}/.well-known/openid-configuration"\n',
        encoding="utf-8",
    )
    env = {**app_env(root), "RAG_CURATORS": f"{CURATOR}, bronbeheer",
           "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    log = root / "streamlit.log"
    proc = start_streamlit(port, env, log, extra_args=("--secrets.files", str(secrets_file)))
    try:
        try:
            wait_for_http(f"{url}/_stcore/health", timeout=STARTUP_SECONDS, proc=proc)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{exc}\n{log.read_text()[-3000:]}") from exc
        yield url, root
    finally:
        stop_process(proc, timeout=15)


def _local_only(page, outside: list[tuple[str, str]]) -> None:
    """Block every request that would leave this machine; note (its URL, the page's URL) in `outside`.
    (The provider's own login page asks a CDN for its style sheet; the app must ask nothing.)"""

    def route(r):
        host = urlparse(r.request.url).hostname
        if r.request.url.startswith(("data:", "blob:")) or host in (LOCALHOST, "localhost"):
            r.continue_()
        else:
            outside.append((r.request.url, r.request.frame.url))
            r.abort()

    page.route("**/*", route)


def _log_in(browser, url: str, who: str, outside: list[tuple[str, str]]):
    """A fresh browser context, logged in as `who` through the provider's form; the page on the app."""
    context = browser.new_context(viewport={"width": 1280, "height": 1200})
    page = context.new_page()
    _local_only(page, outside)
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_role("button", name="Inloggen").click(timeout=PAGE_MS)
    # The provider's page: one button per predefined user.
    page.get_by_role("button", name=who, exact=True).click(timeout=PAGE_MS)
    page.get_by_text(f"Ingelogd als {who}").wait_for(timeout=PAGE_MS)
    return context, page


def test_curator_uploads_and_the_change_log_names_them_reader_sees_no_changes(app_with_login, sync_playwright,  # noqa: F811
                                                                            tmp_path):
    url, root = app_with_login
    pdf = tmp_path / "rapport-Zonnedorp.pdf"
    pdf.write_bytes(pdf_bytes(tmp_path, "Zonnedorp jeugdhulp", "De gemeente Zonnedorp heeft 42 jeugdconsulenten."))
    outside: list[tuple[str, str]] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # Not logged in: the login button and nothing else.
            page = browser.new_page()
            _local_only(page, outside)
            page.goto(f"{url}/bronnen", wait_until="domcontentloaded")
            page.get_by_role("button", name="Inloggen").wait_for(timeout=PAGE_MS)
            assert page.get_by_text("Document toevoegen").count() == 0
            assert page.get_by_placeholder("Stel een vraag over onderwijs en jeugdhulp…").count() == 0
            page.close()

            context, page = _log_in(browser, url, CURATOR, outside)
            assert page.get_by_text(f"Ingelogd als {CURATOR} (beheerder)").is_visible()
            page.goto(f"{url}/bronnen", wait_until="domcontentloaded")
            page.get_by_text("Document toevoegen").wait_for(timeout=PAGE_MS)
            page.get_by_text("Document verwijderen").wait_for(timeout=PAGE_MS)
            page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(pdf))
            page.get_by_text(re.compile(r"^\d+(\.\d+)?KB$")).wait_for(timeout=PAGE_MS)  # the upload arrived
            page.get_by_role("button", name="Toevoegen en indexeren").click()
            page.get_by_text("U kunt er nu vragen over stellen").wait_for(timeout=INGEST_MS)
            row = page.locator('[data-testid="stTable"] tr').filter(has_text=CURATOR)
            row.first.wait_for(timeout=PAGE_MS)
            assert "toegevoegd" in row.first.inner_text() and "upload" in row.first.inner_text()
            assert (root / "corpus" / pdf.name).is_file()
            context.close()

            context, page = _log_in(browser, url, READER, outside)
            assert page.get_by_text(f"Ingelogd als {READER} (lezer)").is_visible()
            page.goto(f"{url}/bronnen", wait_until="domcontentloaded")
            page.get_by_text("alleen beheerders van de bronnen").wait_for(timeout=PAGE_MS)
            # Readers see the documents and who changed them, but no upload or delete.
            page.locator('[data-testid="stTable"] tr').filter(has_text=CURATOR).first.wait_for(timeout=PAGE_MS)
            assert page.get_by_text("Document toevoegen").count() == 0
            assert page.get_by_text("Document verwijderen").count() == 0
            assert page.locator('input[type="file"]').count() == 0
            assert page.get_by_role("button", name="Verwijderen").count() == 0
            # ... and can ask.
            page.goto(url, wait_until="domcontentloaded")
            page.get_by_placeholder("Stel een vraag over onderwijs en jeugdhulp…").wait_for(timeout=PAGE_MS)
            context.close()

            # A curator by group (RAG_CURATORS names the group "bronbeheer").
            context, page = _log_in(browser, url, GROUP_CURATOR, outside)
            assert page.get_by_text(f"Ingelogd als {GROUP_CURATOR} (beheerder)").is_visible()
            context.close()
        finally:
            browser.close()
    assert not [u for u, frame in outside if frame.startswith(url)], outside
