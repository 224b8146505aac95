"""The ingest worker: a process of its own (`rag worker`) that takes uploads from the job queue
and ingests them through `Index.ingest`, reporting each stage and page into the job's file.

It runs at a lower CPU priority than the app (os.nice), so questions asked meanwhile go first.
One worker per machine holds `worker-<host>.lock` in the jobs folder; the app starts one when
none holds it. A worker killed mid-job leaves the index as it was before the job (the catalog
commits last, see rag.index) and the job in `active/`; the next worker puts it back in the queue
and ingests it again, once.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..errors import RagError
from .queue import FINAL, Job, JobQueue, file_sha256, pid_alive

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5.0
SAVE_EVERY = 0.25  # seconds between progress writes within one stage
RECOVER_EVERY = 30.0
REPORT_EVERY_TEXTS = 16  # same throughput as 64-text calls: 384 texts took 76-96 s vs 74-111 s, alternated, loaded machine


def find_duplicate(settings, sha256: str, safe_name: str) -> dict | None:
    """An indexed document whose file has exactly these bytes, or None. Its `same_name` is True
    when it is the very file this upload would become (the same upload again)."""
    from ..index import Index

    index = Index(settings)
    try:
        docs = index.documents()
    except RagError:
        return None
    finally:
        index.close()
    for doc in docs:
        path = Path(doc["path"])
        try:
            if path.is_file() and file_sha256(path.read_bytes()) == sha256:
                return {**doc, "same_name": path.name == safe_name}
        except OSError:
            continue
    return None


def _identical_in(folder: Path, sha256: str, size: int) -> Path | None:
    """A file directly in `folder` with these bytes (an upload a killed worker saved already)."""
    try:
        candidates = [p for p in folder.iterdir() if p.is_file() and p.stat().st_size == size]
    except OSError:
        return None
    for path in sorted(candidates):
        try:
            if file_sha256(path.read_bytes()) == sha256:
                return path
        except OSError:
            continue
    return None


class _Reporter:
    """Writes a job's progress into the queue: on every stage change, at most every SAVE_EVERY
    seconds within a stage, and every HEARTBEAT_SECONDS while nothing is reported (model loading,
    a long encoder batch) so that other workers see this one is alive."""

    def __init__(self, queue: JobQueue, job: Job):
        self.queue, self.job = queue, job
        self._lock = threading.Lock()
        self._last = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="rag-job-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            with self._lock:
                if not self.job.final:
                    self.queue.save(self.job)

    def stage(self, stage: str, done: int = 0, total: int = 0, message: str | None = None, force: bool = False) -> None:
        with self._lock:
            job = self.job
            changed = stage != job.stage
            job.stage, job.done, job.total = stage, done, total
            if message is not None:
                job.message = message
            if changed:
                job.timings.setdefault(stage, round(time.time() - job.created, 3))
            now = time.monotonic()
            if changed or force or done >= total or now - self._last >= SAVE_EVERY:
                self.queue.save(job)
                self._last = now

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=HEARTBEAT_SECONDS)


class _ProgressEncoder:
    """The worker's encoder, reporting after every encoder batch: one ingest batch of passages and
    their answer lines takes tens of seconds, too long for a progress bar to stand still."""

    def __init__(self, inner):
        self.inner = inner
        self.on_texts = None  # (encoded, of) within the current call

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def encode(self, texts, prefix: str = "", show_progress: bool = False):
        import numpy as np

        texts = list(texts)
        step = REPORT_EVERY_TEXTS
        if self.on_texts is None or len(texts) <= step:
            return self.inner.encode(texts, prefix)
        parts = []
        for start in range(0, len(texts), step):
            parts.append(self.inner.encode(texts[start : start + step], prefix))
            self.on_texts(min(start + step, len(texts)), len(texts))
        return np.vstack(parts)


class Worker:
    """Takes jobs from the queue one at a time and ingests them."""

    def __init__(self, settings, embeddings=None):
        self.settings = settings
        self.queue = JobQueue.for_settings(settings)
        self._embeddings = embeddings

    @property
    def embeddings(self):
        # Loaded once per worker: a job then pays only for its own pages and passages.
        if self._embeddings is None:
            from ..embeddings import get_embeddings

            self._embeddings = get_embeddings(self.settings.embed_model, self.settings.embed_batch_size)
        return self._embeddings

    def run_once(self) -> int:
        """Process every queued job, then return how many were processed."""
        count = 0
        while (job := self.queue.claim()) is not None:
            self.process(job)
            count += 1
        return count

    def process(self, job: Job) -> Job:
        """Ingest one claimed job; always ends it (klaar, dubbel or mislukt)."""
        reporter = _Reporter(self.queue, job)
        try:
            self._process(job, reporter)
        except RagError as exc:
            self._fail(job, reporter, exc.dutch)
        except Exception:  # noqa: BLE001 - one broken upload must not stop the worker
            log.exception("job %s (%s) failed", job.id, job.name)
            self._fail(job, reporter, "er ging iets onverwachts mis; het bestand is niet toegevoegd.")
        finally:
            reporter.close()
        log.info("job %s (%s): %s %s", job.id, job.name, job.stage, job.message)
        return job

    def _fail(self, job: Job, reporter: _Reporter, reason: str) -> None:
        if job.wrote_file and job.target:
            Path(job.target).unlink(missing_ok=True)  # a failed upload must not fail every later ingest
        reporter.stage("mislukt", message=reason, force=True)

    def _process(self, job: Job, reporter: _Reporter) -> None:
        from ..index import Index
        from ..ui.common import dutch_page_note, dutch_skip_reason
        from ..ui.sources import UNLOGGED, dutch_warning, write_upload

        settings = self.settings
        reporter.stage("lezen", force=True)
        data = self.queue.file_of(job).read_bytes()
        corpus = Path(settings.corpus_dir)
        duplicate = find_duplicate(settings, job.sha256, Path(job.target).name if job.target else job.safe_name)
        if duplicate is not None and not duplicate["same_name"]:
            job.doc_id, job.title = duplicate["doc_id"], duplicate["title"]
            reporter.stage("dubbel", force=True, message=(
                f"dit bestand is byte voor byte gelijk aan het document ‘{duplicate['title']}’ "
                f"({Path(duplicate['path']).name}); het is niet nog eens toegevoegd."))
            return
        # A worker killed after saving the file finds it again instead of saving a second copy.
        saved = Path(job.target) if job.target and Path(job.target).is_file() else None
        if saved is None:
            saved = _identical_in(corpus, job.sha256, len(data)) if corpus.is_dir() else None
        if saved is None:
            saved, present = write_upload(data, job.safe_name, corpus, settings)
            job.wrote_file = not present
        job.target = str(saved.resolve())
        reporter.stage("lezen", force=True)

        encoder = _ProgressEncoder(self.embeddings)
        index = Index(settings, embeddings=encoder)
        self._fresh_store(index)  # another process may have written the store since the last job
        # Passages, then their answer lines, go to the encoder in batches of this many chunks (rag.store.ingest).
        per_call = max(settings.embed_batch_size, 16) * 4
        phase = {"stage": "verwerken", "done": 0, "total": 0}  # the stage being encoded and its chunk counts

        def on_texts(encoded: int, of: int) -> None:
            if phase["total"]:
                in_call = min(per_call, phase["total"] - phase["done"])
                # Short of the batch's end: that count is reported when the batch is stored (on_event).
                estimate = min(int(in_call * encoded / of), in_call - 1)
                reporter.stage(phase["stage"], phase["done"] + estimate, phase["total"])

        encoder.on_texts = on_texts
        try:
            def on_event(stage: str, done: int, total: int, _name: str) -> None:
                if stage == "pages":
                    reporter.stage("lezen", done, total)
                elif stage == "embedding":
                    phase.update(stage="verwerken", done=done, total=total)
                    reporter.stage("verwerken", done, total)
                elif stage == "searchable":  # the passages are committed; answer lines follow
                    phase.update(total=0)
                    reporter.stage("doorzoekbaar", 0, 0, force=True)
                elif stage == "lines":
                    phase.update(stage="doorzoekbaar", done=done, total=total)
                    reporter.stage("doorzoekbaar", done, total)

            before = index.documents()
            report = index.ingest(paths=[saved], on_event=on_event, lock_timeout=3600,
                                  added_by=self._actor(job).who or None)
            if report.skipped:
                reasons = "; ".join(dutch_skip_reason(s["reason"]) for s in report.skipped)
                self._fail(job, reporter, f"het bestand is niet toegevoegd: {reasons}.")
                return
            doc = next((d for d in index.documents() if Path(d["path"]).resolve() == saved.resolve()), None)
        finally:
            index.close()
            self._fresh_store(index)
        if doc is None:
            self._fail(job, reporter, "het bestand is gelezen, maar staat niet in de index; probeer het opnieuw.")
            return
        job.doc_id, job.title, job.pages, job.chunks = doc["doc_id"], doc["title"], doc.get("pages"), doc["chunks"]
        warnings_log = [] if self._log_upload(job, before, report) else [UNLOGGED]
        notes = [dutch_page_note(n["reason"]) for n in report.notes]
        warnings = [dutch_warning(w) for w in report.warnings] + warnings_log
        again = " (stond er al)" if duplicate is not None else ""
        message = f"‘{doc['title']}’ is toegevoegd als {saved.name}{again}: {doc['chunks']} passages."
        if notes:
            message += " Niet gelezen: " + "; ".join(notes) + "."
        if warnings:
            message += " Let op: " + "; ".join(warnings) + "."
        if "doorzoekbaar" not in job.timings:  # today's store is searchable when its lines are done
            job.timings["doorzoekbaar"] = round(time.time() - job.created, 3)
        reporter.stage("klaar", job.chunks, job.chunks, message=message, force=True)

    @staticmethod
    def _actor(job: Job):
        """Who queued the job (rag.access.Actor); someone on this machine for a job without one."""
        from ..access import Actor, local_actor

        fields = dict(job.actor)
        fields["groups"] = tuple(fields.get("groups") or ())
        return Actor(**fields) if fields.get("kind") else local_actor()

    def _log_upload(self, job: Job, before: list[dict], report) -> bool:
        """Record the upload in the change log as whoever queued it; False when that failed."""
        from ..index import Index
        from ..ui.sources import log_change

        actor = self._actor(job)
        index = Index(self.settings)
        try:
            after = index.documents()
        finally:
            index.close()
        return log_change(self.settings, actor, before, after, report, "upload")

    def _fresh_store(self, index) -> None:
        """Drop this process's embedded Chroma client: it keeps the vector index it first read in
        memory, so it would not see what another process wrote (and could write a stale one back)."""
        index.release_embedded()


def worker_lock_path(queue: JobQueue) -> Path:
    return queue.folder / f"worker-{socket.gethostname()}.lock"


def _try_lock(path: Path):
    """An open file holding an exclusive lock on `path`, or None when another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def worker_running(settings) -> bool:
    """True when a worker on this machine serves this jobs folder."""
    queue = JobQueue.for_settings(settings)
    if not queue.folder.is_dir():
        return False
    handle = _try_lock(worker_lock_path(queue))
    if handle is None:
        return True
    handle.close()
    return False


