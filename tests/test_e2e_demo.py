"""The hosted demo's privacy in real Chromium against a real `streamlit run` server in demo mode
(GENLIB_DEMO=1): two browser contexts are two visitors. One uploads a photo and trains a run; the
other never sees either, and cannot open the run by typing its folder into a model box or by
putting it in a Compare link. The caps are stated on the pages where they apply."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from test_e2e_browser import CHROMIUM_ARGS, EXCEPTION, LOAD_MS, _chromium, _free_port, wait_idle

import playwright.sync_api as playwright_api
from genlib.data import bundled_photo, photo_png

ROOT = Path(__file__).resolve().parent.parent
REFUSED = "this demo loads only its shipped models and your own runs"


@pytest.fixture(scope="module")
def demo_server(app_checkpoints, tmp_path_factory):
    """`streamlit run` in demo mode, with 8-step training jobs so that a visitor's run is quick to make."""
    base = tmp_path_factory.mktemp("demo")
    port = _free_port()
    env = {**os.environ, "GENLIB_DEMO": "1", "GENLIB_CHECKPOINTS": str(app_checkpoints),
           "GENLIB_RUNS_DIR": str(base / "runs"), "GENLIB_VISITORS_DIR": str(base / "visitors"),
           "GENLIB_DEMO_TRAIN_STEPS": "8", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    log = open(base / "streamlit.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--server.fileWatcherType", "none",
         "--browser.gatherUsageStats", "false"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail(f"the streamlit server did not start; see {log.name}")
            time.sleep(0.5)
        yield {"url": url, "visitors": base / "visitors"}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def two_visitors():
    """Two browser contexts: separate cookies and storage, so two Streamlit sessions, as two people."""
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        pages = []
        for _ in range(2):
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.set_default_timeout(LOAD_MS)
            pages.append(page)
        yield pages
        browser.close()


def _open(page, url: str, heading: str) -> None:
    page.goto(url)
    page.get_by_role("heading", name=heading).first.wait_for()
    wait_idle(page)


def _model_options(page) -> str:
    """The text of every option in the page's Model chooser (opened, read, closed)."""
    page.get_by_label("Model", exact=True).first.click()
    listbox = page.get_by_role("listbox").first
    listbox.wait_for()
    text = listbox.inner_text()
    page.keyboard.press("Escape")
    return text


def test_one_visitor_cannot_see_or_open_the_others_upload_or_run(demo_server, two_visitors, tmp_path):
    alice, bob = two_visitors
    url = demo_server["url"]

    # Alice uploads a photo on the Restore page; the page states the upload caps.
    photo = tmp_path / "alice-cat.png"
    photo.write_bytes(photo_png(bundled_photo("chelsea")))
    _open(alice, url + "/restore", "Restore photos")
    alice.get_by_text("Upload your own", exact=True).click()
    alice.get_by_text("Hosted demo limits: uploads up to 5 MB").wait_for()
    alice.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(photo))
    alice.get_by_text("451x300, colour", exact=True).wait_for()

    # Alice trains a run (8 steps: the server's cap, which the Train tab states).
    _open(alice, url + "/autoencoders", "Autoencoders")
    alice.get_by_role("tab", name="Train").click()
    alice.get_by_text("Hosted demo limits: at most 8 training steps per job").wait_for()
    alice.get_by_role("button", name="Start training").click()
    done = alice.locator('[data-testid="stAlertContentSuccess"]').filter(has_text="Training finished")
    done.wait_for(timeout=180_000)
    runs = [p for p in demo_server["visitors"].glob("*/runs/*") if p.is_dir()]
    assert len(runs) == 1, runs
    run = runs[0]
    assert run.name in done.inner_text()
    alice.get_by_role("tab", name="Samples").click()
    wait_idle(alice)
    assert run.name in _model_options(alice)

    # Bob: a different session, so a different folder; he sees neither the upload nor the run.
    _open(bob, url + "/restore", "Restore photos")
    bob.get_by_text("Upload your own", exact=True).click()
    bob.get_by_text("Upload a photo.").first.wait_for()
    assert bob.get_by_text("451x300, colour", exact=True).count() == 0
    _open(bob, url + "/autoencoders", "Autoencoders")
    assert run.name not in _model_options(bob)
    # ... and typing its folder, or its bare name, into the model box is refused before anything is read
    for typed in (str(run), run.name, str(run.parent.parent)):
        box = bob.get_by_label("or load a local Hugging Face folder / hub id", exact=True)
        box.fill(typed)
        box.press("Enter")
        wait_idle(bob)
        bob.get_by_text(REFUSED).first.wait_for()
    # ... and a Compare link naming it gets the same refusal
    _open(bob, url + "/compare?" + urllib.parse.urlencode({"cmp_models": str(run)}), "Compare models")
    bob.get_by_text(REFUSED).first.wait_for()
    # Every page load is a new Streamlit session with a folder of its own; only Alice's training session's holds a run
    folders = [p.parent for p in demo_server["visitors"].glob("*/runs")]
    assert len(folders) >= 2 and [f for f in folders if any((f / "runs").iterdir())] == [run.parent.parent]
    for page in (alice, bob):
        assert page.locator(EXCEPTION).count() == 0
