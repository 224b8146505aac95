"""Hostile input, identity half (issue 21): files that would replace another document, index
folders that are not ours, settings and disks that fail, file names that attack the terminal.

Each case goes through `rag` (CliRunner, or a child process where a mount namespace is needed)
and asserts: no traceback, the reason in one sentence, and the shipped answer intact afterwards
(the factsheet's 91% cited from `corpus/factsheet-2021.md`). Real Chroma, real embedding model.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from apphelpers import KNELPUNTEN
from click.testing import CliRunner
from conftest import ROOT, SRC, copy_corpus, make_pdf, store_contents, subprocess_env

from rag.cli import main
from rag.display import PrintableFilter, printable
from rag.evaluation import doc_metrics
from rag.store import CATALOG, MARKER

pytestmark = pytest.mark.slow

FACTSHEET = "corpus/factsheet-2021.md"
ASK = "Hoeveel gemeenten ervaren knelpunten?"
# A version of the factsheet from another folder that says the opposite.
IMPOSTOR = "---\ntitle: Factsheet (andere map)\n---\n# Factsheet\n\n## Knelpunten\n\nGeen enkele gemeente ervaart knelpunten (0%).\n"
# The last commit whose index keyed documents by the bare file stem.
OLD_VERSION = "06feccf72db4cbe145e4874bf849b0b62cfb7b8c"


def rag_env(base: Path, **extra: str | None) -> dict:
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("RAG_")}
    env.update(RAG_INDEX_DIR=str(base / "index"), RAG_CORPUS_DIR=str(base / "corpus"), HF_HUB_OFFLINE="1")
    env.update(extra)
    return env


def run(env: dict, *args: str):
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=True)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def one_error(result, code: int) -> str:
    """The one `Error: ...` line of a failed command."""
    assert result.exit_code == code, result.output
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("Error")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def ingest(env: dict, *args: str) -> dict:
    result = run(env, "ingest", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def assert_factsheet_answers(env: dict) -> None:
    """`rag ask` still answers from the shipped factsheet, with its 91%."""
    result = run(env, "ask", "--json", ASK)
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert "91%" in answer["answer"] and "0%)" not in answer["answer"], answer["answer"]
    assert FACTSHEET in {c["doc_id"] for c in answer["citations"]}, answer["citations"]


def _settings_for(index_dir: Path):
    from rag.config import Settings

    return Settings(index_dir=index_dir, corpus_dir=index_dir.parent / "corpus", chroma_url=None)


def chunk_ids(index_dir: Path, doc_id: str) -> list[str]:
    docs = store_contents(_settings_for(index_dir))["docs"]
    return list(docs[doc_id].chunk_ids) if doc_id in docs else []


@pytest.fixture
def base(tmp_path, monkeypatch, embedder):
    """tmp_path with a copy of the shipped corpus, run from there (no stray rag.toml)."""
    copy_corpus(tmp_path / "corpus")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def indexed(base):
    """(base, env) with the shipped corpus ingested through `rag ingest`."""
    env = rag_env(base)
    report = ingest(env)
    assert report["documents"] == 2
    return base, env


# -- document identity -------------------------------------------------------------------------


def test_other_folder_with_the_same_file_name_never_replaces_the_shipped_document(indexed):
    base, env = indexed
    before = chunk_ids(base / "index", FACTSHEET)
    other = base / "elders"
    other.mkdir()
    (other / "factsheet-2021.md").write_text(IMPOSTOR, encoding="utf-8")

    report = ingest(env, str(other))
    assert (report["documents"], report["removed"], report["replaced"]) == (3, 0, [])
    assert chunk_ids(base / "index", FACTSHEET) == before
    assert_factsheet_answers(env)

    # Ingesting the corpus again leaves the other folder's document alone, and the other way round.
    report = ingest(env)
    assert (report["documents"], report["removed"], report["unchanged"]) == (3, 0, 2)
    (other / "factsheet-2021.md").unlink()
    report = ingest(env, str(other))
    assert (report["documents"], report["removed"]) == (2, 1)
    assert chunk_ids(base / "index", FACTSHEET) == before
    assert_factsheet_answers(env)


def test_a_single_file_from_another_folder_keeps_its_folder_as_source(indexed):
    base, env = indexed
    other = base / "elders"
    (other / "sub").mkdir(parents=True)
    (other / "sub" / "factsheet-2021.md").write_text(IMPOSTOR, encoding="utf-8")
    first = ingest(env, str(other / "sub" / "factsheet-2021.md"))
    assert first["documents"] == 3
    # The folder above, ingested later, finds the same document under the same id (not a second copy).
    again = ingest(env, str(other))
    assert (again["documents"], again["unchanged"], again["removed"]) == (3, 1, 0)
    docs = json.loads(run(env, "search", "--json", "Geen enkele gemeente ervaart knelpunten").stdout)["passages"]
    impostors = [p for p in docs if "Geen enkele gemeente" in p["text"]]
    assert [p["name"] for p in impostors] == ["factsheet-2021"] and impostors[0]["doc_id"] != FACTSHEET
    assert_factsheet_answers(env)


def test_same_stem_with_another_suffix_is_a_second_document(base):
    env = rag_env(base)
    (base / "corpus" / "longline.md").write_text("# Lange regel\n\nDe markdownversie noemt de Kwakkelveense aanpak.\n")
    make_pdf(base / "corpus" / "longline.pdf", ["De pdf-versie noemt de Zonnedorpse aanpak van thuiszitters."])
    report = ingest(env)
    assert report["documents"] == 4 and report["skipped"] == []
    ids = set(store_contents(_settings_for(base / "index"))["docs"])
    assert {"corpus/longline.md", "corpus/longline.pdf"} <= ids
    assert_factsheet_answers(env)


def test_a_true_replacement_is_reported_as_replaced(indexed):
    base, env = indexed
    page = base / "corpus" / "projectpagina-2021.md"
    page.write_text(page.read_text(encoding="utf-8") + "\n\nNieuw: de zebrakwestie is opgelost.\n", encoding="utf-8")
    result = run(env, "ingest")
    assert result.exit_code == 0, result.output
    assert "replaced corpus/projectpagina-2021.md" in result.stderr
    assert "replaced documents 1" in result.stdout
    page.write_text(page.read_text(encoding="utf-8") + "\nEn nog iets.\n", encoding="utf-8")
    report = ingest(env)
    assert [r["doc_id"] for r in report["replaced"]] == ["corpus/projectpagina-2021.md"]
    assert report["documents"] == 2
    assert_factsheet_answers(env)


def test_eval_references_by_name_match_documents_by_source_and_path():
    assert doc_metrics(["corpus/factsheet-2021.md"], ["factsheet-2021"], 5)["doc_hit_at_1"] == 1.0
    assert doc_metrics(["corpus/debian-faq.nl.pdf"], ["debian-faq.nl"], 5)["doc_hit_at_1"] == 1.0
    assert doc_metrics(["elders-1a2b3c4d/ch02s01.html"], ["ch02s01"], 5)["mrr"] == 1.0
    assert doc_metrics(["corpus/factsheet-2021.md"], ["projectpagina-2021"], 5)["doc_hit_at_k"] == 0.0
    assert doc_metrics(["factsheet-2021"], ["factsheet-2021"], 5)["doc_hit_at_1"] == 1.0  # an index from before


def test_check_facts_still_reads_documents_by_name():
    env = {**os.environ, "PYTHONPATH": str(SRC), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "evals/check_facts.py", "evals/dev.jsonl", "--docs", "corpus"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 problem(s)" in out.stdout and "no document" not in out.stdout


def test_an_index_of_the_previous_version_answers_and_is_migrated_by_ingest(base):
    """Build a real index with the last stem-keyed version, then use it with this one."""
    old = base / "old"
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", OLD_VERSION, "src"], capture_output=True)
    if archive.returncode != 0:
        pytest.skip(f"commit {OLD_VERSION[:7]} is not in this clone (shallow?)")
    old.mkdir()
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
    env = rag_env(base)
    child = {**subprocess_env_for(base), "PYTHONPATH": str(old / "src")}
    built = subprocess.run([sys.executable, "-m", "rag.cli", "ingest", "--json"], env=child, cwd=base,
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-2000:]
    assert not (base / "index" / MARKER).exists()
    with sqlite3.connect(base / "index" / CATALOG) as db:
        assert {r[0] for r in db.execute("SELECT doc_id FROM documents")} == {"factsheet-2021", "projectpagina-2021"}

    # This version migrates it into Chroma on first open (saying so) and answers: same answer, cited by the old id.
    result = run(env, "ask", "--json", ASK)
    assert result.exit_code == 0 and "91%" in json.loads(result.stdout)["answer"], result.output
    assert "Migrated the index" in result.stderr and not (base / "index" / CATALOG).exists()

    # ... and the next ingest accepts the folder (no marker yet: recognised by its catalog), marks it
    # and re-keys every document by source and path.
    report = ingest(env)
    assert report["documents"] == 2 and report["removed"] > 0
    assert (base / "index" / MARKER).is_file()
    contents = store_contents(_settings_for(base / "index"))
    ids = set(contents["docs"])
    chunks = len(contents["catalog"])
    stale = [c for c in contents["stored"] if not c.startswith("corpus/")]
    assert ids == {FACTSHEET, "corpus/projectpagina-2021.md"} and stale == []
    from conftest import make_settings

    from rag.store import Index

    assert Index(make_settings(base)).collection().count() == chunks
    assert_factsheet_answers(env)


def subprocess_env_for(base: Path) -> dict:
    class _S:  # the two fields subprocess_env reads
        index_dir = base / "index"
        corpus_dir = base / "corpus"

    return subprocess_env(_S)


# -- the index folder --------------------------------------------------------------------------


def test_index_dir_with_other_files_is_refused_and_left_untouched(base):
    home = base / "home"
    (home / "etc").mkdir(parents=True)
    (home / "notes.txt").write_text("mijn aantekeningen")
    (home / "etc" / "passwd").write_text("root:x:0:0")
    before = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
    result = run(rag_env(base, RAG_INDEX_DIR=str(home)), "ingest")
    line = one_error(result, 2)
    assert "RAG_INDEX_DIR" in line and "new or empty folder" in line
    assert sorted(str(p.relative_to(home)) for p in home.rglob("*")) == before


def test_index_dir_that_is_a_file_is_refused(base):
    target = base / "a-file"
    target.write_text("x")
    line = one_error(run(rag_env(base, RAG_INDEX_DIR=str(target)), "ingest"), 2)
    assert "RAG_INDEX_DIR" in line and "not a folder" in line
    assert target.read_text() == "x"


def test_new_and_empty_index_dirs_are_accepted_and_marked(base):
    empty = base / "leeg"
    empty.mkdir()
    for folder in (empty, base / "nieuw" / "index"):
        assert ingest(rag_env(base, RAG_INDEX_DIR=str(folder)))["documents"] == 2
        assert (folder / MARKER).is_file()
    # A marked index is ours from then on, whatever else is in it.
    (empty / "README.txt").write_text("notitie van de beheerder")
    assert ingest(rag_env(base, RAG_INDEX_DIR=str(empty)))["unchanged"] == 2


# -- settings and disks ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["x", "a..b", "-begin", "met spatie", "10.0.0.1", "a" * 64])
def test_invalid_collection_name_is_one_sentence(base, name):
    result = run(rag_env(base, RAG_COLLECTION=name), "ingest")
    line = one_error(result, 2)
    assert "RAG_COLLECTION" in line and "3-63" in line
    assert not (base / "index").exists()


def test_unknown_setting_is_named_with_the_closest_one(indexed):
    base, env = indexed
    result = run({**env, "RAG_TOP_K": "3", "RAG_FOO": "1"}, "search", "--json", KNELPUNTEN)
    assert result.exit_code == 0, result.output
    assert "unknown setting RAG_TOP_K (did you mean RAG_K?)" in result.stderr
    assert "unknown setting RAG_FOO;" in result.stderr
    assert len(json.loads(result.stdout)["passages"]) == 5  # RAG_TOP_K did not set k


def _unshare_works(tmp: Path) -> bool:
    probe = tmp / "probe"
    probe.mkdir()
    out = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {probe}"],
                         capture_output=True, timeout=30)
    return out.returncode == 0


DISK_SCRIPT = textwrap.dedent(
    """
    import json, os, subprocess, sys
    from click.testing import CliRunner
    from rag.cli import main

    mnt, corpus, extra = sys.argv[1:4]
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", mnt], check=True)
    env = {"RAG_INDEX_DIR": os.path.join(mnt, "index"), "RAG_CORPUS_DIR": corpus}
    out = {}

    def rag(*args):
        r = CliRunner().invoke(main, list(args), env=env, catch_exceptions=True)
        return {"code": r.exit_code, "stdout": r.stdout, "stderr": r.stderr,
                "exception": None if r.exception is None or isinstance(r.exception, SystemExit) else repr(r.exception)}

    out["first"] = rag("ingest", "--json")
    # Fill the disk but for 16 KB, then add a document: the write runs out of space midway.
    with open(os.path.join(mnt, "spare"), "wb") as fh:
        fh.write(b"\\0" * 16384)
    try:
        with open(os.path.join(mnt, "filler"), "wb") as fh:
            while True:
                fh.write(b"\\0" * 65536)
                fh.flush()
    except OSError:
        pass
    os.unlink(os.path.join(mnt, "spare"))
    os.rename(extra, os.path.join(corpus, os.path.basename(extra)))
    out["full"] = rag("ingest")
    os.unlink(os.path.join(mnt, "filler"))
    out["again"] = rag("ingest", "--json")
    out["ask"] = rag("ask", "--json", sys.argv[4])
    # The same index seen through a read-only bind mount (Chroma keeps the tmpfs busy for a remount).
    ro = mnt + "-ro"
    os.mkdir(ro)
    subprocess.run(["mount", "--bind", mnt, ro], check=True)
    subprocess.run(["mount", "-o", "remount,bind,ro", ro], check=True)
    env["RAG_INDEX_DIR"] = os.path.join(ro, "index")
    out["readonly"] = rag("ingest")
    print(json.dumps(out))
    """
)


def test_disk_full_and_read_only_index_are_one_sentence_and_the_index_survives(base):
    if shutil.which("unshare") is None or not _unshare_works(base):
        pytest.skip("needs `unshare -rm` (a private mount namespace) for a small tmpfs")
    mnt = base / "mnt"
    mnt.mkdir()
    extra = base / "extra-verslag.md"
    words = "gemeente school jeugdhulp wijkteam ouders leerling zorg onderwijs samenwerking thuiszitter budget".split()
    extra.write_text("# Extra verslag\n\n" + "\n\n".join(
        f"## Paragraaf {i}\n\n" + " ".join(words[(i * 7 + j) % len(words)] for j in range(60)) + "." for i in range(8)))
    env = subprocess_env_for(base)
    env = {k: v for k, v in env.items() if not k.startswith("RAG_")}
    proc = subprocess.run(
        ["unshare", "-rm", sys.executable, "-c", DISK_SCRIPT, str(mnt), str(base / "corpus"), str(extra), ASK],
        env=env, cwd=base, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["first"]["code"] == 0, out["first"]
    for step, words_needed in (("full", ("disk is full", "free some space")), ("readonly", ("read-only",))):
        result = out[step]
        assert result["exception"] is None and "Traceback" not in result["stderr"], result
        assert result["code"] != 0
        errors = [ln for ln in result["stderr"].splitlines() if ln.startswith("Error")]
        assert len(errors) == 1, result["stderr"]
        for w in words_needed:
            assert w in errors[0], errors[0]
    again = json.loads(out["again"]["stdout"])
    assert again["documents"] == 3, again
    answer = json.loads(out["ask"]["stdout"])
    assert "91%" in answer["answer"] and FACTSHEET in {c["doc_id"] for c in answer["citations"]}


# -- file names in the terminal ----------------------------------------------------------------

ANSI_NAMES = ["\x1b[2J\x1b[31mrood.xyz", "\x1b]0;gekaapt\x07kapot.pdf", "abc\u202etxt.exe.pdf", "tab\tbel\x07.docx"]


def test_file_names_with_escape_codes_never_reach_the_terminal_raw(base):
    env = rag_env(base)
    corpus = base / "corpus"
    for name in ANSI_NAMES:
        (corpus / name).write_bytes(b"geen echte inhoud")
    (corpus / "\x1b[32mnotitie.md").write_text("# Notitie\n\nDe gemeente Kwakkelveen telt zeventien thuiszitters.\n")
    raw = os.fsencode(str(corpus)) + b"/caf\xe9-\xff.pdf"  # not UTF-8: a surrogate-escaped str in Python
    with open(raw, "wb") as fh:
        fh.write(b"geen pdf")
    with open(os.fsencode(str(corpus)) + b"/verslag-\xe9.md", "wb") as fh:  # readable, but its name is not UTF-8
        fh.write(b"# Verslag\n\nDe gemeente Latijnstad telt drie thuiszitters.\n")

    result = run(env, "ingest")
    assert result.exit_code == 0, result.output
    for bad in ("\x1b", "\x07", "\u202e", "\t"):
        assert bad not in result.output, repr(result.output)
    assert "\\x1b[2J\\x1b[31mrood.xyz" in result.stderr
    assert "abc\\u202etxt.exe.pdf" in result.stderr
    assert "caf\\xe9-\\xff.pdf" in result.stderr
    assert "verslag-\\xe9.md: file name is not valid UTF-8" in result.stderr

    result = run(env, "ingest", "--json")
    assert result.exit_code == 0 and "\x1b" not in result.stdout and "\u202e" not in result.stdout
    report = json.loads(result.stdout)
    assert {Path(s["path"]).name for s in report["skipped"]} >= set(ANSI_NAMES)

    result = run(env, "search", "Hoeveel thuiszitters telt Kwakkelveen?")
    assert result.exit_code == 0 and "\x1b" not in result.output and "zeventien" in result.output
    assert_factsheet_answers(env)


def test_log_messages_escape_file_names(caplog):
    handler = logging.StreamHandler(stream := __import__("io").StringIO())
    handler.addFilter(PrintableFilter())
    log = logging.getLogger("rag.test_hostile_identity")
    log.addHandler(handler)
    try:
        log.warning("ignoring %s: %s", Path("/tmp/\x1b[31mmanifest.toml"), "bad\u202eline")
    finally:
        log.removeHandler(handler)
    assert stream.getvalue() == "ignoring /tmp/\\x1b[31mmanifest.toml: bad\\u202eline\n"
    assert printable("ok é ĳ 91%") == "ok é ĳ 91%"
