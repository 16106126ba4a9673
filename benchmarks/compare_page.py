"""Time the Compare page in a real browser: first open (nothing cached) and a reload.

    python -m benchmarks.compare_page

Starts `streamlit run` with an empty score cache, opens /compare in Debian's Chromium (Python
Playwright) with the default selection (every shipped model), and measures the seconds until the
grids, the scoreboard and the charts are drawn and the script run is over; then opens it again in
a new browser session (the server's caches are warm) and once more from Home via the sidebar. Writes
benchmarks/compare_page.md. A measurement, not a test.
"""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent


def wait_drawn(page) -> None:
    page.get_by_role("heading", name="Charts").wait_for(timeout=300_000)
    page.locator('[data-testid="stPlotlyChart"]').nth(3).wait_for(timeout=300_000)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=300_000)


def main() -> None:
    cache = tempfile.mkdtemp(prefix="genlib-score-")
    port = 8599
    env = {**os.environ, "GENLIB_SCORE_CACHE": cache}
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless",
                               "true", "--server.port", str(port), "--browser.gatherUsageStats", "false"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                        args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)  # warm the server process itself (imports) before timing the page
            page.get_by_role("heading", name="Generative Model Lab").wait_for(timeout=120_000)
            start = time.perf_counter()
            page.goto(f"{url}/compare")
            wait_drawn(page)
            first = time.perf_counter() - start
            models = page.locator('[data-testid="stImage"]').filter(has_text=" · ").count()
            page.close()
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            start = time.perf_counter()
            page.goto(f"{url}/compare")
            wait_drawn(page)
            second = time.perf_counter() - start
            page.get_by_role("link", name="Home").click()  # then back through the app's own navigation
            page.get_by_role("heading", name="Generative Model Lab").wait_for(timeout=120_000)
            start = time.perf_counter()
            page.get_by_role("link", name="Compare").click()
            wait_drawn(page)
            third = time.perf_counter() - start
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(cache, ignore_errors=True)
    text = (f"# Compare page timing\n\nCommand: `python -m benchmarks.compare_page` ({platform.machine()}, "
            f"{os.cpu_count()} CPUs, CPU torch).\n\n| open | seconds |\n|---|---|\n"
            f"| first (empty score cache, {models} shipped models + 4 reference sets) | {first:.1f} |\n"
            f"| again, in a new browser session (loads Streamlit's frontend too) | {second:.1f} |\n"
            f"| again, from Home through the sidebar link | {third:.1f} |\n\nTimed from navigation until the grids, "
            f"scoreboard and all four charts are drawn and the script run has ended.\n")
    Path(__file__).with_name("compare_page.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
