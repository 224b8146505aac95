"""Faults: the Chroma server going away, `rag ingest` killed or run twice at once, and
index files corrupted or partly deleted.

Everything is real: `chroma run` servers and `python -m rag.cli` subprocesses on
127.0.0.1, the bundled embedding model, embedded Chroma. Related cases elsewhere:
tests/test_index.py (unreachable server at start-up, model mismatch, missing index),
tests/test_llm.py (LLM server faults). Strict xfails mark real bugs; they fail through
`_expect` (see tests/test_llm.py for why they avoid source tracebacks).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from apphelpers import APP, KNELPUNTEN, app_env
from click.testing import CliRunner
from conftest import (
    VENV_BIN,
    copy_corpus,
    free_port,
    make_settings,
    stop_process,
    store_contents,
    subprocess_env,
    wait_for_http,
)

from rag.answering import Assistant
from rag.cli import main
from rag.errors import IndexMismatchError, IndexMissingError, StoreUnavailableError
from rag.store import Index

pytestmark = pytest.mark.slow

REBUILD = "rag ingest --rebuild"
DUTCH_REBUILD = "bouw hem opnieuw op"


def _expect(ok: bool, message: str) -> None:
    """Fail without a source traceback (strict-xfail tests; see tests/test_llm.py::_expect)."""
    if not ok:
        pytest.fail(message, pytrace=False)


def _release(settings) -> None:
    """Forget this process's cached embedded-Chroma client for the index, as a fresh process would."""
    from rag.store.client import release_embedded

    release_embedded(settings)


def _cli_env(settings) -> dict:
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("RAG_")}
    env.update(RAG_INDEX_DIR=str(settings.index_dir), RAG_CORPUS_DIR=str(settings.corpus_dir), HF_HUB_OFFLINE="1")
    return env


def _run(settings, *args: str):
    return CliRunner().invoke(main, list(args), env=_cli_env(settings), catch_exceptions=True)


def _one_error_line(result) -> str:
    assert isinstance(result.exception, SystemExit), f"uncaught {result.exception!r}"
    assert "Traceback" not in result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def _consistency(settings) -> dict:
    """Catalog vs Chroma, read fresh: counts, ids, duplicates, the pending flag."""
    _release(settings)
    try:
        contents = store_contents(settings)
        count = Index(settings).collection().count()
    finally:
        _release(settings)
    return {"catalog": contents["catalog"], "per_doc": sum(d.chunks for d in contents["docs"].values()),
            "docs": len(contents["docs"]), "pending": "1" if contents["pending"] else "0",
            "stored": contents["stored"], "count": count, "records": contents["docs"],
            "lines": {cid for cid, _ in contents["lines"].values()}}


def _assert_consistent(state: dict) -> None:
    assert len(state["catalog"]) == len(set(state["catalog"])) == state["per_doc"]
    assert len(state["stored"]) == len(set(state["stored"])) == state["count"], "duplicate vector ids"
    assert sorted(state["stored"]) == sorted(state["catalog"]), "catalog and Chroma hold different chunks"
    assert state["pending"] == "0"
    assert all(d.state == "ready" for d in state["records"].values()), "a document without its answer lines"
    assert state["lines"] == set(state["catalog"]), "answer lines of chunks no document lists, or missing"


_SUBJECTS = ["De gemeente", "Het samenwerkingsverband", "De school", "Het wijkteam", "De jeugdarts", "De leerplichtambtenaar",
             "Het schoolbestuur", "De ouder", "De intern begeleider", "De zorgcoördinator"]
_VERBS = ["bespreekt", "organiseert", "evalueert", "financiert", "verbetert", "signaleert", "coördineert", "plant"]
_OBJECTS = ["de overgang naar het voortgezet onderwijs", "een onderwijszorgarrangement", "de aanpak van thuiszitten",
            "het overleg met de jeugdhulpaanbieder", "de wachtlijst voor specialistische hulp", "een pilot in de regio",
            "de inzet van een schoolmaatschappelijk werker", "de afspraken over vervoer", "het ondersteuningsplan"]
_PLACES = ["Almere", "Breda", "Delft", "Ede", "Gouda", "Hoorn", "Leiden", "Venlo", "Zwolle", "Assen", "Tiel", "Weert"]


def _write_generated(corpus: Path, count: int, seed: int) -> None:
    """`count` Markdown reports of varied Dutch sentences, two sections (two chunks) each."""
    rng = random.Random(seed)

    def sentence() -> str:
        return (f"{rng.choice(_SUBJECTS)} in {rng.choice(_PLACES)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} "
                f"voor {rng.randint(2, 400)} leerlingen in {rng.randint(2015, 2024)}.")

    for i in range(count):
        parts = [f"# Regioverslag {i:03d} {rng.choice(_PLACES)}"]
        for section in ("Aanpak", "Resultaten"):
            parts.append(f"## {section}\n\n" + " ".join(sentence() for _ in range(5)))
        (corpus / f"regioverslag-{i:03d}.md").write_text("\n\n".join(parts) + "\n", encoding="utf-8")


