"""End-to-end tests in a real browser: a real `streamlit run` server and Debian's Chromium driven
by Python Playwright (never `playwright install`; set GENLIB_CHROMIUM to use another binary).

The journeys: every page opens without a Streamlit exception; on the Autoencoders page a tiny
training job runs to the end with its progress text and live sample grid, and a longer one is
cancelled from the page; a shared Compare URL reopens the same comparison in a fresh browser
and its report downloads; on the Diffusion page two samplers' reverse processes run and the frame
slider scrubs them together.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

import playwright.sync_api as playwright_api  # in requirements-test.txt
import pytest

ROOT = Path(__file__).resolve().parent.parent
EXCEPTION = '[data-testid="stException"]'
LOAD_MS = 120_000   # the first script run imports torch and reads MNIST on a busy 2-core machine
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-dev-shm-usage"]


def _chromium() -> str:
    path = os.environ.get("GENLIB_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("Chromium is not installed: run `bash scripts/test.sh` (it installs Debian's chromium) "
                    "or set GENLIB_CHROMIUM=/path/to/chromium")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_server(app_checkpoints, tmp_path_factory):
    """`streamlit run streamlit_app.py` on a free port, with runs written to a temp folder."""
    runs = tmp_path_factory.mktemp("e2e-runs")
    port = _free_port()
    env = {**os.environ, "GENLIB_CHECKPOINTS": str(app_checkpoints), "GENLIB_RUNS_DIR": str(runs),
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    log = open(runs.parent / f"streamlit-{port}.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--server.fileWatcherType", "none",
         "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
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
        yield {"url": url, "runs": runs}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(LOAD_MS)
    yield page
    context.close()


def wait_idle(page, timeout_ms: int = LOAD_MS) -> None:
    """Wait until the script run triggered by the last interaction has finished."""
    # The app element's script state, not the status widget: with toolbarMode "minimal"
    # (.streamlit/config.toml) Streamlit never draws the status widget, so waiting for it to go
    # away returned at once.
    page.wait_for_timeout(500)
    page.wait_for_function("() => document.querySelector('[data-testid=\"stApp\"]')"
                           "?.getAttribute('data-test-script-state') === 'notRunning'", timeout=timeout_ms)


def open_autoencoders(page, url: str) -> None:
    """Open the app's front door, then the Autoencoders page through the sidebar navigation."""
    page.goto(url)
    page.get_by_role("heading", name="Generative Model Lab").wait_for()
    page.get_by_test_id("stSidebarNavItems").get_by_role("link", name="Autoencoders").click()
    page.get_by_role("tab", name="Samples").wait_for()
    wait_idle(page)


def set_number(page, label: str, value: int) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Enter")
    wait_idle(page)


TAB_CONTENT = {  # a text each tab shows once it has finished drawing
    "Samples": "samples from the prior",
    "Reconstructions": "Mean squared error of the outputs",
    "Latent space": "The 1,000 test digits, encoded",
    "Interpolation & traversal": "the other dimensions come from",
    "Anomalies": "AUROC digits vs non-digits",
    "Train": "Start a run to watch it here",
    "Metrics & downloads": "Weights (safetensors)",
}


def test_every_page_opens_without_an_exception(app_server, page):
    # A direct link first: on a fresh server it must still run inside the router (sidebar, layout).
    page.goto(app_server["url"] + "/autoencoders")
    page.get_by_role("heading", name="Autoencoders").wait_for()
    page.locator('[data-testid="stSidebar"]').get_by_text("Global seed", exact=True).wait_for()
    page.get_by_role("link", name="Home").wait_for()
    for tab, content in TAB_CONTENT.items():
        page.get_by_role("tab", name=tab).click()
        page.get_by_text(content).first.wait_for()
        wait_idle(page)
        assert page.locator(EXCEPTION).count() == 0, f"exception on tab {tab}"
    page.get_by_role("link", name="Home").click()
    page.get_by_role("heading", name="Generative Model Lab").wait_for()
    page.get_by_role("heading", name="Evaluator").wait_for()
    wait_idle(page)
    assert page.locator(EXCEPTION).count() == 0
    # Every page is one click away: none hidden behind the sidebar's "View more".
    titles = re.findall(r'st\.Page\("[^"]+", title="([^"]+)"', (ROOT / "streamlit_app.py").read_text())
    nav = page.get_by_test_id("stSidebarNavItems")
    assert len(titles) >= 14
    for title in titles:
        assert nav.get_by_role("link", name=title, exact=True).is_visible(), f"{title} is not in the sidebar"


