"""Load: many threads on one shared Assistant, and five browser sessions on one `streamlit run`.

Timings are printed, never asserted (DESIGN.md: this machine is shared and noisy). The
thread test is bounded by RAG_LOAD_BUDGET_S seconds (default 90): questions not started
by then are skipped and counted, so the run stays short on a slow or busy machine.
Browser tests reuse the `streamlit run` fixture of tests/test_browser.py.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from apphelpers import KNELPUNTEN
from conftest import ROOT

# The `streamlit run` server and Playwright fixtures of the browser tests (skip locally, fail in CI).
from test_browser import ANSWER_MS, CHROMIUM, CHROMIUM_ARGS, _ask, server, sync_playwright  # noqa: F401

from rag.answering import Answer, Assistant

THREADS = 16
PER_THREAD = 50
BUDGET_S = float(os.environ.get("RAG_LOAD_BUDGET_S", "90"))


def _gold_questions(n: int) -> list[str]:
    rows = [json.loads(line) for line in (ROOT / "evals" / "tune.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    questions = list(dict.fromkeys(r["user_input"] for r in rows))
    return random.Random(16).sample(questions, min(n, len(questions)))


def _signature(answer: Answer) -> tuple:
    return (answer.text, answer.refused, tuple(c.passage.chunk_id for c in answer.citations),
            tuple(p.chunk_id for p in answer.passages), tuple(answer.notes))


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@pytest.mark.slow
def test_16_threads_share_one_assistant(corpus_index):
    settings, index = corpus_index
    assistant = Assistant(settings, index=index)
    questions = _gold_questions(PER_THREAD)
    assert len(questions) == PER_THREAD

    single: dict[str, tuple] = {}
    single_times = []
    started = time.perf_counter()
    for q in questions:
        t0 = time.perf_counter()
        single[q] = _signature(assistant.ask(q))
        single_times.append(time.perf_counter() - t0)
    single_wall = time.perf_counter() - started
    assert any(s[1] for s in single.values()) and not all(s[1] for s in single.values()), "a mix of answers and refusals"

    lock = threading.Lock()
    results: list[tuple[str, tuple]] = []
    latencies: list[float] = []
    errors: list[str] = []
    skipped = 0
    barrier = threading.Barrier(THREADS)
    deadline = time.monotonic() + BUDGET_S

    def worker(i: int) -> None:
        nonlocal skipped
        shift = (i * 7) % len(questions)  # every thread its own order: different questions run together
        order = questions[shift:] + questions[:shift]
        barrier.wait()
        for q in order:
            if time.monotonic() > deadline:
                with lock:
                    skipped += 1
                continue
            t0 = time.perf_counter()
            try:
                signature = _signature(assistant.ask(q))
            except Exception as exc:  # noqa: BLE001 - every error counts
                with lock:
                    errors.append(f"{q!r}: {exc.__class__.__name__}: {exc}")
                continue
            with lock:
                latencies.append(time.perf_counter() - t0)
                results.append((q, signature))

    started = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(worker, range(THREADS)))
    wall = time.perf_counter() - started

    done = len(results)
    print(
        f"\nsingle thread: {len(questions)} questions in {single_wall:.1f}s = {len(questions) / single_wall:.2f} q/s, "
        f"p50 {statistics.median(single_times) * 1000:.0f} ms, p95 {_p(single_times, 0.95) * 1000:.0f} ms"
    )
    if latencies:
        print(
            f"{THREADS} threads x {PER_THREAD}: {done} answered, {len(errors)} errors, {skipped} skipped after the "
            f"{BUDGET_S:.0f}s budget, in {wall:.1f}s = {done / wall:.2f} q/s "
            f"({done / wall / (len(questions) / single_wall):.2f}x single), "
            f"p50 {statistics.median(latencies) * 1000:.0f} ms, p95 {_p(latencies, 0.95) * 1000:.0f} ms, "
            f"max {max(latencies) * 1000:.0f} ms"
        )
    assert not errors, errors[:5]
    assert done + skipped == THREADS * PER_THREAD
    assert done >= THREADS, "each thread should have answered at least once within the budget"
    different = [q for q, signature in results if signature != single[q]]
    assert not different, f"{len(different)} answers differ from the single-threaded ones, e.g. {different[:3]}"
    # The shared index is still fine afterwards.
    assert "91%" in assistant.ask(KNELPUNTEN).text


# -- five browser sessions on one server ------------------------------------------------------------

# Self-contained questions (no follow-up condensing) with a fact each answer must contain.
SESSION_QUESTIONS = [
    (KNELPUNTEN, "91%"),
    ("Wat zijn de vijf werkzame factoren?", "gedeelde visie"),
    ("Hoe hoog was de respons van samenwerkingsverbanden en gemeenten op het onderzoek?", "70%"),
    ("Welk deel van de samenwerkingsverbanden ervaart knelpunten?", "95%"),
    ("Aan hoeveel pilots werken samenwerkingsverbanden en gemeenten samen?", "200 pilots"),
]
SESSIONS = 5
ROUNDS = 3


@pytest.mark.slow
@pytest.mark.browser
def test_five_browser_sessions_get_their_own_answers(server, sync_playwright, tmp_path):  # noqa: F811
    plans = [[SESSION_QUESTIONS[(i + r) % len(SESSION_QUESTIONS)] for r in range(ROUNDS)] for i in range(SESSIONS)]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            contexts = [browser.new_context(viewport={"width": 1100, "height": 900}) for _ in range(SESSIONS)]
            pages = [c.new_page() for c in contexts]
            for page in pages:
                page.goto(server, wait_until="domcontentloaded")
            for page in pages:
                page.get_by_text("Voorbeeldvragen").wait_for(timeout=ANSWER_MS)

            def messages(page, role: str):
                avatar = page.locator(f'[data-testid="stChatMessageAvatar{role}"]')
                return page.locator('[data-testid="stChatMessage"]').filter(has=avatar)

            started = time.perf_counter()
            waits = []
            for r in range(ROUNDS):
                for page, plan in zip(pages, plans):  # all sessions ask at (nearly) the same time
                    _ask(page, plan[r][0])
                for i, (page, plan) in enumerate(zip(pages, plans)):
                    t0 = time.perf_counter()
                    answer = messages(page, "Assistant").nth(r)
                    answer.get_by_text(plan[r][1]).first.wait_for(timeout=ANSWER_MS)
                    waits.append(time.perf_counter() - t0)
            wall = time.perf_counter() - started
            print(f"\n{SESSIONS} sessions x {ROUNDS} questions: {wall:.1f}s, slowest wait {max(waits):.1f}s")

            for i, (page, plan) in enumerate(zip(pages, plans)):
                asked = [t.strip() for t in messages(page, "User").locator('[data-testid="stChatMessageContent"]').all_inner_texts()]
                assert asked == [q for q, _ in plan], f"session {i} shows {asked}"
                assert messages(page, "Assistant").count() == ROUNDS
                for r, (_, fact) in enumerate(plan):
                    assert fact in messages(page, "Assistant").nth(r).inner_text(), (i, r, fact)
                assert page.locator('[data-testid="stException"]').count() == 0
            pages[0].screenshot(path=str(tmp_path / "session0.png"), full_page=True)
        finally:
            browser.close()
