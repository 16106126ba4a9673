"""The Restore page in real Chromium against a real server (the server, browser and page fixtures of
test_e2e_browser.py): a colour PNG uploaded through the file input, Gaussian noise added, three
methods restored in the background, the metrics, the before/after slider (our own HTML in an
st.iframe) moved, and a restored photo downloaded as a PNG of the photo's size."""
from __future__ import annotations

import csv
import io
import re

from PIL import Image
from test_e2e_browser import EXCEPTION, app_server, browser, page, wait_idle  # noqa: F401  (fixtures)

from genlib.data import bundled_photo, photo_png
from genlib.families.restoration.classical import DENOISERS

METHODS_BOX = '[data-testid="stMultiSelect"]'
SLIDER_FRAME = 'iframe[srcdoc*="before/after position"]'


def _chosen(page) -> list[str]:  # noqa: F811
    tags = page.locator(METHODS_BOX).filter(has_text="Methods").locator('[data-tag]')
    return [tags.nth(i).get_attribute("aria-label") or tags.nth(i).inner_text() for i in range(tags.count())]


def _add_method(page, method: str) -> None:  # noqa: F811
    box = page.locator(METHODS_BOX).filter(has_text="Methods").locator("input").first
    box.focus()
    box.press("ArrowDown")
    page.get_by_role("option", name=method, exact=True).click()
    page.keyboard.press("Escape")
    wait_idle(page)


def _download(page, label: str):  # noqa: F811
    button = page.locator('[data-testid="stDownloadButton"]').filter(has_text=label).locator("button")
    with page.expect_download() as download:
        button.click()
    return download.value


def test_restore_an_uploaded_photo_slide_and_download(app_server, page, tmp_path):  # noqa: F811
    photo = bundled_photo("chelsea")
    h, w = photo.shape[:2]
    upload = tmp_path / "chelsea.png"
    upload.write_bytes(photo_png(photo))

    page.goto(app_server["url"] + "/restore")
    page.get_by_role("heading", name="Restore photos").wait_for()
    wait_idle(page)
    page.get_by_text("Upload your own", exact=True).click()
    uploader = page.locator('[data-testid="stFileUploader"] input[type="file"]')
    uploader.wait_for(state="attached")
    uploader.set_input_files(str(upload))
    page.get_by_text(f"{w}x{h}, colour", exact=True).wait_for()
    wait_idle(page)

    assert page.get_by_label("Kind", exact=True).input_value() == "gaussian"  # "Add noise", Gaussian: the defaults
    chosen = _chosen(page)
    assert {"wavelet", "nl-means"} <= set(chosen), chosen
    if len(chosen) < 3:  # no shipped learned denoiser in this checkpoints folder: a third classical one
        _add_method(page, "tv")
        chosen = _chosen(page)
    assert len(chosen) == 3, chosen

    page.get_by_role("button", name="Restore", exact=True).click()
    for method in chosen:  # every method's PNG download appears once its result is in
        page.locator('[data-testid="stDownloadButton"]').filter(has_text=f"{method} (PNG)").wait_for(timeout=100_000)
    page.locator('[data-testid="stDataFrame"]').wait_for()
    wait_idle(page)
    assert page.locator(EXCEPTION).count() == 0
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0

    # the metrics table's numbers (a canvas on screen): read through its CSV download
    noisy = page.get_by_text(re.compile(r"^The noisy photo itself: [\d.]+ dB")).inner_text()
    noisy_psnr = float(re.search(r"([\d.]+) dB", noisy).group(1))
    metrics = _download(page, "Metrics (CSV)")
    assert metrics.suggested_filename == "chelsea-denoise-metrics.csv"
    rows = list(csv.DictReader(io.StringIO(open(metrics.path()).read())))
    assert sorted(r["method"] for r in rows) == sorted(chosen)
    classical = [r for r in rows if r["method"] in DENOISERS]  # a learned one's quality is the benchmark's
    assert len(classical) >= 2 and all(float(r["PSNR (dB)"]) > noisy_psnr for r in classical), (noisy_psnr, rows)
    assert all(0 < float(r["PSNR (dB)"]) < 100 and 0 < float(r["SSIM"]) <= 1 for r in rows), rows

    # the before/after slider: dragging the range input moves the clip of the "before" photo
    frame = page.frame_locator(SLIDER_FRAME)
    before = frame.locator(".before")
    before.wait_for(state="attached")
    clip = before.evaluate("e => e.style.clipPath")
    assert "50%" in clip
    frame.locator('input[type="range"]').evaluate(
        "e => { e.value = 20; e.dispatchEvent(new Event('input', {bubbles: true})); }")
    moved = before.evaluate("e => e.style.clipPath")
    assert moved != clip and "80%" in moved  # 20% of the "before" photo shows on the left
    assert frame.locator(".line").evaluate("e => e.style.left") == "20%"

    # a restored photo downloads as a PNG of the photo's size
    method = chosen[0]
    png = _download(page, f"{method} (PNG)")
    assert png.suggested_filename == f"chelsea-denoise-{method.rsplit('/', 1)[-1]}.png"
    data = open(png.path(), "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (w, h) and image.mode == "RGB"
    assert page.locator(EXCEPTION).count() == 0