def test_train_watch_and_cancel(app_server, page):
    open_autoencoders(page, app_server["url"])
    page.get_by_role("tab", name="Train").click()
    page.get_by_role("button", name="Start training").wait_for()
    wait_idle(page)
    set_number(page, "epochs", 1)
    set_number(page, "batch size", 500)

    # A tiny job: progress text, then the live sample grid, then the saved run.
    page.get_by_role("button", name="Start training").click()
    progress = page.locator('[data-testid="stProgress"]')
    progress.filter(has_text="step").first.wait_for()
    page.get_by_text("samples at step").first.wait_for()
    success = page.locator('[data-testid="stAlertContentSuccess"]').filter(has_text="Training finished")
    success.wait_for(timeout=180_000)
    run_name = next(p.name for p in app_server["runs"].iterdir() if not p.name.startswith("."))
    assert run_name in success.inner_text()
    assert page.locator(EXCEPTION).count() == 0

    # A longer job, cancelled from the page.
    set_number(page, "epochs", 200)
    page.get_by_role("button", name="Start training").click()
    progress.filter(has_text="ETA").first.wait_for()
    page.get_by_role("button", name="Cancel").click()
    page.locator('[data-testid="stAlertContentWarning"]').filter(has_text="cancelled").wait_for(timeout=60_000)
    assert page.locator(EXCEPTION).count() == 0


def _compare_view(page) -> list[str]:
    """Open-page state that must survive sharing: the chosen models and each grid's image source."""
    page.get_by_role("heading", name="Scoreboard").wait_for(timeout=180_000)
    # models without a stored scorecard for this seed are scored in the background: wait for every row
    page.wait_for_function("() => !document.body.innerText.includes('in the background…')", timeout=300_000)
    wait_idle(page, 180_000)
    page.wait_for_function("""() => {  // every chosen model's grid is drawn, its image loaded
        const picker = document.querySelector('[data-testid="stMultiSelect"]');  // "Models" comes first
        const tags = picker ? picker.querySelectorAll('[data-tag]').length : 0;
        const grids = [...document.querySelectorAll('[data-testid="stImage"]')]
            .filter(g => g.innerText.includes(' · ') && g.querySelector('img') && g.querySelector('img').complete);
        return tags > 0 && grids.length >= tags; }""", timeout=120_000)  # one loaded grid per chosen model
    assert page.locator(EXCEPTION).count() == 0
    models = page.locator('[data-testid="stMultiSelect"]').filter(has_text="Models")
    tags = models.locator('.react-aria-ComboBox [data-testid="stMultiSelectTagsContainer"] [data-tag]')
    chosen = [tags.nth(i).get_attribute("aria-label") for i in range(tags.count())]
    grids = page.locator('[data-testid="stImage"]').filter(has_text=" · ")
    return chosen + [grids.nth(i).locator("img").get_attribute("src") for i in range(grids.count())]


def test_a_shared_compare_url_reopens_the_same_view_and_downloads_the_report(app_server, browser, page, tmp_path):
    query = urllib.parse.urlencode([("cmp_models", "cvae-mnist"), ("cmp_models", "vae-mnist"), ("cmp_seed", 5)])
    page.goto(f"{app_server['url']}/compare?{query}")
    first = _compare_view(page)
    assert [t.split(" · ")[0] for t in first[:2]] == ["cvae-mnist", "vae-mnist"] and len(first) == 4
    assert page.get_by_label("Seed", exact=True).input_value() == "5"
    assert page.url.endswith("/compare?" + query)  # the README's format, kept as written

    with page.expect_download() as download:
        page.get_by_role("button", name="Download the report").click()
    assert download.value.suggested_filename == "genlib-compare-seed5.zip"
    report = tmp_path / "report.zip"
    download.value.save_as(report)
    with zipfile.ZipFile(report) as zf:
        names = set(zf.namelist())
        assert {"genlib-report/report.html", "genlib-report/scoreboard.csv", "genlib-report/scoreboard.json",
                "genlib-report/grids/cvae-mnist.png"} <= names
        csv_text = zf.read("genlib-report/scoreboard.csv").decode()
    assert csv_text.splitlines()[1].startswith("cvae-mnist,")

    # The same URL in a fresh browser context (no cookies, no session): the same models, seed and images.
    other = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    other.set_default_timeout(LOAD_MS)
    other.goto(page.url)
    assert _compare_view(other) == first
    other.context.close()


def _toy_state(page) -> tuple[int, str]:
    """(step in the toy plot's title, the heatmap's rendered image) of the 2-D toy."""
    plot = page.locator('[data-testid="stPlotlyChart"]').first
    title = plot.locator(".gtitle").text_content()
    heatmap = plot.locator(".heatmaplayer image").first.get_attribute("href")
    return int(title.split()[1]), heatmap


