"""Curators and readers (rag.access) and the change log (rag.changelog): real Chroma, real index,
the real Bronnen page through AppTest, the real `rag ingest`."""

from __future__ import annotations

import getpass
import socket

import pytest
import streamlit as st
from apphelpers import app_env, make_root, pdf_bytes, settings_for
from click.testing import CliRunner
from conftest import SRC, make_settings
from streamlit.runtime.secrets import Secrets
from streamlit.testing.v1 import AppTest

from rag import access, changelog
from rag.cli import main
from rag.index import Index
from rag.ui.sources import delete_document, save_and_ingest

CURATOR = "curator@gemeente.example"
READER = "lezer@gemeente.example"
AUTH = {"auth": {"redirect_uri": "http://127.0.0.1:8501/oauth2callback", "cookie_secret": "x" * 32,
                 "client_id": "test", "client_secret": "test",
                 "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration"}}
SOURCES_PAGE = str(SRC / "rag" / "ui" / "sources.py")
TIMEOUT = 120
slow = pytest.mark.slow


def login(email: str, **claims) -> dict:
    return {"is_logged_in": True, "email": email, "sub": email, **claims}


@pytest.fixture
def login_configured(monkeypatch):
    """Streamlit secrets with an [auth] section, as `.streamlit/secrets.toml` would give them."""
    secrets = Secrets()
    secrets._secrets = AUTH
    monkeypatch.setattr(st, "secrets", secrets)


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    return make_root(tmp_path_factory.mktemp("access") / "root")


# -- who is a curator ---------------------------------------------------------------
def test_curators_by_address_domain_and_group(tmp_path):
    settings = make_settings(tmp_path, curators=f" {CURATOR.upper()}, @partner.example; bronbeheer ")

    def curator(user: dict) -> bool:
        return access.is_curator(access.login_actor(user, settings), settings)

    assert curator(login(CURATOR))  # case does not matter
    assert curator(login("iemand@partner.example"))  # the whole domain
    assert not curator(login("iemand@nietpartner.example"))  # a domain is matched whole
    assert not curator(login("partner.example@evil.example"))
    assert curator(login(READER, groups=["lezers", "Bronbeheer"]))  # a group
    assert curator(login(READER, groups="lezers bronbeheer"))  # a group claim given as one string
    assert not curator(login(READER, groups=["lezers"]))
    assert not curator(login(CURATOR, email_verified=False))  # the provider does not vouch for the address
    assert access.login_actor({"is_logged_in": False, "email": CURATOR}, settings) is None
    assert access.login_actor({"email": CURATOR}, settings) is None
    other_claim = make_settings(tmp_path, curators="bronbeheer", groups_claim="roles")
    assert access.is_curator(access.login_actor(login(READER, roles=["bronbeheer"]), other_claim), other_claim)
    nobody = make_settings(tmp_path)
    assert not access.is_curator(access.login_actor(login(CURATOR), nobody), nobody)  # RAG_CURATORS unset


def test_without_login_the_app_user_may_change_with_login_only_curators(tmp_path, monkeypatch):
    settings = make_settings(tmp_path, curators=CURATOR)
    assert access.may_change(access.local_actor(), settings)  # no [auth]: this machine only
    assert access.may_change(access.os_actor(), settings)
    assert not access.may_change(None, settings)
    secrets = Secrets()
    secrets._secrets = AUTH
    monkeypatch.setattr(st, "secrets", secrets)
    assert access.login_configured()
    assert not access.may_change(access.local_actor(), settings)  # login configured: nobody anonymous
    assert not access.may_change(access.system_actor(), settings)
    assert access.may_change(access.login_actor(login(CURATOR), settings), settings)
    assert not access.may_change(access.login_actor(login(READER), settings), settings)
    with pytest.raises(access.NotAllowed) as refused:
        access.require_curator(access.login_actor(login(READER), settings), settings)
    assert READER in str(refused.value) and "beheerders" in refused.value.dutch


