"""`rag bench` figures for ingestion as a job: a generated report PDF uploaded to the queue and
ingested by a real `rag worker` process, as the Bronnen page does.

- time to searchable and to fully answerable, from the moment the job is queued (the worker is
  already running with its model loaded, as it is after the app's first upload);
- the encoder's tokens/s during that ingest against its own rate on the same texts, alone;
- a question's latency while a second report is ingested (one unseen question a second), against
  its idle latency (one run, p50 over different unseen questions; a ratio, never an assertion).

The PDF has a text layer and a ruled table every fifth page (table detection runs on every
page); its text is recombined from the shipped corpus' sentences, so it reads like the report.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

PAGES = 100
CHARS_PER_PAGE = 2600  # a page of a real report: ~400 Dutch words
IDLE_QUESTIONS = 15
ENCODE_SAMPLE = 300  # texts encoded alone for the encoder's own rate
TARGET_SEARCHABLE_S = 30.0
TARGET_ANSWERABLE_S = 75.0
TARGET_DURING_RATIO = 2.0
POLL_S = 0.05
ASK_EVERY_S = 1.0
JOB_DEADLINE_S = 3600.0


def write_report_pdf(path: Path, material, pages: int = PAGES, seed: int = 1) -> Path:
    """A `pages`-page PDF report with a text layer: headings, paragraphs, lists, and a ruled table
    every fifth page. Needs fpdf2 (a development dependency)."""
    try:
        from fpdf import FPDF
    except ImportError as exc:  # pragma: no cover - dev dependency
        raise RuntimeError("the job bench writes its PDF with fpdf2; `pip install fpdf2`") from exc
    from .bench import Synthesizer

    synth = Synthesizer(material, seed)
    rng = random.Random(seed)
    font = next((p for p in (Path("/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf"),
                             Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")) if p.is_file()), None)
    pdf = FPDF()
    pdf.set_title(f"Rapport aansluiting onderwijs en jeugdhulp, regio {seed}")
    if font:
        pdf.add_font("Body", "", str(font))
        pdf.set_font("Body", size=10)
    else:
        pdf.set_font("helvetica", size=10)

    def text(value: str) -> str:
        return value if font else value.encode("latin-1", "replace").decode("latin-1")

    for number in range(1, pages + 1):
        pdf.add_page()
        pdf.set_font_size(14)
        pdf.multi_cell(0, 8, text(f"{number}. {synth.vary(rng.choice(material.headings))}"),
                       new_x="LMARGIN", new_y="NEXT")
        pdf.set_font_size(10)
        written = 0
        budget = CHARS_PER_PAGE - (500 if number % 5 == 0 else 0)
        while written < budget:
            if rng.random() < 0.25 and material.items:
                block = "\n".join(f"- {synth.vary(rng.choice(material.items))}" for _ in range(rng.randint(3, 5)))
            else:
                block = " ".join(synth.vary(rng.choice(material.sentences)) for _ in range(rng.randint(3, 5)))
            pdf.multi_cell(0, 5, text(block), new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2)
            written += len(block)
        if number % 5 == 0:
            rows = [("Regio", "Leerlingen met arrangement", "Tevreden (%)")]
            rows += [(f"Regio {rng.randint(1, 40)}", str(rng.randint(100, 5000)), str(rng.randint(10, 90)))
                     for _ in range(4)]
            from fpdf.fonts import FontFace

            with pdf.table(headings_style=FontFace()) as table:
                for row in rows:
                    cells = table.row()
                    for cell in row:
                        cells.cell(text(cell))
    path.parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(path))
    return path


def _p50(values: list[float]) -> float:
    from .bench import percentile

    return percentile(values, 50)


def _wait_job(queue, job_id: str, worker: subprocess.Popen, during=None):
    """Poll the job until it ends; `during()` runs between polls (the questions asked meanwhile)."""
    deadline = time.monotonic() + JOB_DEADLINE_S
    while time.monotonic() < deadline:
        job = queue.get(job_id)
        if job is not None and job.final:
            return job
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited with code {worker.returncode}")
        if during is not None:
            during()
        else:
            time.sleep(POLL_S)
    raise RuntimeError("the job did not finish within the deadline")


def bench_job(base_settings, embeddings, material, questions: list[str], workdir: Path, pages: int = PAGES,
              say=print) -> dict:
    """Upload-to-searchable/answerable times of a `pages`-page PDF through a real worker, the
    encoder's rate during it, and a question's latency during an ingest against idle."""
    from .answering import Assistant
    from .bench import _child_env, _encode_calls, _settings_for, count_tokens, ingest_texts
    from .chunking import chunk_documents
    from .index import Index
    from .ingest import JobQueue
    from .loaders import load_file

    folder = workdir / "job"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(base_settings.corpus_dir, folder / "corpus")
    settings = _settings_for(base_settings, folder / "corpus", folder / "index")
    say("job bench: indexing the shipped corpus, writing two PDFs")
    index = Index(settings, embeddings=embeddings)
    index.ingest()
    assistant = Assistant(settings, index=index.open())
    first = write_report_pdf(folder / "upload" / "rapport-regio-1.pdf", material, pages, seed=1)
    second = write_report_pdf(folder / "upload" / "rapport-regio-2.pdf", material, pages, seed=2)

    # What the ingest encodes for the first PDF: passages and their answer lines, in the same calls.
    chunks = chunk_documents(load_file(first).documents, settings.chunk_size, settings.chunk_overlap)
    calls = ingest_texts(chunks, max(settings.embed_batch_size, 16) * 4)
    texts = [t for call in calls for t in call]
    tokens = count_tokens(embeddings, texts)
    passage_tokens = count_tokens(embeddings, [c.embed_text for c in chunks])
    line_share = 1 - len(chunks) / len(texts)
    # The encoder's own rate: every k-th of those texts (passages and lines alike), alone in this process.
    sample = [texts[:: max(1, len(texts) // ENCODE_SAMPLE)]]
    raw_s = _encode_calls(embeddings, sample, min_seconds=3.0)
    sample_tokens = count_tokens(embeddings, sample[0])
    raw_rate = (sample_tokens / raw_s) if sample_tokens else len(sample[0]) / raw_s

    say(f"job bench: encoder alone {raw_rate:.0f} tokens/s; starting `rag worker`")
    queue = JobQueue.for_settings(settings)
    src = str(Path(__file__).resolve().parents[1])  # the worker runs this very code, installed or not
    env = {**os.environ, **_child_env(settings),
           "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}
    log = (folder / "worker.log").open("ab")
    worker = subprocess.Popen([sys.executable, "-m", "rag.cli", "worker"], env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    try:
        warm = queue.enqueue(b"# Opwarmen\n\nDe verwerker laadt het model.\n", "opwarmen.md", "opwarmen.md")
        _wait_job(queue, warm.id, worker)
        say("job bench: worker ready; idle questions")
        pool = list(questions)
        idle = []
        for question in pool[:IDLE_QUESTIONS]:
            started = time.perf_counter()
            assistant.ask(question)
            idle.append(time.perf_counter() - started)
        pool = pool[IDLE_QUESTIONS:]

        say(f"job bench: ingesting a {pages}-page PDF ({len(chunks)} passages, {len(texts)} texts encoded)")
        job = queue.enqueue(first.read_bytes(), first.name, first.name)
        done = _wait_job(queue, job.id, worker)
        if done.stage != "klaar":
            raise RuntimeError(f"the job ended '{done.stage}': {done.message}")
        timings = done.timings
        answerable = done.finished - done.created
        searchable = timings.get("doorzoekbaar", answerable)
        # Passages are encoded before the document is searchable, its answer lines after.
        passages_s = max(1e-9, searchable - timings.get("verwerken", 0.0))
        lines_s = max(1e-9, answerable - searchable)

        say("job bench: a second PDF while questions are asked")
        during: list[float] = []

        def ask_one() -> None:
            # One unseen question every ASK_EVERY_S, as a colleague asks while the report is added;
            # when the unseen ones run out, the ingest is only waited for.
            if not pool:
                time.sleep(POLL_S)
                return
            started = time.perf_counter()
            assistant.ask(pool.pop(0))
            spent = time.perf_counter() - started
            during.append(spent)
            time.sleep(max(0.0, ASK_EVERY_S - spent))

        job2 = queue.enqueue(second.read_bytes(), second.name, second.name)
        done2 = _wait_job(queue, job2.id, worker, during=ask_one)
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
        log.close()
        index.close()
    idle_p50 = _p50(idle)
    during_p50 = _p50(during) if during else None
    return {
        "pages": pages,
        "passages": len(chunks),
        "texts_encoded": len(texts),
        "answer_line_share": round(line_share, 3),
        "queued_to_reading_s": round(timings.get("lezen", 0.0), 2),
        "reading_s": round(timings.get("verwerken", 0.0) - timings.get("lezen", 0.0), 2),
        "searchable_s": round(searchable, 2),
        "answerable_s": round(answerable, 2),
        "encode_tokens": tokens,
        "passage_tokens_per_s": round(passage_tokens / passages_s, 1) if tokens else None,
        "line_tokens_per_s": round((tokens - passage_tokens) / lines_s, 1) if tokens else None,
        "encoder_tokens_per_s": round(raw_rate, 1),
        "idle_ask_p50_ms": round(idle_p50 * 1000, 1),
        "during_ask_p50_ms": round(during_p50 * 1000, 1) if during_p50 else None,
        "during_ratio": round(during_p50 / idle_p50, 2) if during_p50 else None,
        "asks_during": len(during),
        "answerable_with_questions_s": round(done2.finished - done2.created, 2),
    }


def render_job(result: dict) -> str:
    """The job figures as lines for the terminal, with the issue's targets."""
    r = result
    alone = r["encoder_tokens_per_s"]

    def share(rate) -> str:
        return f"{rate} tokens/s = {rate / alone:.2f} of" if rate else "n/a vs"
    return "\n".join([
        f"ingest job, {r['pages']}-page PDF with a text layer ({r['passages']} passages, {r['texts_encoded']} texts "
        f"encoded, answer lines {r['answer_line_share']:.0%} of them):",
        f"  queued -> reading {r['queued_to_reading_s']}s, reading {r['reading_s']}s, "
        f"searchable {r['searchable_s']}s (target <= {TARGET_SEARCHABLE_S:.0f}s), "
        f"answerable {r['answerable_s']}s (target <= {TARGET_ANSWERABLE_S:.0f}s)",
        f"  encoder during the ingest: passages {share(r['passage_tokens_per_s'])}, answer lines "
        f"{share(r['line_tokens_per_s'])} its own rate alone ({alone} tokens/s on a sample of the same texts)",
        f"  question during an ingest: p50 {r['during_ask_p50_ms']} ms vs idle {r['idle_ask_p50_ms']} ms = "
        f"x{r['during_ratio']} (target <= x{TARGET_DURING_RATIO:.0f}; {r['asks_during']} questions); that ingest "
        f"took {r['answerable_with_questions_s']}s",
    ])