def run_worker(settings, once: bool = False, poll: float = 0.5, exit_with: int | None = None,
               idle_exit: float | None = None) -> int:
    """The worker loop (`rag worker`). Returns 0, or 3 when another worker already serves the folder.

    `once`: process the queue, then exit. `exit_with`: exit once that process is gone and no job
    is running (the app that started this worker). `idle_exit`: exit after that many idle seconds."""
    queue = JobQueue.for_settings(settings)
    handle = _try_lock(worker_lock_path(queue))
    if handle is None:
        return 3
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        if settings.worker_nice:
            os.nice(settings.worker_nice)
        worker = Worker(settings)
        requeued = queue.recover()
        if requeued:
            log.warning("put %d interrupted job(s) back in the queue: %s", len(requeued), ", ".join(requeued))
        queue.prune()
        last_recover = last_job = time.monotonic()
        while True:
            job = queue.claim()
            if job is not None:
                worker.process(job)
                last_job = time.monotonic()
                continue
            if once:
                return 0
            if exit_with is not None and not pid_alive(exit_with):
                return 0
            if idle_exit is not None and time.monotonic() - last_job > idle_exit:
                return 0
            if time.monotonic() - last_recover > RECOVER_EVERY:
                queue.recover()
                last_recover = time.monotonic()
            time.sleep(poll)
    finally:
        handle.close()


_spawned: dict[str, subprocess.Popen] = {}
_spawn_lock = threading.Lock()


def ensure_worker(settings) -> bool:
    """Start a worker for this jobs folder in the background unless one runs; True when one was started.

    The worker exits when this process has gone and its queue is idle."""
    queue = JobQueue.for_settings(settings)
    key = str(queue.folder.resolve())
    with _spawn_lock:
        earlier = _spawned.get(key)
        if earlier is not None and earlier.poll() is None:
            return False  # still starting up (it takes the lock after its imports)
        if worker_running(settings):
            return False
        queue.folder.mkdir(parents=True, exist_ok=True)
        src = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}
        # The worker reads the same settings as this process: pass them on explicitly.
        env.update({f"RAG_{k.upper()}": str(v) for k, v in settings.model_dump().items() if v is not None})
        with open(queue.folder / "worker.log", "ab") as out:
            _spawned[key] = subprocess.Popen(
                [sys.executable, "-m", "rag.cli", "worker", "--exit-with", str(os.getpid())],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
            )
        return True


def jobs_in_progress(jobs: list[Job]) -> list[Job]:
    """The jobs not finished yet."""
    return [j for j in jobs if j.stage not in FINAL]