# -- the Chroma server stops mid-session ------------------------------------------------------------


class _ChromaServer:
    """`chroma run` on a fixed port and data path, so it can be stopped and started again."""

    def __init__(self, data: Path):
        self.port = free_port()
        self.data = data
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        chroma = VENV_BIN / "chroma"
        if not chroma.exists():
            pytest.skip("the `chroma` CLI is not installed in this environment")
        with open(self.data / "server.log", "ab") as log:
            self.proc = subprocess.Popen(
                [str(chroma), "run", "--host", "127.0.0.1", "--port", str(self.port), "--path", str(self.data / "db")],
                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
            )
        wait_for_http(f"{self.url}/api/v2/heartbeat", timeout=60, proc=self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None


@pytest.fixture
def chroma_restartable(tmp_path):
    server = _ChromaServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_chroma_server_stopped_mid_session_then_restarted(chroma_restartable, tmp_path, embedder, monkeypatch):
    from streamlit.testing.v1 import AppTest

    server = chroma_restartable
    copy_corpus(tmp_path / "corpus")
    settings = make_settings(tmp_path, chroma_url=server.url)
    Index(settings, embeddings=embedder).ingest()
    assistant = Assistant(settings)
    assert "91%" in assistant.ask(KNELPUNTEN).text

    server.stop()
    for _ in range(2):  # the first failure resets the connection; the second must fail just as clearly
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError) as info:
            assistant.ask(KNELPUNTEN)
        assert time.monotonic() - started < 30
        message = str(info.value)
        assert server.url in message and "Chroma" in message and "\n" not in message
        assert "Chroma-server is niet bereikbaar" in info.value.dutch

    # The app, pointed at the stopped server, shows one Dutch error instead of a traceback.
    for key, value in {**app_env(tmp_path), "RAG_CHROMA_URL": server.url}.items():
        monkeypatch.setenv(key, value)
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    assert not at.exception, at.exception
    at.chat_input[0].set_value(KNELPUNTEN).run()
    assert not at.exception, at.exception
    assert any("Chroma-server is niet bereikbaar" in e.value for e in at.error), [e.value for e in at.error]

    server.start()  # same port, same data
    answer = assistant.ask(KNELPUNTEN)  # the same Assistant reconnects
    assert "91%" in answer.text and not answer.refused
    at.chat_input[0].set_value(KNELPUNTEN).run()
    assert not at.exception, at.exception
    assert "91%" in [m for m in at.chat_message if m.name == "assistant"][-1].markdown[0].value


# -- `rag ingest` killed halfway ---------------------------------------------------------------------


