"""The dashboard in a real browser: `llmops app` on 127.0.0.1 and headless Chromium (Debian's
package, see scripts/chromium.sh) driven by Playwright through ``executable_path``.

A page has finished when streamlit's ``stApp`` element reports that its script is not running
and its connection is up; a fixed sleep is flaky on this machine. Shared by the browser test
and benchmarks/bench_dashboard.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DONE = (
    "[data-testid=stApp][data-test-script-state=notRunning][data-test-connection-state=CONNECTED]"
)
# Flags for a container without a GPU, a sandbox or the network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def chromium_path() -> str | None:
    """A system Chromium, or None."""
    found = os.environ.get("LLMOPS_CHROMIUM")
    if found:
        return found
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def dashboard(root: Path, *, timeout: float = 90.0) -> Iterator[str]:
    """`llmops app` for the workspace ROOT on a free port; yields its URL once healthy."""
    port = free_port()
    env = {**os.environ, "LLMOPS_WORKSPACE": str(root)}
    log = open(root / "dashboard.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmops", "app", "--port", str(port), "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        assert proc.stdout is not None
        text = ""
        while True:  # one JSON document, maybe indented over several lines
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"llmops app exited: {(root / 'dashboard.log').read_text()}")
            text += line
            try:
                info = json.loads(text)
                break
            except json.JSONDecodeError:
                continue
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(info["health"], timeout=2) as r:
                    if r.read().decode() == "ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the dashboard did not answer: {(root / 'dashboard.log').read_text()}"
                )
            time.sleep(0.2)
        yield str(info["url"])
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        log.close()


@contextmanager
def browser(executable: str) -> Iterator[Any]:
    """A headless Chromium; yields a Playwright browser."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def settle(page: Any, heading: str, *, timeout_ms: float = 60_000) -> None:
    """Wait until HEADING is shown and the app has finished running its script."""
    page.get_by_role("heading", name=heading).first.wait_for(timeout=timeout_ms)
    page.wait_for_selector(DONE, timeout=timeout_ms)
    # skeletons stand in for elements still on their way
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=stSkeleton]')", timeout=timeout_ms
    )


def open_page(b: Any, url: str, heading: str, *, width: int = 1400) -> tuple[Any, float]:
    """A new page at URL in B (a browser: a new visitor, nothing cached; or a browser context:
    a returning one), settled; returns it with the seconds it took to settle."""
    page = b.new_page()
    page.set_viewport_size({"width": width, "height": 1000})
    start = time.perf_counter()
    page.goto(url, wait_until="domcontentloaded")
    settle(page, heading)
    return page, time.perf_counter() - start
