"""A durable job queue in a folder that every app replica and worker on a server can see.

One JSON file per job. A job is created in `queue/` (written to a temporary name, then renamed,
so it appears whole), claimed by the first worker that renames it into `active/` (a rename is
atomic, so two workers never take the same job), updated there by that worker only, and moved
to `done/` when it ends. The uploaded bytes wait in `files/` until the job is done. A worker
that dies leaves its job in `active/`; the next worker puts it back in the queue (see `recover`).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

# Stages in order; the last three end a job.
STAGES = ("wachtrij", "lezen", "verwerken", "doorzoekbaar", "klaar", "mislukt", "dubbel")
FINAL = frozenset({"klaar", "mislukt", "dubbel"})
STAGE_LABELS = {
    "wachtrij": "In de wachtrij",
    "lezen": "Lezen",
    "verwerken": "Passages verwerken",
    "doorzoekbaar": "Doorzoekbaar",
    "klaar": "Antwoordregels klaar",
    "mislukt": "Mislukt",
    "dubbel": "Al aanwezig",
}
MAX_ATTEMPTS = 3  # a job whose worker died this often is given up (it may be what kills it)
STALE_SECONDS = 120.0  # a job on another machine whose heartbeat is this old is taken over
KEEP_DONE_SECONDS = 24 * 3600


def file_sha256(data: bytes) -> str:
    """The SHA-256 of a file's bytes (what makes two uploads byte-identical)."""
    return hashlib.sha256(data).hexdigest()