# -- the actions refuse a reader, whoever calls them ---------------------------------
@slow
def test_upload_and_delete_refuse_a_reader_and_record_a_curator(tmp_path, monkeypatch, login_configured):
    root = make_root(tmp_path / "root")
    settings = settings_for(root).with_overrides(curators=CURATOR)
    corpus_before = sorted(p.name for p in (root / "corpus").iterdir())
    reader = access.login_actor(login(READER), settings)
    pdf = pdf_bytes(tmp_path, "Zonnedorp", "De gemeente Zonnedorp heeft 42 jeugdconsulenten.")
    for actor in (reader, None, access.local_actor()):  # a reader; nobody (login is configured)
        with pytest.raises(access.NotAllowed):
            save_and_ingest(pdf, "rapport-zonnedorp.pdf", settings, actor=actor)
        with pytest.raises(access.NotAllowed):
            delete_document("corpus/factsheet-2021.md", settings, actor=actor)
    assert sorted(p.name for p in (root / "corpus").iterdir()) == corpus_before
    assert [d["doc_id"] for d in Index(settings).documents()] == ["corpus/factsheet-2021.md",
                                                                  "corpus/projectpagina-2021.md"]
    assert changelog.recent(settings) == []

    curator = access.login_actor(login(CURATOR), settings)
    result = save_and_ingest(pdf, "rapport-zonnedorp.pdf", settings, actor=curator)
    assert not result.skipped and not result.warnings
    assert delete_document("corpus/projectpagina-2021.md", settings, actor=curator).endswith("(projectpagina)")
    assert not (root / "corpus" / "projectpagina-2021.md").exists()
    assert "corpus/projectpagina-2021.md" not in {d["doc_id"] for d in Index(settings).documents()}
    log = changelog.recent(settings)
    assert [(c.action, c.doc_id, c.who, c.via) for c in log] == [
        ("removed", "corpus/projectpagina-2021.md", CURATOR, "verwijderen"),
        ("added", "corpus/rapport-zonnedorp.pdf", CURATOR, "upload"),
    ]
    assert log[1].title == result.title and log[0].at >= log[1].at


# -- the Bronnen page (AppTest: real script runs, st.user seeded) ---------------------
def page(monkeypatch, root, user: dict | None, secrets: dict | None, **env) -> AppTest:
    for key, value in {**app_env(root), **env}.items():
        monkeypatch.setenv(key, value)
    at = AppTest.from_file(SOURCES_PAGE, default_timeout=TIMEOUT)
    if user is not None:
        at.user = user
    if secrets:
        at.secrets = secrets
    return at.run()


def test_bronnen_without_login_says_changes_are_local(indexed, monkeypatch):
    at = page(monkeypatch, indexed, None, None)
    assert not at.exception, at.exception
    assert any("niet per persoon vastgelegd" in i.value for i in at.info)
    assert any(b.label == "Toevoegen en indexeren" for b in at.button)  # as before: this machine may change


def test_bronnen_for_a_reader_has_no_upload_or_delete_even_with_forged_state(indexed, monkeypatch):
    at = page(monkeypatch, indexed, login(READER), AUTH, RAG_CURATORS=CURATOR)
    assert not at.exception, at.exception
    assert any("alleen beheerders van de bronnen" in i.value for i in at.info)
    assert any(i.value.startswith("Het rapport en de handreiking ontbreken nog") for i in at.info)
    assert not any("Upload" in i.value or "niet per persoon" in i.value for i in at.info)
    assert not at.file_uploader and not [b for b in at.button if b.label in ("Toevoegen en indexeren", "Verwijderen")]
    assert [s.value for s in at.subheader if s.value == "Wijzigingen"]
    # Session state is the browser's to shape: nothing in it makes a reader a curator.
    for key in ("curator", "is_curator", "role", "user", "actor"):
        at.session_state[key] = "curator" if key == "role" else True
    at.run()
    assert not at.file_uploader and not [b for b in at.button if b.label == "Verwijderen"]

    curator = page(monkeypatch, indexed, login(CURATOR), AUTH, RAG_CURATORS=CURATOR)
    assert curator.file_uploader and [b for b in curator.button if b.label == "Verwijderen"]


def forced_actions():
    """The upload and delete forms drawn for whoever is logged in: the hiding bypassed."""
    from rag.ui import common, sources

    settings = common.load_settings()
    sources._upload_form(settings)
    sources._delete_form(settings, common.index_documents(settings))


