"""How fast background work runs while a page watches it: a PixelCNN drawing two digits pixel by pixel.

    python -m benchmarks.live_work              # idle machine and 2 busy processes beside it
    python -m benchmarks.live_work --loads 0    # idle only

The same draw (the shipped pixelcnn-mnist, 2 digits, seed 0: 784 network passes) is timed three ways:
on the background runner in this process with no page (the floor), and in the Autoregressive page in
real Chromium, from the Draw click to the last row, under the project's .streamlit/config.toml and
under Streamlit's default ``runner.postScriptGC = true``. That default runs a full ``gc.collect()``
after every script run, each 0.5 s poll of the live grid included; with torch, transformers and
diffusers loaded it holds the GIL for about 0.3 s, and the runner's thread waits. ``--loads`` adds
that many busy processes (a loaded machine, as in CI). Writes benchmarks/live_work.md. A
measurement, not a test.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch
from playwright.sync_api import sync_playwright

from benchmarks.compare_page import launch_chromium, start_server
from genlib import background
from genlib.checkpoints import load_model
from genlib.families.autoregressive.analysis import PixelSampling

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT = ROOT / "checkpoints" / "pixelcnn-mnist"
DIGITS = 2
LIMIT_S = 1500  # a draw still unfinished by then is recorded as "> LIMIT_S"


def busy() -> None:
    while True:
        pass


def runner_alone() -> float:
    """Seconds for the draw on the background runner, in this process, with no page."""
    model, _ = load_model(CHECKPOINT)
    start = time.perf_counter()
    work = background.start(PixelSampling(model, DIGITS, 0))
    snap = work.wait(timeout=LIMIT_S)
    if snap.status != "finished":
        raise SystemExit(f"the runner's draw ended {snap.status}: {snap.message}")
    return time.perf_counter() - start


def in_page(post_script_gc: bool | None, port: int) -> float | None:
    """Seconds from the Draw click to "after 28 of 28 rows" on the Autoregressive page (None: over LIMIT_S).
    ``post_script_gc`` None keeps the project's config; True or False overrides it on the command line."""
    scratch = Path(tempfile.mkdtemp(prefix="genlib-bench-"))
    env = {**os.environ, "GENLIB_RUNS_DIR": str(scratch / "runs"), "OMP_NUM_THREADS": "1"}
    override = [] if post_script_gc is None else ["--runner.postScriptGC", str(post_script_gc).lower()]
    server, url = start_server(ROOT, env, port, *override)
    try:
        with sync_playwright() as p:
            browser = launch_chromium(p)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{url}/autoregressive")
            page.get_by_role("heading", name="Autoregressive models").wait_for(timeout=300_000)
            page.get_by_text("Press Draw to watch").wait_for(timeout=300_000)
            box = page.get_by_label("Digits", exact=True)
            box.fill(str(DIGITS))
            box.press("Enter")
            page.wait_for_timeout(1000)
            page.wait_for_function("() => document.querySelector('[data-testid=\"stApp\"]')"
                                   "?.getAttribute('data-test-script-state') === 'notRunning'", timeout=120_000)
            start = time.perf_counter()
            page.get_by_role("button", name="Draw").click()
            try:
                page.get_by_text("after 28 of 28 rows").wait_for(timeout=LIMIT_S * 1000)
                took = time.perf_counter() - start
            except Exception:  # noqa: BLE001 - playwright's timeout: recorded as over the limit
                took = None
            browser.close()
        return took
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(scratch, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loads", type=int, nargs="+", default=[0, 2], help="busy processes beside each run")
    parser.add_argument("--port", type=int, default=8597)
    args = parser.parse_args()
    rows = []
    for load in args.loads:
        hogs = [multiprocessing.Process(target=busy, daemon=True) for _ in range(load)]
        for hog in hogs:
            hog.start()
        try:
            rows.append((load, "background runner, no page", runner_alone()))
            for label, gc_setting in (("page, the project's config (postScriptGC = false)", None),
                                      ("page, Streamlit's default (postScriptGC = true)", True)):
                rows.append((load, label, in_page(gc_setting, args.port)))
                print(rows[-1], flush=True)
        finally:
            for hog in hogs:
                hog.terminate()
    lines = ["# Background work while a page watches it\n",
             f"Command: `python -m benchmarks.live_work --loads {' '.join(map(str, args.loads))}` "
             f"({platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, real Chromium). The shipped "
             f"pixelcnn-mnist draws {DIGITS} digits pixel by pixel (784 passes), seconds from the Draw click to the "
             "last row.\n",
             "| busy processes beside it | where | seconds |", "|---|---|---|"]
    for load, label, took in rows:
        lines.append(f"| {load} | {label} | {'> %d' % LIMIT_S if took is None else f'{took:.1f}'} |")
    lines.append("\nStreamlit's default runs gc.collect() after every script run, each 0.5 s poll of the live grid "
                 "included, holding the GIL for about 0.3 s; the sampler's thread waits for it at every one of its "
                 "small torch calls. .streamlit/config.toml turns it off; Python's own collector still runs.\n")
    text = "\n".join(lines)
    Path(__file__).with_name("live_work.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