def pid_alive(pid: int) -> bool:
    """True when a process with this id runs on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child not yet reaped by its parent is a zombie: dead for us
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


@dataclass
class Job:
    """One upload to ingest and how far it got."""

    id: str
    name: str  # the file name as uploaded (shown to the user)
    safe_name: str  # the name it gets in the corpus folder
    sha256: str
    kind: str | None = None
    created: float = 0.0
    stage: str = "wachtrij"
    done: int = 0
    total: int = 0
    message: str = ""  # Dutch: the reason of a failure, or what the finished job made
    target: str = ""  # where the file was saved in the corpus folder
    wrote_file: bool = False  # this job created `target` (so a failure removes it again)
    doc_id: str = ""
    title: str = ""
    pages: int | None = None
    chunks: int = 0
    attempts: int = 0
    host: str = ""
    pid: int = 0
    heartbeat: float = 0.0
    started: float = 0.0
    finished: float = 0.0
    timings: dict = field(default_factory=dict)  # stage -> seconds since `created` it was reached
    actor: dict = field(default_factory=dict)  # who uploaded it (rag.access.Actor's fields), for the change log

    @property
    def final(self) -> bool:
        return self.stage in FINAL

    def as_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "Job":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def _read_job(path: Path) -> Job | None:
    try:
        return Job.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None  # moved meanwhile, or half-written by a foreign tool


class JobQueue:
    """The jobs folder: `queue/`, `active/`, `done/` and `files/`."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.queued_dir = self.folder / "queue"
        self.active_dir = self.folder / "active"
        self.done_dir = self.folder / "done"
        self.files_dir = self.folder / "files"

    @classmethod
    def for_settings(cls, settings) -> "JobQueue":
        """The queue named by RAG_JOBS_DIR (default: `jobs` inside RAG_INDEX_DIR)."""
        return cls(Path(settings.jobs_dir) if settings.jobs_dir else Path(settings.index_dir) / "jobs")

    def _ensure(self) -> None:
        for folder in (self.queued_dir, self.active_dir, self.done_dir, self.files_dir):
            folder.mkdir(parents=True, exist_ok=True)

    # -- the app's side ---------------------------------------------------------
    def enqueue(self, data: bytes, name: str, safe_name: str, kind: str | None = None, actor: dict | None = None) -> Job:
        """Store the upload's bytes and put a job for it in the queue (`actor`: who uploaded it)."""
        self._ensure()
        now = time.time()
        job = Job(id=f"{time.time_ns():x}-{secrets.token_hex(4)}", name=name, safe_name=safe_name,
                  sha256=file_sha256(data), kind=kind, created=now, heartbeat=now, actor=dict(actor or {}))
        upload = self.file_of(job)
        tmp = upload.with_name(f".{upload.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, upload)
        _write_json(self.queued_dir / f"{job.id}.json", job.as_json())
        return job

    def file_of(self, job: Job) -> Path:
        """Where the job's uploaded bytes wait."""
        return self.files_dir / f"{job.id}.upload"

    def jobs(self) -> list[Job]:
        """Every job still known (queued, active, done), oldest first."""
        found: dict[str, Job] = {}
        # done/ last: a job moved there between two listings counts as done.
        for folder in (self.queued_dir, self.active_dir, self.done_dir):
            try:
                paths = list(folder.glob("*.json"))
            except OSError:
                continue
            for path in paths:
                job = _read_job(path)
                if job is not None:
                    found[job.id] = job
        return sorted(found.values(), key=lambda j: (j.created, j.id))

    def get(self, job_id: str) -> Job | None:
        """One job by id, wherever it is."""
        for folder in (self.done_dir, self.active_dir, self.queued_dir):
            job = _read_job(folder / f"{job_id}.json")
            if job is not None:
                return job
        return None

    # -- the worker's side ------------------------------------------------------
    def claim(self) -> Job | None:
        """Take the oldest queued job (rename into `active/`), or None when the queue is empty."""
        self._ensure()
        for path in sorted(self.queued_dir.glob("*.json")):
            mine = self.active_dir / path.name
            try:
                os.rename(path, mine)
            except FileNotFoundError:
                continue  # another worker was faster
            job = _read_job(mine)
            if job is None:
                mine.unlink(missing_ok=True)
                continue
            job.attempts += 1
            job.host, job.pid = socket.gethostname(), os.getpid()
            job.started = job.heartbeat = time.time()
            self.save(job)
            return job
        return None

    def save(self, job: Job) -> None:
        """Write the job's state (a finished job moves to `done/` and its upload is deleted)."""
        job.heartbeat = time.time()
        if job.final:
            job.finished = job.finished or time.time()
            _write_json(self.done_dir / f"{job.id}.json", job.as_json())
            (self.active_dir / f"{job.id}.json").unlink(missing_ok=True)
            self.file_of(job).unlink(missing_ok=True)
        else:
            _write_json(self.active_dir / f"{job.id}.json", job.as_json())

    def recover(self, stale_seconds: float = STALE_SECONDS) -> list[str]:
        """Put back in the queue the jobs whose worker died: one on this machine whose process is gone,
        or any whose heartbeat is older than `stale_seconds`. A job interrupted MAX_ATTEMPTS times
        fails instead. Returns the ids put back."""
        self._ensure()
        host, now, requeued = socket.gethostname(), time.time(), []
        for path in sorted(self.active_dir.glob("*.json")):
            job = _read_job(path)
            if job is None:
                continue
            dead = (job.host == host and job.pid != os.getpid() and not pid_alive(job.pid)) or (
                now - job.heartbeat > stale_seconds)
            if not dead:
                continue
            if job.attempts >= MAX_ATTEMPTS:
                job.stage = "mislukt"
                job.message = (f"de verwerking is {job.attempts} keer afgebroken; het bestand is niet toegevoegd. "
                               "Vraag de beheerder naar het logboek van de verwerker.")
                self.save(job)
                continue
            back = self.queued_dir / path.name
            try:
                os.rename(path, back)  # atomic: of two recovering workers, one moves it
            except FileNotFoundError:
                continue
            job.stage, job.done, job.total, job.heartbeat = "wachtrij", 0, 0, time.time()
            job.message = "opnieuw in de wachtrij na een onderbroken verwerking"
            _write_json(back, job.as_json())
            requeued.append(job.id)
        return requeued

    def prune(self, keep_seconds: float = KEEP_DONE_SECONDS) -> None:
        """Forget finished jobs older than `keep_seconds`."""
        now = time.time()
        for path in self.done_dir.glob("*.json"):
            job = _read_job(path)
            if job is not None and now - (job.finished or job.created) > keep_seconds:
                path.unlink(missing_ok=True)

    def pending(self) -> bool:
        """True when a job waits in the queue or is being worked on."""
        return any(self.queued_dir.glob("*.json")) or any(self.active_dir.glob("*.json"))
