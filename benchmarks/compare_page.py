"""Time the Compare page as a newcomer meets it: a fresh clone, no runs/ folder, no score cache, real Chromium.

    python -m benchmarks.compare_page            # clones HEAD into a temp folder and measures there
    python -m benchmarks.compare_page --here     # measures this working tree (uncommitted changes included)

Starts `streamlit run` in the clone with an empty score cache and runs folder, warms the server
process on Home (imports), then opens /compare with the default selection and records the seconds
from navigation to the first sample grid and to the full scoreboard (every row ready, the charts
drawn, the script run over). Then the same in a new browser session (reopened: it loads Streamlit's
frontend again), away to Home and back through the sidebar in one session, every shipped
model at once, and a seed no checkpoint ships a scorecard for (scored in the background while the
page stays usable). Writes benchmarks/compare_page.md. A measurement, not a test; the targets
(first visit under 10 s, reopened under 2 s, all shipped under 20 s) are checked here, not in tests.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-dev-shm-usage"]
TARGETS = {"first visit": 10.0, "reopened": 2.0, "reopened through the sidebar (same session)": 2.0, "all shipped": 20.0}


def grid_count(page) -> int:
    return page.locator('[data-testid="stImage"]').filter(has_text=" · ").count()


def time_view(page, url: str, timeout_ms: int = 600_000) -> tuple[float, float]:
    """(seconds to the first grid, seconds to the full scoreboard) for one navigation."""
    start = time.perf_counter()
    page.goto(url)
    page.locator('[data-testid="stImage"]').filter(has_text=" · ").first.wait_for(timeout=timeout_ms)
    first = time.perf_counter() - start
    page.get_by_role("heading", name="Charts").wait_for(timeout=timeout_ms)
    page.wait_for_function("""() => !document.body.innerText.includes('in the background…')
        && !document.querySelector('[data-testid="stStatusWidget"]')
        && document.querySelectorAll('[data-testid="stPlotlyChart"]').length >= 4""", timeout=timeout_ms)
    return first, time.perf_counter() - start


def fresh_clone() -> Path:
    target = Path(tempfile.mkdtemp(prefix="genlib-fresh-")) / "lab"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(target)], check=True)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--here", action="store_true", help="measure this working tree instead of a fresh clone")
    parser.add_argument("--port", type=int, default=8599)
    args = parser.parse_args()
    tree = ROOT if args.here else fresh_clone()
    scratch = Path(tempfile.mkdtemp(prefix="genlib-bench-"))
    env = {**os.environ, "GENLIB_SCORE_CACHE": str(scratch / "scores"), "GENLIB_RUNS_DIR": str(scratch / "runs")}
    env.pop("GENLIB_CHECKPOINTS", None)
    url = f"http://127.0.0.1:{args.port}"
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless",
                               "true", "--server.port", str(args.port), "--server.fileWatcherType", "none",
                               "--browser.gatherUsageStats", "false"],
                              cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows: list[tuple[str, int, float, float]] = []
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        shipped = sorted(p.name for p in (tree / "checkpoints").iterdir()
                         if (p / "config.json").exists() and p.name != "digit-classifier")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                        args=CHROMIUM_ARGS)

            def visit(label: str, address: str) -> None:
                page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
                first, full = time_view(page, address)
                rows.append((label, grid_count(page), first, full))
                page.context.close()

            warm = browser.new_page()
            warm.goto(url)  # the server process's own start (imports torch, reads MNIST) is not the page's
            warm.get_by_role("heading", name="Generative Model Lab").wait_for(timeout=300_000)
            warm.close()
            visit("first visit", f"{url}/compare")
            visit("reopened", f"{url}/compare")
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            time_view(page, f"{url}/compare")
            page.get_by_role("link", name="Home").click()  # away and back through the app's own navigation
            page.get_by_role("heading", name="Generative Model Lab").wait_for(timeout=120_000)
            page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')")
            start = time.perf_counter()
            page.get_by_role("link", name="Compare").click()
            page.locator('[data-testid="stImage"]').filter(has_text=" · ").first.wait_for(timeout=120_000)
            first = time.perf_counter() - start
            page.get_by_role("heading", name="Charts").wait_for(timeout=120_000)
            page.wait_for_function("""() => !document.querySelector('[data-testid="stStatusWidget"]')
                && document.querySelectorAll('[data-testid="stPlotlyChart"]').length >= 4""")
            rows.append(("reopened through the sidebar (same session)", grid_count(page), first,
                         time.perf_counter() - start))
            page.context.close()
            visit("all shipped", f"{url}/compare?" + urllib.parse.urlencode([("cmp_models", n) for n in shipped]))
            visit("seed 1 (no stored scorecards: scored in the background)", f"{url}/compare?cmp_seed=1")
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(scratch, ignore_errors=True)
        if not args.here:
            shutil.rmtree(tree.parent, ignore_errors=True)
    where = "this working tree" if args.here else "a fresh clone of HEAD"
    lines = ["# Compare page timing\n",
             f"Command: `python -m benchmarks.compare_page` ({where}, "
             f"no runs/ folder, an empty score cache; {platform.machine()}, {os.cpu_count()} CPUs, CPU torch, real "
             f"Chromium). Seconds from navigation, each visit in a new browser session.\n",
             "| visit | grids | first grid s | full scoreboard s | target |", "|---|---|---|---|---|"]
    for label, grids, first, full in rows:
        target = TARGETS.get(label)
        verdict = "" if target is None else f"< {target:g} s: {'met' if full < target else 'MISSED'}"
        lines.append(f"| {label} | {grids} | {first:.1f} | {full:.1f} | {verdict} |")
    lines.append("\nFull scoreboard: every selected model's row is ready (nothing left scoring in the background), "
                 "the four charts are drawn and the script run has ended.\n")
    text = "\n".join(lines)
    Path(__file__).with_name("compare_page.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
