"""Ingestion as a job: a durable queue of uploads (rag.ingest.queue) and a worker process that
ingests them outside the app's process, at lower priority than questions (rag.ingest.worker)."""

from .queue import STAGE_LABELS, Job, JobQueue, file_sha256

__all__ = ["STAGE_LABELS", "Job", "JobQueue", "file_sha256"]