@slow
def test_a_reader_forcing_the_upload_and_delete_path_is_refused(tmp_path, monkeypatch):
    root = make_root(tmp_path / "root")
    corpus_before = sorted(p.name for p in (root / "corpus").iterdir())
    for key, value in {**app_env(root), "RAG_CURATORS": CURATOR}.items():
        monkeypatch.setenv(key, value)
    at = AppTest.from_function(forced_actions, default_timeout=TIMEOUT)
    at.user = login(READER)
    at.secrets = AUTH
    at.run()
    assert not at.exception, at.exception
    at.file_uploader[0].set_value(("rapport.pdf", pdf_bytes(tmp_path, "Zonnedorp heeft 42 consulenten."),
                                   "application/pdf"))
    next(b for b in at.button if b.label == "Toevoegen en indexeren").click().run()
    assert not at.exception, at.exception
    assert any("alleen beheerders" in e.value for e in at.error)
    at.checkbox[0].check()
    next(b for b in at.button if b.label == "Verwijderen").click().run()
    assert any("alleen beheerders" in e.value for e in at.error)
    assert sorted(p.name for p in (root / "corpus").iterdir()) == corpus_before
    assert len(Index(settings_for(root)).documents()) == 2
    assert changelog.recent(settings_for(root)) == []


# -- the command line records its operating-system user --------------------------------
@slow
def test_rag_ingest_records_the_os_user_and_keeps_the_log_over_a_rebuild(tmp_path, monkeypatch):
    root = make_root(tmp_path / "root", index=False)
    for key, value in app_env(root).items():
        monkeypatch.setenv(key, value)
    runner = CliRunner()
    assert runner.invoke(main, ["ingest"]).exit_code == 0
    (root / "corpus" / "projectpagina-2021.md").unlink()
    assert runner.invoke(main, ["ingest"]).exit_code == 0
    result = runner.invoke(main, ["ingest", "--rebuild"])
    assert result.exit_code == 0, result.output
    log = changelog.recent(settings_for(root))
    me = f"{getpass.getuser()}@{socket.gethostname()}"
    assert {(c.who, c.actor_kind, c.via) for c in log} == {(me, "os", "rag ingest")}
    assert [(c.action, c.doc_id) for c in sorted(log, key=lambda c: (c.at, c.action, c.doc_id))] == [
        ("added", "corpus/factsheet-2021.md"), ("added", "corpus/projectpagina-2021.md"),
        ("removed", "corpus/projectpagina-2021.md"),
        ("reindexed", "corpus/factsheet-2021.md"),  # the rebuild indexes it anew; the older records survive it
    ]


def test_without_login_the_app_serves_this_machine_only(indexed, monkeypatch):
    from apphelpers import APP
    from streamlit import config

    for key, value in app_env(indexed).items():
        monkeypatch.setenv(key, value)
    before = config.get_option("server.address")
    config.set_option("server.address", "0.0.0.0")
    try:
        at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
        assert any("alleen op deze computer" in e.value for e in at.error)
        assert not at.chat_input
        at.secrets = AUTH  # with login configured it may serve a team: the login screen instead
        at.user = {"is_logged_in": False}
        at.run()
        assert not at.error and [b for b in at.button if b.label == "Inloggen"] and not at.chat_input
    finally:
        config.set_option("server.address", before)
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert not at.error and at.chat_input


@slow
def test_the_change_log_is_shared_through_the_chroma_server(tmp_path, chroma_server):
    # Two app replicas: their own local folders, one Chroma server.
    collection = f"log{tmp_path.name[-20:].replace('_', '')}"
    a = make_settings(tmp_path / "a", chroma_url=chroma_server, collection=collection)
    b = make_settings(tmp_path / "b", chroma_url=chroma_server, collection=collection)
    curator = access.login_actor(login(CURATOR), a)
    assert changelog.record(a, curator, [("added", "corpus/x.pdf", "X")], "upload") == 1
    (change,) = changelog.recent(b)
    assert (change.who, change.action, change.doc_id, change.title) == (CURATOR, "added", "corpus/x.pdf", "X")
    assert changelog.collection_name(b) == f"{collection}-changes"
    assert not (tmp_path / "b" / "index").exists()  # nothing of it lives beside the replica


@slow
def test_the_first_index_of_the_corpus_is_recorded_as_the_app(tmp_path, monkeypatch):
    from apphelpers import APP

    root = make_root(tmp_path / "root", index=False)
    for key, value in app_env(root).items():
        monkeypatch.setenv(key, value)
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    log = changelog.recent(settings_for(root))
    assert sorted((c.action, c.doc_id, c.actor_kind, c.via) for c in log) == [
        ("added", "corpus/factsheet-2021.md", "system", "eerste start"),
        ("added", "corpus/projectpagina-2021.md", "system", "eerste start"),
    ]
    at.switch_page(SOURCES_PAGE).run()
    assert "de app (eerste start)" in at.table[-1].value["Wie"].tolist()
