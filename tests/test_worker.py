"""The ingest job: a real `rag worker` process, real Chroma, real generated PDFs.

- The queue: a job is claimed by exactly one worker; a job left by a dead worker goes back in
  the queue; byte-identical uploads are reported as duplicates.
- Crash safety: a worker killed with SIGKILL halfway through a 200-page PDF, then restarted, ends
  with the document complete exactly once, and a process polling retrieval meanwhile never saw
  part of it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, copy_corpus, make_pdf, make_settings, subprocess_env

from rag.index import Index
from rag.ingest import JobQueue
from rag.ingest.queue import pid_alive
from rag.ingest.worker import Worker, worker_running

pytestmark = pytest.mark.slow
DEADLINE = 900  # seconds: generous, the machine is shared


def kwartelveld_pages(n: int) -> list[str]:
    """`n` pages about the fictional district Kwartelveld, a few passages each."""
    pages = []
    for i in range(1, n + 1):
        pages.append("\n".join([
            f"Wijk {i} van Kwartelveld",
            f"In wijk {i} van Kwartelveld werken {i + 10} jeugdconsulenten samen met {i % 7 + 2} scholen. "
            f"Het samenwerkingsverband Kwartelveld bespreekt elke {i % 4 + 1} weken de wachtlijst voor jeugdhulp "
            f"in deze wijk, waar {100 + i * 3} leerlingen een arrangement hebben.",
            f"De gemeente Kwartelveld financiert in wijk {i} een schoolmaatschappelijk werker voor {i % 5 + 2} dagen "
            f"per week. Ouders in wijk {i} noemen de bereikbaarheid van het wijkteam het grootste knelpunt; "
            f"{20 + i % 30} procent wacht langer dan zes weken op een eerste gesprek.",
            f"Voor wijk {i} is afgesproken dat de intern begeleider en de jeugdconsulent elkaar {i % 3 + 1} keer per "
            f"maand zien. Het budget voor preventie in wijk {i} bedraagt {i * 1000 + 50000} euro per jaar, "
            f"waarvan {i % 9 + 10} procent naar ouderbegeleiding gaat.",
        ]))
    return pages


def _root(tmp: Path) -> Path:
    """The shipped corpus, indexed, under tmp (the index retrieval answers from before the upload)."""
    copy_corpus(tmp / "corpus")
    return tmp


def _start_worker(settings, log: Path, **env) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "rag.cli", "worker"], cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT, env=subprocess_env(settings, **env))


def _wait(predicate, what: str, proc: subprocess.Popen | None = None, log: Path | None = None, poll: float = 0.1,
          seconds: float = DEADLINE):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"worker exited ({proc.returncode}) before {what}: {log.read_text()[-3000:] if log else ''}")
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {what}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# Enough pages that the poller, a poll every ~0.5 s, sees the passages stored but not yet visible:
# at 75 a faster machine encoded them between two polls.
KILLED_PAGES = 200


def test_worker_killed_halfway_resumes_and_nothing_partial_is_ever_retrievable(tmp_path, embedder):
    from rag.chunking import chunk_documents
    from rag.loaders import load_file

    root = _root(tmp_path)
    settings = make_settings(root)
    index = Index(settings, embeddings=embedder)
    index.ingest()
    index.close()
    index.release_embedded()  # the worker and the poller write and read it from now on
    pdf = make_pdf(tmp_path / "upload" / "kwartelveld.pdf", kwartelveld_pages(KILLED_PAGES), title="Wijkrapport Kwartelveld")
    expected = len(chunk_documents(load_file(pdf).documents, settings.chunk_size, settings.chunk_overlap))
    queue = JobQueue.for_settings(settings)
    job = queue.enqueue(pdf.read_bytes(), "kwartelveld.pdf", "kwartelveld.pdf")

    poll_log, stop = tmp_path / "polls.jsonl", tmp_path / "stop-polling"
    poller = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("retrieval_poller.py")),
         "Hoeveel jeugdconsulenten werken er in wijk 12 van Kwartelveld?", "kwartelveld.pdf", str(poll_log), str(stop)],
        cwd=ROOT, env=subprocess_env(settings), stdout=subprocess.DEVNULL, stderr=(tmp_path / "poller.log").open("wb"))
    log = tmp_path / "worker.log"
    # Encoder batches of 64 passages (16 x 4), so the ingest is observed between batches.
    worker = _start_worker(settings, log, RAG_EMBED_BATCH_SIZE="16")
    try:
        _wait(lambda: poll_log.is_file() and poll_log.read_text().count("\n") >= 2, "the poller's first polls")

        def halfway():  # searchable, and the answer lines of the first 64 passages stored, the rest not
            state = queue.get(job.id)
            return state if state and state.stage == "doorzoekbaar" and 64 <= state.done < state.total else None

        seen = _wait(halfway, "the worker to be halfway through the answer lines", worker, log, poll=0.02)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
        killed = queue.get(job.id)
        assert killed.stage == "doorzoekbaar" and killed.done < killed.total, killed
        assert (queue.active_dir / f"{job.id}.json").is_file()  # left behind by the dead worker

        # Killed while the answer lines are written: the document is searchable with all its passages
        # (the poller checks it is never seen partial) and its lines are half stored.
        _wait(lambda: any(json.loads(r).get("raw_vectors", 0) > 0 for r in poll_log.read_text().splitlines()[-3:]),
              "a poll after the kill that sees the orphaned vectors", seconds=180)

        worker = _start_worker(settings, log)
        done = _wait(lambda: (j := queue.get(job.id)) and j.final and j, "the restarted worker to finish", worker, log)
        assert done.stage == "klaar", done.message
        assert done.attempts == 2 and done.chunks == expected and done.pages == KILLED_PAGES
        time.sleep(1.5)  # a few polls of the finished document
    finally:
        stop.touch()
        poller.wait(timeout=60)
        _stop(worker)

    # Complete exactly once: one document, all its chunks, no stray vectors, one file in the corpus.
    index = Index(settings, embeddings=embedder)
    docs = [d for d in index.documents() if d["doc_id"].endswith("kwartelveld.pdf")]
    assert len(docs) == 1 and docs[0]["chunks"] == expected and docs[0]["pages"] == KILLED_PAGES
    collection = index.collection()
    assert collection.count() == index.info()["chunks"]
    assert sorted(p.name for p in settings.corpus_dir.iterdir() if "kwartelveld" in p.name) == ["kwartelveld.pdf"]
    index.close()

    rows = [json.loads(r) for r in poll_log.read_text().splitlines()]
    ok = [r for r in rows if "error" not in r]
    assert len(ok) >= 10, rows[-5:]
    # Never partial: whenever the document or any of its passages was visible, it was complete.
    # (A poll reads the catalog, then searches: the commit may fall in between, so each is checked alone.)
    for r in ok:
        assert r["documents"] <= 1, r
        if r["documents"]:
            assert r["doc_chunks"] == r["catalog_rows"] == expected, r
        if r["hits"]:
            assert r["hit_doc_chunks"] == [expected], r
    # The polls covered the whole story: vectors stored but invisible, then the complete document found.
    assert any(r["raw_vectors"] > 0 and r["hits"] == 0 and r["documents"] == 0 for r in ok), "no poll during the ingest"
    assert ok[-1]["hits"] > 0 and ok[-1]["documents"] == 1
    assert seen.total == expected and 64 <= seen.done < expected  # killed between two encoder batches


def test_queue_claims_once_recovers_dead_workers_and_reports_duplicates(tmp_path, embedder):
    root = _root(tmp_path)
    settings = make_settings(root)
    queue = JobQueue.for_settings(settings)
    text = b"# Zonnedorp\n\nDe gemeente Zonnedorp heeft 42 jeugdconsulenten.\n"
    first = queue.enqueue(text, "zonnedorp.md", "zonnedorp.md")
    claimed = queue.claim()
    assert claimed.id == first.id and claimed.attempts == 1 and claimed.pid == os.getpid()
    assert queue.claim() is None  # nothing else waits: a claimed job is nobody else's

    # A job whose worker process is gone goes back to the queue; one whose worker lives stays.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    claimed.pid = dead.pid
    queue.save(claimed)
    assert not pid_alive(dead.pid)
    assert queue.recover() == [first.id]
    back = queue.get(first.id)
    assert back.stage == "wachtrij" and "onderbroken" in back.message

    queue.enqueue(text, "kopie.md", "kopie.md")
    worker = Worker(settings, embeddings=embedder)
    assert worker.run_once() == 2
    by_name = {j.name: j for j in queue.jobs()}
    assert by_name["zonnedorp.md"].stage == "klaar" and by_name["zonnedorp.md"].attempts == 2
    assert by_name["kopie.md"].stage == "dubbel" and "byte voor byte gelijk" in by_name["kopie.md"].message
    assert [d["name"] for d in Index(settings).documents()].count("zonnedorp") == 1
    assert not (settings.corpus_dir / "kopie.md").exists()
    assert not list(queue.files_dir.iterdir())  # uploads are deleted once their job is done

    # A file the loaders refuse fails with a Dutch reason and leaves nothing in the corpus.
    queue.enqueue(b"%PDF-1.4\nnot really a pdf", "kapot.pdf", "kapot.pdf")
    worker.run_once()
    broken = next(j for j in queue.jobs() if j.name == "kapot.pdf")
    assert broken.stage == "mislukt" and "beschadigd" in broken.message
    assert not (settings.corpus_dir / "kapot.pdf").exists()


def test_rag_worker_process_runs_at_lower_priority_and_is_found_by_the_app(tmp_path):
    root = _root(tmp_path)
    settings = make_settings(root)
    log = tmp_path / "worker.log"
    worker = _start_worker(settings, log)
    try:
        _wait(lambda: worker_running(settings), "the worker to take its lock", worker, log)
        assert os.getpriority(os.PRIO_PROCESS, worker.pid) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + settings.worker_nice)
        second = subprocess.run([sys.executable, "-m", "rag.cli", "worker"], cwd=ROOT, capture_output=True, text=True,
                                env=subprocess_env(settings), timeout=120)
        assert second.returncode == 0 and "Another worker" in second.stderr
    finally:
        _stop(worker)
    assert not worker_running(settings)


def test_app_process_sees_what_the_worker_process_wrote(tmp_path, embedder):
    """The app's cached Assistant is dropped when the worker (another process) commits: an embedded
    Chroma client keeps the vectors it first read in memory and would not find the new passages."""
    from rag.ui import common

    root = _root(tmp_path)
    settings = make_settings(root)
    Index(settings, embeddings=embedder).ingest()
    common.forget_assistant()
    before = common.get_assistant(settings)
    before.ask("Hoeveel procent van de gemeenten ervaart knelpunten?")  # the store is open and read
    text = "De gemeente Zonnedorp heeft 42 jeugdconsulenten en een wachtlijst van negen weken."
    JobQueue.for_settings(settings).enqueue(f"# Zonnedorp\n\n{text}\n".encode(), "zonnedorp.md", "zonnedorp.md")
    done = subprocess.run([sys.executable, "-m", "rag.cli", "worker", "--once"], cwd=ROOT, env=subprocess_env(settings),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    after = common.get_assistant(settings)
    assert after is not before
    vector = embedder.encode([f"Zonnedorp\n{text}"], embedder.passage_prefix)[0]
    (best, score), *_ = after.index.dense_search(vector, 3)
    assert after.index.get_chunks([best])[best].doc_id == "corpus/zonnedorp.md" and score > 0.9
    common.forget_assistant()