def test_gan_toy_trains_live_and_its_heatmap_updates(app_server, page):
    page.goto(app_server["url"] + "/gans")
    page.get_by_role("heading", name="GANs").wait_for()
    wait_idle(page)
    page.get_by_role("tab", name="2-D toy").click()
    run = page.get_by_role("button", name="Run")
    run.wait_for()
    wait_idle(page)
    run.click()
    page.locator('[data-testid="stPlotlyChart"] .heatmaplayer image').first.wait_for()
    first_step, first_map = _toy_state(page)
    page.wait_for_function(  # the fragment redraws as the worker trains: the step count climbs
        f"() => {{ const t = document.querySelector('[data-testid=\"stPlotlyChart\"] .gtitle');"
        f" return t && parseInt(t.textContent.split(' ')[1]) > {first_step + 100}; }}", timeout=60_000)
    later_step, later_map = _toy_state(page)
    assert later_step > first_step and later_map != first_map  # D's decision surface moved
    page.get_by_role("button", name="Pause").click()
    page.locator('[data-testid="stPlotlyChart"] .gtitle').filter(has_text="paused").wait_for()
    paused_step, _ = _toy_state(page)
    page.get_by_role("button", name="One G step").click()
    page.locator('[data-testid="stPlotlyChart"] .gtitle').filter(has_text=f"step {paused_step + 1} ").wait_for()
    assert page.locator(EXCEPTION).count() == 0


def _timeline_frames(page) -> list[str]:
    """The src of every frame image of the reverse-process timeline (x_t and predicted x0 per sampler)."""
    images = page.locator('[data-testid="stImage"]').filter(has_text="x_t, the sample").locator("img")
    x0 = page.locator('[data-testid="stImage"]').filter(has_text="predicted x₀").locator("img")
    return [images.nth(i).get_attribute("src") for i in range(images.count())] + \
        [x0.nth(i).get_attribute("src") for i in range(x0.count())]


def test_diffusion_timeline_runs_two_samplers_and_the_frame_slider_scrubs_them(app_server, page):
    page.goto(app_server["url"] + "/diffusion")
    page.get_by_role("heading", name="Diffusion").wait_for()
    wait_idle(page)
    page.get_by_role("tab", name="Reverse process").click()
    run = page.get_by_role("button", name="Run", exact=True)
    run.wait_for()
    wait_idle(page)
    page.get_by_role("button", name="Remove dpm-solver++").click()  # two samplers: ddpm and ddim
    wait_idle(page)
    set_number(page, "Steps", 5)
    set_number(page, "Images", 3)
    run.click()
    page.get_by_text("ddim · step 1/5").wait_for()
    wait_idle(page)
    first = _timeline_frames(page)
    assert len(first) == 4 and all(first)  # x_t and predicted x0 for each of the two samplers

    slider = page.get_by_role("slider")
    slider.focus()
    slider.press("ArrowRight")
    slider.press("ArrowRight")
    page.get_by_text("ddpm · step 3/5").wait_for()
    page.get_by_text("ddim · step 3/5").wait_for()
    wait_idle(page)
    later = _timeline_frames(page)
    assert len(later) == 4 and all(a != b for a, b in zip(first, later))  # every row moved to the new frame
    slider.press("End")  # the last frame: the finished samples of both
    page.get_by_text("ddpm · finished samples").wait_for()
    page.get_by_text("ddim · finished samples").wait_for()
    wait_idle(page)
    assert page.get_by_role("button", name="GIF").count() == 2
    assert page.locator(EXCEPTION).count() == 0


def test_diffusion_attention_query_follows_a_click_on_the_image(app_server, page):
    page.goto(app_server["url"] + "/diffusion")
    page.get_by_role("heading", name="Diffusion").wait_for()
    wait_idle(page)
    page.get_by_role("tab", name="Attention").click()
    page.get_by_text("Click any pixel to query it").wait_for()
    wait_idle(page)
    plot = page.locator('[data-testid="stPlotlyChart"]').first.locator(".nsewdrag").first.bounding_box()
    row, col = 5, 20  # the 28x28 image fills the plot area: pixel centres at (i + 0.5) / 28 of its size
    page.mouse.click(plot["x"] + (col + 0.5) / 28 * plot["width"], plot["y"] + (row + 0.5) / 28 * plot["height"])
    page.get_by_text(f"Where pixel (row {row}, column {col})").wait_for()
    wait_idle(page)
    assert page.get_by_label("Query row", exact=True).input_value() == str(row)
    assert page.get_by_label("Query column", exact=True).input_value() == str(col)
    assert page.locator(EXCEPTION).count() == 0