def _wait_for(path: Path, pattern: str, proc: subprocess.Popen, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace") if path.exists() else ""
        if re.search(pattern, text):
            return text
        if proc.poll() is not None:
            raise AssertionError(f"ingest ended (code {proc.returncode}) before {pattern!r}:\n{text[-2000:]}")
        time.sleep(0.05)
    raise AssertionError(f"no {pattern!r} within {timeout}s:\n{path.read_text(errors='replace')[-2000:]}")


def test_ingest_killed_halfway_keeps_the_old_index_and_recovers(make_index, tmp_path, embedder):
    settings, index = make_index(embed_batch_size=16)  # the shipped corpus, indexed; progress every 64 chunks
    index.close()
    before = _consistency(settings)
    _assert_consistent(before)
    _write_generated(settings.corpus_dir, 80, seed=1)  # ~160 new chunks: more than two embedding batches

    stderr = tmp_path / "killed.stderr"
    with open(stderr, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "rag.cli", "ingest"], env=subprocess_env(settings, RAG_EMBED_BATCH_SIZE="16"),
                                cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=err)
    try:
        # Kill in the middle of embedding: once the bar counts a first stored batch (it shows 0 before).
        _wait_for(stderr, r"Embedding:.*\b[1-9]\d*/\d+", proc, timeout=300)
        time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL, "the ingest ended before it was killed"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    killed = _consistency(settings)
    print(f"\nkilled ingest: catalog {len(killed['catalog'])} chunks, Chroma {killed['count']} vectors, "
          f"pending={killed['pending']}")
    # Documents commit one by one: the old ones are untouched, every committed one is whole, and
    # the vectors of the one being written when the process died are listed by no record.
    assert set(before["catalog"]) <= set(killed["catalog"]), "the killed ingest lost committed chunks"
    assert set(killed["catalog"]) <= set(killed["stored"]), "a committed document misses chunk vectors"
    assert killed["pending"] == "1" and killed["count"] >= len(killed["catalog"])
    assert len(killed["records"]) < 82, "the ingest finished before it was killed"
    # Vectors of a document whose record was not committed yet are never retrieved (see also
    # tests/test_store.py); whether the kill left some depends on where in a batch it landed.
    old = Assistant(settings, index=Index(settings, embeddings=embedder).open())  # the previous index still answers (half-written vectors are invisible)
    try:
        answer = old.ask(KNELPUNTEN)
        assert "91%" in answer.text
        # Only chunks of committed documents: the shipped ones, or a report committed (searchable)
        # before the kill, which may rank for this question like any other document.
        assert answer.passages and {p.chunk_id for p in answer.passages} <= set(killed["catalog"])
        assert {p.doc_id for p in answer.passages} <= set(killed["records"])
    finally:
        old.index.close()
        _release(settings)

    done = subprocess.run([sys.executable, "-m", "rag.cli", "ingest", "--json"], env=subprocess_env(settings),
                          cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    report = json.loads(done.stdout)
    assert report["documents"] == 82 and report["chunks_total"] > 160
    after = _consistency(settings)
    _assert_consistent(after)
    assert len(after["catalog"]) == report["chunks_total"]
    fresh = Assistant(settings, index=Index(settings, embeddings=embedder).open())
    try:
        assert "91%" in fresh.ask(KNELPUNTEN).text
    finally:
        fresh.index.close()
        _release(settings)


# -- two ingests at once -----------------------------------------------------------------------------


def _reap(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_two_ingests_at_once_wait_or_refuse_and_never_corrupt(tmp_path):
    corpus = copy_corpus(tmp_path / "corpus")
    _write_generated(corpus, 40, seed=2)
    settings = make_settings(tmp_path, corpus_dir=corpus)
    env = subprocess_env(settings)
    with contextlib.ExitStack() as stack:
        procs = []
        for name in ("a", "b"):
            out = stack.enter_context(open(tmp_path / f"{name}.out", "wb"))
            err = stack.enter_context(open(tmp_path / f"{name}.err", "wb"))
            proc = subprocess.Popen([sys.executable, "-m", "rag.cli", "ingest", "--json"], env=env, cwd=tmp_path,
                                    stdout=out, stderr=err)
            stack.callback(_reap, proc)
            procs.append((proc, name))
        codes = [p.wait(timeout=600) for p, _ in procs]
    results = {name: (code, (tmp_path / f"{name}.out").read_text(), (tmp_path / f"{name}.err").read_text())
               for (_, name), code in zip(procs, codes)}
    for name, (code, out, err) in results.items():
        assert "Traceback" not in err, (name, err[-3000:])
        if code == 0:
            assert json.loads(out)["documents"] == 42
        else:  # refused after waiting for the lock: one clear line about the other ingest
            assert code == 1, (name, code, err[-2000:])
            assert "Another `rag ingest`" in err, err
    assert 0 in codes, results
    print(f"\ntwo ingests at once: exit codes {codes}; reports {[out.strip() for _, out, _ in results.values()]}")
    reports = [json.loads(out) for code, out, _ in results.values() if code == 0]
    if len(reports) == 2:  # the second waited, then found everything indexed
        assert min(r["added"] for r in reports) == 0
    state = _consistency(settings)
    _assert_consistent(state)
    assert state["docs"] == 42


def test_ingest_while_another_holds_the_lock_refuses_clearly(make_index):
    """The refusal path of the test above, without waiting out the CLI's 30 s lock timeout."""
    from rag.errors import IndexBusyError

    settings, index = make_index()
    before = index.info()
    with index.write_lock():
        started = time.monotonic()
        with pytest.raises(IndexBusyError) as info:
            Index(settings).ingest(lock_timeout=0.5)
        assert time.monotonic() - started < 10
    assert "Another `rag ingest`" in str(info.value) and "\n" not in str(info.value)
    assert "probeer het" in info.value.dutch
    assert index.info() == before
    assert index.ingest().unchanged == 2  # the lock is free again


# -- corrupted or partly deleted index files ---------------------------------------------------------


@pytest.fixture
def garbage_catalog(make_index):
    settings, index = make_index()
    index.close()
    _release(settings)
    (settings.index_dir / "chroma" / "chroma.sqlite3").write_bytes(random.Random(9).randbytes(8192))
    return settings


@pytest.fixture
def chroma_deleted(make_index):
    import shutil

    settings, index = make_index()
    index.close()
    _release(settings)
    shutil.rmtree(settings.index_dir / "chroma")
    return settings


def test_garbage_catalog_assistant_says_rebuild(garbage_catalog):
    with pytest.raises(IndexMismatchError) as info:
        Assistant(garbage_catalog)
    assert REBUILD in str(info.value) and "\n" not in str(info.value)
    assert DUTCH_REBUILD in info.value.dutch


def test_garbage_catalog_cli_search_says_rebuild(garbage_catalog):
    result = _run(garbage_catalog, "search", KNELPUNTEN)
    assert result.exit_code == 1
    assert REBUILD in _one_error_line(result)
    assert result.stdout == ""


def test_garbage_catalog_cli_ingest_says_rebuild(garbage_catalog):
    result = _run(garbage_catalog, "ingest")
    _expect(isinstance(result.exception, SystemExit), f"uncaught {result.exception!r}")
    _expect(REBUILD in result.stderr, result.stderr)


def test_garbage_catalog_app_shows_dutch_error(garbage_catalog, monkeypatch):
    from streamlit.testing.v1 import AppTest

    for key, value in app_env(garbage_catalog.index_dir.parent).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("RAG_CORPUS_DIR", str(garbage_catalog.corpus_dir))
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    _expect(not at.exception, f"app exception: {[e.message for e in at.exception]}")
    _expect(any(DUTCH_REBUILD in e.value for e in at.error), f"errors: {[e.value for e in at.error]}")


def test_garbage_catalog_rebuild_recovers(garbage_catalog):
    result = _run(garbage_catalog, "ingest", "--rebuild", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["documents"] == 2
    _assert_consistent(_consistency(garbage_catalog))
    assert "91%" in Assistant(garbage_catalog).ask(KNELPUNTEN).text


def test_emptied_catalog_says_ingest_and_ingest_recovers(make_index):
    settings, index = make_index()
    catalog = index.stores()[1]
    catalog.delete(list(catalog.all()))  # every document record gone, the vectors still there
    _release(settings)
    with pytest.raises(IndexMissingError) as info:
        Assistant(settings)
    assert "rag ingest" in str(info.value)
    report = Index(settings).ingest()  # the vectors are still there: upserts are idempotent
    assert report.documents == 2
    _assert_consistent(_consistency(settings))
    assert "91%" in Assistant(settings).ask(KNELPUNTEN).text


# Everything that defines the index lives in Chroma: without its folder there is no index.
def test_chroma_dir_deleted_assistant_says_ingest(chroma_deleted):
    with pytest.raises(IndexMissingError) as info:
        Assistant(chroma_deleted)
    assert "run `rag ingest`" in str(info.value) and "\n" not in str(info.value)


def test_chroma_dir_deleted_cli_search_says_ingest(chroma_deleted):
    result = _run(chroma_deleted, "search", KNELPUNTEN)
    assert result.exit_code == 2
    assert "run `rag ingest`" in _one_error_line(result)


def test_chroma_dir_deleted_app_indexes_the_corpus_again(chroma_deleted, monkeypatch):
    from streamlit.testing.v1 import AppTest

    for key, value in app_env(chroma_deleted.index_dir.parent).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("RAG_CORPUS_DIR", str(chroma_deleted.corpus_dir))
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    assert not at.exception, at.exception
    at.chat_input[0].set_value(KNELPUNTEN).run()
    assert not at.exception, at.exception
    assert "91%" in [m for m in at.chat_message if m.name == "assistant"][-1].markdown[0].value


def test_chroma_dir_deleted_plain_ingest_restores_or_says_rebuild(chroma_deleted):
    result = _run(chroma_deleted, "ingest", "--json")
    _release(chroma_deleted)
    if result.exit_code != 0:
        _expect(REBUILD in result.stderr, result.stderr)
        return
    try:
        Assistant(chroma_deleted).ask(KNELPUNTEN)
    except IndexMismatchError as exc:
        _expect(False, f"`rag ingest` exited 0 ({result.stdout.strip()}) but the index is broken: {exc}")


def test_chroma_dir_deleted_rebuild_recovers(chroma_deleted):
    result = _run(chroma_deleted, "ingest", "--rebuild", "--json")
    assert result.exit_code == 0, result.output
    _assert_consistent(_consistency(chroma_deleted))
    assert "91%" in Assistant(chroma_deleted).ask(KNELPUNTEN).text


def test_lexical_dir_deleted_is_rebuilt_silently(make_index):
    import shutil

    settings, index = make_index()
    index.close()
    shutil.rmtree(settings.index_dir / "lexical")
    answer = Assistant(settings).ask(KNELPUNTEN)
    assert "91%" in answer.text and any(p.lexical_rank for p in answer.passages)
    assert (settings.index_dir / "lexical").is_dir()
