"""Walk every page of a running Generative Model Lab in real Chromium and report each one.

    python scripts/walk_pages.py --url http://127.0.0.1:7860 [--no-tabs] [--json out.json]

The pages are the ``st.Page`` entries of streamlit_app.py. Each is opened by its own URL; once its
title is drawn and the script run is over (no status widget, every image loaded), the page must show
no Streamlit exception (``[data-testid="stException"]``), no error alert and no error text
(a traceback, or the frontend's "Connection error" when the server has gone). Then each of its tabs
is opened the same way (``--no-tabs`` skips them). Prints one line per page and tab; exits 1 when
any failed. scripts/smoke_container.sh runs it against the container; it needs Python Playwright
(requirements-test.txt) and Debian's Chromium (never ``playwright install``; set GENLIB_CHROMIUM
to use another binary), launched as the browser tests launch it.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
import sys
import time
import urllib.request
from pathlib import Path

import playwright.sync_api as playwright_api

ROOT = Path(__file__).resolve().parent.parent
EXCEPTION = '[data-testid="stException"]'
ERROR_ALERT = '[data-testid="stAlertContentError"]'
ERROR_TEXT = re.compile(r"Traceback \(most recent call last\)|Connection error|Is Streamlit still running\?")
LOAD_MS = 240_000   # a first script run imports torch and loads models, in a container capped at 2 CPUs
try:  # the browser tests' launch arguments, so both drive Chromium the same way
    sys.path.insert(0, str(ROOT))
    from tests.test_e2e_browser import CHROMIUM_ARGS
except Exception:  # pytest missing, or the tests moved: the same arguments
    CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--disable-dev-shm-usage"]
finally:
    sys.path.pop(0)


def app_pages(app: Path = ROOT / "streamlit_app.py") -> list[tuple[str, str]]:
    """(title, url path) of every ``st.Page(...)`` in the router, in its order; the default page is ``""``."""
    pages = []
    for node in ast.walk(ast.parse(app.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "Page" and node.args:
            kw = {k.arg: k.value for k in node.keywords}
            source = ast.literal_eval(node.args[0])
            title = ast.literal_eval(kw["title"]) if "title" in kw else Path(source).stem
            default = "default" in kw and ast.literal_eval(kw["default"]) is True
            url_path = ast.literal_eval(kw["url_path"]) if "url_path" in kw else Path(source).stem
            pages.append((title, "" if default else url_path))
    if not pages:
        raise SystemExit(f"no st.Page(...) found in {app}")
    return pages


def wait_drawn(page, timeout_ms: int = LOAD_MS) -> None:
    """Wait until the last script run is over: for a whole second the app says its script is not running
    (``data-test-script-state``; the status widget is hidden by ``toolbarMode = "minimal"``), no spinner or
    skeleton is shown and every image has loaded."""
    deadline = time.time() + timeout_ms / 1000
    quiet_since = None
    while True:
        busy = page.evaluate("""() => {
            const app = document.querySelector('[data-testid="stApp"]');
            return !app || app.getAttribute('data-test-script-state') !== 'notRunning'
                || !!document.querySelector('[data-testid="stSpinner"], [data-testid="stSkeleton"]')
                || [...document.images].some(i => !i.complete); }""")
        now = time.time()
        if busy:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = now
        elif now - quiet_since >= 1.0:
            return
        if now > deadline:
            raise playwright_api.TimeoutError(f"the page was still running after {timeout_ms / 1000:.0f} s")
        page.wait_for_timeout(250)


def problems(page) -> list[str]:
    """What is wrong on the page now: exceptions, error alerts and error text (empty when all is well)."""
    found = []
    for el in page.locator(EXCEPTION).all():
        found.append("exception: " + " ".join(el.inner_text().split())[:400])
    for el in page.locator(ERROR_ALERT).all():
        found.append("error: " + " ".join(el.inner_text().split())[:400])
    match = ERROR_TEXT.search(page.locator("body").inner_text())
    if match and not found:
        found.append(f"error text: {match.group(0)!r}")
    return found


def server_up(url: str) -> bool:
    """Whether the app still answers its health check."""
    try:
        return urllib.request.urlopen(f"{url}/_stcore/health", timeout=10).read() == b"ok"
    except OSError:
        return False


def check(page, label: str, action, results: list[dict], shots: Path | None = None) -> bool:
    """Run one step (open a page or a tab), wait for it to draw, record and print how it went."""
    start = time.time()
    try:
        action()
        wait_drawn(page)
        errors = problems(page)
    except playwright_api.Error as exc:   # a timeout or a closed page
        errors = [f"{type(exc).__name__}: {str(exc).splitlines()[0]}"] + problems_safe(page)
    seconds = time.time() - start
    ok = not errors
    if shots is not None:
        try:
            page.screenshot(path=str(shots / f"{len(results):02d} {re.sub(r'[^A-Za-z0-9]+', '-', label)}.png"),
                            full_page=True)
        except playwright_api.Error:
            pass
    results.append({"step": label, "ok": ok, "seconds": round(seconds, 1), "end": round(time.time(), 1),
                    "errors": errors})
    print(f"  {'OK    ' if ok else 'FAILED'} {label} ({seconds:.1f} s)" + "".join(f"\n         {e}" for e in errors),
          flush=True)
    return ok


def problems_safe(page) -> list[str]:
    """problems(), for a page that may be gone."""
    try:
        return problems(page)
    except playwright_api.Error:
        return []


def main() -> int:
    """Walk the pages (and their tabs) of the app at --url; 0 when every step is clean."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the app's address, e.g. http://127.0.0.1:7860")
    parser.add_argument("--no-tabs", action="store_true", help="open each page only, not its tabs")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--screenshots", type=Path, help="save a full-page PNG of every step in this folder")
    args = parser.parse_args()
    chromium = os.environ.get("GENLIB_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        raise SystemExit("Chromium is not installed (Debian: apt-get install chromium), or set GENLIB_CHROMIUM")
    url = args.url.rstrip("/")
    if args.screenshots:
        args.screenshots.mkdir(parents=True, exist_ok=True)
    results: list[dict] = []
    js_errors: list[str] = []
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(LOAD_MS)
        page.on("pageerror", lambda exc: js_errors.append(str(exc).splitlines()[0]))
        for title, path in app_pages():
            if not server_up(url):
                results.append({"step": f"{title} (/{path})", "ok": False, "seconds": 0.0, "end": round(time.time(), 1),
                                "errors": ["not run: the server is gone"]})
                print(f"  FAILED {title} (/{path}): not run, the server is gone", flush=True)
                continue

            def open_page(path=path):
                page.goto(f"{url}/{path}")
                page.locator(f'[data-testid="stMain"] h1, {EXCEPTION}').first.wait_for()
            if not check(page, f"{title} (/{path})", open_page, results, args.screenshots) or args.no_tabs:
                continue
            tabs = page.locator('[data-testid="stMain"] [role="tab"]')
            names = [" ".join(t.inner_text().split()) for t in tabs.all()]
            for name in names:
                if not server_up(url):
                    break
                tab = page.get_by_role("tab", name=name, exact=True).first
                check(page, f"{title} > {name}", tab.click, results, args.screenshots)
        browser.close()
    failed = [r for r in results if not r["ok"]]
    if js_errors:
        print(f"  (browser console errors, not counted: {len(js_errors)}; first: {js_errors[0][:200]})")
    print(f"walked {len(results)} steps on {len(app_pages())} pages: "
          f"{len(results) - len(failed)} OK, {len(failed)} failed")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "js_errors": js_errors}, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
