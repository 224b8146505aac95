"""Start, wait for and stop local servers (Streamlit, Chroma) and the headless Chromium that drives them.

Used by `rag bench` (app start-up) and by the tests. Everything binds to and talks to 127.0.0.1 only.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

LOCALHOST = "127.0.0.1"
APP_FILE = Path(__file__).resolve().parents[2] / "app.py"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
# No proxy: a health check must never leave this machine.
_LOCAL_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, timeout: float = 60.0, proc: subprocess.Popen | None = None, poll: float = 0.25) -> None:
    """Poll `url` until it answers 200; fail early if `proc` exits."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before answering {url}")
        try:
            with _LOCAL_OPENER.open(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except Exception as exc:  # noqa: BLE001 - connection refused while starting
            last = exc
        time.sleep(poll)
    raise TimeoutError(f"{url} did not answer within {timeout}s ({last})")


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Terminate a child process we started (kill it if it does not stop)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)


def start_streamlit(
    port: int, env: dict[str, str], log_path: Path, app: Path = APP_FILE, extra_args: tuple[str, ...] = ()
) -> subprocess.Popen:
    """`streamlit run app.py` on 127.0.0.1:`port`, headless, no usage statistics; output to `log_path`.
    `extra_args` are more Streamlit options (e.g. `--secrets.files PATH`)."""
    full_env = {**os.environ, **env, "NO_PROXY": "127.0.0.1,localhost"}
    with open(log_path, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", app.name, "--server.port", str(port),
             "--server.address", LOCALHOST, "--server.headless", "true", "--browser.gatherUsageStats", "false",
             *extra_args],
            cwd=app.parent, env=full_env, stdout=out, stderr=subprocess.STDOUT,
        )


def peak_rss_mb(pid: int) -> float | None:
    """Peak resident memory (VmHWM) of a running process in MB, or None where /proc cannot tell."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
