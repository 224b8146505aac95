"""App start-up benchmark: `streamlit run` to the first answer in a real browser, and the app's peak memory.

What a user sees: the browser is already open; the clock starts when `streamlit run app.py` starts and
stops when the first answer (its "Details" expander, drawn last) is on the page. Typed as soon as the chat
box appears, the question meets the model still loading (the worst case); typed after some reading time
(`think_s`), it shows what the background warm-up saves.
"""

from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path

from .localserver import (
    APP_FILE,
    CHROMIUM,
    CHROMIUM_ARGS,
    LOCALHOST,
    free_port,
    peak_rss_mb,
    start_streamlit,
    stop_process,
    wait_for_http,
)

log = logging.getLogger(__name__)

CHAT_PLACEHOLDER = "Stel een vraag over onderwijs en jeugdhulp…"
STARTUP_TIMEOUT_S = 120
ANSWER_TIMEOUT_MS = 120_000


class AppBenchUnavailable(RuntimeError):
    """The app cannot be measured here (no Playwright, no Chromium, no app.py)."""


def _check_available() -> None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        raise AppBenchUnavailable("playwright is not installed (pip install -e '.[dev]')") from exc
    if not Path(CHROMIUM).is_file():
        raise AppBenchUnavailable(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    if not APP_FILE.is_file():
        raise AppBenchUnavailable(f"no app at {APP_FILE} (run from a source checkout)")


def measure_app(env: dict[str, str], questions: list[str], workdir: Path, think_s: float = 0.0) -> dict:
    """Start the app over the index named in `env`, ask `questions` in turn in Chromium; timings and memory.

    Returns server_ready_s, page_ready_s and first_answer_s (seconds since `streamlit run` started),
    first_wait_s (from pressing Enter to the first answer), later_answer_p50_s (the other questions),
    peak_rss_mb of the Streamlit process, and how. `think_s` is how long the user reads before typing.
    """
    _check_available()
    from playwright.sync_api import sync_playwright

    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"streamlit-think-{think_s:g}s.log"
    port = free_port()
    url = f"http://{LOCALHOST}:{port}"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        proc = None
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            started = time.perf_counter()
            proc = start_streamlit(port, env, log_path)
            try:
                wait_for_http(f"{url}/_stcore/health", timeout=STARTUP_TIMEOUT_S, proc=proc, poll=0.05)
            except (RuntimeError, TimeoutError) as exc:
                raise RuntimeError(f"{exc}\n{log_path.read_text(errors='replace')[-2000:]}") from exc
            server_ready = time.perf_counter() - started
            page.goto(url, wait_until="domcontentloaded")
            box = page.get_by_placeholder(CHAT_PLACEHOLDER)
            box.wait_for(timeout=ANSWER_TIMEOUT_MS)
            page_ready = time.perf_counter() - started
            assistant = page.locator('[data-testid="stChatMessage"]').filter(
                has=page.locator('[data-testid="stChatMessageAvatarAssistant"]')
            )
            answered: list[float] = []
            waits: list[float] = []
            page.wait_for_timeout(think_s * 1000)
            for i, question in enumerate(questions):
                asked = time.perf_counter()
                box.fill(question)
                box.press("Enter")
                done = assistant.nth(i).locator('[data-testid="stExpander"] summary').filter(has_text="Details")
                done.first.wait_for(timeout=ANSWER_TIMEOUT_MS)
                now = time.perf_counter()
                answered.append(now - started)
                waits.append(now - asked)
            errors = page.locator('[data-testid="stException"]').count()
            rss = peak_rss_mb(proc.pid)
        finally:
            try:
                browser.close()
            finally:  # the server must stop even when the browser is already gone
                if proc is not None:
                    stop_process(proc, timeout=15)
    if errors:
        raise RuntimeError(f"the app showed {errors} exception(s); see {log_path}")
    later = waits[1:]
    return {
        "server_ready_s": round(server_ready, 2),
        "page_ready_s": round(page_ready, 2),
        "think_s": think_s,
        "first_answer_s": round(answered[0], 2),
        "first_wait_s": round(waits[0], 2),
        "later_answer_p50_s": round(statistics.median(later), 2) if later else None,
        "later_answer_max_s": round(max(later), 2) if later else None,
        "peak_rss_mb": round(rss, 1) if rss is not None else None,
        "questions": len(questions),
        "how": (
            "Chromium open first; clock starts at `streamlit run app.py`, first question typed "
            + (f"{think_s:g}s after the chat box shows" if think_s else "as soon as the chat box shows")
            + ", stops when its answer is drawn; peak RSS is VmHWM of the Streamlit process after "
            f"{len(questions)} questions"
        ),
    }
